import t from 'tap';
import { ManualClock } from '../../common/clock';
import { SeededRng, sample } from '../../common/rng';

t.test('manual clock fires timers in due order, ties in set order', async (t) => {
  const clock = new ManualClock(0);
  const fired: string[] = [];
  clock.setTimer(20, () => fired.push('b'));
  clock.setTimer(10, () => fired.push('a'));
  clock.setTimer(20, () => fired.push('c'));
  const cancelled = clock.setTimer(15, () => fired.push('x'));
  cancelled.cancel();
  clock.advance(19);
  t.same(fired, ['a']);
  t.equal(clock.now(), 19);
  clock.advance(1);
  t.same(fired, ['a', 'b', 'c']);
});

t.test('timers set while firing run within the same advance when due', async (t) => {
  const clock = new ManualClock(0);
  const at: number[] = [];
  clock.setTimer(5, () => { at.push(clock.now()); clock.setTimer(5, () => at.push(clock.now())); });
  clock.advance(100);
  t.same(at, [5, 10]);
});

t.test('seeded rng is reproducible and sample picks distinct items', async (t) => {
  const a = new SeededRng(42);
  const b = new SeededRng(42);
  for (let i = 0; i < 10; i++) t.equal(a.next(), b.next());
  const picked = sample(new SeededRng(1), [1, 2, 3, 4, 5], 3);
  t.equal(new Set(picked).size, 3);
  t.same(sample(new SeededRng(1), [1, 2], 5).sort(), [1, 2]);
});
