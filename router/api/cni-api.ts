// The HTTP endpoints of the weave-net CNI plugin (common/cni-wire.ts has the
// contract): POST /cni/add, /cni/check, /cni/del, /cni/gc, GET /cni, and a
// `cni` section in GET /report, as ApiEndpoints the composition root mounts.
// It owns request validation (every body is checked here, as hostile, before
// the CniEndpoint sees it) and the HTTP status each failure gets, which the
// plugin turns into a CNI error code:
//
//   400 bad request or config      404 no such attachment   410 namespace gone
//   409 CHECK found drift          503 IPAM not ready yet   500 the host failed

import type { ApiEndpoints } from '../../common/api-route';
import { HttpError } from '../../common/api-route';
import type { CniAddRequest, CniCheckRequest, CniDelRequest, CniGcRequest } from '../../common/cni-wire';
import {
  CNI_WIRE_VERSION, CniWireError, MAX_GC_ATTACHMENTS, checkContainerId, checkDnsName, checkIfName, checkNetnsPath, checkNetworkName,
} from '../../common/cni-wire';
import { assertNever, errorMessage } from '../../common/errors';
import type { CniEndpoint } from '../host/cni-endpoint';
import { CniError } from '../host/cni-endpoint';
import { parseCniAddresses, parseCniRoutes } from '../host/cni-state';

export type CniApiTarget = Pick<CniEndpoint, 'add' | 'check' | 'del' | 'gc' | 'list'>;

/** Longest an ADD may ask to wait for weave IPAM. */
export const MAX_IPAM_WAIT_MS = 120_000;

function objectBody(body: unknown, endpoint: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, `${endpoint} expects a JSON object`);
  const rec = body as Record<string, unknown>;
  if (rec['version'] !== CNI_WIRE_VERSION) {
    throw new HttpError(400, `${endpoint}: wire version ${JSON.stringify(rec['version'])} is not ${CNI_WIRE_VERSION}; the weave-net plugin and the router are from different releases (run weave setup-cni again)`);
  }
  return rec;
}

/** CniWireError and the record's parse errors are the caller's fault: 400 with the reason. */
function field<T>(endpoint: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new HttpError(400, `${endpoint}: ${errorMessage(err)}`);
  }
}

export function parseCniAddBody(body: unknown): CniAddRequest & { ipamWaitMs?: number } {
  const e = '/cni/add';
  const rec = objectBody(body, e);
  const out: CniAddRequest & { ipamWaitMs?: number } = {
    version: CNI_WIRE_VERSION,
    containerId: field(e, () => checkContainerId(rec['containerId'])),
    ifName: field(e, () => checkIfName(rec['ifName'])),
    netns: field(e, () => checkNetnsPath(rec['netns'])),
    network: field(e, () => checkNetworkName(rec['network'])),
    dnsName: rec['dnsName'] === null ? null : field(e, () => checkDnsName(rec['dnsName'])),
  };
  const d = rec['delegated'];
  if (d !== undefined) {
    if (typeof d !== 'object' || d === null || Array.isArray(d)) throw new HttpError(400, `${e}: "delegated" must be {addresses, routes}`);
    const dr = d as Record<string, unknown>;
    const addresses = field(e, () => parseCniAddresses(dr['addresses']));
    if (addresses.length === 0) throw new HttpError(400, `${e}: the delegated IPAM plugin returned no address`);
    out.delegated = { addresses, routes: field(e, () => parseCniRoutes(dr['routes'] ?? [])) };
  }
  const ps = rec['portSecurity'];
  if (ps !== undefined && typeof ps !== 'boolean') throw new HttpError(400, `${e}: "portSecurity" must be true or false`);
  if (ps === false) out.portSecurity = false;
  const w = rec['ipamWaitMs'];
  if (w !== undefined) {
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > MAX_IPAM_WAIT_MS) throw new HttpError(400, `${e}: "ipamWaitMs" must be a whole number from 0 to ${MAX_IPAM_WAIT_MS}`);
    out.ipamWaitMs = w;
  }
  return out;
}

export function parseCniCheckBody(body: unknown): CniCheckRequest {
  const e = '/cni/check';
  const rec = objectBody(body, e);
  return {
    version: CNI_WIRE_VERSION,
    containerId: field(e, () => checkContainerId(rec['containerId'])),
    ifName: field(e, () => checkIfName(rec['ifName'])),
    netns: field(e, () => checkNetnsPath(rec['netns'])),
  };
}

export function parseCniDelBody(body: unknown): CniDelRequest {
  const e = '/cni/del';
  const rec = objectBody(body, e);
  const out: CniDelRequest = {
    version: CNI_WIRE_VERSION,
    containerId: field(e, () => checkContainerId(rec['containerId'])),
    ifName: field(e, () => checkIfName(rec['ifName'])),
  };
  if (rec['netns'] !== undefined) out.netns = field(e, () => checkNetnsPath(rec['netns']));
  return out;
}

export function parseCniGcBody(body: unknown): CniGcRequest {
  const e = '/cni/gc';
  const rec = objectBody(body, e);
  const valid = rec['valid'];
  if (!Array.isArray(valid) || valid.length > MAX_GC_ATTACHMENTS) throw new HttpError(400, `${e}: "valid" must be a list of at most ${MAX_GC_ATTACHMENTS} {containerId, ifName}`);
  return {
    version: CNI_WIRE_VERSION,
    network: field(e, () => checkNetworkName(rec['network'])),
    valid: valid.map((v: unknown) => {
      if (typeof v !== 'object' || v === null) throw new HttpError(400, `${e}: every "valid" entry must be {containerId, ifName}`);
      const o = v as Record<string, unknown>;
      return { containerId: field(e, () => checkContainerId(o['containerId'])), ifName: field(e, () => checkIfName(o['ifName'])) };
    }),
  };
}

/** The status a CniError is answered with; see the table at the top. */
export function cniHttpStatus(code: CniError['code']): number {
  switch (code) {
    case 'config': return 400;
    case 'not-found': return 404;
    case 'no-netns': return 410;
    case 'drift': return 409;
    case 'waiting': return 503;
    case 'io': return 500;
    default: return assertNever(code);
  }
}

async function mapErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CniError) throw new HttpError(cniHttpStatus(err.code), err.message);
    if (err instanceof CniWireError) throw new HttpError(400, err.message);
    throw err;
  }
}

export function cniApi(endpoint: CniApiTarget): ApiEndpoints {
  return {
    routes: [
      { method: 'POST', path: '/cni/add', handler: (req) => mapErrors(() => endpoint.add(parseCniAddBody(req.body))) },
      { method: 'POST', path: '/cni/check', handler: (req) => mapErrors(() => endpoint.check(parseCniCheckBody(req.body))) },
      { method: 'POST', path: '/cni/del', handler: (req) => mapErrors(() => endpoint.del(parseCniDelBody(req.body))) },
      { method: 'POST', path: '/cni/gc', handler: (req) => mapErrors(() => endpoint.gc(parseCniGcBody(req.body))) },
      { method: 'GET', path: '/cni', handler: () => ({ attachments: endpoint.list() }) },
    ],
    reportSections: [{ name: 'cni', build: () => endpoint.list() }],
  };
}
