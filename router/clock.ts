// Time as an injected dependency. Protocol cores never read the wall clock or
// start timers themselves; they take a Clock so the same code runs in the daemon
// (SystemClock) and in simulations that advance time by hand (ManualClock).

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock). */
  now(): number;
  setTimer(delayMs: number, fire: () => void): Timer;
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  setTimer(delayMs: number, fire: () => void): Timer {
    const handle = setTimeout(fire, Math.max(0, delayMs));
    // Timers must never keep the process alive on their own: shutdown is explicit.
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  }
}

interface PendingTimer {
  dueMs: number;
  seq: number;
  fire: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. Timers due at the same instant fire in
 * the order they were set, so a simulation is reproducible.
 */
export class ManualClock implements Clock {
  private nowMs: number;
  private seq = 0;
  private pending: PendingTimer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimer(delayMs: number, fire: () => void): Timer {
    const timer: PendingTimer = { dueMs: this.nowMs + Math.max(0, delayMs), seq: this.seq++, fire, cancelled: false };
    this.pending.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  /** Due time of the earliest live timer, or null when none is pending. */
  nextDueMs(): number | null {
    let best: number | null = null;
    for (const t of this.pending) if (!t.cancelled && (best === null || t.dueMs < best)) best = t.dueMs;
    return best;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const targetMs = this.nowMs + ms;
    for (;;) {
      const next = this.popDue(targetMs);
      if (!next) break;
      this.nowMs = Math.max(this.nowMs, next.dueMs);
      next.fire();
    }
    this.nowMs = targetMs;
  }

  /** Fires only the timers already due at the current instant. */
  runDue(): void {
    this.advance(0);
  }

  private popDue(limitMs: number): PendingTimer | null {
    let bestIdx = -1;
    for (let i = 0; i < this.pending.length; i++) {
      const t = this.pending[i]!;
      if (t.cancelled || t.dueMs > limitMs) continue;
      const best = bestIdx >= 0 ? this.pending[bestIdx]! : null;
      if (!best || t.dueMs < best.dueMs || (t.dueMs === best.dueMs && t.seq < best.seq)) bestIdx = i;
    }
    if (bestIdx < 0) {
      if (this.pending.length > 256) this.pending = this.pending.filter((t) => !t.cancelled);
      return null;
    }
    const [timer] = this.pending.splice(bestIdx, 1);
    return timer ?? null;
  }
}
