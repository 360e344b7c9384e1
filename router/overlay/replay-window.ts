// Owns the anti-replay filter for the UDP sleeve, where datagrams may be lost,
// duplicated or reordered: it accepts each counter at most once, and only if it
// is recent. It is a bitmap ring in the style of RFC 6479 ("IPsec Anti-Replay
// Algorithm without Bit Shifting"): advancing the window clears whole blocks
// instead of shifting bits. Call accept() only after the datagram authenticated,
// or a forged counter could drag the window forward and lock out real traffic.
//
// Ring of RING_BLOCKS 32-bit blocks; bit (counter mod 32) of block
// ((counter / 32) mod RING_BLOCKS) records whether the counter was seen:
//
//   block:   0        1        2              63
//          +--------+--------+--------+ ... +--------+
//          |32 bits |32 bits |32 bits |     |32 bits |   one Int32Array, allocated once
//          +--------+--------+--------+ ... +--------+
//                      ^ block of `highest`; the blocks before it (wrapping)
//                        hold the older counters still inside the window
//
// The block holding `highest` may be only partly used, so one block is kept as
// slack and the window is (RING_BLOCKS - 1) * 32 = 2016 counters.
//
// Counters are plain numbers below 2^53 (no BigInt per packet). Bitwise
// operators convert to int32 modulo 2^32, which keeps the low bits exact for
// any integer below 2^53, so `x & mask` is a correct modulo here.
//
// Nothing here allocates after construction.

const BLOCK_SHIFT = 5;
const BLOCK_BITS = 1 << BLOCK_SHIFT;
/** Ring size in blocks; a power of two so the block index is a mask. */
export const RING_BLOCKS = 64;
const RING_MASK = RING_BLOCKS - 1;
/** How far behind the highest accepted counter a counter may still be accepted. */
export const WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS;
/**
 * Counters at or past this are refused. It sits one window-and-some below
 * 2^53 so every counter the filter handles, and every counter arithmetic on it,
 * stays an exact double (compare WireGuard's RejectAfterMessages,
 * 2^64 - 2^13 - 1, which also stops short of the counter's range by a
 * margin). The mesh rekeys long before (router/mesh/key-schedule.ts: on
 * time, and at a counter threshold of 2^40), and each new key starts its
 * counters, and a fresh window (router/overlay/sleeve-session.ts), at 0.
 */
export const REJECT_AFTER_COUNTER = 2 ** 53 - 2 ** 13;

export class ReplayWindow {
  /**
   * Int32, not Uint32: a word with bit 31 set reads as a small integer, not a
   * heap number in unoptimized code. Off the JS heap, as is the highest
   * counter's cell: the native lone-frame lane (native/lane.c) accepts
   * counters into this same state, by the same rules.
   */
  readonly ring = new Int32Array(new ArrayBuffer(RING_BLOCKS * 4));
  /** Highest counter accepted so far; 0 before any (counter 0 is still accepted once). */
  readonly highestCell = new Float64Array(new ArrayBuffer(8));

  /**
   * True if `counter` is new and recent enough, and records it; false for a
   * duplicate, a counter more than WINDOW_SIZE behind the highest seen, a
   * counter at or past REJECT_AFTER_COUNTER, or anything that is not a
   * non-negative integer. A refused counter leaves the state unchanged.
   */
  accept(counter: number): boolean {
    if (!Number.isInteger(counter) || counter < 0 || counter >= REJECT_AFTER_COUNTER) return false;
    const block = blockOf(counter);
    if (counter > this.highestCell[0]!) {
      // Moving forward: clear the blocks between the old highest's block and
      // the new one; they held counters a full ring older. Past a whole ring,
      // everything is stale, so clearing RING_BLOCKS blocks is enough.
      const current = blockOf(this.highestCell[0]!);
      let advance = block - current;
      if (advance > RING_BLOCKS) advance = RING_BLOCKS;
      for (let i = 1; i <= advance; i++) this.ring[(current + i) & RING_MASK] = 0;
      // Check-and-set below cannot fail for a counter above highest, so it is
      // safe to move highest now.
      this.highestCell[0] = counter;
    } else if (this.highestCell[0]! - counter > WINDOW_SIZE) {
      return false;
    }
    const index = block & RING_MASK;
    const bit = 1 << (counter & (BLOCK_BITS - 1));
    const word = this.ring[index]!;
    if ((word & bit) !== 0) return false;
    this.ring[index] = word | bit;
    return true;
  }

  /** What accept() would answer, without recording anything. */
  wouldAccept(counter: number): boolean {
    if (!Number.isInteger(counter) || counter < 0 || counter >= REJECT_AFTER_COUNTER) return false;
    if (counter > this.highestCell[0]!) return true;
    if (this.highestCell[0]! - counter > WINDOW_SIZE) return false;
    const word = this.ring[blockOf(counter) & RING_MASK]!;
    return (word & (1 << (counter & (BLOCK_BITS - 1)))) === 0;
  }

  /** Forgets everything, as for a new session key. */
  reset(): void {
    this.ring.fill(0);
    this.highestCell[0] = 0;
  }
}

/**
 * counter / BLOCK_BITS rounded down: a shift below 2^31 (no heap number for
 * the quotient in unoptimized code), a division above, not >>>, so that
 * counters above 2^32 stay exact.
 */
function blockOf(counter: number): number {
  return counter <= 0x7fffffff ? counter >> BLOCK_SHIFT : Math.floor(counter / BLOCK_BITS);
}
