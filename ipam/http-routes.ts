// IPAM's endpoints on the daemon's local HTTP API, and its section of
// GET /report, as a plain ApiEndpoints value (common/api-route.ts) that
// cli/daemon.ts mounts: ipam/ never sees the server. Glue only: each body is
// validated here (refused with IpamError('config'), which is 400) before the
// Ipam sees it, and the IPAM error codes a caller can act on become their
// own HTTP statuses.
//
//   POST /ipam/allocate  {container, subnet?, timeoutMs?}  -> {address, addressV6}
//   POST /ipam/claim     {container, address, timeoutMs?} -> {address, addressV6}
//   POST /ipam/release   {container, address?, graceMs?}  -> {released: [cidr]}
//   GET  /ipam/containers/:container                      -> {addresses: [cidr]}
//   GET  /ipam/status                                     -> IpamStatus
//   POST /ipam/prime     {waitMs?}                        -> {ready, waitingFor}
//   POST /ipam/rmpeer    {peer}                           -> {peer, addresses}
//   POST /ipam/reset                                      -> {handedTo, addresses}

import type { ApiEndpoints, ApiRoute } from '../common/api-route';
import { HttpError } from '../common/api-route';
import { IpamError } from './errors';
import type { Ipam, IpamStatus } from './ipam';

export type IpamApiTarget = Pick<Ipam, 'allocate' | 'claim' | 'release' | 'releaseContainer' | 'addressesOf' | 'status' | 'prime' | 'rmpeer' | 'reset' | 'v6For' | 'waitingFor'>;

/** Longest a request may ask to wait; the CLI polls /ipam/prime in short steps. */
export const MAX_WAIT_MS = 10 * 60_000;
export const DEFAULT_PRIME_WAIT_MS = 2_000;

export interface AddressReply {
  address: string;
  addressV6: string | null;
}

export interface PrimeReply {
  ready: boolean;
  waitingFor: string | null;
}

function objectBody(body: unknown, endpoint: string, shape: string): Record<string, unknown> {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw IpamError.config(`${endpoint} expects a JSON object ${shape}`);
  return body as Record<string, unknown>;
}

function stringField(rec: Record<string, unknown>, field: string, endpoint: string, required: true): string;
function stringField(rec: Record<string, unknown>, field: string, endpoint: string, required: false): string | undefined;
function stringField(rec: Record<string, unknown>, field: string, endpoint: string, required: boolean): string | undefined {
  const v = rec[field];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.trim() === '') throw IpamError.config(`${endpoint}: "${field}" must be a non-empty string`);
  if (v.length > 300) throw IpamError.config(`${endpoint}: "${field}" is ${v.length} characters long`);
  return v;
}

function msField(rec: Record<string, unknown>, field: string, endpoint: string): number | undefined {
  const v = rec[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_WAIT_MS) {
    throw IpamError.config(`${endpoint}: "${field}" must be a whole number of milliseconds from 0 to ${MAX_WAIT_MS}`);
  }
  return v;
}

/** IPAM codes the caller can act on get their own HTTP status; 'config' is 400 anyway (httpStatusOf). */
async function mapErrors<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof IpamError) {
      switch (err.code) {
        case 'conflict': case 'full': throw new HttpError(409, err.message);
        case 'timeout': throw new HttpError(504, err.message);
        case 'shutdown': throw new HttpError(503, err.message);
        default: break;
      }
    }
    throw err;
  }
}

export function ipamApi(ipam: IpamApiTarget): ApiEndpoints {
  const withV6 = (address: string): AddressReply => ({ address, addressV6: ipam.v6For(address) });

  const routes: ApiRoute[] = [
    {
      method: 'POST', path: '/ipam/allocate', handler: (req) => mapErrors(async () => {
        const rec = objectBody(req.body, '/ipam/allocate', '{"container": "...", "subnet": "10.32.1.0/24" (optional)}');
        const container = stringField(rec, 'container', '/ipam/allocate', true);
        const subnet = stringField(rec, 'subnet', '/ipam/allocate', false);
        const timeoutMs = msField(rec, 'timeoutMs', '/ipam/allocate');
        return withV6(await ipam.allocate(container, { ...(subnet !== undefined ? { subnet } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) }));
      }),
    },
    {
      method: 'POST', path: '/ipam/claim', handler: (req) => mapErrors(async () => {
        const rec = objectBody(req.body, '/ipam/claim', '{"container": "...", "address": "10.32.0.5/12"}');
        const container = stringField(rec, 'container', '/ipam/claim', true);
        const address = stringField(rec, 'address', '/ipam/claim', true);
        const timeoutMs = msField(rec, 'timeoutMs', '/ipam/claim');
        return withV6(await ipam.claim(container, address, timeoutMs !== undefined ? { timeoutMs } : {}));
      }),
    },
    {
      method: 'POST', path: '/ipam/release', handler: (req) => mapErrors(() => {
        const rec = objectBody(req.body, '/ipam/release', '{"container": "...", "address": "..." (optional), "graceMs": 0 (optional)}');
        const container = stringField(rec, 'container', '/ipam/release', true);
        const address = stringField(rec, 'address', '/ipam/release', false);
        const graceMs = msField(rec, 'graceMs', '/ipam/release');
        if (address !== undefined && graceMs !== undefined) throw IpamError.config('/ipam/release: "graceMs" applies to a whole container, not to one address');
        const released = address !== undefined ? ipam.release(container, address) : ipam.releaseContainer(container, graceMs !== undefined ? { graceMs } : {});
        return { released };
      }),
    },
    { method: 'GET', path: '/ipam/containers/:container', handler: (req) => ({ addresses: ipam.addressesOf(req.params['container'] ?? '') }) },
    { method: 'GET', path: '/ipam/status', handler: (): IpamStatus => ipam.status() },
    {
      method: 'POST', path: '/ipam/prime', handler: (req) => mapErrors(async (): Promise<PrimeReply> => {
        const rec = objectBody(req.body, '/ipam/prime', '{"waitMs": 2000 (optional)}');
        const waitMs = msField(rec, 'waitMs', '/ipam/prime') ?? DEFAULT_PRIME_WAIT_MS;
        try {
          await ipam.prime(waitMs);
        } catch (err) {
          // Not ready yet is an answer, not a failure: the CLI shows it and asks again.
          if (err instanceof IpamError && err.code === 'timeout') return { ready: false, waitingFor: ipam.waitingFor() };
          throw err;
        }
        return { ready: true, waitingFor: null };
      }),
    },
    {
      method: 'POST', path: '/ipam/rmpeer', handler: (req) => mapErrors(() => {
        const rec = objectBody(req.body, '/ipam/rmpeer', '{"peer": "aa:bb:cc:dd:ee:ff"}');
        return ipam.rmpeer(stringField(rec, 'peer', '/ipam/rmpeer', true));
      }),
    },
    { method: 'POST', path: '/ipam/reset', handler: () => mapErrors(() => ipam.reset()) },
  ];

  return { routes, reportSections: [{ name: 'ipam', build: () => ipam.status() }] };
}
