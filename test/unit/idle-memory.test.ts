// When the data plane gives its burst-sized buffers back (router/overlay/idle-memory.ts),
// and how the addon frees pages (native/memory.c). Which reassembly slots may
// go is test/unit/sleeve-segments.test.ts's.

import t from 'tap';
import { BUSY_BYTES_PER_TICK, IdleMemory } from '../../router/overlay/idle-memory';
import { loadNative } from '../../router/overlay/native';

const QUIET_MS = 20_000;
const TICK_MS = 1_000;

t.test('release runs once per burst, after the sleeve has been quiet for quietMs', async (t) => {
  let releases = 0;
  const idle = new IdleMemory(QUIET_MS, () => { releases++; });
  let now = 0;
  let bytes = 0;
  const tick = (moved: number): boolean => { now += TICK_MS; bytes += moved; return idle.tick(now, bytes); };
  for (let i = 0; i < 60; i++) tick(200);
  t.equal(releases, 0, 'a fresh router that only carried pings releases nothing');
  for (let i = 0; i < 5; i++) tick(50 * BUSY_BYTES_PER_TICK);
  const burstEnd = now;
  while (!tick(200)) t.ok(now - burstEnd < QUIET_MS + 2 * TICK_MS, 'not before quietMs');
  t.equal(releases, 1, 'released after the burst');
  t.ok(now - burstEnd >= QUIET_MS, `released ${now - burstEnd} ms after the burst`);
  for (let i = 0; i < 100; i++) tick(200);
  t.equal(releases, 1, 'not again while it stays quiet');
  tick(2 * BUSY_BYTES_PER_TICK);
  for (let i = 0; i < 10; i++) tick(0);
  tick(2 * BUSY_BYTES_PER_TICK);
  const second = now;
  while (!tick(0)) { /* quiet */ }
  t.equal(releases, 2, 'a later burst is released again');
  t.ok(now - second >= QUIET_MS, 'counted from the last busy tick of that burst');
  t.notOk(tick(BUSY_BYTES_PER_TICK), 'exactly the threshold is not busy');
  for (let i = 0; i < 40; i++) tick(BUSY_BYTES_PER_TICK);
  t.equal(releases, 2, 'traffic at the threshold never counts as a burst');
});

t.test('releasePages frees the whole pages inside the range and nothing around it', async (t) => {
  const native = loadNative();
  const buf = Buffer.alloc(1 << 20, 0xab);
  const off = 1000;
  const len = 600_000;
  const freed = native.releasePages(buf, off, len);
  t.ok(freed > 0 && freed % 4096 === 0, `freed ${freed} bytes, whole pages`);
  t.ok(freed <= len && freed > len - 2 * 4096, 'about the range');
  let zeros = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0) {
      zeros++;
      if (i < off || i >= off + len) { t.fail(`byte ${i} outside the range was cleared`); break; }
    }
  }
  t.equal(zeros, freed, 'exactly the freed pages read back as zeros');
  buf.fill(0x5a);
  t.equal(buf.readUInt32LE(500_000), 0x5a5a5a5a, 'freed pages take writes again');
  t.equal(native.releasePages(buf, 10, 100), 0, 'a range inside one page frees nothing');
  t.equal(buf[50], 0x5a, 'and clears nothing');
  t.equal(native.releasePages(buf, buf.length, 0), 0, 'an empty range at the end is fine');
  t.throws(() => native.releasePages(buf, 1, buf.length), RangeError, 'a range past the end is refused');
  t.throws(() => native.releasePages(buf, -1, 10), RangeError, 'a negative offset is refused');
  t.throws(() => native.releasePages(new Uint16Array(8) as unknown as Uint8Array, 0, 1), TypeError, 'only byte buffers');
  t.throws(() => (native.releasePages as (...a: unknown[]) => number)(buf, 0), TypeError, 'all three arguments');
  t.type(native.trimHeap(), 'boolean', 'trimHeap answers whether it released anything');
});
