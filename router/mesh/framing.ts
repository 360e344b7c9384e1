// Length-prefixed framing of control messages on a byte stream.
//
//   +----------------+---------------------------+
//   | length: u32 BE | payload (length bytes)    |
//   +----------------+---------------------------+
//
// The length is checked against a maximum before anything is buffered for it,
// so a hostile peer cannot make us allocate.

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

  constructor(private readonly maxPayloadBytes: number) {}

  /** Feeds bytes; returns the payloads completed by them. Throws RouterError('limit') on an oversize length. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
      if (len > this.maxPayloadBytes) throw RouterError.limit('control message length', len, this.maxPayloadBytes);
      if (this.buffered < 4 + len) break;
      const all = this.take(4 + len);
      out.push(all.subarray(4));
    }
    return out;
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
