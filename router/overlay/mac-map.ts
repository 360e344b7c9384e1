// A map keyed by six bytes (a MAC address, or a peer name, which has the same
// shape), for the frame path. A 48-bit key as one JS number is a heap number
// each time it is handed to a Map, so a lookup per frame would allocate; here
// the key is two 24-bit halves, small integers that never are: a map of maps,
// the outer one by the first three bytes (an OUI: few of them in any mesh).

/** The first three bytes at off as one small integer. */
function high(buf: Uint8Array, off: number): number {
  return (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
}

/** The last three. */
function low(buf: Uint8Array, off: number): number {
  return (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!;
}

const HALF = 0x1000000;

export class MacMap<V> {
  private readonly byHigh = new Map<number, Map<number, V>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The value for the six bytes at buf[off]. */
  get(buf: Uint8Array, off: number): V | undefined {
    return this.byHigh.get(high(buf, off))?.get(low(buf, off));
  }

  set(buf: Uint8Array, off: number, value: V): void {
    this.setHalves(high(buf, off), low(buf, off), value);
  }

  /** The value for a key given as readMac's 48-bit number (off the frame path). */
  getKey(key: number): V | undefined {
    return this.byHigh.get(Math.floor(key / HALF))?.get(key % HALF);
  }

  setKey(key: number, value: V): void {
    this.setHalves(Math.floor(key / HALF), key % HALF, value);
  }

  deleteKey(key: number): boolean {
    const hi = Math.floor(key / HALF);
    const inner = this.byHigh.get(hi);
    if (inner === undefined || !inner.delete(key % HALF)) return false;
    if (inner.size === 0) this.byHigh.delete(hi);
    this.count--;
    return true;
  }

  /** Every entry with its key as a 48-bit number; `f` may delete the entry it is given. */
  forEach(f: (value: V, key: number) => void): void {
    this.byHigh.forEach((inner, hi) => inner.forEach((value, lo) => f(value, hi * HALF + lo)));
  }

  clear(): void {
    this.byHigh.clear();
    this.count = 0;
  }

  private setHalves(hi: number, lo: number, value: V): void {
    let inner = this.byHigh.get(hi);
    if (inner === undefined) {
      inner = new Map();
      this.byHigh.set(hi, inner);
    }
    const before = inner.size;
    inner.set(lo, value);
    this.count += inner.size - before;
  }
}
