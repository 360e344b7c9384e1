// IPAM state as saved to disk and read back: built from the ring, the
// consensus records and the allocations; read back with every part
// validated before any of it is used. Pure (the file itself is
// persistence.ts). A snapshot of another peer name, another range, or a
// ring seeded by other peers than --ipalloc-init seed= lists, is discarded
// whole; single bad allocations are dropped with a warning each.

import type { PeerName } from '../router/mesh/peer-name';
import { AddressRange, parseAddressWithPrefix } from './address-range';
import { validateContainerId } from './allocator';
import type { Allocation } from './allocator';
import type { IpamConfig } from './config';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';
import { ConsensusMessage, decodeClaims, decodeRing, encodeClaims, encodeRing } from './messages';
import type { Claims } from './paxos';
import type { IpamSnapshot } from './persistence';
import type { RingState } from './ring';

export function buildSnapshot(peer: PeerName, range: AddressRange, ring: RingState | null, consensus: ConsensusMessage | null, allocations: readonly Allocation[]): IpamSnapshot {
  return {
    peer,
    range: range.toString(),
    ring: ring !== null ? encodeRing(ring) : null,
    consensus: consensus !== null ? encodeClaims(consensus) : null,
    allocations: allocations.map((a) => ({
      container: a.container,
      address: range.formatOffset(a.offset),
      prefixLen: a.prefixLen,
      releaseAtMs: a.releaseAtMs,
    })),
  };
}

export interface RestoredState {
  ring: RingState | null;
  claims: Claims | null;
  allocations: { container: string; offset: number; prefixLen: number; releaseAtMs: number | null }[];
  /** Warnings about parts that were dropped. */
  problems: string[];
}

function sameList(a: readonly PeerName[], b: readonly PeerName[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Validates a loaded snapshot against who and what we are now. */
export function readSnapshot(snap: IpamSnapshot, self: PeerName, config: IpamConfig): RestoredState | { discard: string } {
  const range = config.range;
  if (snap.peer !== self) return { discard: `it belongs to peer ${snap.peer}, we are ${self} (peer name changed)` };
  if (snap.range !== range.toString()) return { discard: `it is for range ${snap.range}, --ipalloc-range is now ${range.toString()}` };
  let ring: RingState | null;
  let consensus: ConsensusMessage | null;
  try {
    ring = snap.ring !== null ? decodeRing(snap.ring) : null;
    consensus = snap.consensus !== null ? decodeClaims(snap.consensus) : null;
    if (ring !== null && !ring.range.equals(range)) throw new IpamError('foreign-range', `stored ring is for ${ring.range.toString()}`);
  } catch (err) {
    return { discard: errorMessage(err) };
  }
  const init = config.init;
  if (ring !== null && init.mode === 'seed' && !sameList(ring.seed, init.peers)) {
    return { discard: `its ring was seeded by [${ring.seed.join(', ')}], --ipalloc-init seed= now lists [${init.peers.join(', ')}]` };
  }
  const problems: string[] = [];
  const allocations: RestoredState['allocations'] = [];
  const seen = new Set<number>();
  for (const a of snap.allocations) {
    try {
      const container = validateContainerId(a.container);
      const { address } = parseAddressWithPrefix(`${a.address}/${a.prefixLen}`, 'stored address');
      const offset = range.offsetOf(address);
      if (offset === null) throw IpamError.config(`${a.address} is outside ${range.toString()}`);
      if (seen.has(offset)) throw IpamError.config(`${a.address} is listed twice`);
      seen.add(offset);
      allocations.push({ container, offset, prefixLen: a.prefixLen, releaseAtMs: a.releaseAtMs });
    } catch (err) {
      problems.push(`dropped a saved allocation (${a.address} for ${a.container}): ${errorMessage(err)}`);
    }
  }
  const claims = consensus !== null && consensus.range.equals(range) ? consensus.claims : null;
  return { ring, claims, allocations, problems };
}
