// A tiny in-memory gossip network for IPAM unit tests: every peer reaches
// every other peer it is not partitioned from, in one hop, through a FIFO
// queue on a ManualClock. Simpler and faster than test/sim/mesh.ts; the
// simulation tests use real routers.

import { ManualClock } from '../../common/clock';
import type { Gossip, GossipData, Gossiper, GossipHub, PeerInfo } from '../../router/mesh/gossip';
import type { PeerName } from '../../router/mesh/peer-name';
import { randomInt, Rng } from '../../common/rng';
import { TestSigning } from './test-signing';

export class FakeNet {
  readonly clock = new ManualClock(1_700_000_000_000);
  readonly hubs = new Map<PeerName, FakeHub>();
  private queue: (() => void)[] = [];
  private readonly cut = new Set<string>();
  delivered = 0;
  rejected = 0;
  lastRejection: unknown = null;
  /** When set, each batch of queued deliveries runs in a random order (and some messages are duplicated). */
  shuffle: Rng | null = null;

  hub(name: PeerName, nickname = name.slice(-2)): FakeHub {
    const h = new FakeHub(this, name, nickname);
    this.hubs.set(name, h);
    this.notifyReachable();
    return h;
  }

  /** Removes a peer (crash): it neither sends nor receives any more. */
  remove(name: PeerName): void {
    this.hubs.delete(name);
    this.notifyReachable();
  }

  partition(a: PeerName[], b: PeerName[], cut = true): void {
    for (const x of a) for (const y of b) {
      const k = key(x, y);
      if (cut) this.cut.add(k); else this.cut.delete(k);
    }
    this.notifyReachable();
  }

  healAll(): void {
    this.cut.clear();
    this.notifyReachable();
  }

  canReach(a: PeerName, b: PeerName): boolean {
    return a === b || (this.hubs.has(a) && this.hubs.has(b) && !this.cut.has(key(a, b)));
  }

  reachableFrom(a: PeerName): Set<PeerName> {
    return new Set([...this.hubs.keys()].filter((b) => this.canReach(a, b)));
  }

  enqueue(fn: () => void): void {
    this.queue.push(fn);
  }

  /** Delivers until quiet. */
  drain(limit = 1_000_000): void {
    let n = 0;
    while (this.queue.length > 0) {
      if (n++ > limit) throw new Error('fake net did not quiesce');
      const batch = this.queue;
      this.queue = [];
      if (this.shuffle) {
        const rng = this.shuffle;
        for (let i = batch.length - 1; i > 0; i--) {
          const j = randomInt(rng, i + 1);
          [batch[i], batch[j]] = [batch[j]!, batch[i]!];
        }
        if (batch.length > 0 && rng.next() < 0.1) batch.push(batch[randomInt(rng, batch.length)]!);
      }
      for (const fn of batch) fn();
    }
  }

  /** Advances time in steps, delivering between timers. */
  run(ms: number, stepMs = 50): void {
    const end = this.clock.now() + ms;
    this.drain();
    while (this.clock.now() < end) {
      this.clock.advance(Math.min(stepMs, end - this.clock.now()));
      this.drain();
    }
  }

  /** Periodic anti-entropy: each peer's full state to every reachable peer. */
  gossipRound(): void {
    for (const h of this.hubs.values()) h.gossipAll();
    this.drain();
  }

  private notifyReachable(): void {
    for (const h of this.hubs.values()) h.notify(this.reachableFrom(h.localPeer));
  }

  deliver(to: PeerName, fn: (g: Gossiper) => GossipData | null, from: PeerName): void {
    this.enqueue(() => {
      const h = this.hubs.get(to);
      if (!h || !h.gossiper || !this.canReach(from, to)) return;
      this.delivered++;
      let out: GossipData | null = null;
      try {
        out = fn(h.gossiper);
      } catch (err) {
        this.rejected++;
        this.lastRejection = err;
        return;
      }
      // What was new is passed on to everyone else reachable (one hop is enough here).
      if (out) for (const msg of out.encode()) h.sendToAll((g) => g.onGossip(msg));
    });
  }
}

function key(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

export class FakeHub implements GossipHub {
  gossiper: Gossiper | null = null;
  private readonly listeners: ((r: ReadonlySet<PeerName>) => void)[] = [];
  readonly signing: TestSigning;

  constructor(private readonly net: FakeNet, readonly localPeer: PeerName, readonly nickname: string) {
    this.signing = new TestSigning(localPeer);
  }

  addChannel(name: string, gossiper: Gossiper): Gossip {
    if (name !== 'ipam') throw new Error(`unexpected channel ${name}`);
    this.gossiper = gossiper;
    return {
      gossipUnicast: (dst, msg) => {
        if (!this.net.canReach(this.localPeer, dst)) return false;
        this.net.deliver(dst, (g) => { g.onGossipUnicast(this.localPeer, msg); return null; }, this.localPeer);
        return true;
      },
      gossipBroadcast: (update) => {
        for (const msg of update.encode()) this.sendToAll((g) => g.onGossipBroadcast(this.localPeer, msg));
      },
      gossipNeighbourSubset: (update) => {
        for (const msg of update.encode()) this.sendToAll((g) => g.onGossip(msg));
      },
    };
  }

  sendToAll(fn: (g: Gossiper) => GossipData | null): void {
    for (const other of this.net.reachableFrom(this.localPeer)) {
      if (other !== this.localPeer) this.net.deliver(other, fn, this.localPeer);
    }
  }

  gossipAll(): void {
    const data = this.gossiper?.gossip();
    if (data) for (const msg of data.encode()) this.sendToAll((g) => g.onGossip(msg));
  }

  knownPeers(): PeerInfo[] {
    return [...this.net.hubs.values()].map((h) => ({ name: h.localPeer, nickname: h.nickname }));
  }

  onReachablePeersChanged(listener: (reachable: ReadonlySet<PeerName>) => void): void {
    this.listeners.push(listener);
    listener(this.net.reachableFrom(this.localPeer));
  }

  notify(r: ReadonlySet<PeerName>): void {
    for (const l of this.listeners) l(r);
  }
}
