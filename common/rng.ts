// Randomness as an injected dependency, so that gossip fan-out, retry jitter and
// simulations are reproducible from a seed. Not for key material: keys come
// from libsodium's CSPRNG.

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
}

export const systemRng: Rng = { next: () => Math.random() };

/** mulberry32: small, fast, good enough for jitter and sampling. */
export class SeededRng implements Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Integer in [0, n). */
export function randomInt(rng: Rng, n: number): number {
  return Math.floor(rng.next() * n);
}

/** Picks up to `count` distinct elements, uniformly. Does not modify `items`. */
export function sample<T>(rng: Rng, items: readonly T[], count: number): T[] {
  const copy = items.slice();
  const n = Math.min(count, copy.length);
  for (let i = 0; i < n; i++) {
    const j = i + randomInt(rng, copy.length - i);
    const tmp = copy[i]!;
    copy[i] = copy[j]!;
    copy[j] = tmp;
  }
  return copy.slice(0, n);
}
