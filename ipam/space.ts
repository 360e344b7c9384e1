// Free space inside the spans a peer owns: which offsets are in use (a sorted
// set), which can be handed out at all, the first free one, and the runs of
// free ones (what a peer donates). Pure functions over plain values; the ring
// says what we own, the allocator says what is used, this file combines them.
//
// An offset is usable when it is neither the range's network or broadcast
// address, nor (for a subnet of at least 4 addresses) the subnet's own.

import type { Span } from './address-range';

/** A sorted set of integers with range counting; insertion is O(n) but n is the number of containers on one peer. */
export class SortedOffsets {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  /** Index of the first item >= x. */
  lowerBound(x: number): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.items[mid]! < x) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  has(x: number): boolean {
    return this.items[this.lowerBound(x)] === x;
  }

  add(x: number): boolean {
    const i = this.lowerBound(x);
    if (this.items[i] === x) return false;
    this.items.splice(i, 0, x);
    return true;
  }

  delete(x: number): boolean {
    const i = this.lowerBound(x);
    if (this.items[i] !== x) return false;
    this.items.splice(i, 1);
    return true;
  }

  countIn(span: Span): number {
    return this.lowerBound(span.end) - this.lowerBound(span.start);
  }

  at(i: number): number | undefined {
    return this.items[i];
  }
}

/** Where an allocation may land: a span of the range, and the range's size. */
export interface Placement {
  rangeSize: number;
  within: Span;
}

export function isUsable(offset: number, p: Placement): boolean {
  if (offset <= 0 || offset >= p.rangeSize - 1) return false;
  if (offset < p.within.start || offset >= p.within.end) return false;
  if (p.within.end - p.within.start >= 4 && (offset === p.within.start || offset === p.within.end - 1)) return false;
  return true;
}

function intersect(a: Span, b: Span): Span | null {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return start < end ? { start, end } : null;
}

/** The offsets of a placement that are never handed out (at most four). */
function unusableOffsets(p: Placement): number[] {
  const out = [0, p.rangeSize - 1];
  if (p.within.end - p.within.start >= 4) out.push(p.within.start, p.within.end - 1);
  return [...new Set(out)].sort((a, b) => a - b);
}

/**
 * Calls `visit` with each maximal run of usable, unused offsets inside
 * `owned` and `p.within`, in order; stops when it returns false. The runs are
 * the gaps between blocked offsets (used ones, plus the few unusable ones), so
 * the cost is the number of used offsets in the span, not its size.
 */
export function forEachFreeRun(owned: readonly Span[], used: SortedOffsets, p: Placement, visit: (run: Span) => boolean): void {
  const unusable = unusableOffsets(p);
  for (const o of owned) {
    const s = intersect(o, p.within);
    if (s === null) continue;
    let k = used.lowerBound(s.start);
    const kEnd = used.lowerBound(s.end);
    let u = 0;
    let cursor = s.start;
    for (;;) {
      while (u < unusable.length && unusable[u]! < cursor) u++;
      const nextUsed = k < kEnd ? used.at(k)! : s.end;
      const nextUnusable = u < unusable.length && unusable[u]! < s.end ? unusable[u]! : s.end;
      const blocked = Math.min(nextUsed, nextUnusable);
      if (blocked > cursor && !visit({ start: cursor, end: blocked })) return;
      if (blocked >= s.end) break;
      if (blocked === nextUsed) k++;
      cursor = blocked + 1;
    }
  }
}

/** The lowest free offset we may hand out, or null when our space there is full. */
export function firstFree(owned: readonly Span[], used: SortedOffsets, p: Placement): number | null {
  let found: number | null = null;
  forEachFreeRun(owned, used, p, (run) => { found = run.start; return false; });
  return found;
}

/** The longest free run (the first one among equals), or null. */
export function largestFreeRun(owned: readonly Span[], used: SortedOffsets, p: Placement): Span | null {
  let best: Span | null = null;
  forEachFreeRun(owned, used, p, (run) => {
    if (best === null || run.end - run.start > best.end - best.start) best = run;
    return true;
  });
  return best;
}

/** Free offsets in `owned` within the placement. */
export function freeCount(owned: readonly Span[], used: SortedOffsets, p: Placement): number {
  let n = 0;
  forEachFreeRun(owned, used, p, (run) => { n += run.end - run.start; return true; });
  return n;
}
