// Where the time of one attach goes: named steps with their durations in
// milliseconds, logged at debug as one line when the attach ends (`attach
// steps`, fields `<step>_ms` and `total_ms`). scripts/bench-attach.ts reads
// these lines to show which step costs what (issue 14: under 50 ms of
// daemon-side work). It only measures: it must never change what an attach does.

import type { LogFields } from '../../common/logger';

export class AttachSteps {
  private readonly start: number;
  private last: number;
  private readonly steps = new Map<string, number>();

  constructor(private readonly now: () => number = () => performance.now()) {
    this.start = now();
    this.last = this.start;
  }

  /** Ends the step `name` now: its duration is the time since the previous mark (a repeated name adds up). */
  mark(name: string): void {
    const t = this.now();
    this.steps.set(name, (this.steps.get(name) ?? 0) + (t - this.last));
    this.last = t;
  }

  /** `<step>_ms` per step in order, and `total_ms`, rounded to 0.1 ms. */
  fields(): LogFields {
    const out: LogFields = {};
    for (const [name, ms] of this.steps) out[`${name}_ms`] = Math.round(ms * 10) / 10;
    out['total_ms'] = Math.round((this.now() - this.start) * 10) / 10;
    return out;
  }
}
