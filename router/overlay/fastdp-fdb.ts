// The fast path's forwarding entries: what the vxlan device's FDB should hold
// (from the MAC table and the per-peer path decisions), what it holds (parsed
// from `bridge -j fdb show`), the difference, and the `bridge -batch` lines
// that apply it. Pure: the I/O is the FdbDevice the composition root passes in.
//
// Each MAC that goes over VXLAN has two entries on the vxlan device, both
// tagged by living there (the device is ours alone):
//   - `self dst IP`: the vxlan device's own entry, where to tunnel the frame;
//   - `master static sticky`: the bridge's entry, which sends frames for the
//     MAC to the vxlan port. Sticky, so a frame from that MAC arriving over
//     the sleeve (a broadcast) cannot move it to the TAP port.
// Without the bridge entry a frame never reaches the vxlan port (flooding is
// off on it), so a MAC is on exactly one path: no duplicates. Adding writes
// the vxlan entry before the bridge entry, removing the other way round, so no
// frame is ever sent to the vxlan port with nowhere to go.
// Which MACs: those the MAC table says live at a neighbour on the fast path,
// and the heartbeat MAC of every neighbour that offers it. Broadcast and
// unknown frames get no entry (no all-zero MAC): they take the router's
// broadcast tree, so VXLAN never floods and cannot loop with the sleeve.

import type { PeerName } from '../mesh/peer-name';
import { heartbeatMac } from './fastdp-heartbeat';

/** MAC -> the IPv4 address its frames are tunnelled to. */
export type FdbTable = Map<string, string>;

export interface FdbDiff {
  /** Entries to write (new, or with another address, or half there). */
  set: { mac: string; dst: string }[];
  /** MACs whose entries go. */
  remove: string[];
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const ZERO_MAC = '00:00:00:00:00:00';

/**
 * What the FDB should hold. `fast`: neighbours whose frames take VXLAN, with
 * their address; `offering`: neighbours we send heartbeats to.
 */
export function desiredFdb(
  macs: Iterable<{ mac: string; peer: PeerName }>,
  fast: ReadonlyMap<PeerName, string>,
  offering: ReadonlyMap<PeerName, string>,
): FdbTable {
  const out: FdbTable = new Map();
  for (const [peer, host] of offering) out.set(heartbeatMac(peer), host);
  for (const { mac, peer } of macs) {
    const host = fast.get(peer);
    if (host !== undefined && isUnicastMac(mac)) out.set(mac, host);
  }
  return out;
}

/**
 * The addresses the table tunnels to, sorted and each once: the neighbours
 * whose VXLAN datagrams the fast path's firewall accepts
 * (router/host/fastdp-firewall.ts). Every neighbour we send heartbeats to is
 * in it, so its heartbeats reach us before it is on the fast path.
 */
export function fdbPeerAddresses(table: FdbTable): string[] {
  return [...new Set(table.values())].sort();
}

function isUnicastMac(mac: string): boolean {
  return MAC_RE.test(mac) && mac !== ZERO_MAC && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

/** The vxlan device's entries as the kernel lists them: `self` entries with their address, and the bridge's static ones. */
export interface FdbState {
  tunnel: FdbTable;
  bridge: Set<string>;
}

/**
 * Parses `bridge -j fdb show dev DEV`. Entries we did not make (the device's
 * own permanent address, anything malformed) are left out, so they are never
 * removed either.
 */
export function parseFdbShow(json: string): FdbState {
  const state: FdbState = { tunnel: new Map(), bridge: new Set() };
  let rows: unknown;
  try {
    rows = JSON.parse(json === '' ? '[]' : json);
  } catch {
    throw new Error('bridge fdb show printed something that is not JSON');
  }
  if (!Array.isArray(rows)) throw new Error('bridge fdb show did not print a list');
  for (const row of rows as unknown[]) {
    if (typeof row !== 'object' || row === null) continue;
    const r = row as Record<string, unknown>;
    const mac = r['mac'];
    if (typeof mac !== 'string' || !isUnicastMac(mac)) continue;
    const flags = Array.isArray(r['flags']) ? (r['flags'] as unknown[]) : [];
    if (typeof r['master'] === 'string' && r['state'] === 'static') state.bridge.add(mac);
    else if (flags.includes('self') && typeof r['dst'] === 'string' && IPV4_RE.test(r['dst'])) state.tunnel.set(mac, r['dst']);
  }
  return state;
}

export function diffFdb(actual: FdbState, desired: FdbTable): FdbDiff {
  const set: FdbDiff['set'] = [];
  for (const [mac, dst] of desired) {
    if (actual.tunnel.get(mac) !== dst || !actual.bridge.has(mac)) set.push({ mac, dst });
  }
  const remove: string[] = [];
  const seen = new Set<string>();
  for (const mac of [...actual.tunnel.keys(), ...actual.bridge]) {
    if (desired.has(mac) || seen.has(mac)) continue;
    seen.add(mac);
    remove.push(mac);
  }
  return { set, remove };
}

/**
 * `bridge -batch` lines for a diff, in the order the header explains. Every
 * MAC and address is checked against a strict pattern first, so nothing but
 * these two arguments can ever reach the batch.
 */
export function fdbBatch(diff: FdbDiff, actual: FdbState, dev: string): string[] {
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(dev)) throw new Error(`bad device name ${JSON.stringify(dev)}`);
  const lines: string[] = [];
  for (const mac of diff.remove) {
    if (!MAC_RE.test(mac)) continue;
    if (actual.bridge.has(mac)) lines.push(`fdb del ${mac} dev ${dev} master`);
    if (actual.tunnel.has(mac)) lines.push(`fdb del ${mac} dev ${dev} self`);
  }
  for (const { mac, dst } of diff.set) {
    const m = IPV4_RE.exec(dst);
    if (!MAC_RE.test(mac) || !m || m.slice(1).some((o) => Number(o) > 255)) continue;
    lines.push(`fdb replace ${mac} dev ${dev} self dst ${dst}`);
    lines.push(`fdb replace ${mac} dev ${dev} master static sticky`);
  }
  return lines;
}
