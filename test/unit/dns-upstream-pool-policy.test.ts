// The pool policy of the DNS forwarder's upstream sockets, with a hand-driven
// clock and scripted randomness: the pool fills before any socket is shared,
// queries then go to the socket the random draw names, and a socket is retired
// after its query budget or its age, whichever comes first, and replaced. And
// the buffered CSPRNG behind ids, casing and picks hands out each byte once.

import t from 'tap';
import type { PoolSlot } from '../../dns/upstream-pool-policy';
import { PoolPolicy } from '../../dns/upstream-pool-policy';
import { RandomBuffer } from '../../dns/random-buffer';

interface S extends PoolSlot { name: string }

function setup(opts = { size: 3, maxQueries: 4, maxAgeMs: 1000 }): { p: PoolPolicy<S>; clock: { t: number }; draws: number[]; open: (name: string) => S } {
  const clock = { t: 10_000 };
  const draws: number[] = [];
  const p = new PoolPolicy<S>(opts, () => clock.t, (n) => {
    const d = draws.shift() ?? 0;
    if (d >= n) throw new Error(`draw ${d} out of range ${n}`);
    return d;
  });
  const open = (name: string): S => {
    const s: S = { name, openedAt: clock.t, queries: 0, retired: false };
    p.add(s);
    return s;
  };
  return { p, clock, draws, open };
}

t.test('fills the pool first, then spreads by the random draw', async (t) => {
  const { p, draws, open } = setup();
  for (const name of ['a', 'b', 'c']) {
    t.equal(p.pick().slot, null, `open a socket while the pool is short (${name})`);
    p.used(open(name));
  }
  draws.push(2, 0, 1);
  t.equal(p.pick().slot?.name, 'c');
  t.equal(p.pick().slot?.name, 'a');
  t.equal(p.pick().slot?.name, 'b');
});

t.test('retired after maxQueries: the query that spends it still counts, the next opens a replacement', async (t) => {
  const { p, open } = setup({ size: 1, maxQueries: 3, maxAgeMs: 1000 });
  const a = open('a');
  t.equal(p.used(a), false);
  t.equal(p.used(a), false);
  t.equal(p.used(a), true, 'the third query spends it');
  t.ok(a.retired);
  t.equal(p.liveSlots().length, 0);
  t.equal(p.pick().slot, null, 'a new socket is needed');
  t.equal(p.used(a), false, 'a late count on a retired socket changes nothing');
});

t.test('retired by age, whichever comes first', async (t) => {
  const { p, clock, open } = setup({ size: 2, maxQueries: 100, maxAgeMs: 1000 });
  const a = open('a');
  clock.t += 500;
  const b = open('b');
  clock.t += 499;
  t.same(p.retireSpent(), [], 'neither is old enough at 999 ms');
  clock.t += 1;
  const { slot, retired } = p.pick();
  t.same(retired.map((s) => s.name), ['a'], 'a is retired at 1000 ms, on the next pick');
  t.equal(slot, null, 'and the short pool opens a replacement');
  t.notOk(b.retired);
  t.ok(a.retired);
  clock.t += 500;
  t.same(p.retireSpent().map((s) => s.name), ['b']);
  t.equal(p.used(a), false);
});

t.test('retire() takes a socket out of service at once (age timer, error) and is idempotent', async (t) => {
  const { p, draws, open } = setup({ size: 2, maxQueries: 100, maxAgeMs: 1000 });
  const a = open('a');
  open('b');
  p.retire(a);
  p.retire(a);
  t.same(p.liveSlots().map((s) => s.name), ['b']);
  t.equal(p.pick().slot, null, 'one short: open another');
  open('c');
  draws.push(0, 1);
  t.same([p.pick().slot?.name, p.pick().slot?.name], ['b', 'c'], 'the retired one is never picked');
  t.equal(p.lifetimeMs(), 1000);
});

t.test('rejects a policy that could never hand out a socket', async (t) => {
  const now = (): number => 0;
  const rnd = (): number => 0;
  t.throws(() => new PoolPolicy<S>({ size: 0, maxQueries: 1, maxAgeMs: 1 }, now, rnd));
  t.throws(() => new PoolPolicy<S>({ size: 1, maxQueries: 0, maxAgeMs: 1 }, now, rnd));
  t.throws(() => new PoolPolicy<S>({ size: 1, maxQueries: 1, maxAgeMs: 0 }, now, rnd));
  t.throws(() => new PoolPolicy<S>({ size: Number.NaN, maxQueries: 1, maxAgeMs: 1 }, now, rnd));
});

t.test('RandomBuffer: every byte handed out once, across refills; int() without modulo bias', async (t) => {
  let next = 0;
  let fills = 0;
  // A counting "CSPRNG" makes reuse visible: each byte value is its position in the stream.
  const counting = (b: Uint8Array): void => {
    fills++;
    for (let i = 0; i < b.length; i++) b[i] = next++ & 0xff;
  };
  const r = new RandomBuffer(counting, 8);
  t.same([...r.bytes(5)], [0, 1, 2, 3, 4]);
  t.same([...r.bytes(5)], [8, 9, 10, 11, 12], 'not enough left: a refill, the rest of the old buffer skipped, never reused');
  t.equal(fills, 2);
  t.equal(r.bytes(20).length, 20, 'more than the buffer: filled directly');
  const ints = new RandomBuffer((b) => b.set([0xff, 0xff, 0x00, 0x07, 0x00, 0x02, 0, 0]), 8);
  t.equal(ints.int(3), 7 % 3, '0xffff is past the last whole multiple of 3 and is drawn again');
  t.equal(ints.int(3), 2);
  t.equal(new RandomBuffer().int(1), 0);
  for (const bad of [0, -1, 1.5, 0x10001, Number.NaN]) t.throws(() => new RandomBuffer().int(bad), `int(${bad}) refused`);
  const sys = new RandomBuffer();
  const seen = new Set(Array.from({ length: 2000 }, () => sys.int(0x10000)));
  t.ok(seen.size > 1900, `the system CSPRNG: ${seen.size} distinct of 2000 16-bit draws`);
});
