// Connection targets and when to dial them (mesh connection_maker.go, in
// spirit): direct targets given by the user, discovered ones learnt from
// gossip; failed attempts are retried for ever with jittered exponential
// backoff, except when the far end turned out to be ourselves or a peer with
// our name. Owns no sockets: it asks `dial` and is told the outcome.

import type { Clock, Timer } from '../../common/clock';
import type { RouterTimings } from './constants';
import { RouterError } from './errors';
import type { Logger } from '../../common/logger';
import type { Rng } from '../../common/rng';
import type { TargetStatus } from './status';

export interface ConnectorHooks {
  /** Starts a connection attempt to a normalised host:port. */
  dial(address: string): void;
  /** Whether an established connection already reaches the peer listening at this address. */
  isConnected(address: string): boolean;
  /** Whether we may open one more connection (the connection limit). */
  canConnect(): boolean;
}

/** A target is exactly what status shows of it; status() hands out copies. */
type Target = TargetStatus;

const BACKOFF_FACTOR = 1.5;

export class Connector {
  private readonly targets = new Map<string, Target>();
  private timer: Timer | null = null;
  private timerDueMs = 0;
  private stopped = false;

  constructor(
    private readonly deps: { clock: Clock; rng: Rng; logger: Logger },
    private readonly timings: RouterTimings,
    private readonly hooks: ConnectorHooks,
  ) {}

  start(): void {
    this.scheduleCheck(0);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  directTargets(): string[] {
    return [...this.targets.values()].filter((t) => t.direct).map((t) => t.address).sort();
  }

  /** Adds direct targets; with `replace`, direct targets not listed become non-direct (and go unless discovered). */
  addDirect(addresses: readonly string[], replace: boolean): void {
    const wanted = new Set(addresses);
    if (replace) {
      for (const t of [...this.targets.values()]) {
        if (t.direct && !wanted.has(t.address)) this.targets.delete(t.address);
      }
    }
    for (const address of wanted) {
      const existing = this.targets.get(address);
      if (existing) {
        existing.direct = true;
        // A user asking again deserves a prompt attempt, even after a refusal.
        if (existing.state === 'waiting' || existing.state === 'suspended' || existing.state === 'failed') this.makeDue(existing);
      } else {
        this.targets.set(address, this.newTarget(address, true));
      }
    }
    this.scheduleCheck(0);
  }

  /** Removes targets; returns the addresses that were known. */
  forget(addresses: readonly string[]): string[] {
    const removed: string[] = [];
    for (const a of addresses) if (this.targets.delete(a)) removed.push(a);
    return removed;
  }

  /** Replaces the set of discovered addresses (from topology gossip). Direct targets are unaffected. */
  setDiscovered(addresses: ReadonlySet<string>): void {
    for (const t of [...this.targets.values()]) {
      if (!t.direct && !addresses.has(t.address) && t.state !== 'attempting') this.targets.delete(t.address);
    }
    let added = false;
    for (const a of addresses) {
      if (!this.targets.has(a)) {
        this.targets.set(a, this.newTarget(a, false));
        added = true;
      }
    }
    if (added) this.scheduleCheck(0);
  }

  /** The attempt to `address` produced an established connection we kept. */
  onConnected(address: string): void {
    const t = this.targets.get(address);
    if (!t) return;
    t.state = 'connected';
    t.attempts = 0;
    t.nextAttemptMs = null;
    t.lastError = '';
  }

  /**
   * An attempt failed, or a connection to `address` ended. Retries follow the
   * backoff, except for errors that retrying cannot fix.
   */
  onDisconnected(address: string, error: RouterError | null): void {
    const t = this.targets.get(address);
    if (!t) return;
    const wasConnected = t.state === 'connected';
    t.lastError = error ? error.message : '';
    if (error && (error.code === 'self-connection' || error.code === 'name-collision')) {
      t.state = 'suspended';
      t.nextAttemptMs = null;
      if (!t.direct) this.targets.delete(address);
      return;
    }
    // A refusal over the password or the peer key (sent once the handshake completed) backs off like any failure.
    if (error?.code === 'duplicate-connection' || (wasConnected && error?.code !== 'password-mismatch' && error?.code !== 'peer-key')) {
      // We still reach (or just reached) that peer: check again soon, without penalty.
      t.attempts = 0;
      t.state = 'waiting';
      t.nextAttemptMs = this.deps.clock.now() + this.jitter(this.timings.retryInitialMs);
    } else {
      t.attempts++;
      t.state = 'failed';
      const base = Math.min(this.timings.retryMaxMs, this.timings.retryInitialMs * BACKOFF_FACTOR ** (t.attempts - 1));
      t.nextAttemptMs = this.deps.clock.now() + this.jitter(base);
    }
    this.scheduleCheck(Math.max(0, t.nextAttemptMs - this.deps.clock.now()));
  }

  status(): TargetStatus[] {
    return [...this.targets.values()]
      .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
      .map((t) => ({ ...t }));
  }

  /** Re-evaluates every target: marks reached ones connected, dials the due ones. */
  check(): void {
    if (this.stopped) return;
    const now = this.deps.clock.now();
    let nextDueMs: number | null = null;
    for (const t of [...this.targets.values()].sort((a, b) => Number(b.direct) - Number(a.direct))) {
      if (t.state === 'attempting' || t.state === 'suspended') continue;
      if (this.hooks.isConnected(t.address)) {
        if (t.state !== 'connected') this.onConnected(t.address);
        continue;
      }
      if (t.state === 'connected') {
        // The connection went away without us hearing about this target: retry now.
        t.state = 'waiting';
        t.nextAttemptMs = now;
      }
      if (t.nextAttemptMs !== null && t.nextAttemptMs > now) {
        nextDueMs = nextDueMs === null ? t.nextAttemptMs : Math.min(nextDueMs, t.nextAttemptMs);
        continue;
      }
      if (!this.hooks.canConnect()) continue;
      t.state = 'attempting';
      t.nextAttemptMs = null;
      this.deps.logger.debug('dialing target', { addr: t.address, attempt: t.attempts + 1, direct: t.direct });
      this.hooks.dial(t.address);
    }
    const periodicMs = this.timings.connectorCheckMs;
    this.timer?.cancel();
    this.timer = null;
    this.scheduleCheck(nextDueMs === null ? periodicMs : Math.min(periodicMs, Math.max(0, nextDueMs - now)));
  }

  private newTarget(address: string, direct: boolean): Target {
    return { address, direct, state: 'waiting', attempts: 0, nextAttemptMs: this.deps.clock.now(), lastError: '' };
  }

  private makeDue(t: Target): void {
    t.state = 'waiting';
    t.nextAttemptMs = this.deps.clock.now();
  }

  /** Uniform in [0.5, 1.5) of the base, so peers that failed together do not retry together. */
  private jitter(baseMs: number): number {
    return Math.round(baseMs * (0.5 + this.deps.rng.next()));
  }

  /** Keeps the earliest pending check; check() itself works out the next one. */
  private scheduleCheck(delayMs: number): void {
    if (this.stopped) return;
    const dueMs = this.deps.clock.now() + delayMs;
    if (this.timer !== null && this.timerDueMs <= dueMs) return;
    this.timer?.cancel();
    this.timerDueMs = dueMs;
    this.timer = this.deps.clock.setTimer(delayMs, () => {
      this.timer = null;
      this.check();
    });
  }
}
