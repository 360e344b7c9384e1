// Neighbour gossip on its way out, per connection. Coalesce instead of
// queueing (mesh gossip.go's sender, docs/architecture.md): each neighbour
// has at most one pending GossipData per channel, and newcomers are merged
// into it while the connection's token bucket is empty. However fast updates
// arrive, a connection carries at most GOSSIP_BURST gossip messages at once and
// one per GOSSIP_TOKEN_INTERVAL_MS after that, and what waits is one merged
// update per channel, never a queue. A lone update still goes out at once.
//
// It also remembers, per neighbour and channel, the digest of a full state
// the neighbour is known to hold (we sent it, or it sent us exactly that), so
// periodic gossip can skip neighbours that already have everything we would
// send (dampening). All of it is forgotten when the neighbour's connection goes.

import { createHash } from 'node:crypto';
import type { Clock, Timer } from '../../common/clock';
import type { GossipData } from './gossip';
import type { PeerName } from './peer-name';
import { TokenBucket } from './token-bucket';

/** Gossip messages a connection may carry back to back before pacing starts. */
export const GOSSIP_BURST = 32;
/** Sustained pace per connection once the burst is spent: 10 messages a second. */
export const GOSSIP_TOKEN_INTERVAL_MS = 100;
/** Raw messages (channels we only relay) kept per neighbour while paced; beyond it the oldest go. */
export const MAX_PENDING_RAW_MESSAGES = 64;

export interface OutboxCounters {
  /** Updates that had to wait for the connection's token bucket. */
  gossipDeferred: number;
  /** Updates folded into one already waiting for the same neighbour and channel. */
  gossipCoalesced: number;
  /** Relayed messages of channels we have no handler for, dropped while paced (periodic gossip repairs). */
  gossipDropped: number;
}

export interface OutboxDeps {
  clock: Clock;
  /** Puts one encoded message of `channel` on the connection to `neighbour`; false when there is none. */
  send(neighbour: PeerName, channel: string, msg: Uint8Array): boolean;
}

interface NeighbourState {
  bucket: TokenBucket;
  pending: Map<string, GossipData>;
  timer: Timer | null;
  /** Per channel: digest of a full state the neighbour holds, because we sent it. */
  sent: Map<string, string>;
  /** Per channel: digest of the last message the neighbour sent us. */
  received: Map<string, string>;
}

/** Digest of a full state as encoded, to tell whether a neighbour already holds it. */
export function stateDigest(messages: readonly Uint8Array[]): string {
  const h = createHash('sha256');
  for (const m of messages) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(m.length);
    h.update(len).update(m);
  }
  return h.digest('base64');
}

/** Messages of a channel we cannot merge (we have no handler): merging keeps the newest few. */
export class RawGossip implements GossipData {
  constructor(readonly messages: readonly Uint8Array[], readonly dropped = 0) {}

  encode(): Uint8Array[] {
    return [...this.messages];
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof RawGossip)) return this;
    const all = [...this.messages, ...other.messages];
    const over = Math.max(0, all.length - MAX_PENDING_RAW_MESSAGES);
    return new RawGossip(all.slice(over), this.dropped + other.dropped + over);
  }
}

export class GossipOutbox {
  private readonly neighbours = new Map<PeerName, NeighbourState>();

  /** `counters` may be a larger object of the owner's (the hub's), so status shows them with its own. */
  constructor(private readonly deps: OutboxDeps, readonly counters: OutboxCounters = { gossipDeferred: 0, gossipCoalesced: 0, gossipDropped: 0 }) {}

  /** Sends `data` to `neighbour` now if its bucket allows and nothing waits, else merges it into what waits. */
  enqueue(neighbour: PeerName, channel: string, data: GossipData): void {
    const s = this.stateOf(neighbour);
    const waiting = s.pending.get(channel);
    if (waiting !== undefined) {
      s.pending.set(channel, waiting.merge(data));
      this.counters.gossipCoalesced++;
      return;
    }
    if (s.pending.size === 0 && s.bucket.tryTake(this.deps.clock.now())) {
      this.write(neighbour, channel, data);
      return;
    }
    s.pending.set(channel, data);
    this.counters.gossipDeferred++;
    this.schedule(neighbour, s);
  }

  /** Records that `neighbour` holds the full state with this digest on `channel` (we are sending it). */
  noteSent(neighbour: PeerName, channel: string, digest: string): void {
    this.stateOf(neighbour).sent.set(channel, digest);
  }

  /** Records the digest of what `neighbour` just sent us on `channel`. */
  noteReceived(neighbour: PeerName, channel: string, digest: string): void {
    this.stateOf(neighbour).received.set(channel, digest);
  }

  /** True when `neighbour` is known to hold the full state with this digest on `channel`. */
  holds(neighbour: PeerName, channel: string, digest: string): boolean {
    const s = this.neighbours.get(neighbour);
    return s !== undefined && (s.sent.get(channel) === digest || s.received.get(channel) === digest);
  }

  /** The neighbour's connection went (or is new): drop what waits for it and what we knew of it. */
  forget(neighbour: PeerName): void {
    const s = this.neighbours.get(neighbour);
    if (s === undefined) return;
    s.timer?.cancel();
    this.neighbours.delete(neighbour);
  }

  close(): void {
    for (const n of [...this.neighbours.keys()]) this.forget(n);
  }

  private stateOf(neighbour: PeerName): NeighbourState {
    let s = this.neighbours.get(neighbour);
    if (s === undefined) {
      s = {
        bucket: new TokenBucket(GOSSIP_BURST, GOSSIP_TOKEN_INTERVAL_MS, this.deps.clock.now()),
        pending: new Map(), timer: null, sent: new Map(), received: new Map(),
      };
      this.neighbours.set(neighbour, s);
    }
    return s;
  }

  private schedule(neighbour: PeerName, s: NeighbourState): void {
    if (s.timer !== null) return;
    s.timer = this.deps.clock.setTimer(s.bucket.msUntilToken(this.deps.clock.now()), () => {
      s.timer = null;
      this.flush(neighbour, s);
    });
  }

  private flush(neighbour: PeerName, s: NeighbourState): void {
    if (this.neighbours.get(neighbour) !== s) return;
    // Oldest channel first (Map order), so a busy channel cannot starve the others.
    for (const [channel, data] of s.pending) {
      if (!s.bucket.tryTake(this.deps.clock.now())) break;
      s.pending.delete(channel);
      if (!this.write(neighbour, channel, data)) return;
    }
    if (s.pending.size > 0) this.schedule(neighbour, s);
  }

  /** False when the neighbour has gone (its state is dropped then). */
  private write(neighbour: PeerName, channel: string, data: GossipData): boolean {
    if (data instanceof RawGossip) this.counters.gossipDropped += data.dropped;
    for (const msg of data.encode()) {
      if (!this.deps.send(neighbour, channel, msg)) {
        this.forget(neighbour);
        return false;
      }
    }
    return true;
  }
}
