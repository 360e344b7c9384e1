// When routes are recomputed: debounced, so changes within one window cost one
// computation, and spaced, so under sustained churn (a flapping mesh, a storm
// of updates) computations are at least SPACING_WINDOWS windows apart (mesh
// routes.go defers its recalculation the same way). Owns only the timer; the
// computation is the caller's.

import type { Clock, Timer } from '../../common/clock';

/** Under churn, computations are at least this many debounce windows apart (1 s with the default 100 ms). */
export const SPACING_WINDOWS = 10;

export class RouteScheduler {
  private timer: Timer | null = null;
  private lastRunMs = -Infinity;
  private cancelled = false;

  constructor(private readonly clock: Clock, private readonly debounceMs: number, private readonly compute: () => void) {}

  /** Something changed: compute once the window (and the spacing since the last run) has passed. */
  markDirty(): void {
    if (this.timer !== null || this.cancelled) return;
    const spacingLeft = this.lastRunMs + this.debounceMs * SPACING_WINDOWS - this.clock.now();
    this.timer = this.clock.setTimer(Math.max(this.debounceMs, spacingLeft), () => {
      this.timer = null;
      this.lastRunMs = this.clock.now();
      this.compute();
    });
  }

  cancel(): void {
    this.cancelled = true;
    this.timer?.cancel();
    this.timer = null;
  }
}
