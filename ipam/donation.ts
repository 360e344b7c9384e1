// Moving space to where it is needed, as pure decisions over the ring and
// the allocator: whom to ask (the peers whose reported free space fits the
// request, most first) and what to give when asked (half of our largest free
// run in the subnet asked for, or the one address a claim names). Only free
// addresses are ever given, so no container is affected by a donation.

import type { PeerName } from '../router/mesh/peer-name';
import type { Span } from './address-range';
import type { Allocator } from './allocator';
import { Ring, usableCount } from './ring';
import { largestFreeRun } from './space';

export interface SpaceHolder {
  peer: PeerName;
  /** Free addresses inside the request, by the owner's last report. */
  free: number;
}

/**
 * Peers other than us that own free space inside `within`, most free first
 * (ties by name, so every retry walks the same list). For a claim of
 * `claimOffset`, only its owner can help, so it is asked whatever it reported.
 */
export function spaceHolders(ring: Ring, within: Span, claimOffset: number | null): SpaceHolder[] {
  const byPeer = new Map<PeerName, number>();
  const entries = ring.entries();
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.owner === ring.self || e.free === 0) continue;
    const s = ring.spanAt(i);
    const start = Math.max(s.start, within.start);
    const end = Math.min(s.end, within.end);
    if (start >= end) continue;
    const fits = Math.min(e.free, usableCount(ring.range, { start, end }));
    if (fits > 0) byPeer.set(e.owner, (byPeer.get(e.owner) ?? 0) + fits);
  }
  if (claimOffset !== null) {
    const owner = ring.ownerOf(claimOffset);
    return owner !== null && owner !== ring.self ? [{ peer: owner, free: byPeer.get(owner) ?? 1 }] : [];
  }
  return [...byPeer].map(([peer, free]) => ({ peer, free })).sort((a, b) => b.free - a.free || (a.peer < b.peer ? -1 : 1));
}

/**
 * What we give a peer that asked for space in `within`: the address itself
 * when it asks for exactly one (a claim) and it is ours and free; otherwise
 * the upper half (rounded up) of our largest free run there. Null: nothing.
 */
export function chooseDonation(ring: Ring, allocator: Allocator, within: Span): Span | null {
  if (within.end - within.start === 1) {
    const offset = within.start;
    return ring.ownerOf(offset) === ring.self && !allocator.holderOf(offset) ? within : null;
  }
  const run = largestFreeRun(ring.ownedSpans(), allocator.used, { rangeSize: ring.range.size, within });
  if (run === null) return null;
  const size = Math.ceil((run.end - run.start) / 2);
  return { start: run.end - size, end: run.end };
}
