// The lone-frame lane (native/lane.c) against a real kernel and the JS seal:
// a TAP in a namespace of its own (tap-namespace.ts) whose lone frames the
// lane seals and sends to a UDP socket on loopback, where the test opens
// them with the receiving side's SleeveSession. Checks that the lane's
// datagram is the one JS would have sent, on the same counter, that it takes
// only what it has an entry for (everything else reaches the JS handler
// untouched), that a freed key, a spent counter or a closed socket sends
// nothing, and that bad arguments are errors, not crashes. Receiving: JS
// seals datagrams to the lane's socket; an expected one is opened and its
// frame (an echo request) written to the TAP, on the replay window JS
// shares; a replay, a forgery, another source, a frame that is not plain,
// a pair of datagrams go to JS intact, no counter spent. Traffic stays in the
// test's namespace and on loopback. Needs root and AES-NI.

import t from 'tap';
import * as dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm } from '../../router/overlay/aes-gcm';
import { frameAead } from '../../router/overlay/frame-aead';
import { loadNative, type LaneHandle, type TapHandle, type UdpHandle } from '../../router/overlay/native';
import { NativeLane } from '../../router/overlay/native-lane';
import { LANE_ENTRIES, LANE_SEEN_BYTES } from '../../router/overlay/ports';
import { REJECT_AFTER_COUNTER } from '../../router/overlay/replay-window';
import {
  INNER_HEADER_BYTES, MAX_HOPS, SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, SLEEVE_TYPE_FRAME, VNET_HDR_BYTES, readSleeveHeader,
  writeInnerHeader, writeSleeveHeader,
} from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { TAP_OFFLOAD_GSO, type TapDevice } from '../../router/overlay/tap-device';
import { UdpBatchSocket } from '../../router/overlay/udp-batch';
import { waitFor } from '../../scripts/wait';
import { SINK, echoRequest, isDatagramFrame, isEchoReply, sendFromNamespace } from './tap-frames';
import { sweepStale, tapInNamespace } from './tap-namespace';

sweepStale();

const SELF = Buffer.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x01]);
const PEER = Buffer.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x02]);
/** Frames up to this (vnet header included) may take the lane here; the test's big datagram is over it. */
const LANE_MAX = VNET_HDR_BYTES + 600;

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const aes = probeAesGcm().aes;

interface Rig {
  tap: TapDevice;
  ns: string;
  tapMac: Buffer;
  udp: UdpBatchSocket;
  lane: NativeLane;
  /** Sender side (ours) and receiver side (the neighbour's) of one link. */
  ringOut: SleeveKeyRing;
  sealer: SleeveSession;
  opener: SleeveSession;
  receiver: dgram.Socket;
  received: Buffer[];
  /** Frames the JS handler got (the lane left them). */
  toJs: Buffer[];
}

async function rig(t: Tap): Promise<Rig> {
  await loadSodium();
  const { tap, ns, tapMac } = tapInNamespace(t, { vnetHdr: true, vnetHdrBytes: VNET_HDR_BYTES, offloadFlags: TAP_OFFLOAD_GSO });
  const udp = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const receiver = dgram.createSocket('udp4');
  t.teardown(() => { udp.close(); receiver.close(); });
  const received: Buffer[] = [];
  receiver.on('message', (m) => received.push(m));
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
  const key = randomBytes(32);
  const ringOut = new SleeveKeyRing(Buffer.from(key), randomBytes(32), 'aes-256-gcm');
  const ringIn = new SleeveKeyRing(randomBytes(32), Buffer.from(key), 'aes-256-gcm');
  const sealer = new SleeveSession(frameAead(), ringOut, SELF, aes);
  const opener = new SleeveSession(frameAead(), ringIn, PEER, aes);
  const toJs: Buffer[] = [];
  tap.onFrames((slab, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) toJs.push(Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)));
  });
  const lane = NativeLane.open(loadNative(), tap, udp, LANE_MAX, REJECT_AFTER_COUNTER);
  return { tap, ns, tapMac, udp, lane, ringOut, sealer, opener, receiver, received, toJs };
}

/** Installs the pair (SINK_MAC, the TAP's MAC) as the overlay would after its own send; whether the lane took it. */
function install(r: Rig, macs = Buffer.concat([SINK, r.tapMac])): boolean {
  const key = r.sealer.laneKey();
  if (key === null) throw new Error('no lane key');
  const head = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  writeSleeveHeader(head, 0, SLEEVE_TYPE_FRAME | key.phaseBit, SELF, 0);
  writeInnerHeader(head, SLEEVE_HEADER_BYTES, SELF, PEER, MAX_HOPS);
  return r.lane.set(macs, head, key.sealer, key.counter, '127.0.0.1', r.receiver.address().port);
}


/** Waits until the lane sent `datagrams` and JS got `frames` in all, then a little longer for strays. */
async function settle(r: Rig, datagrams: number, frames: number): Promise<void> {
  await waitFor(async () => r.received.length >= datagrams && r.toJs.length >= frames, {
    what: `${datagrams} datagrams from the lane and ${frames} frames to JS`, timeoutMs: 5_000, intervalMs: 10,
    detail: () => `lane sent ${r.received.length}, JS got ${r.toJs.length}`,
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
}


t.test('a lone frame leaves as the datagram JS would seal, on the shared counter', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  t.ok(install(r), 'the lane took the entry');
  // JS seals three datagrams first: the lane must go on from counter 3.
  const scratch = Buffer.alloc(256);
  for (let i = 0; i < 3; i++) t.ok(r.sealer.seal(scratch, 0, SLEEVE_TYPE_FRAME, 10) > 0, `JS sealed counter ${i}`);
  sendFromNamespace(r.ns, [60]);
  await settle(r, 1, 0);
  t.equal(r.received.length, 1, 'one datagram left through the lane');
  t.equal(r.toJs.length, 0, 'and the JS handler never saw the frame');
  const d = r.received[0]!;
  const h = readSleeveHeader(d, 0, d.length);
  if (typeof h === 'string') throw new Error(`bad header: ${h}`);
  t.equal(d[0], 2, 'sleeve version 2');
  t.same({ type: h.type, phase: d[1]! & SLEEVE_KEY_PHASE_BIT, counter: h.counter }, { type: SLEEVE_TYPE_FRAME, phase: 0, counter: 3 }, 'a FRAME under counter 3');
  t.ok(d.subarray(2, 8).equals(SELF), 'from us');
  const again = Buffer.from(d);
  const body = r.opener.open(d, 0, d.length, h.counter);
  t.type(body, 'number', 'the neighbour\'s session opens it');
  const inner = d.subarray(SLEEVE_HEADER_BYTES, SLEEVE_HEADER_BYTES + (body as number));
  t.ok(inner.subarray(0, 6).equals(SELF) && inner.subarray(6, 12).equals(PEER) && inner[12] === MAX_HOPS, 'inner header: us to the peer, 32 hops left');
  t.ok(isDatagramFrame(inner.subarray(INNER_HEADER_BYTES), r.tapMac, 60, 0x40), 'the frame as the TAP gave it, vnet header first');
  t.equal(r.ringOut.sendCounter, 4, 'the ring\'s counter moved on: JS seals counter 4 next');
  t.equal(r.opener.open(again, 0, again.length, h.counter), 'replay', 'the same datagram again is a replay');
  const stats = r.lane.stats();
  t.same({ frames: stats.frames, bytes: stats.bytes, entries: stats.entries }, { frames: 1, bytes: again.length, entries: 1 }, 'counted');
  const seen = Buffer.alloc(LANE_SEEN_BYTES);
  t.equal(r.lane.takeSeen(seen), 1, 'one pair sent since the last look');
  t.ok(seen.subarray(0, 18).equals(Buffer.concat([SINK, r.tapMac, Buffer.alloc(6)])), 'that pair, sent by us');
  t.equal(r.lane.takeSeen(seen), 0, 'and none since');
});

t.test('what the lane leaves to JS', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  install(r);
  sendFromNamespace(r.ns, [60, 61]);
  await settle(r, 0, 2);
  t.equal(r.received.length, 0, 'two frames in one wakeup: none through the lane');
  t.ok(isDatagramFrame(r.toJs[0]!, r.tapMac, 60, 0x40) && isDatagramFrame(r.toJs[1]!, r.tapMac, 61, 0x41), 'both reached JS intact');
  sendFromNamespace(r.ns, [700]);
  await settle(r, 0, 3);
  t.ok(r.received.length === 0 && isDatagramFrame(r.toJs[2]!, r.tapMac, 700, 0x40), 'a frame over the lane\'s size: JS');
  r.lane.clear();
  sendFromNamespace(r.ns, [60]);
  await settle(r, 0, 4);
  t.equal(r.received.length, 0, 'after clear(): JS');
  t.ok(install(r, Buffer.concat([Buffer.from([0x02, 0, 0, 0, 0, 0x99]), r.tapMac])), 'an entry for another destination');
  sendFromNamespace(r.ns, [60]);
  await settle(r, 0, 5);
  t.equal(r.received.length, 0, 'a pair without an entry: JS');

  install(r);
  r.ringOut.sendCounter = REJECT_AFTER_COUNTER;
  sendFromNamespace(r.ns, [60]);
  await settle(r, 0, 6);
  t.equal(r.received.length, 0, 'a spent counter: JS (which drops the frame)');
  t.equal(r.ringOut.sendCounter, REJECT_AFTER_COUNTER, 'and the counter stays');
  r.ringOut.sendCounter = 7;

  r.sealer.close();
  sendFromNamespace(r.ns, [60]);
  await settle(r, 0, 7);
  t.equal(r.received.length, 0, 'the key freed under the entry: nothing sealed, JS has the frame');
  t.equal(r.ringOut.sendCounter, 7, 'no counter spent on it');
  t.equal(r.lane.stats().frames, 0, 'the lane sent nothing at all');
});

t.test('a closed socket sends nothing; a closed TAP lets its lane go', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  install(r);
  r.udp.close();
  sendFromNamespace(r.ns, [60]);
  await settle(r, 0, 1);
  t.equal(r.received.length, 0, 'the lane\'s socket closed: the frame went to JS');
  r.tap.close();
  t.doesNotThrow(() => r.lane.clear(), 'the lane outlives its TAP');
});

t.test('bad arguments are errors, not crashes; the table has 32 entries', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  const native = loadNative();
  const key = r.sealer.laneKey()!;
  const udpHandle = (r.udp as unknown as { handle: UdpHandle }).handle;
  const tapHandle = (r.tap as unknown as { handle: TapHandle }).handle;
  const laneHandle = native.laneNew(udpHandle, LANE_MAX, REJECT_AFTER_COUNTER);
  const head = Buffer.alloc(29);
  const addr = Buffer.alloc(16);
  addr.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
  const set = (over: Partial<{ macs: unknown; head: unknown; sealer: unknown; counter: unknown; addr: unknown; port: unknown }>): boolean =>
    (native.laneSet as (...a: unknown[]) => boolean)(laneHandle, over.macs ?? Buffer.alloc(12), over.head ?? head, over.sealer ?? key.sealer,
      over.counter ?? key.counter, over.addr ?? addr, over.port ?? 9);
  t.throws(() => set({ macs: Buffer.alloc(11) }), RangeError, 'macs must be 12 bytes');
  t.throws(() => set({ head: Buffer.alloc(30) }), RangeError, 'head must be 29 bytes');
  t.throws(() => set({ addr: Buffer.alloc(4) }), RangeError, 'addr16 must be 16 bytes');
  t.throws(() => set({ port: 0 }), RangeError, 'port 0');
  t.throws(() => set({ counter: new Uint32Array(2) }), TypeError, 'the counter must be a Float64Array');
  t.throws(() => set({ sealer: {} }), TypeError, 'a sealer must be an AEAD handle');
  const openerOnly = aes!.key(randomBytes(32), false) as unknown as { handle: unknown };
  t.throws(() => set({ sealer: openerOnly.handle }), TypeError, 'an opening context cannot seal');
  t.throws(() => (native.laneSet as (...a: unknown[]) => boolean)(udpHandle, Buffer.alloc(12), head, key.sealer, key.counter, addr, 9), TypeError,
    'a UDP handle is not a lane');
  t.throws(() => native.laneNew(udpHandle, 5, REJECT_AFTER_COUNTER), RangeError, 'a frame size below a header');
  t.throws(() => native.laneNew(udpHandle, LANE_MAX, Number.NaN), RangeError, 'a NaN counter bound');
  t.throws(() => native.tapSetLane(udpHandle as unknown as TapHandle, laneHandle), TypeError, 'only a TAP takes a lane');
  t.throws(() => native.tapSetLane(tapHandle, {} as LaneHandle), TypeError, 'only a lane handle');
  t.notOk(r.lane.set(Buffer.alloc(12), head, key.sealer, key.counter, '::1', 9), 'an IPv6 endpoint on an IPv4 socket: no entry');
  for (let i = 0; i < LANE_ENTRIES; i++) t.ok(set({ macs: Buffer.alloc(12, i + 1) }), `entry ${i + 1}`);
  t.notOk(set({ macs: Buffer.alloc(12, 0xee) }), 'a 33rd pair: the table is full');
  t.ok(set({ macs: Buffer.alloc(12, 5) }), 'an installed pair can be replaced when full');
  t.equal(native.laneStats(laneHandle).entries, LANE_ENTRIES, 'still 32');
  native.laneClear(laneHandle);
  t.equal(native.laneStats(laneHandle).entries, 0, 'cleared');
});




t.test('a lone datagram the lane expects reaches the TAP; anything else reaches JS intact', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  const r = await rig(t);
  const toJs: Buffer[] = [];
  r.udp.onDatagrams((slab, offsets, lengths, _sources, count) => {
    for (let i = 0; i < count; i++) toJs.push(Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)));
  });
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  await new Promise<void>((resolve) => peer.bind(0, '127.0.0.1', resolve));
  const to = r.udp.localPort;
  // The neighbour (SELF, sealing with ringOut) sends to us (PEER, opening with ringIn).
  const datagram = (frame: Buffer, counter?: number): Buffer => {
    if (counter !== undefined) r.ringOut.sendCounter = counter;
    const b = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES + frame.length + 16);
    writeInnerHeader(b, SLEEVE_HEADER_BYTES, SELF, PEER, MAX_HOPS);
    frame.copy(b, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
    const n = r.sealer.seal(b, 0, SLEEVE_TYPE_FRAME, INNER_HEADER_BYTES + frame.length);
    return b.subarray(0, n);
  };
  const send = async (...ds: Buffer[]): Promise<void> => {
    for (const d of ds) await new Promise<void>((resolve) => peer.send(d, to, '127.0.0.1', () => resolve()));
  };
  const waitJs = async (n: number, what: string): Promise<void> => {
    await waitFor(async () => toJs.length >= n, { what, timeoutMs: 5_000, intervalMs: 10, detail: () => `JS got ${toJs.length}` });
  };

  // JS opens the first datagram, as the overlay would; the window is then the key's.
  const first = datagram(echoRequest(r.tapMac, SINK, 1), 0);
  await send(first);
  await waitJs(1, 'the first datagram reaches JS');
  t.equal(r.opener.open(toJs[0]!, 0, toJs[0]!.length, 0), INNER_HEADER_BYTES + echoRequest(r.tapMac, SINK, 1).length, 'JS opened counter 0');
  const key = r.opener.laneOpener(SLEEVE_TYPE_FRAME);
  if (key === null) throw new Error('no lane opener');
  // Another pair from the same neighbour first: the datagram's own pair is found once it is open, wherever its entry is.
  const decoy = Buffer.concat([r.tapMac, Buffer.from([0x02, 0, 0, 0, 0, 0x99])]);
  t.ok(r.lane.setReceive(SLEEVE_TYPE_FRAME, Buffer.concat([SELF, PEER]), decoy, key.opener, key.ring, key.highest, '127.0.0.1', peer.address().port),
    'the lane took an entry for another pair');
  t.ok(r.lane.setReceive(SLEEVE_TYPE_FRAME, Buffer.concat([SELF, PEER]), Buffer.concat([r.tapMac, SINK]), key.opener, key.ring, key.highest,
    '127.0.0.1', peer.address().port), 'the lane took the receive entry');

  await send(datagram(echoRequest(r.tapMac, SINK, 2), 1));
  await waitFor(async () => r.toJs.some((f) => isEchoReply(f, 2)), { what: 'the echo reply to the lane\'s frame', timeoutMs: 5_000, intervalMs: 10 });
  t.equal(toJs.length, 1, 'the lane delivered counter 1: JS never saw the datagram');
  t.equal(r.lane.stats().rxFrames, 1, 'counted');
  t.equal(key.highest[0], 1, 'the shared window moved to counter 1');

  const replay = datagram(echoRequest(r.tapMac, SINK, 3), 1);
  await send(replay);
  await waitJs(2, 'a replayed counter reaches JS');
  t.ok(toJs[1]!.equals(replay), 'intact');
  t.equal(r.opener.open(toJs[1]!, 0, toJs[1]!.length, 1), 'replay', 'and JS refuses it: the lane recorded counter 1 in JS\'s window');

  const forged = Buffer.from(datagram(echoRequest(r.tapMac, SINK, 4), 5));
  forged[40] = forged[40]! ^ 1;
  await send(forged);
  await waitJs(3, 'a forgery reaches JS');
  t.ok(toJs[2]!.equals(forged), 'intact, for JS to count');

  const otherSource = dgram.createSocket('udp4');
  t.teardown(() => otherSource.close());
  const fromElsewhere = datagram(echoRequest(r.tapMac, SINK, 5), 6);
  await new Promise<void>((resolve) => otherSource.send(fromElsewhere, to, '127.0.0.1', () => resolve()));
  await waitJs(4, 'a datagram from another port reaches JS');

  const notPlain = echoRequest(r.tapMac, SINK, 6);
  notPlain[0] = 2; // VIRTIO_NET_HDR_F_DATA_VALID
  const notPlainDatagram = datagram(notPlain, 7);
  await send(notPlainDatagram);
  await waitJs(5, 'a frame with a virtio_net_hdr field set reaches JS');
  t.ok(toJs[4]!.equals(notPlainDatagram), 'intact');
  t.type(r.opener.open(toJs[4]!, 0, toJs[4]!.length, 7), 'number', 'and JS opens it: the lane spent no counter on it');

  r.tap.pause();
  r.udp.pause();
  await send(datagram(echoRequest(r.tapMac, SINK, 7), 8), datagram(echoRequest(r.tapMac, SINK, 8), 9));
  await new Promise((resolve) => setTimeout(resolve, 50));
  r.udp.resume();
  r.tap.resume();
  await waitJs(7, 'two datagrams of one wakeup reach JS');
  t.equal(r.lane.stats().rxFrames, 1, 'the lane delivered only the one it expected');
});
