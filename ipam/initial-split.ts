// How this peer comes to hold the ring the first time: seeded from the
// --ipalloc-init seed= list, or agreed on by consensus among the first N
// peers (the Paxos rules are paxos.ts; this file drives them: when to start,
// when to propose again, what to do with a consensus message, when a value is
// decided), or, for an observer, simply received. Also owns the callers of
// `weave prime` waiting for the ring, and the hints that show a peer still
// looking for consensus that the ring exists already.
//
// Timers (the jittered, growing retry) run on the injected Clock with the
// injected Rng; every change of our consensus record is persisted before it
// is gossiped.

import type { Timer } from '../common/clock';
import type { GossipData } from '../router/mesh/gossip';
import type { PeerName } from '../router/mesh/peer-name';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';
import { formatMs, IpamContext } from './ipam-context';
import { ConsensusMessage, encodeIpamMessage } from './messages';
import type { RingMergeResult } from './ring';

/** Ring hints remembered per peer; cleared beyond this (a hint is only a shortcut). */
const MAX_RING_HINT_PEERS = 1024;

export interface InitialSplitHooks {
  /** Consensus decided and the ring is seeded from the value; the caller persists, serves the queue and gossips. */
  ringSeeded(result: RingMergeResult): void;
  /** What the peer waits for, in words (for the prime timeout). */
  waitingFor(): string | null;
}

interface PrimeWaiter {
  resolve(): void;
  reject(err: IpamError): void;
  timer: Timer;
}

export class InitialSplit {
  private started = false;
  private retryTimer: Timer | null = null;
  private retryMs: number;
  private lastChangeMs: number;
  private readonly ringHintSentMs = new Map<PeerName, number>();
  private readonly primeWaiters: PrimeWaiter[] = [];

  constructor(private readonly ctx: IpamContext, private readonly hooks: InitialSplitHooks) {
    this.retryMs = ctx.timings.consensusRetryInitialMs;
    this.lastChangeMs = ctx.clock.now();
  }

  /** Consensus was started here (it starts on the first allocation or `weave prime`). */
  get consensusStarted(): boolean {
    return this.started;
  }

  /** --ipalloc-init seed=: the listed peers split the range at once. */
  seed(peers: readonly PeerName[]): void {
    try {
      this.ctx.ring.seedWith(peers);
    } catch (err) {
      // Only a stored ring from another seed can disagree; restore() already
      // dropped mismatches, so this is a bug rather than user input.
      throw new IpamError('conflict', `cannot seed the ring from --ipalloc-init seed=: ${errorMessage(err)}`);
    }
  }

  /** Resolves once this peer has the ring; starts consensus if it has not started yet. */
  prime(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: PrimeWaiter = {
        resolve,
        reject,
        timer: this.ctx.clock.setTimer(timeoutMs, () => {
          const i = this.primeWaiters.indexOf(waiter);
          if (i >= 0) this.primeWaiters.splice(i, 1);
          reject(new IpamError('timeout', `IPAM not ready after ${formatMs(timeoutMs)}: ${this.hooks.waitingFor() ?? 'ready'}`));
        }),
      };
      this.primeWaiters.push(waiter);
      this.start();
    });
  }

  start(): void {
    const { ctx } = this;
    if (ctx.ring.isSeeded() || this.started || ctx.paxos === null || ctx.config.init.mode !== 'consensus') return;
    this.started = true;
    ctx.log.info('starting consensus on the initial split', { peers: ctx.config.init.peerCount });
    this.propose();
  }

  /** The ring exists now: no more retries, and the prime callers are answered. */
  ringReady(): void {
    if (!this.ctx.ring.isSeeded()) return;
    this.cancel();
    for (const w of this.primeWaiters.splice(0)) {
      w.timer.cancel();
      w.resolve();
    }
  }

  failWaiters(err: IpamError): void {
    for (const w of this.primeWaiters.splice(0)) {
      w.timer.cancel();
      w.reject(err);
    }
  }

  cancel(): void {
    this.retryTimer?.cancel();
    this.retryTimer = null;
  }

  /**
   * A consensus message from `src` (null: periodic gossip). Returns what was
   * new to us for relaying; throws, with state unchanged, on a message for
   * another range. The sender's consensus count is not ours to check: we
   * answer its proposals whatever our own count (paxos.ts).
   */
  receive(src: PeerName | null, m: ConsensusMessage): GossipData | null {
    const { ctx } = this;
    if (!m.range.equals(ctx.range)) {
      const err = new IpamError('foreign-range', `consensus for range ${m.range.toString()}, ours is ${ctx.range.toString()}; every peer must use the same --ipalloc-range`);
      ctx.warn(err.message);
      throw err;
    }
    if (ctx.paxos === null || ctx.ring.isSeeded()) {
      // Someone still looking for the ring: show it the way (once in a while, not per message).
      if (src !== null && ctx.ring.isSeeded()) this.sendRingHint(src);
      return null;
    }
    const merged = ctx.paxos.merge(m.claims);
    if (merged) this.lastChangeMs = ctx.clock.now();
    this.thinkAndDecide();
    return merged && !ctx.ring.isSeeded() ? ctx.update(false, true) : null;
  }

  /**
   * Who we reach changed, and with it how many take part: a quorum may be
   * met now (a host launched alone whose peers went away), or need more.
   */
  reachableChanged(reachable: ReadonlySet<PeerName>): void {
    const { ctx } = this;
    if (ctx.paxos === null) return;
    ctx.paxos.setLive(reachable);
    if (!ctx.ring.isSeeded() && !ctx.stopped && !ctx.left) this.thinkAndDecide();
  }

  /** Runs the Paxos rules; a change of our record is persisted, then gossiped; a decision seeds the ring. */
  private thinkAndDecide(): void {
    const { ctx } = this;
    if (ctx.paxos!.think()) {
      this.lastChangeMs = ctx.clock.now();
      ctx.persist();
      ctx.broadcast(false, true);
    }
    this.checkDecision();
  }

  private sendRingHint(src: PeerName): void {
    const { ctx } = this;
    const now = ctx.clock.now();
    const last = this.ringHintSentMs.get(src);
    if (last !== undefined && now - last < ctx.timings.spaceRequestRetryMs) return;
    this.ringHintSentMs.set(src, now);
    if (this.ringHintSentMs.size > MAX_RING_HINT_PEERS) this.ringHintSentMs.clear();
    ctx.unicast(src, encodeIpamMessage({ kind: 'ring', ring: ctx.ring.state() }));
  }

  private propose(): void {
    const { ctx } = this;
    const paxos = ctx.paxos!;
    const id = paxos.propose();
    paxos.think();
    this.lastChangeMs = ctx.clock.now();
    ctx.log.debug('consensus proposal', { round: id.round });
    ctx.persist();
    ctx.broadcast(false, true);
    this.checkDecision();
    this.armRetry();
  }

  /**
   * Proposes again when nothing moved for a whole retry period (a proposer
   * died, or two proposers keep overtaking each other); the jittered, growing
   * delay lets one of them finish.
   */
  private armRetry(): void {
    const { ctx } = this;
    this.retryTimer?.cancel();
    if (ctx.ring.isSeeded() || ctx.stopped) return;
    const delayMs = Math.round(this.retryMs * (0.5 + ctx.rng.next()));
    this.retryMs = Math.min(ctx.timings.consensusRetryMaxMs, this.retryMs * 1.5);
    this.retryTimer = ctx.clock.setTimer(delayMs, () => {
      this.retryTimer = null;
      if (ctx.ring.isSeeded() || ctx.stopped || ctx.left) return;
      if (ctx.clock.now() - this.lastChangeMs >= delayMs || ctx.paxos!.liveProposal() === null) this.propose();
      else this.armRetry();
    });
  }

  private checkDecision(): void {
    const { ctx } = this;
    if (ctx.ring.isSeeded() || ctx.paxos === null) return;
    const value = ctx.paxos.decision();
    if (value === null) return;
    ctx.log.info('consensus reached; seeding the ring', { peers: value.join(',') });
    const result = ctx.ring.seedWith(value);
    this.cancel();
    this.hooks.ringSeeded(result);
  }
}
