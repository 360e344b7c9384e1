// IPAM on one peer: the Gossiper for the 'ipam' channel, tying together the
// ring (who owns which addresses), the allocator (which container holds which
// address here), the consensus on the initial split, and persistence. It owns
// the request flow (allocate, claim, release, prime, rmpeer, reset), the
// timers (timeouts, grace periods, retries, free-count reports) on the
// injected Clock, and the status snapshot.
//
// It must never import router internals: the mesh reaches it only through the
// gossip seam (DESIGN.md). Every mutation happens in one synchronous step and
// is persisted before it is gossiped or before a waiting request is answered,
// so a crash never hands out an address twice.

import type { Clock, Timer } from '../common/clock';
import type { Gossip, GossipData, Gossiper, GossipHub } from '../router/mesh/gossip';
import type { Logger } from '../common/logger';
import { isPeerName, PeerName } from '../router/mesh/peer-name';
import type { Rng } from '../common/rng';
import { Allocation, Allocator, validateContainerId } from './allocator';
import { AddressRange, Cidr, formatIp, parseAddressWithPrefix, Span } from './cidr';
import type { IpamConfig } from './config';
import { DEFAULT_IPAM_TIMINGS, IPAM_CHANNEL, IpamTimings } from './constants';
import { errorText, IpamError } from './errors';
import { ConsensusMessage, decodeIpamMessage, encodeIpamMessage } from './messages';
import { Paxos } from './paxos';
import type { IpamSnapshot, IpamStore } from './persistence';
import { buildSnapshot, readSnapshot } from './snapshot';
import { Ring, RingMergeResult, usableCount } from './ring';
import { chooseDonation, SpaceHolder, spaceHolders } from './donation';
import { firstFree, freeCount } from './space';
import { buildIpamStatus, IpamStatus, StatusSource, v6TwinOf, waitingText } from './status';

export interface IpamDeps {
  hub: GossipHub;
  clock: Clock;
  rng: Rng;
  logger: Logger;
  /** Null: nothing survives a restart (tests). */
  store?: IpamStore | null;
}

export interface IpamOptions {
  config: IpamConfig;
  timings?: Partial<IpamTimings>;
}

export interface AllocateOptions {
  /** CIDR inside the range ("net:" prefix allowed); default: --ipalloc-default-subnet. */
  subnet?: string;
  /** Overrides the request timeout. */
  timeoutMs?: number;
  /** Called each time what the request waits for changes (consensus, space from a peer). */
  onWaiting?: (why: string) => void;
}

export interface ReleaseOptions {
  /** 0 (the default): release at once (container removed). >0: keep the addresses that long (container died). */
  graceMs?: number;
}

interface PendingRequest {
  kind: 'allocate' | 'claim';
  container: string;
  subnet: Cidr;
  within: Span;
  /** Claims: the address asked for. */
  offset: number | null;
  prefixLen: number;
  startedMs: number;
  why: string | null;
  onWaiting: ((why: string) => void) | null;
  timer: Timer;
  resolve(cidr: string): void;
  reject(err: IpamError): void;
}

interface SpaceAsk {
  target: PeerName;
  sentMs: number;
  attempt: number;
}

/** Our full state (or parts of it) for gossip, encoded when sent, like TopologyUpdate. */
class IpamUpdate implements GossipData {
  constructor(private readonly ipam: Ipam, readonly ring: boolean, readonly consensus: boolean) {}

  encode(): Uint8Array[] {
    return this.ipam.encodeState(this.ring, this.consensus);
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof IpamUpdate)) return this;
    return new IpamUpdate(this.ipam, this.ring || other.ring, this.consensus || other.consensus);
  }
}

export type { IpamPeerStatus, IpamState, IpamStatus } from './status';

const MAX_WARNINGS = 20;
/** A peer that said it has nothing to give is not asked again for this many retry periods. */
const DENIAL_MEMORY_RETRIES = 5;

export class Ipam implements Gossiper {
  readonly self: PeerName;
  readonly config: IpamConfig;
  private readonly range: AddressRange;
  private readonly timings: IpamTimings;
  private readonly log: Logger;
  private readonly store: IpamStore | null;
  private readonly ring: Ring;
  /** Consensus mode only: observers and seeded peers wait for the ring instead. */
  private readonly paxos: Paxos | null;
  private readonly allocator = new Allocator();
  private readonly sender: Gossip;
  private reachable: ReadonlySet<PeerName>;
  private readonly pending: PendingRequest[] = [];
  private readonly primeWaiters: { resolve(): void; reject(err: IpamError): void; timer: Timer }[] = [];
  private readonly spaceAsks = new Map<string, SpaceAsk>();
  /** Who recently said it has nothing to give, per requested span; remembered for a few retry periods. */
  private readonly denials = new Map<string, Map<PeerName, number>>();
  private readonly warnings: string[] = [];
  private readonly ringHintSentMs = new Map<PeerName, number>();
  /** When we last gave space to a peer, per requested span. */
  private readonly lastDonationMs = new Map<string, number>();
  private consensusStarted = false;
  private consensusTimer: Timer | null = null;
  private consensusRetryMs: number;
  private lastConsensusChangeMs: number;
  private spaceTimer: Timer | null = null;
  private freeTimer: Timer | null = null;
  private releaseTimer: Timer | null = null;
  private releaseTimerAtMs = 0;
  private stopped = false;
  private left = false;

  constructor(private readonly deps: IpamDeps, opts: IpamOptions) {
    this.self = deps.hub.localPeer;
    this.config = opts.config;
    this.range = opts.config.range;
    this.timings = { ...DEFAULT_IPAM_TIMINGS, ...opts.timings };
    this.log = deps.logger.child({ subsystem: 'ipam' });
    this.store = deps.store ?? null;
    this.ring = new Ring(this.range, this.self);
    const init = opts.config.init;
    this.paxos = init.mode === 'consensus' ? new Paxos(this.self, init.peerCount) : null;
    this.consensusRetryMs = this.timings.consensusRetryInitialMs;
    this.lastConsensusChangeMs = deps.clock.now();
    this.reachable = new Set([this.self]);

    this.restore();
    if (init.mode === 'seed') this.seedFromList(init.peers);
    if (init.mode === 'consensus' && !this.ring.isSeeded()) this.paxos!.join();
    this.armReleaseTimer();
    this.persist();

    this.sender = deps.hub.addChannel(IPAM_CHANNEL, this);
    deps.hub.onReachablePeersChanged((reachable) => this.handleReachableChanged(reachable));
  }

  // -------------------------------------------------------------------------
  // Public API

  /**
   * An address for `containerId` in `opts.subnet` (default subnet otherwise),
   * as a CIDR with the subnet's prefix ("10.32.0.5/12"). Idempotent: a
   * container that already has an address there gets the same one back. Waits
   * for the initial split and for space from other peers as needed; rejects
   * with IpamError('timeout') saying what it waited for.
   */
  allocate(containerId: string, opts: AllocateOptions = {}): Promise<string> {
    const container = validateContainerId(containerId);
    const subnet = this.parseSubnet(opts.subnet);
    const within = this.range.spanOf(subnet)!;
    return this.enqueue({ kind: 'allocate', container, subnet, within, offset: null, prefixLen: subnet.prefixLen }, opts);
  }

  /**
   * Records that `containerId` uses `cidr` ("10.32.0.5/12"). Refused when
   * another container holds the address. An address outside the range is
   * not IPAM's business and is returned as is. When another peer owns the
   * address, it is asked to hand it over.
   */
  claim(containerId: string, cidr: string, opts: Omit<AllocateOptions, 'subnet'> = {}): Promise<string> {
    const container = validateContainerId(containerId);
    const { address, prefixLen } = parseAddressWithPrefix(cidr, 'address');
    const offset = this.range.offsetOf(address);
    const text = `${formatIp(address.family, address.value)}/${prefixLen}`;
    if (offset === null) return Promise.resolve(text);
    if (offset === 0 || offset === this.range.size - 1) {
      throw IpamError.config(`${text} is the ${offset === 0 ? 'network' : 'broadcast'} address of the IPAM range ${this.range.toString()}`);
    }
    const subnet = Cidr.of(address.family, address.value, prefixLen);
    return this.enqueue({ kind: 'claim', container, subnet, within: { start: offset, end: offset + 1 }, offset, prefixLen }, opts);
  }

  /** Releases one address of a container, or all of them when `cidr` is omitted; returns what was released. */
  release(containerId: string, cidr?: string): string[] {
    const container = validateContainerId(containerId);
    let gone: Allocation[];
    if (cidr === undefined) {
      gone = this.allocator.removeContainer(container);
    } else {
      const { address } = parseAddressWithPrefix(cidr, 'address');
      const offset = this.range.offsetOf(address);
      const a = offset === null ? undefined : this.allocator.holderOf(offset);
      if (!a || a.container !== container) return [];
      gone = [this.allocator.remove(a.offset)!];
    }
    if (gone.length > 0) this.afterReleases(gone, 'released');
    return gone.map((a) => this.formatAllocation(a));
  }

  /**
   * A container went away. Removed (graceMs 0): its addresses are free at
   * once. Died (graceMs > 0): they stay reserved for that long so a restart
   * gets them back (allocate or claim by the same container revives them).
   */
  releaseContainer(containerId: string, opts: ReleaseOptions = {}): string[] {
    const container = validateContainerId(containerId);
    const graceMs = opts.graceMs ?? 0;
    if (!Number.isFinite(graceMs) || graceMs < 0) throw IpamError.config(`graceMs must be 0 or more, got ${graceMs}`);
    const list = this.allocator.ofContainer(container).map((a) => this.formatAllocation(a));
    if (list.length === 0) return [];
    if (graceMs === 0) return this.release(container);
    this.allocator.markDying(container, this.deps.clock.now() + graceMs);
    this.persist();
    this.armReleaseTimer();
    this.log.info('container died; its addresses are kept for its restart', { container, addresses: list.join(','), graceMs });
    return list;
  }

  /** Addresses a container holds here (CIDRs). */
  addressesOf(containerId: string): string[] {
    return this.allocator.ofContainer(containerId).map((a) => this.formatAllocation(a));
  }

  /** The IPv6 twin of an IPv4 address of ours (dual stack), or null without --ipalloc-range-v6. */
  v6For(cidr: string): string | null {
    const v6 = this.config.rangeV6;
    if (v6 === null) return null;
    const { address } = parseAddressWithPrefix(cidr, 'address');
    const offset = this.range.offsetOf(address);
    return offset === null ? null : v6TwinOf(v6, offset);
  }

  /**
   * Starts the initial split now (it otherwise starts on the first
   * allocation) and resolves once this peer has the ring. Rejects on timeout
   * with what it waited for.
   */
  prime(timeoutMs = this.timings.requestTimeoutMs): Promise<void> {
    this.checkUsable();
    if (this.ring.isSeeded()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: this.deps.clock.setTimer(timeoutMs, () => {
          const i = this.primeWaiters.indexOf(waiter);
          if (i >= 0) this.primeWaiters.splice(i, 1);
          reject(new IpamError('timeout', `IPAM not ready after ${formatMs(timeoutMs)}: ${this.waitingFor() ?? 'ready'}`));
        }),
      };
      this.primeWaiters.push(waiter);
      this.startConsensus();
    });
  }

  /**
   * Takes over the space of a dead peer. Refused for ourselves and for a
   * peer that is reachable: two live owners of one range would hand out the
   * same addresses. Run it on one peer only.
   */
  rmpeer(peerText: string): { peer: PeerName; addresses: number } {
    this.checkUsable();
    const peer = peerText.trim().toLowerCase();
    if (!isPeerName(peer)) throw IpamError.config(`${JSON.stringify(peerText)} is not a peer name (aa:bb:cc:dd:ee:ff; see weave status ipam)`);
    if (peer === this.self) throw IpamError.config('cannot rmpeer ourselves; use weave reset to hand our space to another peer');
    if (this.reachable.has(peer)) {
      throw IpamError.config(`peer ${this.describePeer(peer)} is reachable; rmpeer is only for peers that are gone for good (stop it first)`);
    }
    if (!this.ring.isSeeded()) throw IpamError.config(`no ring yet (${this.waitingFor() ?? 'not ready'}); nothing to take over`);
    const addresses = this.ring.takeOver(peer);
    if (addresses > 0) {
      this.log.warn('took over the space of a removed peer', { peer, addresses });
      this.afterOwnRingChange();
    }
    return { peer, addresses };
  }

  /**
   * Before leaving for good: hands all our space to one reachable peer and
   * forgets our state. Afterwards this instance refuses requests.
   */
  reset(): { handedTo: PeerName | null; addresses: number } {
    this.checkUsable();
    const owned = this.ring.isSeeded() ? this.ring.ownedSpans() : [];
    let handedTo: PeerName | null = null;
    let addresses = 0;
    if (owned.length > 0) {
      const owners = new Set(this.ring.entries().map((e) => e.owner));
      const live = [...this.reachable].filter((p) => p !== this.self).sort();
      handedTo = live.find((p) => owners.has(p)) ?? live[0] ?? null;
      if (handedTo === null) {
        throw IpamError.config('no reachable peer to hand our address space to; connect to one first, or run weave rmpeer on another peer after this one is gone');
      }
      if (this.allocator.count > 0) this.warn(`handing over space with ${this.allocator.count} addresses still allocated here`);
      for (const span of owned) {
        this.ring.transfer(span, handedTo, (s) => usableCount(this.range, s) - this.allocator.used.countIn(s));
        addresses += span.end - span.start;
      }
      this.sender.gossipBroadcast(new IpamUpdate(this, true, false));
      this.log.info('handed our address space to another peer', { peer: handedTo, addresses });
    }
    this.left = true;
    this.allocator.clear();
    this.failAll(new IpamError('shutdown', 'IPAM was reset on this peer'));
    this.cancelTimers();
    this.store?.clear();
    return { handedTo, addresses };
  }

  /** Stops timers and fails waiting requests; state stays on disk. */
  shutdown(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelTimers();
    this.failAll(new IpamError('shutdown', 'IPAM is shutting down'));
  }

  /** What the peer waits for, in words; null when it has the ring. */
  waitingFor(): string | null {
    return waitingText(this.statusSource());
  }

  status(): IpamStatus {
    return buildIpamStatus(this.statusSource());
  }

  private statusSource(): StatusSource {
    return {
      self: this.self,
      config: this.config,
      ring: this.ring,
      allocator: this.allocator,
      paxos: this.paxos,
      reachable: this.reachable,
      nicknames: this.nicknames(),
      consensusStarted: this.consensusStarted,
      left: this.left,
      nowMs: this.deps.clock.now(),
      pending: this.pending.map((p) => ({
        container: p.container,
        kind: p.kind,
        subnet: p.kind === 'claim' ? `${this.range.formatOffset(p.offset!)}/${p.prefixLen}` : p.subnet.toString(),
        startedMs: p.startedMs,
        why: p.why,
      })),
      warnings: this.warnings,
    };
  }

  // -------------------------------------------------------------------------
  // Gossiper

  onGossipUnicast(src: PeerName, msg: Uint8Array): void {
    this.receive(src, msg);
  }

  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | null {
    return this.receive(src, update);
  }

  gossip(): GossipData | null {
    if (this.left || this.stopped) return null;
    if (this.ring.isSeeded()) return new IpamUpdate(this, true, false);
    if (this.paxos?.joined()) return new IpamUpdate(this, false, true);
    return null;
  }

  onGossip(update: Uint8Array): GossipData | null {
    return this.receive(null, update);
  }

  /** Encodes the requested parts of our current state (IpamUpdate calls this at send time). */
  encodeState(ring: boolean, consensus: boolean): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (ring && this.ring.isSeeded()) out.push(encodeIpamMessage({ kind: 'ring', ring: this.ring.state() }));
    if (consensus && this.paxos?.joined() && !this.ring.isSeeded()) out.push(encodeIpamMessage({ kind: 'consensus', consensus: this.consensusMessage() }));
    return out;
  }

  // -------------------------------------------------------------------------
  // Receiving

  /**
   * Decodes and applies one message. Throwing refuses it (the hub counts the
   * rejection); the message was validated whole before anything changed.
   */
  private receive(src: PeerName | null, bytes: Uint8Array): GossipData | null {
    if (this.left || this.stopped) return null;
    const msg = decodeIpamMessage(bytes);
    switch (msg.kind) {
      case 'ring': {
        let result: RingMergeResult;
        try {
          result = this.ring.merge(msg.ring);
        } catch (err) {
          if (err instanceof IpamError) this.warn(`refused a ring${src !== null ? ` from ${this.describePeer(src)}` : ''}: ${err.message}`);
          throw err;
        }
        if (!result.changed) return null;
        this.afterMergedRingChange(result);
        return new IpamUpdate(this, true, false);
      }
      case 'consensus':
        return this.receiveConsensus(src, msg.consensus);
      case 'space-request':
      case 'space-denied':
        if (src === null) return null;
        if (!msg.request.range.equals(this.range)) {
          throw new IpamError('foreign-range', `space request for ${msg.request.range.toString()}, our range is ${this.range.toString()}`);
        }
        if (msg.kind === 'space-request') this.handleSpaceRequest(src, msg.request.subnet);
        else this.handleSpaceDenied(src, msg.request.subnet);
        return null;
    }
  }

  private receiveConsensus(src: PeerName | null, m: ConsensusMessage): GossipData | null {
    if (!m.range.equals(this.range)) {
      const err = new IpamError('foreign-range', `consensus for range ${m.range.toString()}, ours is ${this.range.toString()}; every peer must use the same --ipalloc-range`);
      this.warn(err.message);
      throw err;
    }
    if (this.paxos === null || this.ring.isSeeded()) {
      // Someone still looking for the ring: show it the way (once in a while, not per message).
      if (src !== null && this.ring.isSeeded()) {
        const now = this.deps.clock.now();
        const last = this.ringHintSentMs.get(src);
        if (last === undefined || now - last >= this.timings.spaceRequestRetryMs) {
          this.ringHintSentMs.set(src, now);
          if (this.ringHintSentMs.size > 1024) this.ringHintSentMs.clear();
          this.sender.gossipUnicast(src, encodeIpamMessage({ kind: 'ring', ring: this.ring.state() }));
        }
      }
      return null;
    }
    const init = this.config.init;
    if (init.mode === 'consensus' && m.initPeerCount !== init.peerCount) {
      const err = new IpamError(
        'conflict',
        `${src !== null ? `peer ${this.describePeer(src)}` : 'a peer'} uses --ipalloc-init consensus=${m.initPeerCount}, we use consensus=${init.peerCount}; all initial peers must use the same count`,
      );
      this.warn(err.message);
      throw err;
    }
    const merged = this.paxos.merge(m.claims);
    if (merged) this.lastConsensusChangeMs = this.deps.clock.now();
    const ownChanged = this.paxos.think();
    if (ownChanged) {
      this.lastConsensusChangeMs = this.deps.clock.now();
      this.persist();
      this.sender.gossipBroadcast(new IpamUpdate(this, false, true));
    }
    this.checkDecision();
    return merged && !this.ring.isSeeded() ? new IpamUpdate(this, false, true) : null;
  }

  private handleReachableChanged(reachable: ReadonlySet<PeerName>): void {
    this.reachable = new Set(reachable);
    if (this.stopped || this.left) return;
    // A peer we were asking may be gone, or a new one may have space.
    if (this.pending.length > 0) this.processPending();
  }

  // -------------------------------------------------------------------------
  // Consensus

  private startConsensus(): void {
    if (this.ring.isSeeded() || this.consensusStarted || this.paxos === null || this.config.init.mode !== 'consensus') return;
    this.consensusStarted = true;
    this.log.info('starting consensus on the initial split', { peers: this.config.init.peerCount });
    this.propose();
  }

  private propose(): void {
    const paxos = this.paxos!;
    const id = paxos.propose();
    paxos.think();
    this.lastConsensusChangeMs = this.deps.clock.now();
    this.log.debug('consensus proposal', { round: id.round });
    this.persist();
    this.sender.gossipBroadcast(new IpamUpdate(this, false, true));
    this.checkDecision();
    this.armConsensusRetry();
  }

  /**
   * Proposes again when nothing moved for a whole retry period (a proposer
   * died, or two proposers keep overtaking each other); the jittered, growing
   * delay lets one of them finish.
   */
  private armConsensusRetry(): void {
    this.consensusTimer?.cancel();
    if (this.ring.isSeeded() || this.stopped) return;
    const delayMs = Math.round(this.consensusRetryMs * (0.5 + this.deps.rng.next()));
    this.consensusRetryMs = Math.min(this.timings.consensusRetryMaxMs, this.consensusRetryMs * 1.5);
    this.consensusTimer = this.deps.clock.setTimer(delayMs, () => {
      this.consensusTimer = null;
      if (this.ring.isSeeded() || this.stopped || this.left) return;
      if (this.deps.clock.now() - this.lastConsensusChangeMs >= delayMs || this.paxos!.liveProposal() === null) this.propose();
      else this.armConsensusRetry();
    });
  }

  private checkDecision(): void {
    if (this.ring.isSeeded() || this.paxos === null) return;
    const value = this.paxos.decision();
    if (value === null) return;
    this.log.info('consensus reached; seeding the ring', { peers: value.join(',') });
    const result = this.ring.seedWith(value);
    this.consensusTimer?.cancel();
    this.consensusTimer = null;
    this.afterMergedRingChange(result);
    this.sender.gossipBroadcast(new IpamUpdate(this, true, false));
  }

  private seedFromList(peers: readonly PeerName[]): void {
    try {
      this.ring.seedWith(peers);
    } catch (err) {
      // Only a stored ring from another seed can disagree; restore() already
      // dropped mismatches, so this is a bug rather than user input.
      throw new IpamError('conflict', `cannot seed the ring from --ipalloc-init seed=: ${errorText(err)}`);
    }
  }

  private consensusMessage(): ConsensusMessage {
    const init = this.config.init;
    return { range: this.range, initPeerCount: init.mode === 'consensus' ? init.peerCount : 1, claims: this.paxos!.records() };
  }

  // -------------------------------------------------------------------------
  // Requests

  private enqueue(req: Omit<PendingRequest, 'startedMs' | 'why' | 'onWaiting' | 'timer' | 'resolve' | 'reject'>, opts: AllocateOptions): Promise<string> {
    this.checkUsable();
    const timeoutMs = opts.timeoutMs ?? this.timings.requestTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw IpamError.config(`timeoutMs must be 0 or more, got ${timeoutMs}`);
    // The container is alive again: its dying addresses are its own once more.
    if (this.allocator.revive(req.container)) this.persist();
    return new Promise<string>((resolve, reject) => {
      const p: PendingRequest = {
        ...req,
        startedMs: this.deps.clock.now(),
        why: null,
        onWaiting: opts.onWaiting ?? null,
        timer: this.deps.clock.setTimer(timeoutMs, () => {
          const i = this.pending.indexOf(p);
          if (i < 0) return;
          this.pending.splice(i, 1);
          const what = p.kind === 'claim' ? `${this.range.formatOffset(p.offset!)} for ${p.container}` : `an address for ${p.container} in ${p.subnet.toString()}`;
          reject(new IpamError('timeout', `could not get ${what} within ${formatMs(timeoutMs)}: ${p.why ?? this.waitingFor() ?? 'no answer'}`));
        }),
        resolve,
        reject,
      };
      this.pending.push(p);
      if (!this.ring.isSeeded()) this.startConsensus();
      this.processPending();
    });
  }

  /** Serves every waiting request we can; asks for space for the others. Runs after every change. */
  private processPending(): void {
    if (this.pending.length === 0) return;
    if (!this.ring.isSeeded()) {
      const why = this.waitingFor() ?? 'waiting';
      for (const p of this.pending) this.setWhy(p, why);
      return;
    }
    const owned = this.ring.ownedSpans();
    let allocated = false;
    const needSpace = new Map<string, PendingRequest>();
    for (const p of this.pending.slice()) {
      const done = (a: Allocation): void => {
        this.finish(p);
        p.resolve(this.formatAllocation(a));
      };
      if (p.kind === 'allocate') {
        const have = this.allocator.findForContainer(p.container, p.within);
        if (have) { done(have); continue; }
        const offset = firstFree(owned, this.allocator.used, { rangeSize: this.range.size, within: p.within });
        if (offset !== null) {
          done(this.allocator.add(p.container, offset, p.prefixLen));
          allocated = true;
          continue;
        }
      } else {
        const offset = p.offset!;
        const holder = this.allocator.holderOf(offset);
        if (holder) {
          this.finish(p);
          if (holder.container === p.container) {
            p.resolve(`${this.range.formatOffset(offset)}/${p.prefixLen}`);
          } else {
            p.reject(new IpamError('conflict', `${this.range.formatOffset(offset)} is already held by container ${holder.container}`));
          }
          continue;
        }
        if (this.ring.ownerOf(offset) === this.self) {
          done(this.allocator.add(p.container, offset, p.prefixLen));
          allocated = true;
          continue;
        }
      }
      const key = `${p.within.start}-${p.within.end}`;
      if (!needSpace.has(key)) needSpace.set(key, p);
      else this.setWhy(p, needSpace.get(key)!.why ?? 'waiting for space');
    }
    if (allocated) {
      this.persist();
      this.scheduleFreeReport();
    }
    for (const p of needSpace.values()) this.askForSpace(p);
    // Forget asks nobody waits for any more.
    for (const key of [...this.spaceAsks.keys()]) if (!needSpace.has(key)) this.spaceAsks.delete(key);
    for (const key of [...this.denials.keys()]) if (!needSpace.has(key)) this.denials.delete(key);
    if (needSpace.size > 0) this.armSpaceTimer(); else { this.spaceTimer?.cancel(); this.spaceTimer = null; }
  }

  /**
   * No free address of ours fits `p`: find who has some and ask (unicast).
   * A request everyone reports full for is refused at once.
   */
  private askForSpace(p: PendingRequest): void {
    const key = `${p.within.start}-${p.within.end}`;
    const candidates = this.spaceHolders(p);
    if (candidates.length === 0) {
      this.finish(p);
      if (p.kind === 'claim') {
        const owner = this.ring.ownerOf(p.offset!);
        p.reject(new IpamError('conflict', `${this.range.formatOffset(p.offset!)} is in use on peer ${owner !== null ? this.describePeer(owner) : '?'}`));
      } else {
        p.reject(new IpamError('full', `no free address left in ${p.subnet.toString()}: every peer reports its share as used`));
      }
      return;
    }
    const now = this.deps.clock.now();
    const denied = this.denials.get(key);
    const deniedRecently = (peer: PeerName): boolean => {
      const at = denied?.get(peer);
      return at !== undefined && now - at < DENIAL_MEMORY_RETRIES * this.timings.spaceRequestRetryMs;
    };
    const reachable = candidates.filter((c) => this.reachable.has(c.peer));
    const live = reachable.filter((c) => !deniedRecently(c.peer));
    if (reachable.length > 0 && live.length === 0) {
      this.finish(p);
      const names = reachable.map((c) => this.describePeer(c.peer)).join(', ');
      if (p.kind === 'claim') {
        p.reject(new IpamError('conflict', `${this.range.formatOffset(p.offset!)} is in use on peer ${names}`));
      } else {
        p.reject(new IpamError('full', `no free address left in ${p.subnet.toString()}: peer(s) ${names} have none to spare`));
      }
      return;
    }
    if (live.length === 0) {
      const names = candidates.map((c) => this.describePeer(c.peer)).join(', ');
      const what = p.kind === 'claim' ? `${this.range.formatOffset(p.offset!)} belongs to` : `the free addresses in ${p.subnet.toString()} belong to`;
      this.setWhy(p, `waiting for space: ${what} unreachable peer(s) ${names} (weave rmpeer if they are gone for good)`);
      return;
    }
    const prev = this.spaceAsks.get(key);
    if (prev && now - prev.sentMs < this.timings.spaceRequestRetryMs && live.some((c) => c.peer === prev.target)) {
      this.setWhy(p, `waiting for space from peer ${this.describePeer(prev.target)}`);
      return;
    }
    const attempt = prev ? prev.attempt + 1 : 0;
    // Most free first; on retries walk down the list so one silent peer cannot stall us.
    const target = live[attempt % live.length]!.peer;
    const sent = this.sender.gossipUnicast(target, encodeIpamMessage({ kind: 'space-request', request: { range: this.range, subnet: p.kind === 'claim' ? Cidr.of(this.range.family, this.range.addressAt(p.offset!).value, this.range.family === 4 ? 32 : 128) : p.subnet } }));
    this.spaceAsks.set(key, { target, sentMs: now, attempt });
    this.log.debug('asked for space', { peer: target, subnet: p.subnet.toString(), sent });
    this.setWhy(p, `waiting for space from peer ${this.describePeer(target)}`);
  }

  private spaceHolders(p: PendingRequest): SpaceHolder[] {
    return spaceHolders(this.ring, p.within, p.kind === 'claim' ? p.offset : null);
  }

  private armSpaceTimer(): void {
    if (this.spaceTimer !== null) return;
    this.spaceTimer = this.deps.clock.setTimer(this.timings.spaceRequestRetryMs, () => {
      this.spaceTimer = null;
      if (!this.stopped && !this.left) this.processPending();
    });
  }

  /**
   * Another peer is out of space: give it half of our largest free run in
   * the subnet it asked for (the one address, for a claim). We only give what
   * is free, so no container of ours is affected.
   */
  private handleSpaceRequest(src: PeerName, subnet: Cidr): void {
    if (!this.ring.isSeeded() || src === this.self) return;
    const within = this.range.spanOf(subnet);
    if (within === null) return;
    // A well-behaved peer asks once per retry period per subnet; more often
    // than that is a bug or abuse, and must not drain our space.
    const now = this.deps.clock.now();
    const askKey = `${src}|${within.start}-${within.end}`;
    const lastGift = this.lastDonationMs.get(askKey);
    if (lastGift !== undefined && now - lastGift < this.timings.spaceRequestRetryMs / 2) return;
    const give = chooseDonation(this.ring, this.allocator, within);
    if (give !== null) {
      if (this.lastDonationMs.size >= 1024) this.lastDonationMs.clear();
      this.lastDonationMs.set(askKey, now);
    }
    if (give === null) {
      // Nothing to give: say so, and make sure the asker sees our true free count.
      this.reportFreeNow();
      this.sender.gossipUnicast(src, encodeIpamMessage({ kind: 'space-denied', request: { range: this.range, subnet } }));
      return;
    }
    this.ring.transfer(give, src);
    this.log.info('gave address space to a peer that ran out', { peer: src, from: this.range.formatOffset(give.start), count: give.end - give.start });
    this.afterOwnRingChange();
  }

  /** A peer we asked has nothing for us there: a claim fails, an allocation asks the next peer. */
  private handleSpaceDenied(src: PeerName, subnet: Cidr): void {
    const within = this.range.spanOf(subnet);
    if (within === null) return;
    const key = `${within.start}-${within.end}`;
    let denials = this.denials.get(key);
    if (!denials) { denials = new Map(); this.denials.set(key, denials); }
    denials.set(src, this.deps.clock.now());
    this.spaceAsks.delete(key);
    this.processPending();
  }

  private finish(p: PendingRequest): void {
    p.timer.cancel();
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }

  private setWhy(p: PendingRequest, why: string): void {
    if (p.why === why) return;
    p.why = why;
    if (p.onWaiting) {
      try {
        p.onWaiting(why);
      } catch (err) {
        this.log.warn('progress callback failed', { error: errorText(err) });
      }
    }
  }

  private failAll(err: IpamError): void {
    for (const p of this.pending.splice(0)) {
      p.timer.cancel();
      p.reject(err);
    }
    for (const w of this.primeWaiters.splice(0)) {
      w.timer.cancel();
      w.reject(err);
    }
  }

  private checkUsable(): void {
    if (this.left) throw IpamError.config('IPAM was reset on this peer; restart the router to use it again');
    if (this.stopped) throw new IpamError('shutdown', 'IPAM is shutting down');
  }

  // -------------------------------------------------------------------------
  // After changes

  /** We changed our own entries (gave space, took over, seeded): report free, persist, tell everyone. */
  private afterOwnRingChange(): void {
    this.updateFreeCounts();
    this.persist();
    this.sender.gossipBroadcast(new IpamUpdate(this, true, false));
    this.afterRingReady();
    this.processPending();
  }

  private afterMergedRingChange(result: RingMergeResult): void {
    for (const e of result.lostToOthers) {
      const held = this.allocator.all().filter((a) => this.ring.ownerOf(a.offset) !== this.self).length;
      this.warn(
        `another peer now owns our range at ${this.range.formatOffset(e.token)} (weave rmpeer of this peer, or state lost); ` +
          `${held} address(es) allocated here are outside our space`,
      );
    }
    this.persist();
    this.afterRingReady();
    this.processPending();
    if (this.allocator.count > 0) this.scheduleFreeReport();
  }

  private afterRingReady(): void {
    if (!this.ring.isSeeded()) return;
    this.consensusTimer?.cancel();
    this.consensusTimer = null;
    for (const w of this.primeWaiters.splice(0)) {
      w.timer.cancel();
      w.resolve();
    }
  }

  private afterReleases(gone: Allocation[], what: string): void {
    this.persist();
    this.scheduleFreeReport();
    this.armReleaseTimer();
    this.log.info(`addresses ${what}`, { container: gone[0]!.container, addresses: gone.map((a) => this.formatAllocation(a)).join(',') });
    this.processPending();
  }

  /** Sets the free count of each of our entries from the allocator; true when any changed. */
  private updateFreeCounts(): boolean {
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
  private scheduleFreeReport(): void {
    if (this.freeTimer !== null || this.stopped) return;
    this.freeTimer = this.deps.clock.setTimer(this.timings.freeReportDelayMs, () => {
      this.freeTimer = null;
      if (!this.stopped && !this.left) this.reportFreeNow();
    });
  }

  private reportFreeNow(): void {
    if (!this.updateFreeCounts()) return;
    this.persist();
    this.sender.gossipBroadcast(new IpamUpdate(this, true, false));
  }

  private armReleaseTimer(): void {
    const next = this.allocator.nextReleaseAtMs();
    if (next === null) {
      this.releaseTimer?.cancel();
      this.releaseTimer = null;
      return;
    }
    if (this.releaseTimer !== null && this.releaseTimerAtMs === next) return;
    this.releaseTimer?.cancel();
    this.releaseTimerAtMs = next;
    this.releaseTimer = this.deps.clock.setTimer(Math.max(0, next - this.deps.clock.now()), () => {
      this.releaseTimer = null;
      if (this.stopped || this.left) return;
      const due = this.allocator.releaseDue(this.deps.clock.now());
      if (due.length > 0) this.afterReleases(due, 'released after the grace period');
      else this.armReleaseTimer();
    });
  }

  private cancelTimers(): void {
    for (const t of [this.consensusTimer, this.spaceTimer, this.freeTimer, this.releaseTimer]) t?.cancel();
    this.consensusTimer = this.spaceTimer = this.freeTimer = this.releaseTimer = null;
  }

  // -------------------------------------------------------------------------
  // Persistence

  private persist(): void {
    if (this.store === null || this.left) return;
    try {
      this.store.save(buildSnapshot(this.self, this.range, this.ring.isSeeded() ? this.ring.state() : null,
        this.paxos?.joined() ? this.consensusMessage() : null, this.allocator.all()));
    } catch (err) {
      // Keep serving: the mesh state is gossiped and will be re-learned; but say so loudly.
      this.warn(`cannot save IPAM state: ${errorText(err)}`);
      this.log.error('cannot save IPAM state', { error: errorText(err) });
    }
  }

  /** Loads the saved state; a different peer name or range, or damage, discards it with a warning. */
  private restore(): void {
    if (this.store === null) return;
    let snap: IpamSnapshot | null;
    try {
      snap = this.store.load();
    } catch (err) {
      this.warn(`discarded saved IPAM state: ${errorText(err)}`);
      return;
    }
    if (snap === null) return;
    const r = readSnapshot(snap, this.self, this.config);
    if ('discard' in r) {
      this.warn(`discarded saved IPAM state: ${r.discard}`);
      return;
    }
    if (r.ring !== null) this.ring.merge(r.ring);
    if (r.claims !== null && this.paxos !== null) this.paxos.merge(r.claims);
    for (const a of r.allocations) this.allocator.add(a.container, a.offset, a.prefixLen).releaseAtMs = a.releaseAtMs;
    for (const problem of r.problems) this.warn(problem);
    this.log.info('restored IPAM state', { allocations: this.allocator.count, ring: this.ring.isSeeded() });
  }

  // -------------------------------------------------------------------------
  // Helpers

  private parseSubnet(text: string | undefined): Cidr {
    if (text === undefined || text === '' || text === 'net:default') return this.config.defaultSubnet;
    const s = text.startsWith('net:') ? text.slice(4) : text;
    const subnet = Cidr.parse(s, 'subnet');
    if (!this.range.cidr.covers(subnet)) {
      throw IpamError.config(`subnet ${subnet.toString()} is not inside the IPAM range ${this.range.toString()}`);
    }
    if (subnet.hostBits < 2) throw IpamError.config(`subnet ${subnet.toString()} is too small to allocate from; use at least a /${subnet.family === 4 ? 30 : 126}`);
    return subnet;
  }

  private formatAllocation(a: Allocation): string {
    return `${this.range.formatOffset(a.offset)}/${a.prefixLen}`;
  }

  private nicknames(): Map<PeerName, string> {
    const out = new Map<PeerName, string>();
    for (const p of this.deps.hub.knownPeers()) out.set(p.name, p.nickname);
    return out;
  }

  private describePeer(peer: PeerName): string {
    const nick = this.nicknames().get(peer);
    return nick ? `${peer}(${nick})` : peer;
  }

  private warn(text: string): void {
    const i = this.warnings.indexOf(text);
    if (i >= 0) this.warnings.splice(i, 1);
    else this.log.warn(text);
    this.warnings.push(text);
    if (this.warnings.length > MAX_WARNINGS) this.warnings.shift();
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
