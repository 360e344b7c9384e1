// The lane's relaying half (native/lane-relay.c) against a real kernel and
// the JS sessions, on loopback: A seals far messages (version 2, and version
// 3 segments in one UDP GSO send) to the relay's socket R, whose lane has an
// entry for them; B receives what R passes on and opens its hop part with
// its own session of the link R -> B. Checks that the relayed message is the
// one JS would pass on (new header naming R on R's counter, hops one less,
// the far body untouched, every segment's header), that R's JS never sees
// it and the shared window and counter moved; that whatever does not match
// exactly (a replay, a forgery, other names, one hop left, another source
// port, a body JS would segment, a spent counter, and a sender's later
// slots in a batch after one went to JS) reaches R's JS intact with nothing
// spent; that clearing stops it; and that bad arguments are errors. Needs
// AES-NI. Traffic stays on loopback.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm } from '../../router/overlay/aes-gcm';
import { frameAead } from '../../router/overlay/frame-aead';
import { loadNative, type LaneHandle } from '../../router/overlay/native';
import { REJECT_AFTER_COUNTER } from '../../router/overlay/replay-window';
import {
  INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, SLEEVE_TYPE_FAR, readSleeveHeader, type SleeveHeader, writeInnerHeader,
} from '../../router/overlay/sleeve-codec';
import { compactSegments, SEGMENT_HEADER_BYTES, segmentedBytes, spreadSegments } from '../../router/overlay/sleeve-segments';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { parseIPToBytes, UdpAddressTable, UdpBatchSocket } from '../../router/overlay/udp-batch';
import { waitFor } from '../../scripts/wait';

const A = Buffer.from([0x02, 0x0a, 0, 0, 0, 0x0a]);
const R = Buffer.from([0x02, 0x0a, 0, 0, 0, 0x0b]);
const B = Buffer.from([0x02, 0x0a, 0, 0, 0, 0x0c]);
/** The far destination behind B, and another one. */
const C = Buffer.from([0x02, 0x0a, 0, 0, 0, 0x0d]);
const D = Buffer.from([0x02, 0x0a, 0, 0, 0, 0x0e]);
const FAR_HOP_BYTES = INNER_HEADER_BYTES + 16;
const HOP_END = SLEEVE_HEADER_BYTES + FAR_HOP_BYTES + 16;
/** Body bytes per segment on the link R -> B. */
const STRIDE = 1000;

const aes = probeAesGcm().aes;

interface Got { bytes: Buffer; seg: number }
interface Tap { teardown(fn: () => void): void }

function addr16(host: string): Buffer {
  const b = Buffer.alloc(16);
  parseIPToBytes(host, b, 0);
  return b;
}

/** A far message from A (origin) to `dst` with `hops` left and `tail` far-body bytes of `fill`, hop part sealed by `s`. */
function farMessage(s: SleeveSession, dst: Buffer, hops: number, tail: number, fill: number, version: 2 | 3 = 2): Buffer {
  const bodyLen = FAR_HOP_BYTES + 16 + tail;
  const b = Buffer.alloc(Math.max(SLEEVE_HEADER_BYTES + bodyLen, segmentedBytes(bodyLen, STRIDE)) + 8);
  writeInnerHeader(b, SLEEVE_HEADER_BYTES, A, dst, hops);
  b.fill(0x11, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES + FAR_HOP_BYTES);
  b.fill(fill, HOP_END, SLEEVE_HEADER_BYTES + bodyLen);
  if (s.seal(b, 0, SLEEVE_TYPE_FAR, FAR_HOP_BYTES, version) !== HOP_END) throw new Error('seal');
  return version === 2 ? b.subarray(0, SLEEVE_HEADER_BYTES + bodyLen) : b.subarray(0, spreadSegments(b, 0, bodyLen, STRIDE));
}

async function rig(t: Tap) {
  await loadSodium();
  const native = loadNative();
  const keyAR = randomBytes(32);
  const keyRB = randomBytes(32);
  const ring = (send: Buffer, receive: Buffer): SleeveKeyRing => new SleeveKeyRing(Buffer.from(send), Buffer.from(receive), 'aes-256-gcm');
  const aOut = new SleeveSession(frameAead(), ring(keyAR, randomBytes(32)), A, aes);
  const rIn = new SleeveSession(frameAead(), ring(randomBytes(32), keyAR), R, aes);
  const rOut = new SleeveSession(frameAead(), ring(keyRB, randomBytes(32)), R, aes);
  const bIn = new SleeveSession(frameAead(), ring(randomBytes(32), keyRB), B, aes);
  const relay = UdpBatchSocket.open({ address: '127.0.0.1', port: 0, gro: true });
  const b = UdpBatchSocket.open({ address: '127.0.0.1', port: 0, gro: true });
  const a = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const a2 = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  t.teardown(() => { for (const s of [relay, b, a, a2]) s.close(); });
  const toJs: Got[] = [];
  let taken = 0;
  relay.onDatagrams((slab, offsets, lengths, _sources, count, segSizes) => {
    for (let i = 0; i < count; i++) {
      if (lengths[i]! < 0) { taken++; continue; }
      toJs.push({ bytes: Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)), seg: segSizes?.[i] ?? 0 });
    }
  });
  const atB: Got[] = [];
  b.onDatagrams((slab, offsets, lengths, _sources, count, segSizes) => {
    for (let i = 0; i < count; i++) atB.push({ bytes: Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)), seg: segSizes?.[i] ?? 0 });
  });
  const lane: LaneHandle = relay.openLane(600, REJECT_AFTER_COUNTER);
  const dests = new UdpAddressTable(8);
  /** Sends these datagrams from `from` to the relay in one sendmmsg (so they arrive in one batch). */
  const send = (ds: Got[], from = a): void => {
    const slab = Buffer.concat(ds.map((d) => d.bytes));
    const offsets = new Int32Array(ds.length);
    const lengths = new Int32Array(ds.length);
    const segs = new Uint16Array(ds.length);
    let at = 0;
    ds.forEach((d, i) => { offsets[i] = at; lengths[i] = d.bytes.length; segs[i] = d.seg; dests.set(i, '127.0.0.1', relay.localPort); at += d.bytes.length; });
    if (from.sendBatch(slab, offsets, lengths, dests, ds.length, segs) !== ds.length) throw new Error('send');
  };
  const install = (from = a): boolean => {
    const opener = rIn.laneOpener(SLEEVE_TYPE_FAR);
    const key = rOut.laneKey();
    if (opener === null || key === null) throw new Error('no lane keys');
    return native.laneSetRelay(lane, Buffer.concat([Buffer.of(SLEEVE_TYPE_FAR), A]), Buffer.concat([A, C]), opener.opener, opener.ring,
      opener.highest, addr16('127.0.0.1'), from.localPort, Buffer.concat([Buffer.of(SLEEVE_TYPE_FAR | key.phaseBit), R]), key.sealer, key.counter,
      addr16('127.0.0.1'), b.localPort, STRIDE);
  };
  const settle = async (js: number, relayed: number): Promise<void> => {
    await waitFor(async () => toJs.length >= js && atB.length >= relayed, {
      what: `${js} datagrams to R's JS and ${relayed} at B`, timeoutMs: 5_000, intervalMs: 10, detail: () => `JS ${toJs.length}, B ${atB.length}`,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
  };
  return { native, aOut, rIn, rOut, bIn, relay, a, a2, b, toJs, atB, lane, send, install, settle, taken: () => taken };
}

/** B's view of a relayed message: its header, and its hop part opened with B's session (version 3: segments put together first). */
function openedAtB(bIn: SleeveSession, got: Got): { header: SleeveHeader; msg: Buffer } {
  let msg = Buffer.from(got.bytes);
  if (got.seg > 0) {
    const body = compactSegments(msg, 0, msg.length, got.seg);
    if (body < 0) throw new Error('not whole segments');
    msg = msg.subarray(4, 4 + SLEEVE_HEADER_BYTES + body);
  }
  const header = readSleeveHeader(msg, 0, msg.length);
  if (typeof header === 'string') throw new Error(header);
  if (bIn.open(msg, 0, HOP_END, header.counter) !== FAR_HOP_BYTES) throw new Error('hop part did not open at B');
  return { header, msg };
}

t.test('the lane relays a far message as JS would, and only what its entry says', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  // The first message reaches R's JS, which opens it (the window is then the key's) and relays it itself.
  const first = farMessage(r.aOut, C, 5, 200, 0x21);
  r.send([{ bytes: first, seg: 0 }]);
  await r.settle(1, 0);
  t.equal(r.rIn.open(Buffer.from(r.toJs[0]!.bytes), 0, HOP_END, 0), FAR_HOP_BYTES, 'R\'s JS opened counter 0');
  t.ok(r.install(), 'the lane took the relaying entry');
  // R's JS sealed two datagrams of its own on R -> B first: the lane goes on from counter 2.
  const scratch = Buffer.alloc(256);
  for (let i = 0; i < 2; i++) r.rOut.seal(scratch, 0, SLEEVE_TYPE_FAR, FAR_HOP_BYTES);

  const v2 = farMessage(r.aOut, C, 5, 200, 0x22);
  r.send([{ bytes: v2, seg: 0 }]);
  await r.settle(1, 1);
  t.equal(r.toJs.length, 1, 'R\'s JS never saw the relayed message');
  const got = r.atB[0]!;
  t.equal(got.seg, 0, 'version 2 stays one datagram');
  t.equal(got.bytes.length, v2.length, 'of the same length');
  const { header, msg } = openedAtB(r.bIn, got);
  t.same([msg[0], header.type, header.sender, header.counter], [2, SLEEVE_TYPE_FAR, '02:0a:00:00:00:0b', 2], 'version 2, FAR, from R, on R\'s counter 2');
  t.ok(msg.subarray(SLEEVE_HEADER_BYTES, SLEEVE_HEADER_BYTES + 12).equals(Buffer.concat([A, C])), 'from A to C');
  t.equal(msg[SLEEVE_HEADER_BYTES + 12], 4, 'one hop less');
  t.ok(msg.subarray(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES + FAR_HOP_BYTES).equals(Buffer.alloc(16, 0x11)), 'far header kept');
  t.ok(got.bytes.subarray(HOP_END).equals(v2.subarray(HOP_END)), 'far body untouched');
  t.equal(r.rOut.laneKey()!.counter[0], 3, 'R\'s send counter moved on');
  t.ok(r.rIn.stale(SLEEVE_TYPE_FAR, 1), 'and the shared window took counter 1: JS would refuse it now');
  t.equal(r.native.laneStats(r.lane).relayFrames, 1, 'counted');

  // Version 3: A's segments arrive in one slot (UDP GSO, then GRO) and leave the same way.
  const v3 = farMessage(r.aOut, C, 5, 4_000, 0x23, 3);
  r.send([{ bytes: v3, seg: STRIDE + SEGMENT_HEADER_BYTES }]);
  await r.settle(1, 2);
  const seg = r.atB[1]!;
  t.equal(seg.seg, STRIDE + SEGMENT_HEADER_BYTES, 'version 3 leaves as segments of the same size');
  t.equal(seg.bytes.length, v3.length, 'all of them');
  const n = Math.ceil(v3.length / seg.seg);
  let headersAlike = true;
  for (let i = 0; i < n; i++) {
    const s = i * seg.seg;
    headersAlike &&= seg.bytes.subarray(s, s + SLEEVE_HEADER_BYTES).equals(seg.bytes.subarray(0, SLEEVE_HEADER_BYTES)) &&
      seg.bytes.subarray(s + 16, s + 20).equals(v3.subarray(s + 16, s + 20));
  }
  t.ok(headersAlike, `every one of the ${n} segments has the new header, index, count and stride as they came`);
  const three = openedAtB(r.bIn, seg);
  t.same([seg.bytes[0], three.header.counter, three.msg[SLEEVE_HEADER_BYTES + 12]], [3, 3, 4], 'version 3, R\'s counter 3, one hop less');
  t.ok(three.msg.subarray(HOP_END).equals(Buffer.alloc(4_000, 0x23)), 'far body untouched');
  t.equal(r.toJs.length, 1, 'R\'s JS saw neither');

  // What JS must judge reaches it byte for byte, with nothing spent.
  const counterBefore = r.rOut.laneKey()!.counter[0];
  const highestBefore = r.rIn.laneOpener(SLEEVE_TYPE_FAR)!.highest[0];
  const forged = Buffer.from(farMessage(r.aOut, C, 5, 200, 0x24));
  forged[HOP_END - 1] = forged[HOP_END - 1]! ^ 1;
  const cases: [string, Buffer, UdpBatchSocket][] = [
    ['a replay', v2, r.a],
    ['a forged hop tag', forged, r.a],
    ['another destination', farMessage(r.aOut, D, 5, 200, 0x25), r.a],
    ['one hop left', farMessage(r.aOut, C, 1, 200, 0x26), r.a],
    ['another source port', farMessage(r.aOut, C, 5, 200, 0x27), r.a2],
    ['a version 2 body the next hop would take as segments', farMessage(r.aOut, C, 5, 3_000, 0x28), r.a],
  ];
  for (const [what, d, from] of cases) {
    const before = r.toJs.length;
    r.send([{ bytes: d, seg: 0 }], from);
    await r.settle(before + 1, 2);
    t.ok(r.toJs[before]?.bytes.equals(d), `${what}: to JS intact`);
  }
  t.equal(r.atB.length, 2, 'none of them relayed');
  t.equal(r.rOut.laneKey()!.counter[0], counterBefore, 'no counter spent');
  t.equal(r.rIn.laneOpener(SLEEVE_TYPE_FAR)!.highest[0], highestBefore, 'the window did not move');

  // One batch: a message for D (no entry: JS) and then one for C (an entry) from the same sender: both to JS, in order.
  const before = r.toJs.length;
  const forD = farMessage(r.aOut, D, 5, 200, 0x29);
  const forC = farMessage(r.aOut, C, 5, 200, 0x2a);
  r.send([{ bytes: forD, seg: 0 }, { bytes: forC, seg: 0 }]);
  await r.settle(before + 2, 2);
  t.ok(r.toJs[before]?.bytes.equals(forD) && r.toJs[before + 1]?.bytes.equals(forC), 'a sender\'s slot after one that went to JS goes to JS too');

  // A spent counter on R -> B: to JS.
  const cell = r.rOut.laneKey()!.counter;
  const saved = cell[0]!;
  cell[0] = REJECT_AFTER_COUNTER;
  const late = farMessage(r.aOut, C, 5, 200, 0x2b);
  r.send([{ bytes: late, seg: 0 }]);
  await r.settle(before + 3, 2);
  t.ok(r.toJs[before + 2]?.bytes.equals(late), 'a spent counter: to JS intact');
  t.equal(cell[0], REJECT_AFTER_COUNTER, 'and not moved');
  cell[0] = saved;

  r.native.laneClear(r.lane);
  const after = farMessage(r.aOut, C, 5, 200, 0x2c);
  r.send([{ bytes: after, seg: 0 }]);
  await r.settle(before + 4, 2);
  t.ok(r.toJs[before + 3]?.bytes.equals(after), 'cleared: to JS');
  t.equal(r.native.laneStats(r.lane).entries, 0, 'no entry left');
  t.equal(r.native.laneStats(r.lane).relayFrames, 2, 'two relayed in all');
});

t.test('laneSetRelay refuses bad arguments', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  const first = farMessage(r.aOut, C, 5, 200, 0x31);
  r.send([{ bytes: first, seg: 0 }]);
  await r.settle(1, 0);
  r.rIn.open(Buffer.from(r.toJs[0]!.bytes), 0, HOP_END, 0);
  const o = r.rIn.laneOpener(SLEEVE_TYPE_FAR)!;
  const k = r.rOut.laneKey()!;
  const args = (over: Partial<Record<number, unknown>>): unknown[] => {
    const base: unknown[] = [r.lane, Buffer.concat([Buffer.of(SLEEVE_TYPE_FAR), A]), Buffer.concat([A, C]), o.opener, o.ring, o.highest,
      addr16('127.0.0.1'), r.a.localPort, Buffer.concat([Buffer.of(SLEEVE_TYPE_FAR | SLEEVE_KEY_PHASE_BIT), R]), k.sealer, k.counter,
      addr16('127.0.0.1'), r.b.localPort, STRIDE];
    for (const [i, v] of Object.entries(over)) base[Number(i)] = v;
    return base;
  };
  const set = r.native.laneSetRelay as (...a: unknown[]) => boolean;
  t.throws(() => set(...args({ 0: {} })), TypeError, 'not a lane');
  t.throws(() => set(...args({ 1: Buffer.concat([Buffer.of(1), A]) })), RangeError, 'not a FAR type byte');
  t.throws(() => set(...args({ 2: A })), RangeError, 'names of 6 bytes');
  t.throws(() => set(...args({ 3: k.sealer })), TypeError, 'a sealer for an opener');
  t.throws(() => set(...args({ 4: new Int32Array(3) })), TypeError, 'a short ring');
  t.throws(() => set(...args({ 13: 20 })), RangeError, 'a stride that cannot hold the hop part');
  t.throws(() => set(...args({ 12: 0 })), RangeError, 'port 0');
  t.ok(set(...args({})), 'and takes good ones');
  for (let i = 0; i < 40; i++) set(...args({ 2: Buffer.concat([A, Buffer.from([2, 0, 0, 0, 1, i])]) }));
  t.equal(r.native.laneStats(r.lane).entries, 32, 'at most 32 relaying entries');
});
