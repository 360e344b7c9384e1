import t from 'tap';
import { REJECT_AFTER_COUNTER, RING_BLOCKS, ReplayWindow, WINDOW_SIZE } from '../../router/overlay/replay-window';
import { SeededRng, randomInt } from '../../common/rng';

const W = WINDOW_SIZE;
const RING_BITS = RING_BLOCKS * 32;
const LIMIT = REJECT_AFTER_COUNTER;

t.test('window constants are what the comments promise', async (t) => {
  t.equal(W, 2016);
  t.equal(RING_BITS, 2048);
  t.ok(LIMIT < Number.MAX_SAFE_INTEGER - RING_BITS);
});

t.test('numbered edge cases, in sequence on one window', async (t) => {
  const H = W + 9;          // highest after the first jump
  const J = H + 3 * RING_BITS; // a jump past the whole ring, three times over
  // [counter, expected]; each step runs on the state the previous ones left.
  const table: Array<[number, boolean, string]> = [
    [0, true, 'first packet, counter 0'],
    [0, false, 'duplicate of the first'],
    [1, true, 'in order'],
    [1, false, 'duplicate'],
    [9, true, 'skip ahead'],
    [8, true, 'late but inside the window'],
    [7, true, 'late, filling the gap'],
    [7, false, 'duplicate late packet'],
    [H, true, 'jump so that 9 sits exactly WINDOW_SIZE behind'],
    [9, false, 'exactly at the window edge, already seen: still remembered'],
    [10, true, 'WINDOW_SIZE-1 behind, unseen: just inside'],
    [8, false, 'WINDOW_SIZE+1 behind: just outside'],
    [H, false, 'duplicate of the highest'],
    [H + 1, true, 'in order again'],
    [J, true, 'jump past the whole ring'],
    [H + 1, false, 'old highest, far outside'],
    [J - RING_BITS, false, 'same ring slot as J, one ring older'],
    [J - 1, true, 'just below the new highest'],
    [J - W, true, 'just inside after clearing the ring'],
    [J - W - 1, false, 'just outside after clearing the ring'],
    [J + 31, true, 'bit 31 of a block (the sign bit of an int32)'],
    [J + 32, true, 'first bit of the next block'],
    [J + 31, false, 'duplicate at bit 31'],
    [2 ** 32 + 5, true, 'above 2^32: block index is still exact'],
    [2 ** 32 + 5, false, 'duplicate above 2^32'],
    [2 ** 32 + 5 - 2 ** 32, false, 'same low 32 bits, far older'],
    [LIMIT - 2, true, 'just below the limit'],
    [LIMIT - 1, true, 'last counter allowed'],
    [LIMIT, false, 'at the limit'],
    [LIMIT + 1, false, 'past the limit'],
    [Number.MAX_SAFE_INTEGER, false, '2^53 - 1'],
    [LIMIT - 2, false, 'duplicate just below the limit'],
    [LIMIT - 3, true, 'still inside the window at the top'],
    [-1, false, 'negative'],
    [1.5, false, 'not an integer'],
    [Number.NaN, false, 'NaN'],
    [Number.POSITIVE_INFINITY, false, 'infinity'],
  ];
  const w = new ReplayWindow();
  table.forEach(([counter, expected, what], i) => {
    t.equal(w.accept(counter), expected, `${i + 1}. ${what} (${counter})`);
  });
});

t.test('reset forgets everything', async (t) => {
  const w = new ReplayWindow();
  t.ok(w.accept(0));
  t.ok(w.accept(100_000));
  t.notOk(w.accept(0));
  w.reset();
  t.ok(w.accept(0), 'counter 0 again after reset');
  t.ok(w.accept(1));
  t.notOk(w.accept(1));
});

/** The obvious, slow definition: remember every counter. */
class ReferenceWindow {
  private readonly seen = new Set<number>();
  private highest = 0;

  accept(counter: number): boolean {
    if (!Number.isInteger(counter) || counter < 0 || counter >= LIMIT) return false;
    if (counter <= this.highest && this.highest - counter > W) return false;
    if (this.seen.has(counter)) return false;
    this.seen.add(counter);
    if (counter > this.highest) this.highest = counter;
    return true;
  }
}

t.test('differential: ring against a Set-based reference on seeded random sequences', async (t) => {
  const starts = [0, 2 ** 32 - 3000, LIMIT - 40_000];
  let runs = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const rng = new SeededRng(seed);
    const fast = new ReplayWindow();
    const slow = new ReferenceWindow();
    let base = starts[seed % starts.length]!;
    const recent: number[] = [];
    let mismatch: string | null = null;
    for (let step = 0; step < 3000 && mismatch === null; step++) {
      const roll = rng.next();
      if (roll < 0.02) base += randomInt(rng, 3 * RING_BITS);  // big jump, sometimes past the ring
      else if (roll < 0.6) base += randomInt(rng, 4);          // mostly forward
      // Around the base: reordering up to a bit more than the window, some
      // ahead; one time in five, a replay of a recent counter.
      const counter = roll > 0.8 && recent.length > 0
        ? recent[randomInt(rng, recent.length)]!
        : base - randomInt(rng, W + 200) + randomInt(rng, 40);
      if (recent.length < 64) recent.push(counter); else recent[randomInt(rng, 64)] = counter;
      const got = fast.accept(counter);
      const want = slow.accept(counter);
      if (got !== want) mismatch = `seed ${seed} step ${step} counter ${counter}: ring says ${got}, reference says ${want}`;
      runs++;
    }
    t.equal(mismatch, null, `seed ${seed}`);
  }
  t.ok(runs > 100_000);
});
