// The record of the Docker network plugin, <datadir>/docker-plugin.json:
// the addresses its IPAM driver handed out (who holds each in weave IPAM, and
// whether it is parked for a restart of the container that had it) and the
// endpoints its network driver made (veth, address, MAC, the namespace Docker
// joined it to, the container found in it), and the networks made with our
// driver and their options. Saved whole after each change,
// read back when the daemon restarts, so endpoints Docker still has are known
// again and addresses are never leaked or handed out twice.
//
// It never trusts the file: every field is checked, and one bad entry is
// dropped, not the rest. It never looks at the host.

import { errorMessage } from '../../common/errors';
import { parseIpWithPrefix } from '../../common/ip-cidr';
import { validateIfName } from './host-link';

export const PLUGIN_STATE_FILE = 'docker-plugin.json';
const PLUGIN_STATE_VERSION = 1;
/** Far above any host's containers; a bigger file is not ours. */
export const MAX_PLUGIN_STATE_BYTES = 16 * 1024 * 1024;

export interface PluginContainerRef {
  /** Full Docker container id. */
  id: string;
  name: string;
}

/** An address our IPAM driver gave Docker. */
export interface PluginAddress {
  /** With the pool's prefix: "10.32.0.5/12". */
  cidr: string;
  poolId: string;
  /** Who holds it in weave IPAM: one owner per address, since Docker's IPAM calls name no container. */
  owner: string;
  /** The container that last had it, once known (from its endpoint). */
  container: PluginContainerRef | null;
  /** Released by Docker at this time (ms) and kept for the container's restart; null while in use. */
  parkedAtMs: number | null;
}

/** A network endpoint our driver made. */
export interface PluginEndpoint {
  id: string;
  networkId: string;
  cidr: string;
  mac: string;
  /** Our end, on the bridge. */
  hostIfname: string;
  /** The end Docker moves into the container (Join's SrcName). */
  peerIfname: string;
  /**
   * Where Docker said at Join the container's namespace would be. The file
   * appears only once the container starts (runc makes the namespace, then
   * Docker binds it there), so it is read at the start event.
   */
  sandboxKey: string | null;
  /** dev:inode of that namespace once a container was found in it; null before. */
  nsId: string | null;
  container: PluginContainerRef | null;
  /** false: its network was made with `-o port-security=false`; absent in older files, so true there. */
  portSecurity: boolean;
}

/** A network made with our driver (CreateNetwork), with the options its endpoints take. */
export interface PluginNetworkRecord {
  id: string;
  portSecurity: boolean;
}

export interface PluginState {
  addresses: PluginAddress[];
  endpoints: PluginEndpoint[];
  /** Absent in files written before networks had options: read as none (every endpoint guarded). */
  networks: PluginNetworkRecord[];
}

export function formatPluginState(s: PluginState): string {
  return JSON.stringify({ version: PLUGIN_STATE_VERSION, ...s }, null, 2) + '\n';
}

function field(e: Record<string, unknown>, k: string, max = 256): string {
  const v = e[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new Error(`field ${k} is not a string of 1 to ${max} characters`);
  return v;
}

function cidrField(e: Record<string, unknown>, k: string): string {
  const v = field(e, k, 64);
  try {
    parseIpWithPrefix(v, 4);
  } catch (err) {
    throw new Error(`field ${k}: ${errorMessage(err)}`);
  }
  return v;
}

function hexField(e: Record<string, unknown>, k: string): string {
  const v = field(e, k, 64);
  if (!/^[0-9a-f]{12,64}$/.test(v)) throw new Error(`field ${k} is not 12 to 64 hex digits`);
  return v;
}

function containerField(e: Record<string, unknown>): PluginContainerRef | null {
  const c = e['container'];
  if (c === null || c === undefined) return null;
  if (typeof c !== 'object' || Array.isArray(c)) throw new Error('field container is not an object');
  const o = c as Record<string, unknown>;
  return { id: hexField(o, 'id'), name: field(o, 'name') };
}

function objectOf(raw: unknown): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('entry is not an object');
  return raw as Record<string, unknown>;
}

function parseAddress(raw: unknown): PluginAddress {
  const e = objectOf(raw);
  const parked = e['parkedAtMs'];
  if (parked !== null && (typeof parked !== 'number' || !Number.isFinite(parked) || parked < 0)) throw new Error('field parkedAtMs is not a time or null');
  return { cidr: cidrField(e, 'cidr'), poolId: field(e, 'poolId'), owner: field(e, 'owner'), container: containerField(e), parkedAtMs: parked };
}

function portSecurityField(e: Record<string, unknown>): boolean {
  const v = e['portSecurity'];
  if (v === undefined) return true;
  if (typeof v !== 'boolean') throw new Error('field portSecurity is not true or false');
  return v;
}

function parseNetwork(raw: unknown): PluginNetworkRecord {
  const e = objectOf(raw);
  return { id: hexField(e, 'id'), portSecurity: portSecurityField(e) };
}

function parseEndpoint(raw: unknown): PluginEndpoint {
  const e = objectOf(raw);
  const nsId = e['nsId'];
  if (nsId !== null && (typeof nsId !== 'string' || !/^\d+:\d+$/.test(nsId))) throw new Error('field nsId is not dev:inode or null');
  const key = e['sandboxKey'];
  if (key !== null && (typeof key !== 'string' || !isPlainPath(key))) throw new Error('field sandboxKey is not a plain absolute path or null');
  const mac = field(e, 'mac', 17);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new Error('field mac is not a MAC address');
  return {
    id: hexField(e, 'id'),
    networkId: hexField(e, 'networkId'),
    cidr: cidrField(e, 'cidr'),
    mac,
    hostIfname: validateIfName(field(e, 'hostIfname', 15), 'hostIfname'),
    peerIfname: validateIfName(field(e, 'peerIfname', 15), 'peerIfname'),
    sandboxKey: key,
    nsId,
    container: containerField(e),
    portSecurity: portSecurityField(e),
  };
}

/** Absolute, no `.`/`..` components, no `//`, no control characters, bounded: a path to stat, nothing to resolve. */
export function isPlainPath(p: string): boolean {
  return p.length <= 1024 && p.startsWith('/') && !/\/\.\.?(\/|$)|\/\/|[\0-\x1f\x7f]/.test(p);
}

/** The state and what was dropped from it; throws only when the file as a whole is not ours. */
export function parsePluginState(text: string): { state: PluginState; problems: string[] } {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON: ${errorMessage(err)}`);
  }
  const top = o as Record<string, unknown> | null;
  if (typeof top !== 'object' || top === null || top['version'] !== PLUGIN_STATE_VERSION || !Array.isArray(top['addresses']) || !Array.isArray(top['endpoints'])
    || !(top['networks'] === undefined || Array.isArray(top['networks']))) {
    throw new Error(`expected {"version": ${PLUGIN_STATE_VERSION}, "addresses": [...], "endpoints": [...], "networks": [...]}`);
  }
  const state: PluginState = { addresses: [], endpoints: [], networks: [] };
  const problems: string[] = [];
  for (const raw of top['addresses'] as unknown[]) {
    try {
      const a = parseAddress(raw);
      if (state.addresses.some((x) => x.cidr === a.cidr || x.owner === a.owner)) throw new Error(`address ${a.cidr} is listed twice`);
      state.addresses.push(a);
    } catch (err) {
      problems.push(`address: ${errorMessage(err)}`);
    }
  }
  for (const raw of top['endpoints'] as unknown[]) {
    try {
      const ep = parseEndpoint(raw);
      if (state.endpoints.some((x) => x.id === ep.id || x.hostIfname === ep.hostIfname)) throw new Error(`endpoint ${ep.id} is listed twice`);
      state.endpoints.push(ep);
    } catch (err) {
      problems.push(`endpoint: ${errorMessage(err)}`);
    }
  }
  for (const raw of (top['networks'] as unknown[] | undefined) ?? []) {
    try {
      const n = parseNetwork(raw);
      if (state.networks.some((x) => x.id === n.id)) throw new Error(`network ${n.id} is listed twice`);
      state.networks.push(n);
    } catch (err) {
      problems.push(`network: ${errorMessage(err)}`);
    }
  }
  return { state, problems };
}
