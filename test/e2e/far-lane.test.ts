// The lane's far ends (native/lane-far.c) against a real kernel and the JS
// sessions. Sending: a TAP in a namespace of its own (tap-namespace.ts) whose
// lone frames to C, two hops away, the lane seals end to end and then at the
// hop and sends to the relay R, a UDP socket on loopback. Checks that the
// datagram is byte for byte the one JS (far-path.ts: FarSessions, then the
// hop's SleeveSession) seals on the same two counters, that R's session opens
// its hop part and C's far keys its body, that both shared counters moved by
// one; that a frame too big for a far message, a spent hop or far counter, a
// freed far or hop key and a cleared lane leave the frame to JS untouched with
// neither counter spent; and that a far entry and a direct one of the same
// pair replace each other. Receiving (we are C): the neighbour B passes on, to
// the lane's socket, far messages from the origin A; an expected one (an echo
// request the namespace answers) is opened at the hop and end to end and
// written to the TAP, on the two windows JS shares, and reported as A's; a
// replay, a forged hop part or body, a replayed hop or far counter (the other
// one new), a far header of another version, another key id, origin,
// destination or source port, a frame that is not plain, a group address, a
// pair without an entry and a version 3 header reach JS intact, no window
// moved. Bad arguments are errors, not crashes. Traffic stays in
// the test's namespace and on loopback. Needs root and AES-NI.

import t from 'tap';
import * as dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { peerNameFromBytes, type PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm } from '../../router/overlay/aes-gcm';
import { FAR_BODY_AT, FAR_HOP_BYTES } from '../../router/overlay/far-path';
import { FAR_OVERHEAD_BYTES, FarSessions, type FarOpen } from '../../router/overlay/far-session';
import { frameAead } from '../../router/overlay/frame-aead';
import { loadNative, type LaneHandle, type WeaveNative } from '../../router/overlay/native';
import { LANE_ENTRIES, LANE_SEEN_BYTES } from '../../router/overlay/ports';
import { REJECT_AFTER_COUNTER } from '../../router/overlay/replay-window';
import {
  INNER_HEADER_BYTES, MAX_HOPS, SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, SLEEVE_TYPE_FAR, SLEEVE_TYPE_FRAME, SLEEVE_TYPE_PROBE,
  VNET_HDR_BYTES, readSleeveHeader, writeInnerHeader, writeSleeveHeader,
} from '../../router/overlay/sleeve-codec';
import { SleeveSession, type OpenResult } from '../../router/overlay/sleeve-session';
import { TAP_OFFLOAD_GSO, type TapDevice } from '../../router/overlay/tap-device';
import { parseIPToBytes, UdpBatchSocket } from '../../router/overlay/udp-batch';
import { waitFor } from '../../scripts/wait';
import { SINK, echoRequest, isDatagramFrame, isEchoReply, sendFromNamespace, udpFrameBytes } from './tap-frames';
import { sweepStale, tapInNamespace } from './tap-namespace';

sweepStale();

/** The origin, the relay (the sender's next hop), the neighbour that passes messages on to us, us (the far end). */
const A = Buffer.from([0x02, 0x0f, 0, 0, 0, 0x0a]);
const R = Buffer.from([0x02, 0x0f, 0, 0, 0, 0x0b]);
const B = Buffer.from([0x02, 0x0f, 0, 0, 0, 0x0c]);
const C = Buffer.from([0x02, 0x0f, 0, 0, 0, 0x0d]);
/** Another origin and another destination. */
const D = Buffer.from([0x02, 0x0f, 0, 0, 0, 0x0e]);
const E = Buffer.from([0x02, 0x0f, 0, 0, 0, 0x0f]);
const NAME_A = peerNameFromBytes(A);
const NAME_C = peerNameFromBytes(C);
const NAME_E = peerNameFromBytes(E);
/** Far key ids (bit 31 set: a sign slip would show). */
const KEY_ID = 0x8badf00d;
const OTHER_KEY_ID = 0x8badf00e;
const OTHER_MAC = Buffer.from([0x02, 0, 0, 0, 0, 0x99]);
const GROUP_MAC = Buffer.from([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
/** Frames up to this (vnet header included) may take the lane; a far one must leave FAR_OVERHEAD_BYTES of it. */
const LANE_MAX = VNET_HDR_BYTES + 600;
/** A frame of a UDP datagram of `payload` bytes from the namespace: vnet header, Ethernet, IPv4, UDP. */
/** The largest such payload a far entry still sends. */
const FAR_MAX_PAYLOAD = LANE_MAX - FAR_OVERHEAD_BYTES - udpFrameBytes(0);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const aes = probeAesGcm().aes;
const skip = aes === null ? 'no AES-256-GCM here' : false;

function addr16(host: string): Buffer {
  const b = Buffer.alloc(16);
  parseIPToBytes(host, b, 0);
  return b;
}

function aesGcm(): NonNullable<typeof aes> {
  if (aes === null) throw new Error('no AES-256-GCM');
  return aes;
}

/** One end of a link: `self` seals under `send` and opens under `receive`. */
function session(self: Buffer, send: Buffer, receive: Buffer): { s: SleeveSession; ring: SleeveKeyRing } {
  const ring = new SleeveKeyRing(Buffer.from(send), Buffer.from(receive), 'aes-256-gcm');
  return { s: new SleeveSession(frameAead(), ring, self, aesGcm()), ring };
}

/**
 * A far message as far-path.ts builds it: inner header src -> dst with `hops`
 * left, the frame sealed end to end by `far` under its key for `farDst`
 * (AD: the inner header's names and the far header), then the 29-byte hop
 * part sealed by `hop` (AD: the sleeve header).
 */
function farMessage(hop: SleeveSession, far: FarSessions, farDst: PeerName, src: Buffer, dst: Buffer, frame: Buffer, hops = MAX_HOPS,
  version = 2): Buffer {
  const b = Buffer.alloc(FAR_BODY_AT + frame.length + 16);
  writeInnerHeader(b, SLEEVE_HEADER_BYTES, src, dst, hops);
  frame.copy(b, FAR_BODY_AT);
  if (far.seal(farDst, b, SLEEVE_HEADER_BYTES, b, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, frame.length) !== frame.length + 16) throw new Error('far seal');
  if (hop.seal(b, 0, SLEEVE_TYPE_FAR, FAR_HOP_BYTES, version) !== FAR_BODY_AT) throw new Error('hop seal');
  return b;
}

/** As farMessage from A to C with far counter `counter`, but sealed end to end by hand over a far header of version `farVersion`. */
function farMessageOfVersion(hop: SleeveSession, farKey: Buffer, keyId: number, counter: number, farVersion: number, frame: Buffer): Buffer {
  const b = Buffer.alloc(FAR_BODY_AT + frame.length + 16);
  writeInnerHeader(b, SLEEVE_HEADER_BYTES, A, C, MAX_HOPS - 1);
  const header = farHeader(keyId, counter);
  header[0] = farVersion;
  header.copy(b, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  frame.copy(b, FAR_BODY_AT);
  const nonce = Buffer.alloc(12);
  nonce[3] = 3;
  header.copy(nonce, 4, 8, 16);
  const key = aesGcm().key(farKey, true);
  const sealed = key.seal(b, FAR_BODY_AT, frame.length, Buffer.concat([A, C, header]), nonce);
  key.dispose();
  if (sealed !== frame.length + 16) throw new Error('far seal');
  if (hop.seal(b, 0, SLEEVE_TYPE_FAR, FAR_HOP_BYTES) !== FAR_BODY_AT) throw new Error('hop seal');
  return b;
}

/** What a far message's next hop and far end make of it, in a copy: the hop part opened by `hopIn`, then the body by `farIn`. */
function openFar(hopIn: SleeveSession, farIn: FarSessions, d: Buffer): { counter: number; hop: OpenResult; far: FarOpen | null; msg: Buffer } {
  const msg = Buffer.from(d);
  const h = readSleeveHeader(msg, 0, msg.length);
  if (typeof h === 'string') throw new Error(`bad header: ${h}`);
  const hop = hopIn.open(msg, 0, FAR_BODY_AT, h.counter);
  if (hop !== FAR_HOP_BYTES) return { counter: h.counter, hop, far: null, msg };
  const origin = peerNameFromBytes(msg, SLEEVE_HEADER_BYTES);
  const far = farIn.open(origin, msg, SLEEVE_HEADER_BYTES, msg, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, msg.length - FAR_BODY_AT);
  return { counter: h.counter, hop, far, msg };
}

/** The far header JS writes: version 1, zeros, key id, far counter. */
function farHeader(keyId: number, counter: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 1;
  b.writeUInt32BE(keyId, 4);
  b.writeUInt32BE(Math.floor(counter / 2 ** 32), 8);
  b.writeUInt32BE(counter % 2 ** 32, 12);
  return b;
}






// ---------------------------------------------------------------- sending (we are A)

interface SendRig {
  native: WeaveNative;
  tap: TapDevice;
  ns: string;
  tapMac: Buffer;
  udp: UdpBatchSocket;
  lane: LaneHandle;
  /** A's and R's ends of the link A -> R. */
  aOut: SleeveSession;
  aRing: SleeveKeyRing;
  rIn: SleeveSession;
  /** A's far keys (to C), and C's (from A). */
  aFar: FarSessions;
  cFar: FarSessions;
  farKey: Buffer;
  /** R: the datagrams the lane sent. */
  relay: dgram.Socket;
  received: Buffer[];
  /** Frames the TAP's JS handler got (the lane left them). */
  toJs: Buffer[];
}

async function sendRig(t: Tap): Promise<SendRig> {
  await loadSodium();
  const native = loadNative();
  const { tap, ns, tapMac } = tapInNamespace(t, { vnetHdr: true, vnetHdrBytes: VNET_HDR_BYTES, offloadFlags: TAP_OFFLOAD_GSO });
  const udp = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const relay = dgram.createSocket('udp4');
  const keyAR = randomBytes(32);
  const a = session(A, keyAR, randomBytes(32));
  const r = session(R, randomBytes(32), keyAR);
  const farKey = randomBytes(32);
  const aFar = new FarSessions(aesGcm());
  const cFar = new FarSessions(aesGcm());
  aFar.setSend(NAME_C, KEY_ID, farKey);
  cFar.addReceive(NAME_A, KEY_ID, farKey, Date.now());
  t.teardown(() => {
    udp.close();
    relay.close();
    for (const s of [a.s, r.s]) s.close();
    aFar.close();
    cFar.close();
  });
  const received: Buffer[] = [];
  relay.on('message', (m) => received.push(m));
  await new Promise<void>((resolve) => relay.bind(0, '127.0.0.1', resolve));
  const toJs: Buffer[] = [];
  tap.onFrames((slab, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) toJs.push(Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)));
  });
  const lane = udp.openLane(LANE_MAX, REJECT_AFTER_COUNTER);
  tap.setLane(lane);
  return { native, tap, ns, tapMac, udp, lane, aOut: a.s, aRing: a.ring, rIn: r.s, aFar, cFar, farKey, relay, received, toJs };
}

/** Installs the far entry for the pair (SINK_MAC, the TAP's MAC) as lane-entries.ts's offerFar would; whether the lane took it. */
function installFar(r: SendRig, hop: SleeveSession = r.aOut, far: FarSessions = r.aFar): boolean {
  const key = hop.laneKey();
  const f = far.laneSend(NAME_C);
  if (key === null || f === null) throw new Error('no lane keys');
  const head = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  writeSleeveHeader(head, 0, SLEEVE_TYPE_FAR | key.phaseBit, A, 0);
  writeInnerHeader(head, SLEEVE_HEADER_BYTES, A, C, MAX_HOPS);
  const farHead = Buffer.alloc(8);
  farHead[0] = 1;
  farHead.writeUInt32BE(f.keyId, 4);
  return r.native.laneSetFar(r.lane, Buffer.concat([SINK, r.tapMac]), head, key.sealer, key.counter, farHead, f.sealer, f.counter,
    addr16('127.0.0.1'), r.relay.address().port);
}

/** Installs a direct entry for the same pair (R as the destination), as lane-entries.ts's offer would. */
function installDirect(r: SendRig): boolean {
  const key = r.aOut.laneKey();
  if (key === null) throw new Error('no lane key');
  const head = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  writeSleeveHeader(head, 0, SLEEVE_TYPE_FRAME | key.phaseBit, A, 0);
  writeInnerHeader(head, SLEEVE_HEADER_BYTES, A, R, MAX_HOPS);
  return r.native.laneSet(r.lane, Buffer.concat([SINK, r.tapMac]), head, key.sealer, key.counter, addr16('127.0.0.1'), r.relay.address().port);
}

/** Waits until the lane sent `datagrams` and JS got `frames` in all, then a little longer for strays. */
async function settle(r: SendRig, datagrams: number, frames: number): Promise<void> {
  await waitFor(async () => r.received.length >= datagrams && r.toJs.length >= frames, {
    what: `${datagrams} datagrams from the lane and ${frames} frames to JS`, timeoutMs: 5_000, intervalMs: 10,
    detail: () => `lane sent ${r.received.length}, JS got ${r.toJs.length}`,
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
}

function farCell(r: SendRig): Float64Array {
  const f = r.aFar.laneSend(NAME_C);
  if (f === null) throw new Error('no far send key');
  return f.counter;
}

t.test('a lone frame to a peer two hops away leaves sealed end to end as JS would, on both shared counters', { skip }, async (t) => {
  const r = await sendRig(t);
  t.ok(installFar(r), 'the lane took the far entry');
  t.equal(r.native.laneStats(r.lane).entries, 1, 'one entry');
  // JS sealed before: three datagrams on the hop, two far bodies to C. The lane goes on from hop counter 3, far counter 2.
  const scratch = Buffer.alloc(256);
  for (let i = 0; i < 3; i++) t.ok(r.aOut.seal(scratch, 0, SLEEVE_TYPE_FRAME, 10) > 0, `JS sealed hop counter ${i}`);
  for (let i = 0; i < 2; i++) t.equal(r.aFar.seal(NAME_C, Buffer.concat([A, C]), 0, scratch, 0, 10), 26, `JS sealed far counter ${i}`);
  const far = farCell(r);
  sendFromNamespace(r.ns, [60]);
  await settle(r, 1, 0);
  t.equal(r.received.length, 1, 'one datagram left through the lane');
  t.equal(r.toJs.length, 0, 'and the JS handler never saw the frame');
  const d = r.received[0]!;
  const frameLen = udpFrameBytes(60);
  t.equal(d.length, FAR_BODY_AT + frameLen + 16, 'header, hop part and tag, the frame and its far tag');
  const h = readSleeveHeader(d, 0, d.length);
  if (typeof h === 'string') throw new Error(`bad header: ${h}`);
  t.same({ version: d[0], type: h.type, phase: d[1]! & SLEEVE_KEY_PHASE_BIT, sender: h.sender, counter: h.counter },
    { version: 2, type: SLEEVE_TYPE_FAR, phase: 0, sender: NAME_A, counter: 3 }, 'a version 2 FAR from A on hop counter 3');
  t.same([r.aRing.sendCounter, far[0]], [4, 3], 'both counters moved by one');

  const o = openFar(r.rIn, r.cFar, d);
  t.equal(o.hop, FAR_HOP_BYTES, 'R\'s session opens the hop part');
  t.ok(o.msg.subarray(SLEEVE_HEADER_BYTES, SLEEVE_HEADER_BYTES + 12).equals(Buffer.concat([A, C])), 'inner header: A to C');
  t.equal(o.msg[SLEEVE_HEADER_BYTES + 12], MAX_HOPS, 'with 32 hops left');
  t.ok(o.msg.subarray(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES + FAR_HOP_BYTES).equals(farHeader(KEY_ID, 2)),
    'far header: version 1, the key id, far counter 2');
  t.equal(o.far, frameLen, 'C\'s far key opens the body');
  const frame = Buffer.from(o.msg.subarray(FAR_BODY_AT, FAR_BODY_AT + frameLen));
  t.ok(isDatagramFrame(frame, r.tapMac, 60, 0x40), 'to the frame as the TAP gave it, vnet header first');

  // JS again on the same counters: the same bytes.
  r.aRing.sendCounter = 3;
  far[0] = 2;
  const expected = farMessage(r.aOut, r.aFar, NAME_C, A, C, frame);
  t.ok(expected.equals(d), 'byte for byte the message far-path.ts seals on hop counter 3 and far counter 2');
  t.same([r.aRing.sendCounter, far[0]], [4, 3], 'which JS\'s seals read from the same cells');
  t.equal(r.rIn.open(Buffer.from(d), 0, FAR_BODY_AT, 3), 'replay', 'R takes it once');

  const stats = r.native.laneStats(r.lane);
  t.same({ frames: stats.frames, farFrames: stats.farFrames, bytes: stats.bytes, rxFrames: stats.rxFrames },
    { frames: 1, farFrames: 1, bytes: d.length, rxFrames: 0 }, 'counted as a far frame');
  const seen = Buffer.alloc(LANE_SEEN_BYTES);
  t.equal(r.native.laneTakeSeen(r.lane, seen), 1, 'one pair sent since the last look');
  t.ok(seen.subarray(0, 18).equals(Buffer.concat([SINK, r.tapMac, Buffer.alloc(6)])), 'that pair, sent by us');
});

t.test('what a far entry leaves to JS, with neither counter spent', { skip }, async (t) => {
  const r = await sendRig(t);
  t.ok(installFar(r), 'the lane took the far entry');
  const far = farCell(r);
  const counters = (): number[] => [r.aRing.sendCounter, far[0]!];

  sendFromNamespace(r.ns, [FAR_MAX_PAYLOAD + 1]);
  await settle(r, 0, 1);
  t.equal(r.received.length, 0, `a frame of ${udpFrameBytes(FAR_MAX_PAYLOAD + 1)} bytes, over ${LANE_MAX} less the far overhead: not sent`);
  t.ok(isDatagramFrame(r.toJs[0]!, r.tapMac, FAR_MAX_PAYLOAD + 1, 0x40), 'JS has it intact');
  t.same(counters(), [0, 0], 'no counter spent');

  sendFromNamespace(r.ns, [FAR_MAX_PAYLOAD]);
  await settle(r, 1, 1);
  t.equal(r.received.length, 1, `one of ${udpFrameBytes(FAR_MAX_PAYLOAD)} bytes, just within: sent`);
  const big = openFar(r.rIn, r.cFar, r.received[0]!);
  t.equal(udpFrameBytes(FAR_MAX_PAYLOAD), LANE_MAX - FAR_OVERHEAD_BYTES, 'that frame and the far overhead fill the lane\'s size');
  t.same([r.received[0]!.length, big.hop, big.far], [FAR_BODY_AT + udpFrameBytes(FAR_MAX_PAYLOAD) + 16, FAR_HOP_BYTES, udpFrameBytes(FAR_MAX_PAYLOAD)],
    'and it opens whole at R and C');
  t.same(counters(), [1, 1], 'on one counter each');

  const spent: [string, () => void][] = [
    ['a spent hop counter', () => { r.aRing.sendCounter = REJECT_AFTER_COUNTER; }],
    ['a spent far counter', () => { far[0] = REJECT_AFTER_COUNTER; }],
  ];
  for (const [what, spend] of spent) {
    spend();
    const before = counters();
    const js = r.toJs.length;
    sendFromNamespace(r.ns, [60]);
    await settle(r, 1, js + 1);
    t.equal(r.received.length, 1, `${what}: nothing sent`);
    t.ok(isDatagramFrame(r.toJs[js]!, r.tapMac, 60, 0x40), `${what}: JS has the frame (and drops it)`);
    t.same(counters(), before, `${what}: neither counter moved`);
    r.aRing.sendCounter = 1;
    far[0] = 1;
  }

  // The last counters below the bound are still sealed on.
  r.aRing.sendCounter = REJECT_AFTER_COUNTER - 1;
  far[0] = REJECT_AFTER_COUNTER - 1;
  sendFromNamespace(r.ns, [60]);
  await settle(r, 2, 3);
  const last = r.received[1];
  t.ok(last !== undefined, 'counters one below the bound: sent');
  if (last !== undefined) {
    const o = openFar(r.rIn, r.cFar, last);
    t.same([o.counter, o.hop], [REJECT_AFTER_COUNTER - 1, FAR_HOP_BYTES], 'on the last hop counter');
    t.ok(o.msg.subarray(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES + FAR_HOP_BYTES).equals(farHeader(KEY_ID, REJECT_AFTER_COUNTER - 1)),
      'and the last far counter');
  }
  t.same(counters(), [REJECT_AFTER_COUNTER, REJECT_AFTER_COUNTER], 'both now spent');
  r.aRing.sendCounter = 5;
  far[0] = 5;

  // The far key freed under the entry (a rekey to C): nothing sealed.
  r.aFar.setSend(NAME_C, KEY_ID, null);
  sendFromNamespace(r.ns, [60]);
  await settle(r, 2, 4);
  t.equal(r.received.length, 2, 'the far key freed: nothing sent');
  t.ok(isDatagramFrame(r.toJs[3]!, r.tapMac, 60, 0x40), 'JS has the frame');
  t.equal(r.aRing.sendCounter, 5, 'and the hop counter did not move');

  // A new far key, and then the hop key freed: the body seals, the hop part cannot, and neither counter moves.
  r.aFar.setSend(NAME_C, KEY_ID + 1, r.farKey);
  const far2 = farCell(r);
  far2[0] = 9;
  t.ok(installFar(r), 'a far entry with the new far key');
  r.aOut.close();
  sendFromNamespace(r.ns, [60]);
  await settle(r, 2, 5);
  t.equal(r.received.length, 2, 'the hop key freed: nothing sent');
  t.ok(isDatagramFrame(r.toJs[4]!, r.tapMac, 60, 0x40), 'JS has the frame');
  t.same([r.aRing.sendCounter, far2[0]], [5, 9], 'neither counter moved, though the far body sealed');
  const stats = r.native.laneStats(r.lane);
  t.same([stats.frames, stats.farFrames, stats.txErrors], [2, 2, 0], 'the lane sent two frames in all');
});

t.test('a far entry and a direct one of the same pair replace each other; laneClear stops both', { skip }, async (t) => {
  const r = await sendRig(t);
  const far = farCell(r);
  let js = 0;
  /** One frame from the namespace: the lane's datagram, or null when JS got it. */
  const one = async (fill: number): Promise<Buffer | null> => {
    const sent = r.received.length;
    sendFromNamespace(r.ns, [60]);
    await waitFor(async () => r.received.length > sent || r.toJs.length > js, { what: 'the frame somewhere', timeoutMs: 5_000, intervalMs: 10 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    if (r.toJs.length > js) {
      t.ok(isDatagramFrame(r.toJs[js]!, r.tapMac, 60, fill), 'JS has the frame intact');
      js = r.toJs.length;
      return null;
    }
    return r.received[sent] ?? null;
  };
  const kind = (d: Buffer | null): string => {
    if (d === null) return 'js';
    const h = readSleeveHeader(d, 0, d.length);
    if (typeof h === 'string') return h;
    if (h.type === SLEEVE_TYPE_FRAME) {
      const m = Buffer.from(d);
      const n = r.rIn.open(m, 0, m.length, h.counter);
      const direct = n === INNER_HEADER_BYTES + udpFrameBytes(60) && m.subarray(SLEEVE_HEADER_BYTES, SLEEVE_HEADER_BYTES + 12).equals(Buffer.concat([A, R]));
      return direct ? 'direct' : `bad direct ${String(n)}`;
    }
    const o = openFar(r.rIn, r.cFar, d);
    return o.far === udpFrameBytes(60) ? 'far' : `bad far ${String(o.hop)} ${String(o.far)}`;
  };

  t.ok(installDirect(r), 'a direct entry');
  t.equal(kind(await one(0x40)), 'direct', 'sent directly to R');
  t.ok(installFar(r), 'a far entry for the same pair');
  t.equal(r.native.laneStats(r.lane).entries, 1, 'in its place');
  t.equal(kind(await one(0x40)), 'far', 'sent to C through R');
  t.ok(installDirect(r), 'a direct entry again');
  t.equal(r.native.laneStats(r.lane).entries, 1, 'in the far one\'s place');
  t.equal(kind(await one(0x40)), 'direct', 'sent directly');
  t.equal(far[0], 1, 'the far counter spent once');
  t.ok(installFar(r), 'far again');
  t.equal(kind(await one(0x40)), 'far', 'sent far');
  t.same([r.aRing.sendCounter, far[0]], [4, 2], 'four hop counters, two far ones');
  r.native.laneClear(r.lane);
  t.equal(r.native.laneStats(r.lane).entries, 0, 'cleared');
  t.equal(kind(await one(0x40)), 'js', 'after laneClear: JS');
  t.same([r.aRing.sendCounter, far[0]], [4, 2], 'no counter spent');
  const stats = r.native.laneStats(r.lane);
  t.same([stats.frames, stats.farFrames], [4, 2], 'four frames, two of them far');
});

// ---------------------------------------------------------------- receiving (we are C)

interface ReceiveRig {
  native: WeaveNative;
  tap: TapDevice;
  ns: string;
  tapMac: Buffer;
  /** Our socket, whose lane serves the TAP. */
  udp: UdpBatchSocket;
  lane: LaneHandle;
  /** B's and our ends of the link B -> C. */
  bOut: SleeveSession;
  bRing: SleeveKeyRing;
  cIn: SleeveSession;
  /** A's far keys to C (key id KEY_ID), the same key under another id, and to E; ours from A. */
  aFar: FarSessions;
  aFarOther: FarSessions;
  cFar: FarSessions;
  farKey: Buffer;
  /** B's socket, and another of B's ports. */
  peer: dgram.Socket;
  otherPort: dgram.Socket;
  /** Datagrams our socket's JS handler got, and frames the TAP's. */
  toJs: Buffer[];
  tapJs: Buffer[];
}

async function receiveRig(t: Tap): Promise<ReceiveRig> {
  await loadSodium();
  const native = loadNative();
  const { tap, ns, tapMac } = tapInNamespace(t, { vnetHdr: true, vnetHdrBytes: VNET_HDR_BYTES, offloadFlags: TAP_OFFLOAD_GSO });
  const udp = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const peer = dgram.createSocket('udp4');
  const otherPort = dgram.createSocket('udp4');
  const keyBC = randomBytes(32);
  const b = session(B, keyBC, randomBytes(32));
  const c = session(C, randomBytes(32), keyBC);
  const farKey = randomBytes(32);
  const aFar = new FarSessions(aesGcm());
  const aFarOther = new FarSessions(aesGcm());
  const cFar = new FarSessions(aesGcm());
  aFar.setSend(NAME_C, KEY_ID, farKey);
  aFar.setSend(NAME_E, KEY_ID, farKey);
  aFarOther.setSend(NAME_C, OTHER_KEY_ID, farKey);
  cFar.addReceive(NAME_A, KEY_ID, farKey, Date.now());
  cFar.addReceive(NAME_A, OTHER_KEY_ID, farKey, Date.now());
  t.teardown(() => {
    udp.close();
    peer.close();
    otherPort.close();
    for (const s of [b.s, c.s]) s.close();
    for (const f of [aFar, aFarOther, cFar]) f.close();
  });
  await Promise.all([peer, otherPort].map((s) => new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))));
  const toJs: Buffer[] = [];
  udp.onDatagrams((slab, offsets, lengths, _sources, count) => {
    for (let i = 0; i < count; i++) toJs.push(Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)));
  });
  const tapJs: Buffer[] = [];
  tap.onFrames((slab, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) tapJs.push(Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)));
  });
  const lane = udp.openLane(LANE_MAX, REJECT_AFTER_COUNTER);
  tap.setLane(lane);
  return { native, tap, ns, tapMac, udp, lane, bOut: b.s, bRing: b.ring, cIn: c.s, aFar, aFarOther, cFar, farKey, peer, otherPort, toJs, tapJs };
}

t.test('a far message B passes on from A reaches the TAP; anything else reaches JS intact', { skip }, async (t) => {
  const r = await receiveRig(t);
  const to = r.udp.localPort;
  const send = async (d: Buffer, from: dgram.Socket = r.peer): Promise<void> => {
    await new Promise<void>((resolve) => from.send(d, to, '127.0.0.1', () => resolve()));
  };
  const waitJs = async (n: number, what: string): Promise<void> => {
    await waitFor(async () => r.toJs.length >= n, { what, timeoutMs: 5_000, intervalMs: 10, detail: () => `JS got ${r.toJs.length}` });
  };
  const pair = Buffer.concat([r.tapMac, SINK]);
  /** A far message from A through B to us carrying `frame`, on the next counters. */
  const message = (frame: Buffer): Buffer => farMessage(r.bOut, r.aFar, NAME_C, A, C, frame, MAX_HOPS - 1);

  // JS opens the first message, as the overlay would: the windows are then the keys'.
  const first = message(echoRequest(r.tapMac, SINK, 1));
  await send(first);
  await waitJs(1, 'the first message reaches JS');
  const opened = openFar(r.cIn, r.cFar, r.toJs[0]!);
  t.same([opened.hop, opened.far], [FAR_HOP_BYTES, echoRequest(r.tapMac, SINK, 1).length], 'JS opened hop counter 0 and far counter 0');
  const hop = r.cIn.laneOpener(SLEEVE_TYPE_FAR);
  const far = r.cFar.laneOpener(NAME_A, KEY_ID);
  if (hop === null || far === null) throw new Error('no lane openers');
  const install = (macs: Buffer, origin: Buffer = A): boolean =>
    r.native.laneSetFarReceive(r.lane, SLEEVE_TYPE_FAR, Buffer.concat([B, C]), origin, macs, hop.opener, hop.ring, hop.highest, KEY_ID, far.opener,
      far.ring, far.highest, addr16('127.0.0.1'), r.peer.address().port);
  // Another pair first: the message's own pair is found once it is open, wherever its entry is.
  t.ok(install(Buffer.concat([r.tapMac, OTHER_MAC.subarray(0, 5), Buffer.of(0x98)])), 'the lane took an entry for another pair');
  t.ok(install(pair), 'the lane took the far receive entry');
  t.ok(install(Buffer.concat([GROUP_MAC, SINK])), 'and one for a group address (never to be used)');

  const delivered = message(echoRequest(r.tapMac, SINK, 2));
  await send(delivered);
  await waitFor(async () => r.tapJs.some((f) => isEchoReply(f, 2)), { what: 'the echo reply to the lane\'s frame', timeoutMs: 5_000, intervalMs: 10 });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(r.toJs.length, 1, 'the lane delivered it: JS never saw the message');
  t.same([hop.highest[0], far.highest[0]], [1, 1], 'both shared windows moved to counter 1');
  t.same([hop.ring[0]! & 3, far.ring[0]! & 3], [3, 3], 'and hold counters 0 and 1');
  const stats = r.native.laneStats(r.lane);
  t.same({ rxFrames: stats.rxFrames, farRxFrames: stats.farRxFrames, rxBytes: stats.rxBytes, rxWriteErrors: stats.rxWriteErrors },
    { rxFrames: 1, farRxFrames: 1, rxBytes: delivered.length, rxWriteErrors: 0 }, 'counted as a far frame');
  const seen = Buffer.alloc(LANE_SEEN_BYTES);
  t.equal(r.native.laneTakeSeen(r.lane, seen), 1, 'one pair since the last look');
  t.ok(seen.subarray(0, 18).equals(Buffer.concat([pair, A])), 'that pair, from the origin A (not B, who passed it on)');

  // Everything below must reach JS byte for byte, and move neither window.
  const hopRing = Int32Array.from(hop.ring);
  const farRing = Int32Array.from(far.ring);
  const hopForged = message(echoRequest(r.tapMac, SINK, 11));
  hopForged[SLEEVE_HEADER_BYTES + 3] = hopForged[SLEEVE_HEADER_BYTES + 3]! ^ 1;
  const bodyForged = message(echoRequest(r.tapMac, SINK, 12));
  bodyForged[FAR_BODY_AT + 30] = bodyForged[FAR_BODY_AT + 30]! ^ 1;
  const farCounterCell = r.aFar.laneSend(NAME_C)!.counter;
  const nextFar = farCounterCell[0]!;
  farCounterCell[0] = 1;
  const farReplay = message(echoRequest(r.tapMac, SINK, 13));
  farCounterCell[0] = nextFar;
  const nextHop = r.bRing.sendCounter;
  r.bRing.sendCounter = 1;
  const hopReplay = message(echoRequest(r.tapMac, SINK, 22));
  r.bRing.sendCounter = nextHop;
  // Our key and key id, sealed right, but a far header of version 2 (JS refuses it before opening).
  const farV2 = farMessageOfVersion(r.bOut, r.farKey, KEY_ID, 200, 2, echoRequest(r.tapMac, SINK, 23));
  // The same key under another id (and C holds it): only the key id tells it from ours.
  const otherCell = r.aFarOther.laneSend(NAME_C)!.counter;
  otherCell[0] = 50;
  const otherKey = farMessage(r.bOut, r.aFarOther, NAME_C, A, C, echoRequest(r.tapMac, SINK, 14), MAX_HOPS - 1);
  // Sealed end to end under our key, but naming another origin (D) or destination (E): only the inner header tells.
  const otherOrigin = farMessage(r.bOut, r.aFar, NAME_C, D, C, echoRequest(r.tapMac, SINK, 15), MAX_HOPS - 1);
  r.aFar.laneSend(NAME_E)!.counter[0] = 100;
  const notOurs = farMessage(r.bOut, r.aFar, NAME_E, A, E, echoRequest(r.tapMac, SINK, 16), MAX_HOPS - 1);
  const otherPort = message(echoRequest(r.tapMac, SINK, 17));
  const notPlainFrame = echoRequest(r.tapMac, SINK, 18);
  notPlainFrame[0] = 2; // VIRTIO_NET_HDR_F_DATA_VALID
  const notPlain = message(notPlainFrame);
  const group = message(echoRequest(GROUP_MAC, SINK, 19));
  const noEntry = message(echoRequest(r.tapMac, OTHER_MAC, 20));
  const v3 = farMessage(r.bOut, r.aFar, NAME_C, A, C, echoRequest(r.tapMac, SINK, 21), MAX_HOPS - 1, 3);
  const cases: [string, Buffer, dgram.Socket][] = [
    ['a replay', delivered, r.peer],
    ['a forged hop part', hopForged, r.peer],
    ['a forged far body', bodyForged, r.peer],
    ['a far counter replayed under a new hop counter', farReplay, r.peer],
    ['a hop counter replayed under a new far counter', hopReplay, r.peer],
    ['a far header of version 2', farV2, r.peer],
    ['another far key id', otherKey, r.peer],
    ['another origin in the inner header', otherOrigin, r.peer],
    ['a message for another peer', notOurs, r.peer],
    ['another source port', otherPort, r.otherPort],
    ['a frame with a virtio_net_hdr field set', notPlain, r.peer],
    ['a group destination MAC', group, r.peer],
    ['a MAC pair without an entry', noEntry, r.peer],
    ['a version 3 header', v3, r.peer],
  ];
  for (const [what, d, from] of cases) {
    const before = r.toJs.length;
    const sent = Buffer.from(d);
    await send(d, from);
    await waitJs(before + 1, `${what} reaches JS`);
    t.ok(r.toJs[before]!.equals(sent), `${what}: to JS intact`);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.same([hop.highest[0], far.highest[0]], [1, 1], 'neither window\'s highest counter moved');
  t.ok(Int32Array.from(hop.ring).every((w, i) => w === hopRing[i]) && Int32Array.from(far.ring).every((w, i) => w === farRing[i]),
    'nor any of their bits');
  t.same([r.native.laneStats(r.lane).rxFrames, r.native.laneStats(r.lane).farRxFrames], [1, 1], 'the lane delivered nothing more');
  t.notOk(r.tapJs.some((f) => [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23].some((seq) => isEchoReply(f, seq))), 'and the namespace answered none');
  t.equal(r.native.laneTakeSeen(r.lane, seen), 0, 'no pair seen since');

  // JS judges them as it would have: the lane spent no counter on what it left, and recorded what it took.
  const judge = (i: number): { hop: OpenResult; far: FarOpen | null } => {
    const o = openFar(r.cIn, r.cFar, r.toJs[i]!);
    return { hop: o.hop, far: o.far };
  };
  const at = (what: string): number => 1 + cases.findIndex(([w]) => w === what);
  t.same(judge(at('a replay')).hop, 'replay', 'the replay: JS refuses the hop counter the lane took');
  t.same(judge(at('a far counter replayed under a new hop counter')), { hop: FAR_HOP_BYTES, far: 'replay' },
    'the replayed far counter: JS opens the hop part, then refuses the far counter the lane took');
  t.same(judge(at('a hop counter replayed under a new far counter')).hop, 'replay', 'the replayed hop counter: JS refuses it');
  t.same(judge(at('a far header of version 2')), { hop: FAR_HOP_BYTES, far: 'auth' }, 'the far header of version 2: JS refuses it');
  t.same(judge(at('a forged far body')), { hop: FAR_HOP_BYTES, far: 'auth' }, 'the forged body: JS opens the hop part, not the body');
  t.same(judge(at('another far key id')), { hop: FAR_HOP_BYTES, far: echoRequest(r.tapMac, SINK, 14).length }, 'the other key id: JS opens it');
  t.same(judge(at('a frame with a virtio_net_hdr field set')), { hop: FAR_HOP_BYTES, far: notPlainFrame.length }, 'the frame not plain: JS opens it');
  t.same(judge(at('a group destination MAC')), { hop: FAR_HOP_BYTES, far: echoRequest(GROUP_MAC, SINK, 19).length }, 'the group frame: JS opens it');
  t.same(judge(at('a MAC pair without an entry')), { hop: FAR_HOP_BYTES, far: echoRequest(r.tapMac, OTHER_MAC, 20).length }, 'the other pair: JS opens it');

  // And the lane goes on from where the windows are now.
  const again = message(echoRequest(r.tapMac, SINK, 30));
  const h = readSleeveHeader(again, 0, again.length);
  if (typeof h === 'string') throw new Error(h);
  await send(again);
  await waitFor(async () => r.tapJs.some((f) => isEchoReply(f, 30)), { what: 'the echo reply to the second frame', timeoutMs: 5_000, intervalMs: 10 });
  t.equal(r.toJs.length, 1 + cases.length, 'delivered by the lane, not JS');
  t.same([hop.highest[0], far.highest[0]], [h.counter, farCounterCell[0]! - 1], 'both windows took its counters');
  t.equal(r.native.laneStats(r.lane).farRxFrames, 2, 'two far frames in all');

  r.native.laneClear(r.lane);
  const cleared = message(echoRequest(r.tapMac, SINK, 31));
  await send(cleared);
  await waitJs(2 + cases.length, 'after laneClear the message reaches JS');
  t.ok(r.toJs[1 + cases.length]!.equals(cleared), 'intact');
});

// ---------------------------------------------------------------- arguments

/** `base` with the arguments at the given positions replaced. */
function withArgs(base: unknown[], over: Partial<Record<number, unknown>>): unknown[] {
  const a = [...base];
  for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
  return a;
}

t.test('laneSetFar and laneSetFarReceive refuse bad arguments; each table has 32 entries', { skip }, async (t) => {
  await loadSodium();
  const native = loadNative();
  const udp = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const sealing = aesGcm().key(randomBytes(32), true);
  const opening = aesGcm().key(randomBytes(32), false);
  const freed = aesGcm().key(randomBytes(32), true);
  t.teardown(() => { udp.close(); sealing.dispose(); opening.dispose(); freed.dispose(); });
  const sealer = sealing.nativeHandle;
  const opener = opening.nativeHandle;
  const freedSealer = freed.nativeHandle;
  if (sealer === null || opener === null || freedSealer === null) throw new Error('no AEAD handles');
  freed.dispose();
  const lane = udp.openLane(LANE_MAX, REJECT_AFTER_COUNTER);
  const head = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  writeSleeveHeader(head, 0, SLEEVE_TYPE_FAR, A, 0);
  writeInnerHeader(head, SLEEVE_HEADER_BYTES, A, C, MAX_HOPS);
  const headWith = (at: number, v: number): Buffer => { const h = Buffer.from(head); h[at] = v; return h; };
  const farHead = Buffer.from([1, 0, 0, 0, 0x8b, 0xad, 0xf0, 0x0d]);
  const counter = new Float64Array(1);
  const farCounter = new Float64Array(1);
  const addr = addr16('127.0.0.1');
  const farBase: unknown[] = [lane, Buffer.alloc(12, 1), head, sealer, counter, farHead, sealer, farCounter, addr, 9];
  const setFar = (over: Partial<Record<number, unknown>>): boolean => (native.laneSetFar as (...a: unknown[]) => boolean)(...withArgs(farBase, over));
  const farCases: [string, Partial<Record<number, unknown>>, typeof TypeError | typeof RangeError][] = [
    ['not a lane', { 0: {} }, TypeError],
    ['macs of 11 bytes', { 1: Buffer.alloc(11) }, RangeError],
    ['macs of 13 bytes', { 1: Buffer.alloc(13) }, RangeError],
    ['macs as a string', { 1: 'abcdefabcdef' }, TypeError],
    ['head of 28 bytes', { 2: head.subarray(0, 28) }, RangeError],
    ['head of 30 bytes', { 2: Buffer.concat([head, Buffer.of(0)]) }, RangeError],
    ['a FRAME head', { 2: headWith(1, SLEEVE_TYPE_FRAME) }, RangeError],
    ['a PROBE head with the key phase bit', { 2: headWith(1, SLEEVE_TYPE_PROBE | SLEEVE_KEY_PHASE_BIT) }, RangeError],
    ['a FAR head with another bit set', { 2: headWith(1, SLEEVE_TYPE_FAR | 0x40) }, RangeError],
    ['a version 3 head', { 2: headWith(0, 3) }, RangeError],
    ['farHead of 7 bytes', { 5: farHead.subarray(0, 7) }, RangeError],
    ['farHead of 16 bytes', { 5: Buffer.concat([farHead, Buffer.alloc(8)]) }, RangeError],
    ['farHead of version 2', { 5: Buffer.from([2, 0, 0, 0, 0, 0, 0, 1]) }, RangeError],
    ['addr16 of 4 bytes', { 8: Buffer.alloc(4) }, RangeError],
    ['port 0', { 9: 0 }, RangeError],
    ['port 65536', { 9: 65536 }, RangeError],
    ['an opener for the hop sealer', { 3: opener }, TypeError],
    ['an opener for the far sealer', { 6: opener }, TypeError],
    ['a plain object for the hop sealer', { 3: {} }, TypeError],
    ['the hop counter in a Float32Array', { 4: new Float32Array(1) }, TypeError],
    ['an empty hop counter', { 4: new Float64Array(0) }, TypeError],
    ['the far counter in an Int32Array', { 7: new Int32Array(2) }, TypeError],
    ['the far counter as an array', { 7: [0] }, TypeError],
    ['an IPv6 endpoint on an IPv4 socket', { 8: addr16('::1') }, RangeError],
  ];
  for (const [what, over, type] of farCases) t.throws(() => setFar(over), type, `laneSetFar: ${what}`);
  t.throws(() => setFar({ 6: freedSealer }), { code: 'ERR_CLOSED' }, 'laneSetFar: a freed far key');
  t.throws(() => setFar({ 3: freedSealer }), { code: 'ERR_CLOSED' }, 'laneSetFar: a freed hop key');
  t.throws(() => (native.laneSetFar as (...a: unknown[]) => boolean)(...farBase.slice(0, 9)), TypeError, 'laneSetFar: nine arguments');
  t.equal(native.laneStats(lane).entries, 0, 'none of them left an entry');
  t.ok(setFar({ 2: headWith(1, SLEEVE_TYPE_FAR | SLEEVE_KEY_PHASE_BIT) }), 'a FAR head with the key phase bit is taken');

  const ring = new Int32Array(64);
  const highest = new Float64Array(1);
  const farRing = new Int32Array(64);
  const farHighest = new Float64Array(1);
  const rxBase: unknown[] = [lane, SLEEVE_TYPE_FAR, Buffer.concat([B, C]), A, Buffer.alloc(12, 1), opener, ring, highest, KEY_ID, opener, farRing,
    farHighest, addr, 9];
  const setRx = (over: Partial<Record<number, unknown>>): boolean => (native.laneSetFarReceive as (...a: unknown[]) => boolean)(...withArgs(rxBase, over));
  const rxCases: [string, Partial<Record<number, unknown>>, typeof TypeError | typeof RangeError][] = [
    ['not a lane', { 0: udp }, TypeError],
    ['a FRAME type', { 1: SLEEVE_TYPE_FRAME }, RangeError],
    ['a FRAME type with the key phase bit', { 1: SLEEVE_TYPE_FRAME | SLEEVE_KEY_PHASE_BIT }, RangeError],
    ['a FAR type with another bit set', { 1: SLEEVE_TYPE_FAR | 0x40 }, RangeError],
    ['type 256', { 1: 256 + SLEEVE_TYPE_FAR }, RangeError],
    ['type -1', { 1: -1 }, RangeError],
    ['type as a string', { 1: '3' }, TypeError],
    ['names of 6 bytes', { 2: B }, RangeError],
    ['names of 13 bytes', { 2: Buffer.concat([B, C, Buffer.of(0)]) }, RangeError],
    ['origin of 5 bytes', { 3: A.subarray(0, 5) }, RangeError],
    ['origin of 12 bytes', { 3: Buffer.concat([A, A]) }, RangeError],
    ['origin as an Int32Array', { 3: new Int32Array(6) }, TypeError],
    ['macs of 11 bytes', { 4: Buffer.alloc(11) }, RangeError],
    ['addr16 of 15 bytes', { 12: Buffer.alloc(15) }, RangeError],
    ['port 0', { 13: 0 }, RangeError],
    ['a sealer for the hop opener', { 5: sealer }, TypeError],
    ['a sealer for the far opener', { 9: sealer }, TypeError],
    ['a ring of 63 words', { 6: new Int32Array(63) }, TypeError],
    ['a ring in a Uint32Array', { 6: new Uint32Array(64) }, TypeError],
    ['highest in a Float32Array', { 7: new Float32Array(1) }, TypeError],
    ['highest in an Int32Array', { 7: new Int32Array(2) }, TypeError],
    ['farKeyId -1', { 8: -1 }, RangeError],
    ['farKeyId 2^32', { 8: 2 ** 32 }, RangeError],
    ['farKeyId 1.5', { 8: 1.5 }, RangeError],
    ['farKeyId NaN', { 8: Number.NaN }, RangeError],
    ['farKeyId as a string', { 8: '1' }, TypeError],
    ['a far ring of 10 words', { 10: new Int32Array(10) }, TypeError],
    ['a far ring in a Float64Array', { 10: new Float64Array(64) }, TypeError],
    ['farHighest in an Int32Array', { 11: new Int32Array(2) }, TypeError],
    ['an empty farHighest', { 11: new Float64Array(0) }, TypeError],
  ];
  for (const [what, over, type] of rxCases) t.throws(() => setRx(over), type, `laneSetFarReceive: ${what}`);
  const freedOpening = aesGcm().key(randomBytes(32), false);
  const freedOpener = freedOpening.nativeHandle;
  freedOpening.dispose();
  t.throws(() => setRx({ 9: freedOpener }), { code: 'ERR_CLOSED' }, 'laneSetFarReceive: a freed far key');
  t.throws(() => (native.laneSetFarReceive as (...a: unknown[]) => boolean)(...rxBase.slice(0, 13)), TypeError, 'laneSetFarReceive: thirteen arguments');
  t.equal(native.laneStats(lane).entries, 1, 'none of them left an entry');
  t.ok(setRx({ 1: SLEEVE_TYPE_FAR | SLEEVE_KEY_PHASE_BIT, 8: 2 ** 32 - 1 }), 'FAR with the key phase bit, key id 2^32 - 1: taken');
  t.ok(setRx({ 8: 0 }), 'key id 0: taken');
  t.equal(native.laneStats(lane).entries, 3, 'three entries');
  t.ok(setRx({ 3: D, 8: 7 }), 'the same neighbour, type and pair from another origin');
  t.equal(native.laneStats(lane).entries, 3, 'replaced the entry');

  native.laneClear(lane);
  for (let i = 0; i < LANE_ENTRIES; i++) t.ok(setFar({ 1: Buffer.alloc(12, i + 1) }), `far entry ${i + 1}`);
  t.notOk(setFar({ 1: Buffer.alloc(12, 0xee) }), 'a 33rd pair: the table is full');
  t.ok(setFar({ 1: Buffer.alloc(12, 5) }), 'an installed pair can be replaced when full');
  t.notOk(native.laneSet(lane, Buffer.alloc(12, 0xee), Buffer.alloc(29), sealer, counter, addr, 9), 'and a direct one finds no room either');
  for (let i = 0; i < LANE_ENTRIES; i++) t.ok(setRx({ 4: Buffer.alloc(12, i + 1) }), `far receive entry ${i + 1}`);
  t.notOk(setRx({ 4: Buffer.alloc(12, 0xee) }), 'a 33rd receive pair: that table is full');
  t.equal(native.laneStats(lane).entries, 2 * LANE_ENTRIES, '64 entries');
  native.laneClear(lane);
  t.equal(native.laneStats(lane).entries, 0, 'cleared');
});
