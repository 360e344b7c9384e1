// The surrogate's memory of relayed gossip (router/mesh/recent-digests.ts):
// a message seen within the age is a repeat, and the memory holds at most its
// count, forgetting the oldest first, so a flood of distinct messages on an
// unknown channel cannot grow it.

import t from 'tap';
import { RecentDigests } from '../../router/mesh/recent-digests';

const msg = (i: number): Uint8Array => Uint8Array.of(i, i >> 8);

t.test('a repeat within the age is recognised; after it, not', async (t) => {
  const d = new RecentDigests(100, 10);
  t.notOk(d.checkAndRemember(msg(1), 0), 'first sight');
  t.ok(d.checkAndRemember(msg(1), 100), 'seen 100 ms ago');
  t.notOk(d.checkAndRemember(msg(1), 201), 'too long ago (remembered again at 100)');
});

t.test('a flood of distinct messages pushes out the oldest, never more than the count', async (t) => {
  const d = new RecentDigests(60_000, 3);
  for (let i = 0; i < 1000; i++) d.checkAndRemember(msg(i), i);
  t.notOk(d.checkAndRemember(msg(996), 1000), 'the fourth newest was forgotten');
  t.ok(d.checkAndRemember(msg(999), 1001), 'the newest is still known');
});
