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
    return new SystemTimer(handle);
  }
}

/** An instance with a method, not a literal with a closure: idle timers re-arm every second or so. */
class SystemTimer implements Timer {
  constructor(private readonly handle: NodeJS.Timeout) {}

  cancel(): void {
    clearTimeout(this.handle);
  }
}

interface PendingTimer {
  dueMs: number;
  seq: number;
  fire: () => void;
  cancelled: boolean;
}

function earlier(a: PendingTimer, b: PendingTimer): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
}

/**
 * A clock that only moves when told to. Timers due at the same instant fire in
 * the order they were set, so a simulation is reproducible. A binary heap with
 * lazy cancellation keeps thousands of timers (a simulated mesh) cheap.
 */
export class ManualClock implements Clock {
  private nowMs: number;
  private seq = 0;
  private heap: PendingTimer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimer(delayMs: number, fire: () => void): Timer {
    const timer: PendingTimer = { dueMs: this.nowMs + Math.max(0, delayMs), seq: this.seq++, fire, cancelled: false };
    this.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  /** Due time of the earliest live timer, or null when none is pending. */
  nextDueMs(): number | null {
    this.dropCancelled();
    return this.heap[0]?.dueMs ?? null;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const targetMs = this.nowMs + ms;
    for (;;) {
      this.dropCancelled();
      const next = this.heap[0];
      if (!next || next.dueMs > targetMs) break;
      this.pop();
      this.nowMs = Math.max(this.nowMs, next.dueMs);
      next.fire();
    }
    this.nowMs = targetMs;
  }

  /** Fires only the timers already due at the current instant. */
  runDue(): void {
    this.advance(0);
  }

  private dropCancelled(): void {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) this.pop();
  }

  private push(t: PendingTimer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!earlier(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && earlier(h[l]!, h[m]!)) m = l;
      if (r < h.length && earlier(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
