// Sleeve version 3: the segment codec (spread on send, compact on receive,
// half joined and restamped where the chunks lie for a relayed far message),
// the bounded reassembler against hostile input (every bound, reorder,
// duplicates, loss, deadline, memory cap, random mutation), and two Overlays
// carrying super-frames as segments delivered coalesced, singly and shuffled.

import t from 'tap';
import { randomInt, SeededRng } from '../../common/rng';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import { decodeControlMessage } from '../../router/mesh/protocol';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { DatagramHandler, DatagramPort, FramePort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import { SegmentReassembler } from '../../router/overlay/segment-reassembly';
import { SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, VNET_HDR_BYTES, writeSleeveHeader } from '../../router/overlay/sleeve-codec';
import {
  compactChunks, compactSegments, fitsSegmented, joinHeader, MAX_GSO_PAYLOAD_BYTES, MAX_SEGMENTED_BODY_BYTES, MAX_SEGMENTS, maxSegmentedBody,
  SEGMENT_HEADER_BYTES, segmentCount, SEGMENTED_SLEEVE_VERSION, segmentedBytes, spreadSegments, stampSegments, wholeSegments,
} from '../../router/overlay/sleeve-segments';
import { tcpSuperFrame } from './tcp-super-frame';

const SENDER = Uint8Array.of(2, 0, 0, 0, 0, 1);

/** A version 3 message's segments (a copy each), as a sender builds them. */
function message(bodyLen: number, stride: number, counter = 7, seed = 1): { wire: Buffer; segs: Buffer[]; body: Buffer } {
  const buf = Buffer.alloc(SLEEVE_HEADER_BYTES + segmentedBytes(bodyLen, stride));
  writeSleeveHeader(buf, 0, 1, SENDER, counter, SEGMENTED_SLEEVE_VERSION);
  const body = Buffer.alloc(bodyLen);
  for (let i = 0; i < bodyLen; i++) body[i] = (i * 31 + seed) & 0xff;
  body.copy(buf, SLEEVE_HEADER_BYTES);
  const n = spreadSegments(buf, 0, bodyLen, stride);
  const wire = buf.subarray(0, n);
  const segs: Buffer[] = [];
  for (let at = 0; at < n; at += stride + SEGMENT_HEADER_BYTES) segs.push(Buffer.from(wire.subarray(at, Math.min(n, at + stride + SEGMENT_HEADER_BYTES))));
  return { wire, segs, body };
}

t.test('spread then compact gives back header and body, for many sizes', async (t) => {
  for (const [bodyLen, stride] of [[1453, 1452], [65_000, 1452], [3000, 1000], [2001, 1000], [64 * 1000, 1000], [4000, 2000]] as const) {
    const { wire, body } = message(bodyLen, stride);
    const copy = Buffer.from(wire);
    const got = compactSegments(copy, 0, copy.length, stride + SEGMENT_HEADER_BYTES);
    t.equal(got, bodyLen, `${bodyLen}/${stride}: body length`);
    t.ok(copy.subarray(4 + SLEEVE_HEADER_BYTES, 4 + SLEEVE_HEADER_BYTES + bodyLen).equals(body), 'body intact');
    t.equal(copy[4], SEGMENTED_SLEEVE_VERSION, 'header moved in front of it');
  }
});

t.test('half joined (header next to chunk 0): restamped where they lie, or compacted as in one go', async (t) => {
  for (const [bodyLen, stride] of [[1453, 1452], [65_000, 1452], [3000, 1000], [2001, 1000], [4000, 2000]] as const) {
    const seg = stride + SEGMENT_HEADER_BYTES;
    const { wire, body } = message(bodyLen, stride, 7);
    const half = Buffer.from(wire);
    t.equal(wholeSegments(half, 0, half.length, seg), segmentCount(bodyLen, stride), `${bodyLen}/${stride}: whole`);
    const at = joinHeader(half, 0);
    t.equal(at, 4, 'the header moves 4 bytes up');
    t.ok(half.subarray(at + SLEEVE_HEADER_BYTES, at + SLEEVE_HEADER_BYTES + Math.min(stride, bodyLen)).equals(body.subarray(0, stride)), 'chunk 0 right behind it');
    // A relay's new header (another counter), then every segment restamped without moving a chunk.
    const relayed = Buffer.from(half);
    writeSleeveHeader(relayed, at, 1, SENDER, 8, SEGMENTED_SLEEVE_VERSION);
    t.equal(stampSegments(relayed, at, bodyLen, stride, 0), wire.length, 'the same length');
    t.ok(relayed.equals(message(bodyLen, stride, 8).wire), 'the very segments a sender would build with that header');
    t.equal(compactChunks(half, 0, half.length, seg), bodyLen, 'compacting the rest: the body length');
    const whole = Buffer.from(wire);
    compactSegments(whole, 0, whole.length, seg);
    t.ok(half.subarray(4, 4 + SLEEVE_HEADER_BYTES + bodyLen).equals(whole.subarray(4, 4 + SLEEVE_HEADER_BYTES + bodyLen)), 'as compactSegments in one go');
  }
});

t.test('size rules: what fits one GSO send, and the split limit', async (t) => {
  for (const stride of [300, 1000, 1452, 8952, 30_000]) {
    const max = maxSegmentedBody(stride);
    t.ok(fitsSegmented(max, stride), `${stride}: the largest body fits`);
    t.notOk(fitsSegmented(max + 1, stride), `${stride}: one byte more does not`);
    t.ok(segmentedBytes(max, stride) <= MAX_GSO_PAYLOAD_BYTES);
  }
  t.notOk(fitsSegmented(1452, 1452), 'one segment is version 2');
  t.notOk(fitsSegmented(65 * 100, 100), 'more than MAX_SEGMENTS');
});

t.test('a coalesced buffer that is not one whole message is left alone', async (t) => {
  const { wire } = message(5000, 1000);
  const seg = 1000 + SEGMENT_HEADER_BYTES;
  const cases: [string, (b: Buffer) => Buffer][] = [
    ['a segment missing', (b) => b.subarray(0, b.length - seg)],
    ['wrong segment size', (b) => b],
    ['another counter inside', (b) => { b[seg + 15] = b[seg + 15]! ^ 1; return b; }],
    ['indices swapped', (b) => { b[16] = 1; b[seg + 16] = 0; return b; }],
  ];
  for (const [name, mutate] of cases) {
    const b = mutate(Buffer.from(wire));
    const before = Buffer.from(b);
    t.equal(compactSegments(b, 0, b.length, name === 'wrong segment size' ? seg + 1 : seg), -1, name);
    t.ok(b.equals(before), `${name}: untouched`);
  }
});

const LIMITS = { slots: 4, perSenderSlots: 2, maxAgeMs: 100 };

t.test('reassembly: in order, reversed, shuffled; duplicates and loss', async (t) => {
  const r = new SegmentReassembler(LIMITS);
  const who = {};
  const rng = new SeededRng(3);
  for (const order of ['in order', 'reversed', 'shuffled'] as const) {
    const { segs, body } = message(10_000, 1452, order.length);
    const list = segs.map((_, i) => i);
    if (order === 'reversed') list.reverse();
    if (order === 'shuffled') for (let i = list.length - 1; i > 0; i--) { const j = randomInt(rng, i + 1); [list[i], list[j]] = [list[j]!, list[i]!]; }
    let done = -1;
    for (const [k, i] of list.entries()) {
      const res = r.add(who, segs[i]!, 0, segs[i]!.length, 0);
      if (k < list.length - 1) t.equal(res, -1, `${order}: partial after ${k + 1}`);
      else done = typeof res === 'number' ? res : -1;
    }
    t.ok(done >= 0, `${order}: complete`);
    const off = r.messageOffset(done);
    t.equal(r.messageBodyLength(done), body.length);
    t.ok(r.buffer.subarray(off + SLEEVE_HEADER_BYTES, off + SLEEVE_HEADER_BYTES + body.length).equals(body), `${order}: body intact`);
  }
  const { segs } = message(5000, 1452, 99);
  t.equal(r.add(who, segs[0]!, 0, segs[0]!.length, 0), -1);
  t.equal(r.add(who, segs[0]!, 0, segs[0]!.length, 0), 'duplicate', 'a duplicate is refused');
  t.equal(r.counters.duplicate, 1, 'and counted');
  t.equal(r.held, 1, 'a lost segment leaves one partial');
  t.equal(r.add(who, segs[1]!, 0, segs[1]!.length, 200), -1, 'past the deadline a segment starts afresh');
  t.equal(r.counters.expired, 1, 'the dead partial counted');
});

/** Segment `b`'s 16 header bytes with index, count and stride set, and a chunk of `chunk` bytes. */
function headed(b: Buffer, index: number, count: number, stride: number, chunk: number): Buffer {
  const out = Buffer.concat([b.subarray(0, SEGMENT_HEADER_BYTES), Buffer.alloc(chunk, 0x5a)]);
  out[16] = index;
  out[17] = count;
  out.writeUInt16BE(stride, 18);
  return out;
}

t.test('reassembly: every header bound is refused and counted', async (t) => {
  const r = new SegmentReassembler(LIMITS);
  const { segs } = message(5000, 1000);
  const seg0 = (): Buffer => Buffer.from(segs[0]!);
  const last = (): Buffer => Buffer.from(segs[segs.length - 1]!);
  const bad: [string, Buffer, string][] = [
    ['header only', seg0().subarray(0, SEGMENT_HEADER_BYTES), 'short'],
    ['version 2', (() => { const b = seg0(); b[0] = 2; return b; })(), 'version'],
    ['a probe', (() => { const b = seg0(); b[1] = 2 | SLEEVE_KEY_PHASE_BIT; return b; })(), 'type'],
    ['index = count', (() => { const b = seg0(); b[16] = b[17]!; return b; })(), 'segment'],
    ['count 1', (() => { const b = seg0(); b[17] = 1; b[16] = 0; return b; })(), 'segment'],
    ['count over MAX_SEGMENTS', (() => { const b = seg0(); b[17] = MAX_SEGMENTS + 1; return b; })(), 'segment'],
    ['stride 0', (() => { const b = seg0(); b[18] = 0; b[19] = 0; return b; })(), 'segment'],
    ['a short middle chunk', seg0().subarray(0, 900), 'segment'],
    ['a last chunk over stride', Buffer.concat([last(), Buffer.alloc(2000)]), 'segment'],
    ['a huge total', (() => { const b = seg0(); b[17] = 64; b[18] = 0xff; b[19] = 0xff; return b; })(), 'segment'],
    // Each well formed on its own, but the message would not fit one slot: refused before any byte is placed.
    ['a full middle chunk of a message too big in all', headed(seg0(), 3, 64, 1100, 1100), 'segment'],
    ['a last chunk that ends past the largest body', headed(seg0(), 1, 2, 40_000, 30_000), 'segment'],
  ];
  for (const [name, b, want] of bad) t.equal(r.add({}, b, 0, b.length, 0), want, name);
  t.equal(r.held, 0, 'nothing held');
  const who = {};
  t.equal(r.add(who, segs[0]!, 0, segs[0]!.length, 0), -1);
  const otherStride = message(5000, 999).segs[1]!;
  t.equal(r.add(who, otherStride, 0, otherStride.length, 0), 'segment', 'a segment disagreeing on stride');
  t.ok(MAX_SEGMENTED_BODY_BYTES < 65_536);
});

t.test('reassembly memory is capped per sender and in all', async (t) => {
  const r = new SegmentReassembler(LIMITS);
  const a = {}, b = {}, c = {};
  for (let k = 0; k < 10; k++) r.add(a, message(5000, 1000, 100 + k).segs[0]!, 0, 1020, k);
  t.equal(r.held, LIMITS.perSenderSlots, 'one sender holds at most its cap');
  t.equal(r.counters.evicted, 10 - LIMITS.perSenderSlots, 'its own oldest were evicted');
  for (let k = 0; k < 3; k++) r.add(b, message(5000, 1000, 200 + k).segs[0]!, 0, 1020, 20 + k);
  t.equal(r.held, LIMITS.slots, 'the pool is full');
  r.add(c, message(5000, 1000, 300).segs[0]!, 0, 1020, 30);
  t.equal(r.held, LIMITS.slots, 'a new sender takes the oldest of all, never more');
  t.equal(r.buffer.length, LIMITS.slots * (SLEEVE_HEADER_BYTES + MAX_SEGMENTED_BODY_BYTES), 'the pool never grows');
  // The evicted message of `a` can no longer complete: its other segments start a fresh partial.
  const late = message(5000, 1000, 100);
  const res = late.segs.slice(1).map((s) => r.add(a, s, 0, s.length, 31));
  t.ok(res.every((x) => x === -1), 'an evicted message does not complete from the rest');
});

t.test('seeded random mutations never throw and never complete a wrong length', async (t) => {
  const r = new SegmentReassembler(LIMITS);
  const rng = new SeededRng(21);
  const senders = [{}, {}, {}];
  for (let i = 0; i < 5_000; i++) {
    const { segs } = message(1000 + randomInt(rng, 20_000), 500 + randomInt(rng, 1000), randomInt(rng, 8));
    const s = Buffer.from(segs[randomInt(rng, segs.length)]!);
    for (let k = randomInt(rng, 4); k > 0; k--) s[randomInt(rng, SEGMENT_HEADER_BYTES + 2)] = randomInt(rng, 256);
    const len = randomInt(rng, 5) === 0 ? randomInt(rng, s.length + 1) : s.length;
    const res = r.add(senders[randomInt(rng, 3)]!, s, 0, len, i);
    if (typeof res === 'number' && res >= 0 && r.messageBodyLength(res) > MAX_SEGMENTED_BODY_BYTES) { t.fail('body over the bound'); return; }
    const c = Buffer.from(s.subarray(0, len));
    compactSegments(c, 0, c.length, 1 + randomInt(rng, 2000));
  }
  t.ok(r.held <= LIMITS.slots);
});

// ---- two Overlays over a fake underlay ----

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
type Delivery = 'coalesced' | 'whole' | 'single' | 'shuffled' | 'lose-one' | 'duplicated';

function pair(delivery: Delivery, password: boolean, segmentBytes = 1472) {
  const rng = new SeededRng(5);
  const delivered: Buffer[] = [];
  const control: Uint8Array[] = [];
  let receive: DatagramHandler | null = null;
  const stage = Buffer.alloc(STAGE_SLOT_BYTES);
  const sent: { len: number; seg: number }[] = [];
  const sender: DatagramPort = {
    segmentation: true,
    start: () => {}, stageSlab: () => stage, stageOffset: () => 0, close: () => {},
    commit: (len, _h, _p, seg = 0) => {
      sent.push({ len, seg });
      const wire = Buffer.from(stage.subarray(0, len));
      if (seg === 0 || delivery === 'coalesced') { receive!(wire, 0, len, '10.9.0.1', 6783, seg); return; }
      // Sent again whole by the addon (EINVAL for the segment size): one datagram, no GRO size.
      if (delivery === 'whole') { receive!(wire, 0, len, '10.9.0.1', 6783); return; }
      const parts: Buffer[] = [];
      for (let at = 0; at < len; at += seg) parts.push(wire.subarray(at, Math.min(len, at + seg)));
      if (delivery === 'shuffled') parts.reverse();
      if (delivery === 'lose-one') parts.splice(1, 1);
      if (delivery === 'duplicated') parts.splice(2, 0, parts[2]!, parts[0]!);
      for (const p of parts) receive!(Buffer.from(p), 0, p.length, '10.9.0.1', 6783);
    },
    flush: () => {},
  };
  const receiver: DatagramPort = {
    start: (h) => { receive = h; }, stageSlab: () => stage, stageOffset: () => 0, commit: () => {}, flush: () => {}, close: () => {},
  };
  let onFrame: ((buf: Buffer, off: number, len: number) => void) | null = null;
  const bridgeA: FramePort = { start: (f) => { onFrame = f; }, write: () => {}, close: () => {} };
  const bridgeB: FramePort = { start: () => {}, write: (buf, off, len) => { delivered.push(Buffer.from(buf.subarray(off, off + len))); }, close: () => {} };
  const key = (b: number): Buffer => Buffer.alloc(32, b);
  const deps = { clock: new ManualClock(), logger: silentLogger, aead: frameAead() };
  const a = new Overlay({ ...deps, bridge: bridgeA, udp: sender }, { localPeer: A, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS, segmentBytes });
  const b = new Overlay({ ...deps, bridge: bridgeB, udp: receiver }, { localPeer: B, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS });
  for (const o of [a, b]) { o.start(); o.setRoutes({ nextHop: () => (o === a ? B : A), broadcastChildren: (origin) => (origin === A && o === a ? [B] : []) }); }
  a.addNeighbour({ name: B, host: '10.9.0.2', udpPort: 6783, keys: password ? new SleeveKeyRing(key(1), key(2)) : null, sendControl: () => {} });
  b.addNeighbour({ name: A, host: '10.9.0.1', udpPort: 6783, keys: password ? new SleeveKeyRing(key(2), key(1)) : null, sendControl: (m) => { control.push(m); } });
  a.handleUdpStatus(B, { hearing: true, segments: true });
  return { a, b, send: (f: Buffer) => onFrame!(f, 0, f.length), delivered, sent, control, rng };
}

for (const password of [true, false]) {
  for (const delivery of ['coalesced', 'whole', 'single', 'shuffled', 'duplicated'] as const) {
    t.test(`overlay: a super-frame as segments, ${delivery}, ${password ? 'sealed' : 'plaintext'}`, async (t) => {
      await loadSodium();
      const p = pair(delivery, password);
      const f = tcpSuperFrame(60_000);
      p.send(f);
      p.send(f);
      t.equal(p.a.counters.framesSentSegmented, 2, 'sent as version 3');
      const segmented = p.sent.filter((s) => s.seg > 0);
      t.ok(segmented.length === 2 && segmented.every((s) => s.seg === 1472 && s.len <= MAX_GSO_PAYLOAD_BYTES), 'MTU-sized segments in one send each');
      t.equal(p.delivered.length, 2, 'both delivered');
      t.ok(p.delivered.every((d) => d.equals(f)), 'byte for byte');
      if (delivery === 'coalesced' || delivery === 'whole') t.equal(p.b.counters.framesReceivedCoalesced, 2, 'in place, no reassembly');
      else t.equal(p.b.counters.messagesReassembled, 2, 'reassembled');
      if (delivery === 'duplicated') t.ok(p.b.drops.duplicate + p.b.drops.replay > 0, 'duplicates dropped and counted');
      p.a.close(); p.b.close();
    });
  }
}

t.test('overlay: a forged datagram claiming tiny segments costs a bounded amount of work', async (t) => {
  await loadSodium();
  const p = pair('coalesced', true);
  let receive: DatagramHandler | null = null;
  p.b.close();
  const stage = Buffer.alloc(STAGE_SLOT_BYTES);
  const port: DatagramPort = { start: (h) => { receive = h; }, stageSlab: () => stage, stageOffset: () => 0, commit: () => {}, flush: () => {}, close: () => {} };
  const o = new Overlay({ clock: new ManualClock(), logger: silentLogger, aead: frameAead(), bridge: { start: () => {}, write: () => {}, close: () => {} }, udp: port },
    { localPeer: B, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS });
  o.start();
  o.addNeighbour({ name: A, host: '10.9.0.1', udpPort: 6783, keys: new SleeveKeyRing(Buffer.alloc(32, 2), Buffer.alloc(32, 1)), sendControl: () => {} });
  const forged = Buffer.alloc(60_000);
  writeSleeveHeader(forged, 0, 1, Uint8Array.of(2, 0, 0, 0, 0, 0x0a), 5, SEGMENTED_SLEEVE_VERSION);
  forged[16] = 0; forged[17] = 2; forged[18] = 0; forged[19] = 1; // stride 1: 2,857 "segments" of 21 bytes
  receive!(forged, 0, forged.length, '10.9.0.1', 6783);
  receive!(forged, 0, forged.length, '10.9.0.1', 6783, 21);
  t.equal(o.drops.segment, 2, 'refused whole, once each, without a pass per claimed segment');
  o.close(); p.a.close();
});

t.test('overlay: a lost segment loses one message, nothing else; a full-size super-frame is split to fit', async (t) => {
  await loadSodium();
  const p = pair('lose-one', true);
  p.send(tcpSuperFrame(30_000));
  t.equal(p.delivered.length, 0, 'the message with a hole is not delivered');
  const big = tcpSuperFrame(65_000);
  p.send(big);
  t.equal(p.a.counters.framesSplit, 1, 'a 65 KB super-frame is split to fit one GSO send');
  t.equal(p.a.drops['too-big'], 0);
  const q = pair('single', true);
  q.send(big);
  t.equal(q.delivered.length, 2, 'its pieces arrive');
  t.equal(q.delivered.reduce((n, d) => n + d.length, 0) - 2 * (VNET_HDR_BYTES + 54), 65_000, 'with all the payload');
  p.a.close(); p.b.close(); q.a.close(); q.b.close();
});

t.test('overlay: version 3 only to a neighbour that announced it; every overlay announces it', async (t) => {
  await loadSodium();
  const p = pair('coalesced', true);
  p.a.handleUdpStatus(B, { hearing: true, segments: false });
  p.send(tcpSuperFrame(30_000));
  t.equal(p.a.counters.framesSentSegmented, 0, 'an older neighbour gets version 2');
  t.ok(p.sent.every((s) => s.seg === 0), 'no segmented send');
  t.equal(p.delivered.length, 1, 'and the frame still arrives');
  const clock = new ManualClock();
  const control: Uint8Array[] = [];
  const stage = Buffer.alloc(STAGE_SLOT_BYTES);
  const port: DatagramPort = { start: () => {}, stageSlab: () => stage, stageOffset: () => 0, commit: () => {}, flush: () => {}, close: () => {} };
  const o = new Overlay({ clock, logger: silentLogger, aead: frameAead(), bridge: { start: () => {}, write: () => {}, close: () => {} }, udp: port },
    { localPeer: A, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS });
  o.start();
  o.addNeighbour({ name: B, host: '10.9.0.2', udpPort: 6783, keys: null, sendControl: (m) => { control.push(m); } });
  clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs + 1);
  const st = control.map((m) => decodeControlMessage(m)).find((m) => m.type === 'udp-status');
  t.equal(st?.type === 'udp-status' && st.segments, true, 'UDP_STATUS says it accepts version 3');
  o.close(); p.a.close(); p.b.close();
});

t.test('reassembly: an idle release frees every slot but those holding a live partial message', async (t) => {
  const r = new SegmentReassembler({ slots: 4, perSenderSlots: 4, maxAgeMs: 100 });
  const who = {};
  const { segs, body } = message(5000, 1200, 11);
  t.equal(r.add(who, segs[0]!, 0, segs[0]!.length, 0), -1, 'first segment held');
  const spans: number[] = [];
  const release = (buf: Buffer, off: number, len: number): number => {
    t.equal(buf, r.buffer, 'the pool itself');
    spans.push(off);
    buf.fill(0, off, off + len);
    return len;
  };
  t.equal(r.releaseIdle(50, release), 3 * r.messageOffset(1), 'three free slots released');
  t.same(spans, [1, 2, 3].map((i) => r.messageOffset(i)), 'not the live one');
  let slot: number | string = -1;
  for (let i = 1; i < segs.length; i++) slot = r.add(who, segs[i]!, 0, segs[i]!.length, 60);
  t.equal(slot, 0, 'the held message completes after the release');
  const at = r.messageOffset(0) + SLEEVE_HEADER_BYTES;
  t.ok(r.buffer.subarray(at, at + body.length).equals(body), 'byte for byte');
  const next = message(3000, 1200, 12);
  for (const s of next.segs) slot = r.add(who, s, 0, s.length, 70);
  t.equal(r.messageBodyLength(slot as number), 3000, 'a released slot takes a new message');
  const at2 = r.messageOffset(slot as number) + SLEEVE_HEADER_BYTES;
  t.ok(r.buffer.subarray(at2, at2 + 3000).equals(next.body), 'byte for byte too');
  t.equal(r.add(who, segs[0]!, 0, segs[0]!.length, 100), -1, 'a new partial message');
  spans.length = 0;
  r.releaseIdle(150, release);
  t.equal(spans.length, 3, 'held within maxAgeMs: kept');
  spans.length = 0;
  r.releaseIdle(300, release);
  t.equal(spans.length, 4, 'older than maxAgeMs: its slot goes too');
});
