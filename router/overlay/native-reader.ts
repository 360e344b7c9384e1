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

  protected constructor(protected readonly native: WeaveNative, protected readonly handle: H) {}

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
