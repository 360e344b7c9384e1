// A token bucket on an injected clock: at most `capacity` tokens, one more
// every `tokenIntervalMs` (the idea of weaveworks/mesh token_bucket.go, which
// paces connection attempts; here it paces gossip per connection). It keeps a
// single number, the mint time of the oldest unspent token, so it needs no
// timer: whoever holds it asks when the next token is due and sets its own.
// Pure: times are passed in, it never reads a clock.

export class TokenBucket {
  /** Mint time of the oldest unspent token; tokens minted before now - capacity*interval are lost (the bucket was full). */
  private oldestUnspentMs: number;

  constructor(readonly capacity: number, readonly tokenIntervalMs: number, nowMs: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`token bucket capacity must be a positive integer, got ${capacity}`);
    if (!(tokenIntervalMs > 0)) throw new RangeError(`token interval must be positive, got ${tokenIntervalMs}`);
    this.oldestUnspentMs = nowMs - capacity * tokenIntervalMs;
  }

  /** Tokens available at `nowMs`, at most capacity. */
  available(nowMs: number): number {
    this.clampToCapacity(nowMs);
    return Math.max(0, Math.floor((nowMs - this.oldestUnspentMs) / this.tokenIntervalMs));
  }

  /** Spends a token if one is available at `nowMs`; false (nothing spent) otherwise. */
  tryTake(nowMs: number): boolean {
    if (this.available(nowMs) < 1) return false;
    this.oldestUnspentMs += this.tokenIntervalMs;
    return true;
  }

  /** Milliseconds from `nowMs` until a token is available (0 when one is). */
  msUntilToken(nowMs: number): number {
    this.clampToCapacity(nowMs);
    return Math.max(0, this.oldestUnspentMs + this.tokenIntervalMs - nowMs);
  }

  private clampToCapacity(nowMs: number): void {
    const full = nowMs - this.capacity * this.tokenIntervalMs;
    if (this.oldestUnspentMs < full) this.oldestUnspentMs = full;
  }
}
