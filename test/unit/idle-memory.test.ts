// When the data plane gives its burst-sized buffers back (router/overlay/idle-memory.ts),
// how the addon frees pages (native/memory.c), and the Overlay's part: two
// overlays on in-memory ports and a manual clock release their ports' buffers,
// the reassembly pool and malloc's heap once after a burst over UDP, and
// again after one over the TCP fallback, and after one the native lane carried
// alone (JS saw none of its frames). Which reassembly slots may go is
// test/unit/sleeve-segments.test.ts's.

import t from 'tap';
import { BUSY_BYTES_PER_TICK, IdleMemory } from '../../router/overlay/idle-memory';
import { loadNative } from '../../router/overlay/native';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { MSG_FRAME } from '../../router/mesh/protocol';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import type { FramePort, LoneFrameLane } from '../../router/overlay/ports';
import type { LaneStats } from '../../router/overlay/native';
import { pairPorts } from './pair-port';
import { VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';

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

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const HOST: Record<string, string> = { [A]: '10.9.0.1', [B]: '10.9.0.2' };

t.test('the overlay releases after a burst over UDP, and after one over TCP', async (t) => {
  const clock = new ManualClock();
  const names = [A, B];
  const ports = pairPorts(HOST[A]!, HOST[B]!);
  const onFrame: ((buf: Buffer, off: number, len: number) => void)[] = [];
  const batchEnd: (() => void)[] = [];
  const bridgeReleased: number[][] = [[], []];
  const bridges: FramePort[] = names.map((_, i) => ({
    start: (f, end) => { onFrame[i] = f; batchEnd[i] = end; },
    write: () => {},
    releaseIdle: (keep) => { bridgeReleased[i]!.push(keep); return 2000; },
    close: () => {},
  }));
  const pages = [0, 0];
  const trims = [0, 0];
  const overlays: Overlay[] = names.map((name, i) => new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), bridge: bridges[i]!, udp: ports[i]!,
      memory: { releasePages: (_buf, _off, len) => { pages[i]! += len; return len; }, trimHeap: () => { trims[i]!++; } } },
    { localPeer: name, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS },
  ));
  overlays.forEach((o) => o.start());
  overlays.forEach((o, i) => {
    const other = names[1 - i]!;
    o.setRoutes({ nextHop: (dst) => (dst === other ? other : null), broadcastChildren: (origin) => (origin === names[i] ? [other] : []) });
    o.addNeighbour({
      name: other, host: HOST[other]!, udpPort: 6783, keys: null,
      sendControl: (m) => { if (m[0] === MSG_FRAME) overlays[1 - i]!.handleTcpFrame(names[i]!, m.subarray(1)); },
    });
  });
  const hearing = (yes: boolean): void => overlays.forEach((o, i) => o.handleUdpStatus(names[1 - i]!, { hearing: yes }));
  // 300 broadcast frames of 1,300 bytes from A's bridge: ~390 KB, more than one tick's 256 KiB.
  const burst = (): void => {
    const f = Buffer.alloc(VNET_HDR_BYTES + 1290);
    f.fill(0xff, VNET_HDR_BYTES, VNET_HDR_BYTES + 6);
    f.fill(0x02, VNET_HDR_BYTES + 6, VNET_HDR_BYTES + 12);
    f.writeUInt16BE(0x0800, VNET_HDR_BYTES + 12);
    for (let k = 0; k < 300; k++) onFrame[0]!(f, 0, f.length);
    batchEnd[0]!();
  };
  const released = (i: number): number => overlays[i]!.counters['memoryReleasedBytes'] ?? 0;

  hearing(true);
  clock.advance(5_000);
  t.same(bridgeReleased, [[], []], 'probes alone release nothing');
  hearing(true);
  burst();
  t.ok((overlays[0]!.counters['bytesSentUdp'] ?? 0) > 300 * 1290, 'the burst went over UDP');
  clock.advance(FAST_OVERLAY_TIMINGS.idleReleaseMs - 500);
  t.same(bridgeReleased, [[], []], 'not while the quiet period runs');
  clock.advance(1_000);
  for (const i of [0, 1]) {
    t.same(bridgeReleased[i], [10 * 1024], `${names[i]}: the bridge port keeps 10 KiB of its first slot`);
    t.same(ports[i]!.released, [10 * 1024], `${names[i]}: so does the UDP port`);
    t.ok(pages[i]! > 0, `${names[i]}: the reassembly pool freed`);
    t.equal(trims[i], 1, `${names[i]}: malloc trimmed`);
    t.equal(released(i), 3000 + pages[i]!, `${names[i]}: counted`);
  }
  clock.advance(10_000);
  t.equal(trims[0], 1, 'once per burst');

  hearing(false);
  burst();
  t.ok((overlays[0]!.counters['bytesSentTcp'] ?? 0) > 300 * 1290, 'the second burst went over TCP');
  t.ok((overlays[1]!.counters['bytesReceivedTcp'] ?? 0) > 300 * 1290, 'and B counted it');
  clock.advance(FAST_OVERLAY_TIMINGS.idleReleaseMs + 500);
  t.same(trims, [2, 2], 'both release again after the TCP burst');
  overlays.forEach((o) => o.close());
});


/** A lane that takes no entries but reports whatever traffic the test says it carried. */
class CarryingLane implements LoneFrameLane {
  carried = { bytes: 0, rxBytes: 0, relayBytes: 0 };
  set(): boolean { return false; }
  setReceive(): boolean { return false; }
  setRelay(): boolean { return false; }
  setFar(): boolean { return false; }
  setFarReceive(): boolean { return false; }
  clear(): void {}
  takeSeen(): number { return 0; }
  stats(): LaneStats {
    return { frames: 0, txDroppedAgain: 0, txErrors: 0, entries: 0, rxFrames: 0, rxWriteErrors: 0, relayFrames: 0, relayErrors: 0, farFrames: 0, farRxFrames: 0, ...this.carried };
  }
}

t.test('a burst the lane carried alone is released too', async (t) => {
  const clock = new ManualClock();
  const ports = pairPorts(HOST[A]!, HOST[B]!);
  const lane = new CarryingLane();
  let trims = 0;
  const overlay = new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), udp: ports[0]!, lane: () => lane,
      bridge: { start: () => {}, write: () => {}, releaseIdle: () => 0, close: () => {} },
      memory: { releasePages: (_buf, _off, len) => len, trimHeap: () => { trims++; } } },
    { localPeer: A, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS },
  );
  overlay.start();
  clock.advance(5_000);
  t.equal(trims, 0, 'nothing carried, nothing released');
  for (const [what, field] of [['sent', 'bytes'], ['received', 'rxBytes'], ['relayed', 'relayBytes']] as const) {
    const before = trims;
    // A second of a transfer the lane carries: each tick sees more than BUSY_BYTES_PER_TICK, none of it in JS's counters.
    for (let i = 0; i < 4; i++) {
      lane.carried[field] += 2 * BUSY_BYTES_PER_TICK;
      clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs);
    }
    t.equal(overlay.counters['bytesSentUdp'] ?? 0, lane.carried.bytes + lane.carried.relayBytes, 'JS itself sent nothing');
    clock.advance(FAST_OVERLAY_TIMINGS.idleReleaseMs + 500);
    t.equal(trims, before + 1, `released once after the lane ${what} a burst`);
  }
  overlay.close();
});
