// CSPRNG bytes for the forwarder's ids, 0x20 casing and socket picks, drawn
// from the kernel a few kilobytes at a time: one crypto.randomFillSync per
// query (randomInt plus randomBytes) was ~12% of forwarding time in a profile.
// Every byte comes from the CSPRNG and is handed out once; buffering them in
// our own memory exposes nothing an attacker who can read that memory would
// not have anyway.

import { randomFillSync } from 'node:crypto';

const DEFAULT_BYTES = 4096;

export class RandomBuffer {
  private readonly buf: Uint8Array;
  private pos: number;

  constructor(private readonly fill: (b: Uint8Array) => void = (b) => randomFillSync(b), size = DEFAULT_BYTES) {
    this.buf = new Uint8Array(size);
    this.pos = size;
  }

  /** n fresh random bytes (a copy: callers may keep it). */
  bytes(n: number): Uint8Array {
    if (n > this.buf.length) {
      const big = new Uint8Array(n);
      this.fill(big);
      return big;
    }
    if (this.pos + n > this.buf.length) this.refill();
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A uniform integer in [0, n), 1 <= n <= 65536 (rejection sampling: no modulo bias). */
  int(n: number): number {
    if (!(Number.isInteger(n) && n >= 1 && n <= 0x10000)) throw new Error(`random int range ${n} out of [1, 65536]`);
    const limit = 0x10000 - (0x10000 % n);
    for (;;) {
      if (this.pos + 2 > this.buf.length) this.refill();
      const v = ((this.buf[this.pos] as number) << 8) | (this.buf[this.pos + 1] as number);
      this.pos += 2;
      if (v < limit) return v % n;
    }
  }

  private refill(): void {
    this.fill(this.buf);
    this.pos = 0;
  }
}
