// scripts/bench-memory's "flat" figure: the least-squares slope of RSS
// samples over a transfer, per minute.

import t from 'tap';
import { slopePerMinute } from '../../scripts/bench-memory';

t.test('the slope of RSS samples, per minute', async (t) => {
  const flat = Array.from({ length: 10 }, (_, i) => ({ t: i * 5, mb: 60 }));
  t.equal(slopePerMinute(flat), 0, 'flat');
  const growing = Array.from({ length: 21 }, (_, i) => ({ t: i * 30, mb: 60 + i }));
  t.equal(slopePerMinute(growing), 2, '1 MB every 30 s is 2 MB/min');
  // Noise around a flat line: a spike in the middle does not make a trend.
  const spike = flat.map((s, i) => (i === 5 ? { ...s, mb: 70 } : s));
  t.ok(Math.abs(slopePerMinute(spike)) < 1, 'a mid-run spike leaves the slope near 0');
  t.ok(Number.isNaN(slopePerMinute([{ t: 0, mb: 60 }])), 'one sample has no slope');
  t.ok(Number.isNaN(slopePerMinute([{ t: 3, mb: 60 }, { t: 3, mb: 61 }])), 'samples at one instant have no slope');
});
