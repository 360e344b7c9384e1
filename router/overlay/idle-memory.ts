// When to give the data plane's burst-sized buffers back to the kernel. The
// TAP and UDP slabs and the send stage hold 64 slots of 64 KiB each (~13 MB
// together); one bulk transfer makes them resident, and an idle router then
// kept ~10 MB it never touched again (RSS 71 MB idle after a transfer,
// against 56 MB before any). After a burst, once the sleeve has been quiet
// for a while, the owner frees every page but the few where a lone frame
// lands (native/memory.c), and trims malloc's heap. A burst that comes
// later only faults its pages back in (a minor fault per 4 KiB, ~1,000 per
// slab), so a wrong guess costs microseconds, never a frame.
//
// IdleMemory is pure: driven by the overlay's probe tick with the bytes it
// has moved so far (over UDP and the TCP fallback). releaseBurstBuffers is
// what the overlay then does, through its ports and the addon's calls.

import type { SegmentReassembler } from './segment-reassembly';

/** Bytes per tick above which the sleeve counts as busy: a ping a second is ~200, a bulk flow megabytes. */
export const BUSY_BYTES_PER_TICK = 256 * 1024;

export class IdleMemory {
  private lastBytes = 0;
  /** A burst happened since the last release: buffers may be resident. */
  private dirty = false;
  private lastBusyMs = 0;

  /** quietMs: how long the sleeve stays below BUSY_BYTES_PER_TICK per tick after a burst before release() runs. */
  constructor(private readonly quietMs: number, private readonly release: () => void) {}

  /** Called every probe tick with the overlay's bytes sent plus received so far; true when it released. */
  tick(nowMs: number, bytesMoved: number): boolean {
    const moved = bytesMoved - this.lastBytes;
    this.lastBytes = bytesMoved;
    if (moved > BUSY_BYTES_PER_TICK) {
      this.dirty = true;
      this.lastBusyMs = nowMs;
      return false;
    }
    if (!this.dirty || nowMs - this.lastBusyMs < this.quietMs) return false;
    this.dirty = false;
    this.release();
    return true;
  }
}

/** What an idle port keeps of its buffers: where a lone frame (a jumbo one included) lands. */
export const LONE_FRAME_BYTES = 10 * 1024;

/** The addon's releasePages and trimHeap (native/memory.c). */
export interface PageRelease {
  releasePages(buf: Buffer, off: number, len: number): number;
  trimHeap(): void;
}

/**
 * Frees the burst buffers of a quiet overlay: its ports' (all but where a
 * lone frame lands), the reassembly slots without a live partial message,
 * then malloc's free pages. Returns the bytes freed.
 */
export function releaseBurstBuffers(
  ports: readonly { releaseIdle?(keepBytes: number): number }[], reassembler: SegmentReassembler, memory: PageRelease | null, nowMs: number,
): number {
  let freed = 0;
  for (const p of ports) freed += p.releaseIdle?.(LONE_FRAME_BYTES) ?? 0;
  if (memory !== null) {
    freed += reassembler.releaseIdle(nowMs, (buf, off, len) => memory.releasePages(buf, off, len));
    memory.trimHeap();
  }
  return freed;
}
