// FramePort over the native TAP device: one callback per batch of frames read
// from the bridge, frames written back one at a time (the kernel takes each
// TAP write as one frame anyway).

import type { FramePort } from './ports';
import type { TapDevice } from './tap-device';

export class TapPort implements FramePort {
  constructor(private readonly tap: TapDevice) {}

  start(onFrame: (buf: Buffer, off: number, len: number) => void, onBatchEnd: () => void): void {
    this.tap.onFrames((slab, offsets, lengths, count) => {
      for (let i = 0; i < count; i++) onFrame(slab, offsets[i]!, lengths[i]!);
      onBatchEnd();
    });
  }

  /** Delivers a batch of what waits in the TAP now, as start()'s callbacks (from outside its own batches). */
  drainNow(): void {
    this.tap.drainNow();
  }

  write(buf: Buffer, off: number, len: number): void {
    this.tap.writeFrame(buf, off, len);
  }

  releaseIdle(keepBytes: number): number {
    return this.tap.releaseIdle(keepBytes);
  }

  close(): void {
    this.tap.close();
  }
}
