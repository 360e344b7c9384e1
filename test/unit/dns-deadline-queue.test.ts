// dns/deadline-queue.ts: many waiters of one delay under one timer. Each
// expires once, in the order added, not before its time; a removed waiter
// never expires and leaves the others on time; a waiter added from expired()
// (the next upstream) gets a full delay; clear() expires nobody and leaves no
// timer behind (the test would hang on one). Real timers, short delays.

import t from 'tap';
import type { DeadlineWaiter } from '../../dns/deadline-queue';
import { DeadlineQueue } from '../../dns/deadline-queue';

const DELAY = 40;

class Waiter implements DeadlineWaiter {
  deadlinePrev: DeadlineWaiter | null = null;
  deadlineNext: DeadlineWaiter | null = null;
  deadlineAt = -1;
  expiredAt: number[] = [];
  constructor(readonly name: string, private readonly log: string[], private readonly onExpired: () => void = () => undefined) {}
  expired(): void {
    this.expiredAt.push(performance.now());
    this.log.push(this.name);
    this.onExpired();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('expiry in order, on time, once; removed waiters never expire', async (t) => {
  const q = new DeadlineQueue(DELAY);
  const log: string[] = [];
  const a = new Waiter('a', log);
  const b = new Waiter('b', log);
  const c = new Waiter('c', log);
  const d = new Waiter('d', log);
  const start = performance.now();
  q.add(a);
  q.add(b);
  await sleep(15);
  q.add(c);
  q.add(d);
  q.remove(a);
  q.remove(d);
  q.remove(d);
  await sleep(DELAY * 3);
  t.same(log, ['b', 'c']);
  t.ok(b.expiredAt[0]! - start >= DELAY - 1, 'b not early');
  t.ok(c.expiredAt[0]! - start >= DELAY + 14, 'c not early: its own deadline, not b\'s');
  t.equal(a.deadlineAt, -1);
  q.remove(b);
  t.same(log, ['b', 'c'], 'removing an expired waiter is a no-op');
});

t.test('a waiter added again from expired() waits a full delay', async (t) => {
  const q = new DeadlineQueue(DELAY);
  const log: string[] = [];
  let again = true;
  const w: Waiter = new Waiter('w', log, () => {
    if (again) q.add(w);
    again = false;
  });
  q.add(w);
  await sleep(DELAY * 4);
  t.same(log, ['w', 'w']);
  t.ok(w.expiredAt[1]! - w.expiredAt[0]! >= DELAY - 1, 'the second attempt had its full time');
});

t.test('clear(): nobody expires and no timer is left', async (t) => {
  const q = new DeadlineQueue(DELAY);
  const log: string[] = [];
  for (let i = 0; i < 5; i++) q.add(new Waiter(`w${i}`, log));
  q.clear();
  await sleep(DELAY * 2);
  t.same(log, []);
});

t.test('a waiter can be queued again after removal', async (t) => {
  const q = new DeadlineQueue(DELAY);
  const log: string[] = [];
  const w = new Waiter('w', log);
  q.add(w);
  q.remove(w);
  q.add(w);
  await sleep(DELAY * 2.5);
  t.same(log, ['w']);
});
