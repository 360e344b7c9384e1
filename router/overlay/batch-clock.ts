// The wall clock as the frame path reads it (overlay.ts): once per batch of
// the bridge or the underlay, forgotten when the batch ends and at every tick.
// Date.now() is past V8's small integers, so each reading handed to another
// function is a heap number of its own, and a frame used to make two or three
// (MAC learning on capture and on delivery, link liveness): megabytes a second
// of garbage in a bulk transfer, which V8 partly promotes, so the old space
// grew over a long one. MAC learning and link liveness need no finer time
// than a batch's.

import type { Clock } from '../../common/clock';

export class BatchClock {
  /**
   * Null (not NaN) between batches: a field that held null stays a tagged
   * slot, so the reading keeps the one box it came in instead of being
   * unboxed into the field and boxed again at every call it is passed to.
   */
  private wallMs: number | null = null;

  constructor(private readonly clock: Clock) {}

  /** The batch's wall-clock time, read at its first use. */
  now(): number {
    let t = this.wallMs;
    if (t === null) t = this.wallMs = this.clock.now();
    return t;
  }

  /** The batch ended (or a tick came): the next use reads the clock again. */
  endBatch(): void {
    this.wallMs = null;
  }
}
