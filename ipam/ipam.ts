// IPAM on one peer: the Gossiper for the 'ipam' channel and the one object
// the daemon, the HTTP routes and the container hook use. It builds and wires
// the parts (shared state and persistence: ipam-context.ts; waiting requests:
// request-queue.ts; space between peers: space-exchange.ts; the first split:
// initial-split.ts; releases and their grace timer: releases.ts) and owns the
// lifecycle (prime, rmpeer, reset, shutdown), the dispatch of received
// gossip, what follows each ring change, and the status snapshot.
//
// It must never import router internals: the mesh reaches it only through the
// gossip seam (docs/architecture.md). Every mutation happens in one
// synchronous step and is persisted before it is gossiped or a waiting request
// is answered, so a crash never hands out an address twice.

import type { Clock } from '../common/clock';
import type { Logger } from '../common/logger';
import type { Rng } from '../common/rng';
import type { GossipData, Gossiper, GossipHub } from '../router/mesh/gossip';
import { isPeerName, PeerName } from '../router/mesh/peer-name';
import { parseAddressWithPrefix } from './address-range';
import type { IpamConfig } from './config';
import { DEFAULT_IPAM_TIMINGS, IPAM_CHANNEL, IpamTimings } from './constants';
import { IpamError } from './errors';
import { InitialSplit } from './initial-split';
import { IpamContext } from './ipam-context';
import { decodeIpamMessage } from './messages';
import type { IpamStore } from './persistence';
import { Releases, type ReleaseOptions } from './releases';
import { AllocateOptions, RequestQueue } from './request-queue';
import { RingCounters, RingMergeResult, usableCount } from './ring';
import { SpaceExchange } from './space-exchange';
import { buildIpamStatus, IpamStatus, splitAdvice, StatusSource, v6TwinOf, waitingText } from './status';

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

export type { ReleaseOptions } from './releases';

export type { IpamPeerStatus, IpamState, IpamStatus } from './status';

export class Ipam implements Gossiper {
  readonly self: PeerName;
  readonly config: IpamConfig;
  private readonly ctx: IpamContext;
  private readonly split: InitialSplit;
  private readonly space: SpaceExchange;
  private readonly requests: RequestQueue;
  private readonly releases: Releases;

  constructor(deps: IpamDeps, opts: IpamOptions) {
    const timings = { ...DEFAULT_IPAM_TIMINGS, ...opts.timings };
    const ctx = new IpamContext({ ...deps, store: deps.store ?? null }, opts.config, timings);
    this.ctx = ctx;
    this.self = ctx.self;
    this.config = opts.config;
    const waitingFor = (): string | null => this.waitingFor();
    this.split = new InitialSplit(ctx, {
      waitingFor,
      ringSeeded: (result) => {
        this.afterMergedRingChange(result);
        ctx.broadcast(true, false);
      },
    });
    this.space = new SpaceExchange(ctx);
    this.requests = new RequestQueue(ctx, this.space, { waitingFor, startConsensus: () => this.split.start() });
    this.releases = new Releases(ctx, () => this.requests.process());

    ctx.restore();
    const init = opts.config.init;
    if (init.mode === 'seed') this.split.seed(init.peers);
    if (init.mode === 'consensus' && !ctx.ring.isSeeded()) ctx.paxos!.join();
    this.releases.arm();
    ctx.persist();

    ctx.attachSender(deps.hub.addChannel(IPAM_CHANNEL, this));
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
    return this.ctx.batch(() => this.requests.allocate(containerId, opts));
  }

  /**
   * Records that `containerId` uses `cidr` ("10.32.0.5/12"). Refused when
   * another container holds the address. An address outside the range is
   * not IPAM's business and is returned as is. When another peer owns the
   * address, it is asked to hand it over.
   */
  claim(containerId: string, cidr: string, opts: Omit<AllocateOptions, 'subnet'> = {}): Promise<string> {
    return this.ctx.batch(() => this.requests.claim(containerId, cidr, opts));
  }

  /** Releases one address of a container, or all of them when `cidr` is omitted; returns what was released. */
  release(containerId: string, cidr?: string): string[] {
    return this.releases.release(containerId, cidr);
  }

  /** A container went away: see Releases.releaseContainer (removed: free now; died: kept for graceMs). */
  releaseContainer(containerId: string, opts: ReleaseOptions = {}): string[] {
    return this.releases.releaseContainer(containerId, opts);
  }

  /** Addresses a container holds here (CIDRs). */
  addressesOf(containerId: string): string[] {
    return this.ctx.allocator.ofContainer(containerId).map((a) => this.ctx.formatAllocation(a));
  }

  /** The IPv6 twin of an IPv4 address of ours (dual stack), or null without --ipalloc-range-v6. */
  v6For(cidr: string): string | null {
    const v6 = this.config.rangeV6;
    if (v6 === null) return null;
    const { address } = parseAddressWithPrefix(cidr, 'address');
    const offset = this.ctx.range.offsetOf(address);
    return offset === null ? null : v6TwinOf(v6, offset);
  }

  /**
   * Starts the initial split now (it otherwise starts on the first
   * allocation) and resolves once this peer has the ring. Rejects on timeout
   * with what it waited for.
   */
  prime(timeoutMs = this.ctx.timings.requestTimeoutMs): Promise<void> {
    this.ctx.checkUsable();
    return this.ctx.ring.isSeeded() ? Promise.resolve() : this.split.prime(timeoutMs);
  }

  /**
   * Takes over the space of a dead peer. Refused for ourselves and for a
   * peer that is reachable: two live owners of one range would hand out the
   * same addresses. Run it on one peer only.
   */
  rmpeer(peerText: string): { peer: PeerName; addresses: number } {
    const { ctx } = this;
    ctx.checkUsable();
    const peer = peerText.trim().toLowerCase();
    if (!isPeerName(peer)) throw IpamError.config(`${JSON.stringify(peerText)} is not a peer name (aa:bb:cc:dd:ee:ff; see weave status ipam)`);
    if (peer === this.self) throw IpamError.config('cannot rmpeer ourselves; use weave reset to hand our space to another peer');
    if (ctx.reachable.has(peer)) {
      throw IpamError.config(`peer ${ctx.describePeer(peer)} is reachable; rmpeer is only for peers that are gone for good (stop it first)`);
    }
    if (!ctx.ring.isSeeded()) throw IpamError.config(`no ring yet (${this.waitingFor() ?? 'not ready'}); nothing to take over`);
    // A name that neither the ring nor the mesh knows is most likely a typo:
    // "owned no addresses" would read as success. A known peer that owns nothing is fine.
    if (!ctx.ring.entries().some((e) => e.owner === peer) && !ctx.nicknames().has(peer)) {
      throw IpamError.config(`peer ${peer} is not known here: it owns no space in the ring and the mesh has not heard of it (see weave status ipam)`);
    }
    const addresses = ctx.ring.takeOver(peer);
    if (addresses > 0) {
      ctx.log.warn('took over the space of a removed peer', { peer, addresses });
      this.afterOwnRingChange();
    }
    return { peer, addresses };
  }

  /**
   * Before leaving for good: hands all our space to one reachable peer and
   * forgets our state. Afterwards this instance refuses requests.
   */
  reset(): { handedTo: PeerName | null; addresses: number } {
    const { ctx } = this;
    ctx.checkUsable();
    const owned = ctx.ring.isSeeded() ? ctx.ring.ownedSpans() : [];
    let handedTo: PeerName | null = null;
    let addresses = 0;
    if (owned.length > 0) {
      const owners = new Set(ctx.ring.entries().map((e) => e.owner));
      const live = [...ctx.reachable].filter((p) => p !== this.self).sort();
      handedTo = live.find((p) => owners.has(p)) ?? live[0] ?? null;
      if (handedTo === null) {
        throw IpamError.config('no reachable peer to hand our address space to; connect to one first, or run weave rmpeer on another peer after this one is gone');
      }
      if (ctx.allocator.count > 0) ctx.warn(`handing over space with ${ctx.allocator.count} addresses still allocated here`);
      for (const span of owned) {
        ctx.ring.transfer(span, handedTo, (s) => usableCount(ctx.range, s) - ctx.allocator.used.countIn(s));
        addresses += span.end - span.start;
      }
      ctx.broadcast(true, false);
      ctx.log.info('handed our address space to another peer', { peer: handedTo, addresses });
    }
    ctx.left = true;
    ctx.allocator.clear();
    this.stopAll(new IpamError('shutdown', 'IPAM was reset on this peer'));
    ctx.clearStore();
    return { handedTo, addresses };
  }

  /** Stops timers and fails waiting requests; state stays on disk. */
  shutdown(): void {
    if (this.ctx.stopped) return;
    this.ctx.stopped = true;
    this.stopAll(new IpamError('shutdown', 'IPAM is shutting down'));
  }

  /** What the peer waits for, in words; null when it has the ring. */
  waitingFor(): string | null {
    return waitingText(this.statusSource());
  }

  status(): IpamStatus {
    return buildIpamStatus(this.statusSource());
  }

  /** Ring entries refused (not signed by whoever may change them) and takeovers of unreachable peers' space. */
  ringCounters(): Readonly<RingCounters> {
    return this.ctx.ring.counters;
  }

  private statusSource(): StatusSource {
    const { ctx } = this;
    return {
      self: this.self,
      config: this.config,
      ring: ctx.ring,
      allocator: ctx.allocator,
      paxos: ctx.paxos,
      reachable: ctx.reachable,
      nicknames: ctx.nicknames(),
      consensusStarted: this.split.consensusStarted,
      left: ctx.left,
      nowMs: ctx.clock.now(),
      pending: this.requests.describe(),
      warnings: ctx.warnings,
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
    const { ctx } = this;
    if (ctx.left || ctx.stopped) return null;
    if (ctx.ring.isSeeded()) return ctx.update(true, false);
    if (ctx.paxos?.joined()) return ctx.update(false, true);
    return null;
  }

  onGossip(update: Uint8Array): GossipData | null {
    return this.receive(null, update);
  }

  /**
   * Decodes and applies one message. Throwing refuses it (the hub counts the
   * rejection); the message was validated whole before anything changed.
   */
  private receive(src: PeerName | null, bytes: Uint8Array): GossipData | null {
    const { ctx } = this;
    if (ctx.left || ctx.stopped) return null;
    const msg = decodeIpamMessage(bytes);
    switch (msg.kind) {
      case 'ring': {
        let result: RingMergeResult;
        try {
          result = ctx.ring.merge(msg.ring);
        } catch (err) {
          if (err instanceof IpamError) {
            const why = err.code === 'foreign-seed' ? splitAdvice(ctx.ring, msg.ring, (p) => ctx.describePeer(p)) : err.message;
            ctx.warn(`refused a ring${src !== null ? ` from ${ctx.describePeer(src)}` : ''}: ${why}`);
          }
          throw err;
        }
        if (!result.changed) return null;
        this.afterMergedRingChange(result);
        return ctx.update(true, false);
      }
      case 'consensus':
        return this.split.receive(src, msg.consensus);
      case 'space-request':
      case 'space-denied':
        if (src === null) return null;
        if (!msg.request.range.equals(ctx.range)) {
          throw new IpamError('foreign-range', `space request for ${msg.request.range.toString()}, our range is ${ctx.range.toString()}`);
        }
        if (msg.kind === 'space-request') {
          if (this.space.handleRequest(src, msg.request.subnet)) this.afterOwnRingChange();
        } else if (this.space.handleDenied(src, msg.request.subnet)) {
          this.requests.process();
        }
        return null;
    }
  }

  private handleReachableChanged(reachable: ReadonlySet<PeerName>): void {
    this.ctx.reachable = new Set(reachable);
    if (this.ctx.stopped || this.ctx.left) return;
    this.split.reachableChanged(this.ctx.reachable);
    // A peer we were asking may be gone, or a new one may have space.
    if (this.requests.size > 0) this.requests.process();
  }

  // -------------------------------------------------------------------------
  // After changes

  /** We changed our own entries (gave space, took over, seeded): report free, persist, tell everyone. */
  private afterOwnRingChange(): void {
    this.ctx.updateFreeCounts();
    this.ctx.persist();
    this.ctx.broadcast(true, false);
    this.split.ringReady();
    this.requests.process();
  }

  private afterMergedRingChange(result: RingMergeResult): void {
    const { ctx } = this;
    for (const e of result.lostToOthers) {
      const held = ctx.allocator.all().filter((a) => ctx.ring.ownerOf(a.offset) !== this.self).length;
      ctx.warn(
        `another peer now owns our range at ${ctx.range.formatOffset(e.token)} (weave rmpeer of this peer, or state lost); ` +
          `${held} address(es) allocated here are outside our space`,
      );
    }
    ctx.persist();
    this.split.ringReady();
    this.requests.process();
    if (ctx.allocator.count > 0) ctx.scheduleFreeReport();
  }

  /** Cancels every timer and fails every waiting caller with `err` (reset, shutdown). */
  private stopAll(err: IpamError): void {
    this.requests.failAll(err);
    this.split.failWaiters(err);
    this.split.cancel();
    this.requests.cancel();
    this.ctx.cancelFreeReport();
    this.releases.cancel();
  }
}
