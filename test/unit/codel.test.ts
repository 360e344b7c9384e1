// The router's queue management: CoDel's state machine on batch sojourn
// times (codel.ts), ECN marking of frames (ecn-mark.ts), the per-batch
// glue that signals only TCP super-frames (batch-aqm.ts), and an Overlay
// whose slow batches from the bridge and from the underlay drop or mark bulk
// frames while pings pass.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { BatchAqm } from '../../router/overlay/batch-aqm';
import { Codel } from '../../router/overlay/codel';
import { markCongestion } from '../../router/overlay/ecn-mark';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import type { DatagramPort, FramePort } from '../../router/overlay/ports';
import { STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import { INNER_HEADER_BYTES, peerNameBytes, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, VNET_HDR_BYTES, writeInnerHeader } from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { VNET_GSO_TCPV4, VNET_GSO_TCPV6 } from '../../router/overlay/vnet-header';

const PARAMS = { targetMs: 1, intervalMs: 10 };

/** A frame: vnet header (gso type), Ethernet (optionally a VLAN tag), IPv4 or IPv6 with the given ECN bits, TCP, payload. */
function frame(o: { v6?: boolean; vlan?: boolean; ecn?: number; gso?: boolean; payload?: number; dstMac?: number } = {}): Buffer {
  const ipBytes = o.v6 ? 40 : 20;
  const eth = 14 + (o.vlan ? 4 : 0);
  const payload = o.payload ?? 2800;
  const f = Buffer.alloc(VNET_HDR_BYTES + eth + ipBytes + 20 + payload);
  if (o.gso ?? true) {
    f[0] = 1; // NEEDS_CSUM
    f[1] = o.v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4;
    f.writeUInt16LE(14 + ipBytes + 20, 2);
    f.writeUInt16LE(1400, 4);
    f.writeUInt16LE(eth + ipBytes, 6);
    f.writeUInt16LE(16, 8);
  }
  const e = VNET_HDR_BYTES;
  f.set([2, 2, 2, 2, 2, o.dstMac ?? 2, 2, 2, 2, 2, 2, 1], e);
  let l3 = e + 14;
  if (o.vlan) {
    f.writeUInt16BE(0x8100, e + 12);
    f.writeUInt16BE(0x0005, l3);
    f.writeUInt16BE(o.v6 ? 0x86dd : 0x0800, l3 + 2);
    l3 += 4;
  } else {
    f.writeUInt16BE(o.v6 ? 0x86dd : 0x0800, e + 12);
  }
  const ecn = o.ecn ?? 0;
  if (o.v6) {
    f[l3] = 0x6a; // version 6, traffic class 0xa4 | ECN straddling the two bytes
    f[l3 + 1] = 0x40 | (ecn << 4);
    f.writeUInt16BE(20 + payload, l3 + 4);
    f[l3 + 6] = 6;
    f[l3 + 7] = 64;
  } else {
    f[l3] = 0x45;
    f[l3 + 1] = 0xb8 | ecn; // DSCP EF
    f.writeUInt16BE(20 + 20 + payload, l3 + 2);
    f[l3 + 8] = 64;
    f[l3 + 9] = 6;
    f.set([10, 32, 1, 1, 10, 32, 1, 2], l3 + 12);
    f.writeUInt16BE(ipv4Checksum(f, l3), l3 + 10);
  }
  return f;
}

function ipv4Checksum(b: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < 20; i += 2) if (i !== 10) sum += b.readUInt16BE(at + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

t.test('CoDel: acts only on a delay that stays above target for an interval, then at shrinking intervals', async (t) => {
  const c = new Codel(PARAMS);
  let now = 0;
  const batch = (sojournMs: number, frames = 10): boolean => {
    now += sojournMs;
    c.onBatch(sojournMs, frames, now);
    return c.take();
  };
  for (let i = 0; i < 100; i++) t.notOk(batch(0.9), 'below target: never');
  for (let i = 0; i < 100; i++) t.notOk(batch(5, 1), 'a batch of one frame is no queue, however slow');
  const signals: number[] = [];
  const start = now;
  for (let i = 0; i < 400; i++) if (batch(1.5)) signals.push(now - start);
  t.ok(signals[0]! >= PARAMS.intervalMs, `first signal only after an interval above target (at ${signals[0]} ms)`);
  t.ok(c.active, 'signalling');
  const gaps = signals.slice(1).map((s, i) => s - signals[i]!);
  t.ok(gaps[0]! >= PARAMS.intervalMs / Math.SQRT2 - 1.5, `the first gap is about interval / sqrt(2): ${gaps[0]}`);
  // Signals fall on batch ends, 1.5 ms apart, so a gap may exceed the one before by that much.
  t.ok(gaps.every((g, i) => i === 0 || g <= gaps[i - 1]! + 1.5) && gaps[gaps.length - 1]! <= gaps[0]! / 2,
    `gaps shrink while the queue stands: ${gaps.slice(0, 6).join(', ')} ... ${gaps[gaps.length - 1]}`);
  t.ok(signals.length < 400, `${signals.length} signals over 400 slow batches: at most one per batch, none in the first interval`);
  t.notOk(batch(0.2), 'one quick batch ends it');
  t.notOk(c.active);
  t.notOk(batch(1.5), 'and the next standing queue again waits...');
  t.throws(() => new Codel({ targetMs: 5, intervalMs: 5 }), RangeError);
});

t.test('CoDel: re-entering soon after leaving resumes near the last rate', async (t) => {
  const c = new Codel(PARAMS);
  let now = 0;
  const run = (n: number, sojournMs: number): number => {
    let k = 0;
    for (let i = 0; i < n; i++) {
      now += sojournMs;
      c.onBatch(sojournMs, 10, now);
      if (c.take()) k++;
    }
    return k;
  };
  run(20, 1.5);
  const first = run(200, 1.5);
  run(1, 0.1);
  const again = run(220, 1.5);
  t.ok(again > first, `more signals the second time (${again} against ${first})`);
});

t.test('ECN: ECT becomes CE, with a valid IPv4 checksum; not-ECT and junk are left alone', async (t) => {
  for (const vlan of [false, true]) {
    for (const ecn of [1, 2]) {
      const f = frame({ ecn, vlan });
      const l3 = VNET_HDR_BYTES + 14 + (vlan ? 4 : 0);
      t.equal(markCongestion(f, 0, f.length), 'marked');
      t.equal(f[l3 + 1], 0xbb, 'CE set, DSCP kept');
      t.equal(f.readUInt16BE(l3 + 10), ipv4Checksum(f, l3), `IPv4 checksum still right (vlan ${vlan}, ECT(${2 - ecn}))`);
      const v6 = frame({ v6: true, ecn, vlan });
      t.equal(markCongestion(v6, 0, v6.length), 'marked');
      t.equal(v6[l3 + 1], 0x40 | 0x30, 'IPv6: CE set, the rest of the traffic class and the flow label kept');
      t.equal(v6[l3], 0x6a);
    }
  }
  const ce = frame({ ecn: 3 });
  const before = Buffer.from(ce);
  t.equal(markCongestion(ce, 0, ce.length), 'marked', 'already CE: counts as marked');
  t.ok(ce.equals(before), 'and is unchanged');
  const wrong = frame({ ecn: 2 });
  wrong[VNET_HDR_BYTES + 14 + 11] = wrong[VNET_HDR_BYTES + 14 + 11]! ^ 0x40;
  markCongestion(wrong, 0, wrong.length);
  t.not(wrong.readUInt16BE(VNET_HDR_BYTES + 14 + 10), ipv4Checksum(wrong, VNET_HDR_BYTES + 14), 'a wrong checksum stays wrong');
  for (const f of [frame({ ecn: 0 }), frame({ v6: true, ecn: 0 })]) {
    const copy = Buffer.from(f);
    t.equal(markCongestion(f, 0, f.length), 'not-ect');
    t.ok(f.equals(copy), 'not-ECT: untouched');
  }
  const arp = frame({ ecn: 2 });
  arp.writeUInt16BE(0x0806, VNET_HDR_BYTES + 12);
  t.equal(markCongestion(arp, 0, arp.length), 'not-ect', 'not IP');
  const v5 = frame({ ecn: 2 });
  v5[VNET_HDR_BYTES + 14] = 0x55;
  t.equal(markCongestion(v5, 0, v5.length), 'not-ect', 'IPv4 ethertype, wrong version');
  const f = frame({ ecn: 2 });
  for (let len = -1; len < 60; len++) t.doesNotThrow(() => markCongestion(Buffer.from(f), 0, len));
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(frame({ ecn: i % 4, v6: i % 2 === 0, vlan: i % 3 === 0 }).subarray(0, i % 90));
    for (let k = 0; k < junk.length; k += 7) junk[k] = (i * 31 + k) & 0xff;
    markCongestion(junk, 0, junk.length);
  }
  t.equal(markCongestion(f, 10, f.length), 'not-ect', 'a span past the end');
});

t.test('BatchAqm: signals only super-frames, marks ECT ones, drops the rest', async (t) => {
  let now = 0;
  const aqm = new BatchAqm(() => now, PARAMS);
  const verdicts: string[] = [];
  const slowBatch = (frames: Buffer[]): void => {
    for (const f of frames) verdicts.push(aqm.admit(f, 0, f.length));
    now += 2;
    aqm.endBatch();
  };
  const ping = frame({ gso: false, payload: 64 });
  for (let i = 0; i < 50; i++) slowBatch([ping, ping, ping]);
  t.ok(aqm.signalling, 'a standing queue of pings puts CoDel in its signalling state');
  t.ok(verdicts.every((v) => v === 'pass'), 'but plain frames are never signalled');
  verdicts.length = 0;
  slowBatch([ping, frame({ ecn: 2 }), frame()]);
  t.same(verdicts, ['pass', 'marked', 'pass'], 'the owed signal goes to the first super-frame: marked, as it is ECT');
  verdicts.length = 0;
  for (let i = 0; i < 50; i++) slowBatch([ping, frame()]);
  t.ok(verdicts.includes('drop') && verdicts.filter((v) => v !== 'pass').length <= 50, 'not-ECT super-frames are dropped, at most one per batch');
  t.ok(verdicts.every((v, i) => i % 2 === 1 || v === 'pass'), 'pings pass throughout');
  verdicts.length = 0;
  for (const f of [ping, frame(), frame()]) verdicts.push(aqm.admit(f, 0, f.length));
  now += 0.1;
  aqm.endBatch();
  t.notOk(aqm.signalling, 'a quick batch ends it');
  t.ok(verdicts.slice(1).every((v) => v !== 'drop' || verdicts.indexOf('drop') === verdicts.lastIndexOf('drop')), 'no more than the one owed');
  aqm.endBatch();
  t.equal(aqm.admit(Buffer.alloc(1), 0, 1), 'pass', 'a one-byte frame');
});

const US = '02:00:00:00:00:01' as PeerName;
const PEER = '02:00:00:00:00:02' as PeerName;

t.test('Overlay: slow batches from the bridge and from the underlay drop bulk frames, never pings', async (t) => {
  await loadSodium();
  const key = (b: number): Buffer => Buffer.alloc(32, b);
  let now = 0;
  const sent: Buffer[] = [];
  const stage = Buffer.alloc(STAGE_SLOT_BYTES);
  let onDatagram: ((buf: Buffer, off: number, len: number, host: string, port: number) => void) | null = null;
  let udpBatchEnd: (() => void) | null = null;
  const udp: DatagramPort = {
    start: (d, end) => { onDatagram = d; udpBatchEnd = end; },
    stageSlab: () => stage, stageOffset: () => 0, flush: () => {}, close: () => {},
    commit: (len) => { if (stage[1] === SLEEVE_TYPE_FRAME) sent.push(Buffer.from(stage.subarray(0, len))); },
  };
  let onFrame: ((buf: Buffer, off: number, len: number) => void) | null = null;
  let bridgeBatchEnd: (() => void) | null = null;
  const written: Buffer[] = [];
  const bridge: FramePort = { start: (f, end) => { onFrame = f; bridgeBatchEnd = end; }, write: (b, o, l) => { written.push(Buffer.from(b.subarray(o, o + l))); }, close: () => {} };
  const overlay = new Overlay({ clock: new ManualClock(), logger: silentLogger, aead: frameAead(), bridge, udp, monoMs: () => now },
    { localPeer: US, mtu: 1410, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS });
  overlay.start();
  overlay.setRoutes({ nextHop: () => PEER, broadcastChildren: (origin) => (origin === US ? [PEER] : []) });
  overlay.addNeighbour({ name: PEER, host: '10.9.0.2', udpPort: 6783, keys: new SleeveKeyRing(key(1), key(2)), sendControl: () => {} });
  overlay.handleUdpStatus(PEER, { hearing: true });

  const ping = frame({ gso: false, payload: 64, dstMac: 0x0b });
  const bulk = frame({ payload: 20_000, dstMac: 0x0b });
  for (let i = 0; i < 100; i++) {
    onFrame!(ping, 0, ping.length);
    onFrame!(bulk, 0, bulk.length);
    onFrame!(Buffer.from(bulk), 0, bulk.length);
    now += 3;
    bridgeBatchEnd!();
  }
  const dropped = overlay.drops.congestion;
  t.ok(dropped > 0 && dropped < 100, `bulk super-frames dropped in slow batches from the bridge (${dropped} of 200)`);
  t.equal(sent.length, 300 - dropped, 'everything else was sent');
  t.equal(sent.filter((d) => d.length < 200).length, 100, 'every ping among them');
  t.equal(overlay.counters['frames_dropped{reason="congestion"}'], dropped, 'a metric');

  // The other direction: datagrams from the peer, sealed with its keys, opened here in slow batches.
  const far = new SleeveSession(frameAead(), new SleeveKeyRing(key(2), key(1)), peerNameBytes(PEER));
  const datagram = (inner: Buffer, ecn = false): Buffer => {
    const d = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES + inner.length + 16);
    writeInnerHeader(d, SLEEVE_HEADER_BYTES, peerNameBytes(PEER), peerNameBytes(US), 8);
    const f = ecn ? frame({ payload: 20_000, ecn: 2 }) : inner;
    f.copy(d, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
    const n = far.seal(d, 0, SLEEVE_TYPE_FRAME, INNER_HEADER_BYTES + f.length);
    return d.subarray(0, n);
  };
  // The receiver learns where US's MACs are from the frames it delivers; it delivers to the bridge whatever is for an unknown MAC.
  const delivered0 = written.length;
  for (let i = 0; i < 100; i++) {
    // The one signal a batch may carry goes to its first super-frame: ECT first in every other batch.
    for (const d of i % 2 === 0 ? [datagram(ping), datagram(bulk), datagram(bulk, true)] : [datagram(ping), datagram(bulk, true), datagram(bulk)]) {
      onDatagram!(d, 0, d.length, '10.9.0.2', 6783);
    }
    now += 3;
    udpBatchEnd!();
  }
  const got = written.slice(delivered0);
  t.equal(got.filter((f) => f.length < 200).length, 100, 'every ping from the underlay reached the bridge');
  t.ok(overlay.drops.congestion > dropped, `bulk frames from the underlay dropped too (${overlay.drops.congestion - dropped})`);
  t.ok(overlay.counters.framesMarkedCe! > 0, `ECT super-frames marked instead (${overlay.counters.framesMarkedCe})`);
  t.ok(got.some((f) => (f[VNET_HDR_BYTES + 14 + 1]! & 3) === 3), 'and delivered with CE');
  overlay.close();
});
