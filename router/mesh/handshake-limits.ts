// What strangers may cost us before they authenticate: the inbound
// connections still in their handshake, held to a global cap and a cap per
// source (an IPv4 address, an IPv6 /64), apart from --conn-limit, which counts
// established peers only. Our own outbound dials are never tracked here. When
// a cap is reached the oldest handshake of that scope is dropped to make room:
// a real peer completes in a few round trips, so what is old is what stalls.
// It also counts the handshakes that ended without completing, over a sliding
// minute, for status, health and one rate-limited log summary.
//
// Pure: keys are opaque (the router's connections), time comes in as nowMs,
// and the caller closes what admit() gives back. Must never log or close.

import { tryParseIpv6 } from '../../common/ip';
import {
  HANDSHAKE_DROP_LOG_INTERVAL_MS, HANDSHAKE_DROP_WINDOW_MS, MAX_HANDSHAKES_IN_PROGRESS, MAX_HANDSHAKES_PER_SOURCE,
} from './constants';
import type { HandshakePressure } from './status';

export interface HandshakeCaps {
  maxInProgress: number;
  maxPerSource: number;
}

export const DEFAULT_HANDSHAKE_CAPS: HandshakeCaps = {
  maxInProgress: MAX_HANDSHAKES_IN_PROGRESS,
  maxPerSource: MAX_HANDSHAKES_PER_SOURCE,
};

/** What one log line reports: the drops since the previous line. */
export interface HandshakeDropSummary {
  dropped: number;
  evicted: number;
  inProgress: number;
}

/** Whole IPv4 addresses, IPv6 by /64 (one host usually owns a whole /64). */
export function handshakeSource(host: string): string {
  const v6 = tryParseIpv6(host);
  return v6 === null ? host : `${(v6 >> 64n).toString(16)}::/64`;
}

/** A count over a sliding window, kept in a few fixed buckets (no per-event memory). */
class WindowCount {
  private static readonly BUCKETS = 6;
  private readonly slots = new Array<number>(WindowCount.BUCKETS).fill(-1);
  private readonly counts = new Array<number>(WindowCount.BUCKETS).fill(0);
  private readonly bucketMs: number;

  constructor(windowMs: number) {
    this.bucketMs = Math.max(1, Math.ceil(windowMs / WindowCount.BUCKETS));
  }

  add(nowMs: number, n = 1): void {
    const slot = Math.floor(nowMs / this.bucketMs);
    const i = slot % WindowCount.BUCKETS;
    if (this.slots[i] !== slot) {
      this.slots[i] = slot;
      this.counts[i] = 0;
    }
    this.counts[i]! += n;
  }

  total(nowMs: number): number {
    const current = Math.floor(nowMs / this.bucketMs);
    let sum = 0;
    for (let i = 0; i < WindowCount.BUCKETS; i++) {
      if (this.slots[i]! > current - WindowCount.BUCKETS) sum += this.counts[i]!;
    }
    return sum;
  }
}

export class HandshakeLimits<K> {
  /** In admission order, so the first entry (of a source) is the oldest. */
  private readonly inProgress = new Map<K, string>();
  private readonly perSource = new Map<string, number>();
  private readonly droppedWindow = new WindowCount(HANDSHAKE_DROP_WINDOW_MS);
  private readonly evictedWindow = new WindowCount(HANDSHAKE_DROP_WINDOW_MS);
  private unreported = { dropped: 0, evicted: 0 };
  private lastSummaryMs = -Infinity;
  readonly counters = { handshakesDropped: 0, handshakesEvicted: 0 };

  constructor(private readonly caps: HandshakeCaps = DEFAULT_HANDSHAKE_CAPS) {}

  /**
   * Tracks `key`, an inbound connection from `host` that has just begun its
   * handshake. Returns the handshakes dropped to make room for it, oldest
   * first, already forgotten and counted: the caller closes them.
   */
  admit(key: K, host: string, nowMs: number): K[] {
    const source = handshakeSource(host);
    const evicted: K[] = [];
    if ((this.perSource.get(source) ?? 0) >= this.caps.maxPerSource) {
      const oldest = this.oldest(source);
      if (oldest !== undefined) evicted.push(oldest);
    }
    for (const k of this.inProgress.keys()) {
      if (this.inProgress.size - evicted.length < this.caps.maxInProgress) break;
      if (!evicted.includes(k)) evicted.push(k);
    }
    for (const k of evicted) this.forget(k);
    if (evicted.length > 0) this.countDrop(nowMs, evicted.length, true);
    this.inProgress.set(key, source);
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    return evicted;
  }

  /** The handshake completed: the connection is a peer's now, no longer limited here. */
  completed(key: K): void {
    this.forget(key);
  }

  /** The connection closed before its handshake completed. Returns false if it was not tracked (or already dropped). */
  failed(key: K, nowMs: number): boolean {
    if (!this.forget(key)) return false;
    this.countDrop(nowMs, 1, false);
    return true;
  }

  pressure(nowMs: number): HandshakePressure {
    return {
      inProgress: this.inProgress.size,
      maxInProgress: this.caps.maxInProgress,
      maxPerSource: this.caps.maxPerSource,
      droppedLastMinute: this.droppedWindow.total(nowMs),
      evictedLastMinute: this.evictedWindow.total(nowMs),
    };
  }

  /**
   * The drops since the last summary, at most once per
   * HANDSHAKE_DROP_LOG_INTERVAL_MS, so strangers never cost a log line each;
   * null when there is nothing new or the last one is too recent.
   */
  summaryDue(nowMs: number): HandshakeDropSummary | null {
    if (this.unreported.dropped === 0) return null;
    if (nowMs - this.lastSummaryMs < HANDSHAKE_DROP_LOG_INTERVAL_MS) return null;
    const summary = { ...this.unreported, inProgress: this.inProgress.size };
    this.unreported = { dropped: 0, evicted: 0 };
    this.lastSummaryMs = nowMs;
    return summary;
  }

  private oldest(source: string): K | undefined {
    for (const [k, s] of this.inProgress) if (s === source) return k;
    return undefined;
  }

  private forget(key: K): boolean {
    const source = this.inProgress.get(key);
    if (source === undefined) return false;
    this.inProgress.delete(key);
    const n = (this.perSource.get(source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(source); else this.perSource.set(source, n);
    return true;
  }

  private countDrop(nowMs: number, n: number, evicted: boolean): void {
    this.droppedWindow.add(nowMs, n);
    this.counters.handshakesDropped += n;
    this.unreported.dropped += n;
    if (!evicted) return;
    this.evictedWindow.add(nowMs, n);
    this.counters.handshakesEvicted += n;
    this.unreported.evicted += n;
  }
}
