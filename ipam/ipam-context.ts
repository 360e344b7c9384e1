// What the parts of one peer's IPAM share (ipam.ts, request-queue.ts,
// space-exchange.ts, initial-split.ts): the ring, the allocator and the consensus
// records, the gossip sender, who is reachable, the warnings, and the services
// every part needs on them: saving to the store after each change, reading it
// back at start, counting and reporting our free space, naming peers.
//
// It decides nothing about requests, space or consensus. It must never import
// router internals: the mesh reaches IPAM only through the gossip seam
// (docs/architecture.md). Its one timer, the batched free-count report, runs
// on the injected Clock.

import type { Clock, Timer } from '../common/clock';
import type { Logger } from '../common/logger';
import type { Rng } from '../common/rng';
import type { Gossip, GossipData, GossipHub } from '../router/mesh/gossip';
import type { PeerName } from '../router/mesh/peer-name';
import type { AddressRange } from './address-range';
import { Allocation, Allocator } from './allocator';
import type { IpamConfig } from './config';
import type { IpamTimings } from './constants';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';
import { ConsensusMessage, encodeIpamMessage } from './messages';
import { Paxos } from './paxos';
import type { IpamSnapshot, IpamStore } from './persistence';
import { Ring } from './ring';
import { buildSnapshot, readSnapshot } from './snapshot';
import { freeCount } from './space';

const MAX_WARNINGS = 20;

/** Our full state (or parts of it) for gossip, encoded when sent, like TopologyUpdate. */
export class IpamUpdate implements GossipData {
  constructor(private readonly ctx: IpamContext, readonly ring: boolean, readonly consensus: boolean) {}

  encode(): Uint8Array[] {
    return this.ctx.encodeState(this.ring, this.consensus);
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof IpamUpdate)) return this;
    return new IpamUpdate(this.ctx, this.ring || other.ring, this.consensus || other.consensus);
  }
}

export interface IpamContextDeps {
  hub: GossipHub;
  clock: Clock;
  rng: Rng;
  logger: Logger;
  store: IpamStore | null;
}

export class IpamContext {
  readonly self: PeerName;
  readonly range: AddressRange;
  readonly log: Logger;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly ring: Ring;
  /** Consensus mode only: observers and seeded peers wait for the ring instead. */
  readonly paxos: Paxos | null;
  readonly allocator = new Allocator();
  /** Recent problems for the status, oldest first, each text once. */
  readonly warnings: string[] = [];
  reachable: ReadonlySet<PeerName>;
  stopped = false;
  /** After `weave reset`: this instance refuses requests and saves nothing. */
  left = false;
  private readonly hub: GossipHub;
  private readonly store: IpamStore | null;
  private sender: Gossip | null = null;
  private batchDepth = 0;
  /** A persist() inside batch() not saved yet. */
  private dirty = false;
  private heldBroadcast: { ring: boolean; consensus: boolean } | null = null;
  private freeTimer: Timer | null = null;

  constructor(deps: IpamContextDeps, readonly config: IpamConfig, readonly timings: IpamTimings) {
    this.hub = deps.hub;
    this.self = deps.hub.localPeer;
    this.range = config.range;
    this.log = deps.logger.child({ subsystem: 'ipam' });
    this.clock = deps.clock;
    this.rng = deps.rng;
    this.store = deps.store;
    this.ring = new Ring(this.range, this.self, { signing: deps.hub.signing, isReachable: (p) => this.reachable.has(p) });
    this.paxos = config.init.mode === 'consensus' ? new Paxos(this.self, config.init.peerCount) : null;
    this.reachable = new Set([this.self]);
  }

  /** Set once the channel is registered; nothing sends before (restoring and seeding only change local state). */
  attachSender(sender: Gossip): void {
    this.sender = sender;
  }

  /** Sends now; a change still unsaved in a batch() is saved first. */
  unicast(dst: PeerName, msg: Uint8Array): boolean {
    this.flush();
    return this.channel().gossipUnicast(dst, msg);
  }

  /**
   * Broadcasts the ring and/or our consensus records, encoded at send time.
   * Inside batch(): once, after its one save, with every part asked for.
   */
  broadcast(ring: boolean, consensus: boolean): void {
    if (this.batchDepth > 0) {
      this.heldBroadcast = { ring: ring || (this.heldBroadcast?.ring ?? false), consensus: consensus || (this.heldBroadcast?.consensus ?? false) };
      return;
    }
    this.channel().gossipBroadcast(new IpamUpdate(this, ring, consensus));
  }

  /**
   * Runs `fn` (synchronous) as one change: its persist() calls save once, at
   * the end, and its broadcasts wait for that save, so a first attach that
   * also seeds the ring writes ipam.json once instead of three times. Safe
   * for the crash guarantee: nothing leaves the process before the save (a
   * unicast saves first), and a request answered inside `fn` is seen by its
   * caller only in a later microtask, after the save.
   */
  batch<T>(fn: () => T): T {
    this.batchDepth++;
    try {
      return fn();
    } finally {
      if (--this.batchDepth === 0) {
        this.flush();
        const held = this.heldBroadcast;
        this.heldBroadcast = null;
        if (held !== null && this.sender !== null) this.broadcast(held.ring, held.consensus);
      }
    }
  }

  private flush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this.save();
  }

  update(ring: boolean, consensus: boolean): GossipData {
    return new IpamUpdate(this, ring, consensus);
  }

  /** Encodes the requested parts of our current state (IpamUpdate calls this at send time). */
  encodeState(ring: boolean, consensus: boolean): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (ring && this.ring.isSeeded()) out.push(encodeIpamMessage({ kind: 'ring', ring: this.ring.state() }));
    if (consensus && this.paxos?.joined() && !this.ring.isSeeded()) out.push(encodeIpamMessage({ kind: 'consensus', consensus: this.consensusMessage() }));
    return out;
  }

  consensusMessage(): ConsensusMessage {
    const init = this.config.init;
    return { range: this.range, initPeerCount: init.mode === 'consensus' ? init.peerCount : 1, claims: this.paxos!.records() };
  }

  checkUsable(): void {
    if (this.left) throw IpamError.config('IPAM was reset on this peer; restart the router to use it again');
    if (this.stopped) throw new IpamError('shutdown', 'IPAM is shutting down');
  }

  // -------------------------------------------------------------------------
  // Free counts

  /** Sets the free count of each of our entries from the allocator; true when any changed. */
  updateFreeCounts(): boolean {
    if (!this.ring.isSeeded()) return false;
    let changed = false;
    const entries = this.ring.entries();
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.owner !== this.self) continue;
      const s = this.ring.spanAt(i);
      const free = freeCount([s], this.allocator.used, { rangeSize: this.range.size, within: { start: 0, end: this.range.size } });
      if (this.ring.setFree(e.token, free)) changed = true;
    }
    return changed;
  }

  /** Free counts travel in the ring; batching them keeps a burst of allocations to one broadcast. */
  scheduleFreeReport(): void {
    if (this.freeTimer !== null || this.stopped) return;
    this.freeTimer = this.clock.setTimer(this.timings.freeReportDelayMs, () => {
      this.freeTimer = null;
      if (!this.stopped && !this.left) this.reportFreeNow();
    });
  }

  reportFreeNow(): void {
    if (!this.updateFreeCounts()) return;
    this.persist();
    this.broadcast(true, false);
  }

  cancelFreeReport(): void {
    this.freeTimer?.cancel();
    this.freeTimer = null;
  }

  // -------------------------------------------------------------------------
  // Persistence

  /** Saves everything after a change, before it is gossiped or a waiting request is answered (inside batch(): at its end). */
  persist(): void {
    if (this.batchDepth > 0) {
      this.dirty = true;
      return;
    }
    this.save();
  }

  private save(): void {
    if (this.store === null || this.left) return;
    try {
      this.store.save(buildSnapshot(this.self, this.range, this.ring.isSeeded() ? this.ring.state() : null,
        this.paxos?.joined() ? this.consensusMessage() : null, this.allocator.all()));
    } catch (err) {
      // Keep serving: the mesh state is gossiped and will be re-learned; but say so loudly.
      this.warn(`cannot save IPAM state: ${errorMessage(err)}`);
      this.log.error('cannot save IPAM state', { error: errorMessage(err) });
    }
  }

  /** Loads the saved state; a different peer name or range, or damage, discards it with a warning. */
  restore(): void {
    if (this.store === null) return;
    let snap: IpamSnapshot | null;
    try {
      snap = this.store.load();
    } catch (err) {
      this.warn(`discarded saved IPAM state: ${errorMessage(err)}`);
      return;
    }
    if (snap === null) return;
    const r = readSnapshot(snap, this.self, this.config);
    if ('discard' in r) {
      this.store.discard?.(r.discard);
      this.warn(`discarded saved IPAM state: ${r.discard}`);
      return;
    }
    if (r.ring !== null) this.ring.merge(r.ring);
    if (r.claims !== null && this.paxos !== null) this.paxos.merge(r.claims);
    for (const a of r.allocations) this.allocator.add(a.container, a.offset, a.prefixLen).releaseAtMs = a.releaseAtMs;
    for (const problem of r.problems) this.warn(problem);
    this.log.info('restored IPAM state', { allocations: this.allocator.count, ring: this.ring.isSeeded() });
  }

  /** Forgets the saved state (weave reset). */
  clearStore(): void {
    this.store?.clear();
  }

  // -------------------------------------------------------------------------
  // Words

  formatAllocation(a: Allocation): string {
    return `${this.range.formatOffset(a.offset)}/${a.prefixLen}`;
  }

  nicknames(): Map<PeerName, string> {
    const out = new Map<PeerName, string>();
    for (const p of this.hub.knownPeers()) out.set(p.name, p.nickname);
    return out;
  }

  describePeer(peer: PeerName): string {
    const nick = this.nicknames().get(peer);
    return nick ? `${peer}(${nick})` : peer;
  }

  /** Logs a problem once and keeps it for the status; a repeat moves it to the end. */
  warn(text: string): void {
    const i = this.warnings.indexOf(text);
    if (i >= 0) this.warnings.splice(i, 1);
    else this.log.warn(text);
    this.warnings.push(text);
    if (this.warnings.length > MAX_WARNINGS) this.warnings.shift();
  }

  private channel(): Gossip {
    if (this.sender === null) throw new Error('IPAM sent gossip before its channel was registered');
    return this.sender;
  }
}

/** A duration for messages: "25 s", "2.5 s". */
export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
