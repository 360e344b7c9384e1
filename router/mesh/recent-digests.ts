// Remembers digests of messages recently relayed on channels we have no
// handler for, so a surrogate does not pass the same update round and round
// (mesh surrogate_gossiper.go). Bounded by age and by count; ages on its
// owner's clock, it owns no timer.

import { createHash } from 'node:crypto';

export class RecentDigests {
  private readonly seen = new Map<string, number>();

  constructor(private readonly maxAgeMs: number, private readonly maxCount: number) {}

  /** True when `bytes` was seen within maxAgeMs; records it either way. */
  checkAndRemember(bytes: Uint8Array, nowMs: number): boolean {
    const digest = createHash('sha256').update(bytes).digest('base64');
    const at = this.seen.get(digest);
    if (at !== undefined && nowMs - at <= this.maxAgeMs) return true;
    this.seen.delete(digest);
    this.seen.set(digest, nowMs);
    this.prune(nowMs);
    return false;
  }

  private prune(nowMs: number): void {
    // Map iteration is insertion order, so the oldest come first.
    for (const [digest, at] of this.seen) {
      if (this.seen.size <= this.maxCount && nowMs - at <= this.maxAgeMs) break;
      this.seen.delete(digest);
    }
  }
}
