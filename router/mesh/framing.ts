// Length-prefixed framing of control messages on a byte stream.
//
//   +----------------+---------------------------+
//   | length: u32 BE | payload (length bytes)    |
//   +----------------+---------------------------+
//
// The length is checked against the current maximum before anything is
// buffered for it, so a hostile peer cannot make us allocate: while a frame
// is incomplete, only its 4 + max bytes (in the chunks they arrived in) are
// held. The maximum can change
// between frames (small before the handshake completes, larger after), so
// payloads are taken one at a time with next() and the caller raises the
// limit at the exact frame where the peer becomes authenticated.

import { RouterError } from './errors';

export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;

  constructor(private maxPayloadBytes: number) {}

  /** The largest payload accepted from the next frame on (e.g. once the peer has authenticated). */
  setMaxPayloadBytes(max: number): void {
    this.maxPayloadBytes = max;
  }

  /** Queues bytes; take the payloads they complete with next(). */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * The next complete payload, or null until more bytes arrive. Throws
   * RouterError('limit') on a length over the maximum, before buffering for it;
   * the decoder is then unusable (the stream cannot be resynchronised).
   */
  next(): Uint8Array | null {
    if (this.buffered < 4) return null;
    const head = this.peek(4);
    const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
    if (len > this.maxPayloadBytes) {
      this.chunks = [];
      this.buffered = 0;
      throw RouterError.limit('control message length', len, this.maxPayloadBytes);
    }
    if (this.buffered < 4 + len) return null;
    return this.take(4 + len).subarray(4);
  }

  private peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    return this.concat(n, false);
  }

  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length === n) {
      this.chunks.shift();
      this.buffered -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    return this.concat(n, true);
  }

  private concat(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    let i = 0;
    while (filled < n) {
      const c = this.chunks[i]!;
      const use = Math.min(c.length, n - filled);
      out.set(c.subarray(0, use), filled);
      filled += use;
      if (consume) {
        if (use === c.length) { this.chunks.shift(); } else { this.chunks[0] = c.subarray(use); }
      } else {
        i++;
      }
    }
    if (consume) this.buffered -= n;
    return out;
  }
}
