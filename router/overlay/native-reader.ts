// What the addon's two readers (TAP device, batched UDP socket) share: the
// lifecycle of one native handle with a readiness-driven reader on it, and
// how a reader that stopped for good reports it.

import { RouterError } from '../mesh/errors';
import type { NativeHandle, NativeStats, WeaveNative } from './native';

export type ReaderErrorHandler = (err: RouterError) => void;

export abstract class NativeReader<H extends NativeHandle> {
  protected reading = false;
  protected isClosed = false;
  private errorHandler: ReaderErrorHandler | null = null;

  /** The read slab and its slot offsets, as given to readStart. */
  abstract readonly slab: Buffer;
  abstract readonly offsets: Int32Array;

  protected constructor(protected readonly native: WeaveNative, protected readonly handle: H) {}

  /**
   * Gives the read slab's pages back to the kernel (native/memory.c), all but
   * the first slot's first keepBytes, where a lone packet lands; returns the
   * bytes freed. A burst makes the whole slab resident, an idle reader needs
   * only that much of it. Never from inside the batch handler: the pages
   * read back as zeros.
   */
  releaseIdle(keepBytes: number): number {
    return this.releaseFrom(this.slab, this.offsets[0]! + keepBytes);
  }

  /** Frees the whole pages of buf from byte `from` on (a buffer of the owner's, e.g. a send slab); bytes freed. */
  releaseFrom(buf: Buffer, from: number): number {
    if (this.isClosed) return 0;
    const keep = Math.min(buf.length, from);
    return this.native.releasePages(buf, keep, buf.length - keep);
  }

  /** memmove of src[srcOff, +len) to dst[dstOff] by the addon: no Uint8Array view per call, as Buffer.copy makes in Node 20. */
  copyBytes(dst: Buffer, dstOff: number, src: Buffer, srcOff: number, len: number): void {
    this.native.copyBytes(dst, dstOff, src, srcOff, len);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Unrecoverable read failures; without a handler they are thrown as uncaught exceptions. */
  onError(handler: ReaderErrorHandler): void {
    this.errorHandler = handler;
  }

  /** Stops reading (backpressure); the kernel queues what it can, then drops. */
  pause(): void {
    if (!this.isClosed) this.native.readPause(this.handle);
  }

  resume(): void {
    if (!this.isClosed) this.native.readResume(this.handle);
  }

  /** Whether an active reader keeps the process alive (it does by default). */
  ref(): void {
    if (!this.isClosed) this.native.setRef(this.handle, true);
  }

  unref(): void {
    if (!this.isClosed) this.native.setRef(this.handle, false);
  }

  /** Idempotent. Safe inside the batch handler; no batch is delivered after it. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reading = false;
    this.native.close(this.handle);
  }

  stats(): NativeStats {
    return this.native.stats(this.handle);
  }

  /** After a batch: a non-zero errno means the reader stopped for good. */
  protected reportStopped(errno: number, what: string): void {
    if (errno === 0 || this.isClosed) return;
    const err = new RouterError('io', `${what}: ${this.native.describeErrno(errno)}`);
    if (this.errorHandler === null) throw err;
    this.errorHandler(err);
  }
}
