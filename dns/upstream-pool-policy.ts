// Which pooled upstream socket a forwarded query goes out on, and when a socket
// is retired: the pure part of dns/upstream-pool.ts (no sockets, no timers; the
// clock and the randomness are passed in). Opening a connected UDP socket per
// query cost ~40% of forwarding time, so each upstream gets up to `size`
// connected sockets, each on its own kernel-random port, and queries are spread
// over them at random. To keep the ports moving, a socket is retired after
// `maxQueries` queries or `maxAgeMs`, whichever comes first; its replacement
// gets a fresh random port. A retired socket takes no new query and is closed
// once its queries in flight are answered or time out (the adapter's job).

export interface PoolPolicyOptions {
  /** Live sockets per upstream. */
  size: number;
  /** Queries a socket carries before it is retired. */
  maxQueries: number;
  /** Lifetime of a socket from its opening, in ms. */
  maxAgeMs: number;
}

export const DEFAULT_POOL_POLICY: PoolPolicyOptions = { size: 4, maxQueries: 200, maxAgeMs: 3_000 };

/** What the policy tracks of one socket; the adapter's slot type extends it. */
export interface PoolSlot {
  readonly openedAt: number;
  queries: number;
  retired: boolean;
}

const NONE_RETIRED: readonly never[] = Object.freeze([]);

export class PoolPolicy<S extends PoolSlot> {
  private readonly live: S[] = [];

  constructor(
    private readonly opts: PoolPolicyOptions,
    private readonly now: () => number,
    /** Uniform integer in [0, n) from a CSPRNG (the adapter passes RandomBuffer.int). */
    private readonly randomInt: (n: number) => number,
  ) {
    if (!(opts.size >= 1 && opts.maxQueries >= 1 && opts.maxAgeMs > 0)) throw new Error('pool policy: size, maxQueries and maxAgeMs must be positive');
  }

  /**
   * The socket for the next query, or null when the caller must open one and
   * add() it (fewer live sockets than `size`, spent ones retired first). The
   * returned list holds the sockets this call retired, for the caller to close
   * when drained.
   */
  pick(): { slot: S | null; retired: readonly S[] } {
    const retired = this.retireSpent();
    if (this.live.length < this.opts.size) return { slot: null, retired };
    return { slot: this.live[this.randomInt(this.live.length)] as S, retired };
  }

  add(slot: S): void {
    this.live.push(slot);
  }

  /** Counts one query on the slot; true when that spent it (it is retired now). */
  used(slot: S): boolean {
    slot.queries++;
    if (slot.retired || !this.spent(slot)) return false;
    this.retire(slot);
    return true;
  }

  /** Takes the slot out of service (age timer, socket error, close); idempotent. */
  retire(slot: S): void {
    slot.retired = true;
    const i = this.live.indexOf(slot);
    if (i >= 0) this.live.splice(i, 1);
  }

  /** Retires every live socket past its age or query budget; returns them (runs per query: no allocation when none is). */
  retireSpent(): readonly S[] {
    const now = this.now();
    let out: S[] | null = null;
    for (const s of this.live) if (this.spent(s, now)) (out ??= []).push(s);
    if (out === null) return NONE_RETIRED;
    for (const s of out) this.retire(s);
    return out;
  }

  /** When a slot opened now must be retired by age (for the adapter's timer). */
  lifetimeMs(): number {
    return this.opts.maxAgeMs;
  }

  liveSlots(): readonly S[] {
    return this.live;
  }

  private spent(s: S, now = this.now()): boolean {
    return s.queries >= this.opts.maxQueries || now - s.openedAt >= this.opts.maxAgeMs;
  }
}
