// One peer's entry in the topology: who it is, which run of it this is
// (incarnation), how many times it has changed (version), and the connections
// it reports. Owns the entry types, their canonical form and the total order
// used to merge them. Pure values only: it must never hold state, do I/O, or
// know the wire format (that is router/mesh/peers.ts).

import type { PeerName } from './peer-name';
import { comparePeerNames } from './peer-name';

export interface PeerConnection {
  /** The peer at the other end. */
  name: PeerName;
  /** host:port the connection's remote end listens on, '' if unknown. */
  address: string;
  /** We dialled it (as opposed to it dialling us). */
  outbound: boolean;
  /** The handshake completed; only established connections carry routes. */
  established: boolean;
}

export interface PeerEntry {
  name: PeerName;
  nickname: string;
  /** Below 2^53; a restarted peer has a larger one, so its fresh version 1 beats the old run's version 50. */
  incarnation: number;
  /** Bumped by the owner on each change; only the owner writes its entry. */
  version: number;
  /** Canonical order (see canonicalConnections) once inside a Peers store. */
  connections: readonly PeerConnection[];
}

const textEncoder = new TextEncoder();

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** UTF-8 byte order, not UTF-16 code-unit order, so the result matches comparing encoded bytes. */
function compareText(a: string, b: string): number {
  if (a === b) return 0;
  return compareBytes(textEncoder.encode(a), textEncoder.encode(b));
}

/** Flags as they go on the wire: bit0 outbound, bit1 established. */
export function connectionFlags(c: PeerConnection): number {
  return (c.outbound ? 1 : 0) | (c.established ? 2 : 0);
}

export function compareConnections(a: PeerConnection, b: PeerConnection): number {
  return comparePeerNames(a.name, b.name)
    || compareText(a.address, b.address)
    || connectionFlags(a) - connectionFlags(b);
}

/**
 * Sorted copy (by remote name, then address, then flags). Connections are a
 * set: two lists with the same members in another order are the same entry.
 */
export function canonicalConnections(conns: readonly PeerConnection[]): PeerConnection[] {
  return conns.map((c) => ({ name: c.name, address: c.address, outbound: c.outbound, established: c.established }))
    .sort(compareConnections);
}

function isSorted(conns: readonly PeerConnection[]): boolean {
  for (let i = 1; i < conns.length; i++) if (compareConnections(conns[i - 1]!, conns[i]!) > 0) return false;
  return true;
}

/** Order-insensitive equality of two connection lists. */
export function sameConnections(a: readonly PeerConnection[], b: readonly PeerConnection[]): boolean {
  if (a.length !== b.length) return false;
  const ca = isSorted(a) ? a : canonicalConnections(a);
  const cb = isSorted(b) ? b : canonicalConnections(b);
  for (let i = 0; i < ca.length; i++) if (compareConnections(ca[i]!, cb[i]!) !== 0) return false;
  return true;
}

/**
 * Total order on entries: incarnation, then version, then the content itself
 * (name, nickname bytes, connection count, each connection in canonical order).
 * The content tie-break only matters when two different entries claim the
 * same (incarnation, version), which an honest owner never produces; without
 * it, whichever arrived first would win and merge would not be commutative.
 * Returns 0 only for entries with identical canonical content.
 */
export function comparePeerEntries(a: PeerEntry, b: PeerEntry): number {
  if (a.incarnation !== b.incarnation) return a.incarnation < b.incarnation ? -1 : 1;
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  const byName = comparePeerNames(a.name, b.name) || compareText(a.nickname, b.nickname);
  if (byName !== 0) return byName;
  if (a.connections.length !== b.connections.length) return a.connections.length < b.connections.length ? -1 : 1;
  const ca = isSorted(a.connections) ? a.connections : canonicalConnections(a.connections);
  const cb = isSorted(b.connections) ? b.connections : canonicalConnections(b.connections);
  for (let i = 0; i < ca.length; i++) {
    const d = compareConnections(ca[i]!, cb[i]!);
    if (d !== 0) return d;
  }
  return 0;
}

/** Whether `a` lists `b` as an established connection. */
export function listsEstablished(a: PeerEntry, b: PeerName): boolean {
  for (const c of a.connections) if (c.name === b && c.established) return true;
  return false;
}
