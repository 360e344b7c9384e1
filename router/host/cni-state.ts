// The record of CNI attachments: what the CniEndpoint made for each
// (container id, interface name) a runtime added, saved whole to
// <datadir>/cni.json after every change and read back when the daemon
// restarts, so a DEL after a restart still frees exactly what the ADD made.
// Also the host end's name, derived from the key alone, so a veth left by a
// crash midway through an ADD is found again without a record.
//
// It must never trust the file: every field is checked on load (the file may
// be hand-edited or truncated), and one bad entry drops that entry, not the
// rest. It never looks at the host: whether an entry is still true is the
// endpoint's to decide.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { CniAddress, CniAttachment, CniDns, CniRoute } from '../../common/cni-wire';
import { checkContainerId, checkDnsName, checkIfName, checkNetnsPath, checkNetworkName, MAX_CNI_ADDRESSES, MAX_CNI_ROUTES } from '../../common/cni-wire';
import { writeFileAtomic } from '../../common/files';
import { canonicalIp } from '../../common/ip';
import { errorMessage } from '../../common/errors';
import { parseAttachAddress, parseRouteCidr } from './attach-address';
import { CONTAINER_VETH_PREFIXES, MAX_IFNAME_CHARS } from './host-link';

export const CNI_STATE_FILE = 'cni.json';
const CNI_STATE_VERSION = 1;
/** Host ends of CNI veths: `vethwec` + hash, inside the bridge firewall's `vethwe*` accept rule. */
export const CNI_VETH_PREFIX = CONTAINER_VETH_PREFIXES.cni;

/**
 * One attachment. 'adding' is written before anything is made, so an ADD
 * cut short by a crash is undone at the next start rather than leaked.
 */
export interface CniRecord {
  containerId: string;
  ifName: string;
  netns: string;
  /** dev:inode of the namespace at ADD, to tell a reused path from the same namespace. */
  nsId: string;
  network: string;
  hostIfname: string;
  mac: string;
  addresses: CniAddress[];
  /** Routes beyond the overlay's own: those a delegated IPAM plugin asked for. */
  routes: CniRoute[];
  dnsName: string | null;
  ipam: 'weave' | 'delegated';
  state: 'adding' | 'attached';
  /** false: the network config turned port security off for it. */
  portSecurity?: false;
}

/** The host end for (container id, interface name): stable, 15 characters, ours by its prefix. */
export function cniHostIfname(containerId: string, ifName: string): string {
  const hash = createHash('sha256').update(`${containerId}/${ifName}`).digest('hex');
  return `${CNI_VETH_PREFIX}${hash.slice(0, MAX_IFNAME_CHARS - CNI_VETH_PREFIX.length)}`;
}

/** What the API replies for a record; `routes` lists the overlay's routes as well. */
export function cniView(r: CniRecord, overlayRoutes: readonly string[], dns: CniDns | null): CniAttachment {
  return {
    containerId: r.containerId,
    ifName: r.ifName,
    netns: r.netns,
    network: r.network,
    hostIfname: r.hostIfname,
    mac: r.mac,
    addresses: r.addresses.map((a) => ({ ...a })),
    routes: [...overlayRoutes.map((dst) => ({ dst })), ...r.routes.map((x) => ({ ...x }))],
    dns: dns === null || r.dnsName === null ? dns : { ...dns },
    dnsName: r.dnsName,
    ipam: r.ipam,
    ...(r.portSecurity === false ? { portSecurity: false } : {}),
  };
}

export function formatCniState(records: readonly CniRecord[]): string {
  return JSON.stringify({ version: CNI_STATE_VERSION, attachments: records }, null, 2) + '\n';
}

function str(e: Record<string, unknown>, k: string): string {
  const v = e[k];
  if (typeof v !== 'string') throw new Error(`field ${k} is not a string`);
  return v;
}

function optIp(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || canonicalIp(v) === null) throw new Error(`${what} is not an IP address`);
  return v;
}

/** Addresses as the wire and the file carry them; each checked as an interface address. */
export function parseCniAddresses(raw: unknown): CniAddress[] {
  if (!Array.isArray(raw) || raw.length > MAX_CNI_ADDRESSES) throw new Error(`addresses must be a list of at most ${MAX_CNI_ADDRESSES}`);
  return raw.map((x: unknown) => {
    if (typeof x !== 'object' || x === null) throw new Error('an address entry is not an object');
    const o = x as Record<string, unknown>;
    const address = parseAttachAddress(str(o, 'address')).cidr;
    const gateway = optIp(o['gateway'], 'gateway');
    return gateway === undefined ? { address } : { address, gateway };
  });
}

export function parseCniRoutes(raw: unknown): CniRoute[] {
  if (!Array.isArray(raw) || raw.length > MAX_CNI_ROUTES) throw new Error(`routes must be a list of at most ${MAX_CNI_ROUTES}`);
  return raw.map((x: unknown) => {
    if (typeof x !== 'object' || x === null) throw new Error('a route entry is not an object');
    const o = x as Record<string, unknown>;
    const dst = parseRouteCidr(str(o, 'dst'));
    const gw = optIp(o['gw'], 'route gateway');
    return gw === undefined ? { dst } : { dst, gw };
  });
}

function parseRecord(raw: unknown): CniRecord {
  if (typeof raw !== 'object' || raw === null) throw new Error('entry is not an object');
  const e = raw as Record<string, unknown>;
  const containerId = checkContainerId(e['containerId']);
  const ifName = checkIfName(e['ifName']);
  const hostIfname = str(e, 'hostIfname');
  // Only the name the key implies: the endpoint deletes this link on DEL.
  if (hostIfname !== cniHostIfname(containerId, ifName)) throw new Error(`host interface ${JSON.stringify(hostIfname)} is not the one of ${containerId}/${ifName}`);
  const ipam = e['ipam'];
  if (ipam !== 'weave' && ipam !== 'delegated') throw new Error('ipam must be "weave" or "delegated"');
  const state = e['state'];
  if (state !== 'adding' && state !== 'attached') throw new Error('state must be "adding" or "attached"');
  const dnsName = e['dnsName'] === null ? null : checkDnsName(e['dnsName']);
  return {
    containerId, ifName, hostIfname, ipam, state, dnsName,
    netns: checkNetnsPath(e['netns']),
    nsId: str(e, 'nsId'),
    network: checkNetworkName(e['network']),
    mac: str(e, 'mac'),
    addresses: parseCniAddresses(e['addresses']),
    routes: parseCniRoutes(e['routes']),
    ...(e['portSecurity'] === false ? { portSecurity: false } : {}),
  };
}

/** Decodes cni.json: the good entries, and a problem per bad one (for the log). */
export function parseCniState(text: string): { records: CniRecord[]; problems: string[] } {
  const o = JSON.parse(text) as { version?: unknown; attachments?: unknown };
  if (typeof o !== 'object' || o === null || o.version !== CNI_STATE_VERSION || !Array.isArray(o.attachments)) {
    throw new Error(`expected {"version": ${CNI_STATE_VERSION}, "attachments": [...]}`);
  }
  const records: CniRecord[] = [];
  const problems: string[] = [];
  for (const raw of o.attachments as unknown[]) {
    try {
      const r = parseRecord(raw);
      if (records.some((x) => x.containerId === r.containerId && x.ifName === r.ifName)) throw new Error(`${r.containerId}/${r.ifName} is listed twice`);
      records.push(r);
    } catch (err) {
      problems.push(errorMessage(err));
    }
  }
  return { records, problems };
}

/** Where the record lives; tests keep it in memory. */
export interface CniStateStore {
  load(): string | null;
  save(text: string): void;
}

export class FileCniStateStore implements CniStateStore {
  constructor(readonly file: string) {}

  load(): string | null {
    try {
      return fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  save(text: string): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileAtomic(this.file, text);
  }
}
