// The overlay's side of the lone-frame lane (router/overlay/lane-entries.ts):
// two Overlays with AES-256-GCM links on in-memory ports and a manual clock,
// each with a recording fake of the native lane. Which frames install an
// entry and with what bytes, and every event that must clear the lane: new
// routes, a link's status or endpoint changing, a key rotating, a MAC moving,
// a neighbour going, and the probe tick's check when the UDP path goes
// quiet. The native lane's own behaviour is test/e2e/lone-lane.test.ts's.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm } from '../../router/overlay/aes-gcm';
import { frameAead } from '../../router/overlay/frame-aead';
import type { LaneStats } from '../../router/overlay/native';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { LANE_ENTRIES, SEEN_RECORD_BYTES, type FramePort, type LoneFrameLane, type RelayEntry } from '../../router/overlay/ports';
import { INNER_HEADER_BYTES, MAX_HOPS, SLEEVE_HEADER_BYTES, VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import { pairPorts } from './pair-port';

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const MAC_A = Buffer.from([0x0a, 0, 0, 0, 0, 0x01]);
const MAC_A2 = Buffer.from([0x0a, 0, 0, 0, 0, 0x02]);
const MAC_B = Buffer.from([0x0c, 0, 0, 0, 0, 0x01]);
const BROADCAST = Buffer.alloc(6, 0xff);
const nameBytes = (n: PeerName): Buffer => Buffer.from(n.split(':').map((h) => parseInt(h, 16)));

class FakeLane implements LoneFrameLane {
  readonly sets: { macs: Buffer; head: Buffer; counter: Float64Array; host: string; port: number }[] = [];
  readonly receives: { type: number; names: Buffer; macs: Buffer; ring: Int32Array; highest: Float64Array; host: string; port: number }[] = [];
  clears = 0;
  seen: Buffer[] = [];
  frames = 0;
  set(macs: Uint8Array, head: Uint8Array, _sealer: unknown, counter: Float64Array, host: string, port: number): boolean {
    this.sets.push({ macs: Buffer.from(macs), head: Buffer.from(head), counter, host, port });
    return true;
  }
  setReceive(type: number, names: Uint8Array, macs: Uint8Array, _opener: unknown, ring: Int32Array, highest: Float64Array, host: string, port: number): boolean {
    this.receives.push({ type, names: Buffer.from(names), macs: Buffer.from(macs), ring, highest, host, port });
    return true;
  }
  readonly relays: RelayEntry[] = [];
  setRelay(r: RelayEntry): boolean {
    this.relays.push(r);
    return true;
  }
  setFar(): boolean { return false; }
  setFarReceive(): boolean { return false; }
  clear(): void { this.clears++; }
  takeSeen(out: Uint8Array): number {
    this.seen.forEach((p, i) => out.set(p, i * SEEN_RECORD_BYTES));
    return this.seen.splice(0).length;
  }
  stats(): LaneStats {
    return { frames: this.frames, bytes: this.frames * 100, txDroppedAgain: 0, txErrors: 0, entries: 0, rxFrames: 3, rxBytes: 300, rxWriteErrors: 0, relayFrames: 0, relayBytes: 0, relayErrors: 0, farFrames: 0, farRxFrames: 0 };
  }
}

function frame(dst: Buffer, src: Buffer, bytes = 100, gsoType = 0): Buffer {
  const f = Buffer.alloc(VNET_HDR_BYTES + bytes);
  f[1] = gsoType;
  dst.copy(f, VNET_HDR_BYTES);
  src.copy(f, VNET_HDR_BYTES + 6);
  f.writeUInt16BE(0x0800, VNET_HDR_BYTES + 12);
  return f;
}

const aes = probeAesGcm().aes;

t.test('lone frames install lane entries; every change clears them', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  await loadSodium();
  const clock = new ManualClock();
  const names = [A, B];
  const hosts = ['10.9.0.1', '10.9.0.2'];
  const ports = pairPorts(hosts[0]!, hosts[1]!);
  const lanes = [new FakeLane(), new FakeLane()];
  const onFrame: ((buf: Buffer, off: number, len: number) => void)[] = [];
  const bridges: FramePort[] = names.map((_, i) => ({
    start: (f, end) => { onFrame[i] = (buf, off, len) => { f(buf, off, len); end(); }; },
    write: () => {}, close: () => {},
  }));
  const maxFrames: number[] = [];
  const overlays = names.map((name, i) => new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), aes, bridge: bridges[i]!, udp: ports[i]!,
      lane: (max) => { maxFrames.push(max); return lanes[i]!; } },
    { localPeer: name, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS },
  ));
  t.same(maxFrames, [VNET_HDR_BYTES + 1375 + 18, VNET_HDR_BYTES + 1375 + 18], 'the lane takes frames up to the MTU');
  const keyAB = randomBytes(32);
  const keyBA = randomBytes(32);
  const rings = [
    new SleeveKeyRing(Buffer.from(keyAB), Buffer.from(keyBA), 'aes-256-gcm'),
    new SleeveKeyRing(Buffer.from(keyBA), Buffer.from(keyAB), 'aes-256-gcm'),
  ];
  const direct = (i: number): void => {
    const other = names[1 - i]!;
    overlays[i]!.setRoutes({ nextHop: (dst) => (dst === other ? other : null), broadcastChildren: (o) => (o === names[i] ? [other] : []) });
  };
  overlays.forEach((o) => o.start());
  overlays.forEach((o, i) => {
    direct(i);
    o.addNeighbour({ name: names[1 - i]!, host: hosts[1 - i]!, udpPort: 6783, keys: rings[i]!, sendControl: () => {} });
    o.handleUdpStatus(names[1 - i]!, { hearing: true });
  });
  const laneA = lanes[0]!;
  // B's container speaks first (a broadcast), so A learns that MAC_B lives at B.
  onFrame[1]!(frame(BROADCAST, MAC_B), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.sets.length, 0, 'a broadcast installs nothing');

  const sentBefore = ports[0]!.sent.length;
  onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
  t.equal(ports[0]!.sent.length, sentBefore + 1, 'JS sent the frame itself');
  t.equal(laneA.sets.length, 1, 'and installed its pair');
  const set = laneA.sets[0]!;
  const datagram = ports[0]!.sent[sentBefore]!;
  t.ok(set.macs.equals(Buffer.concat([MAC_B, MAC_A])), 'keyed by destination and source MAC');
  t.ok(set.head.subarray(0, 8).equals(datagram.subarray(0, 8)), 'header: version, type and sender as JS wrote them');
  t.ok(set.head.subarray(8, 16).equals(Buffer.alloc(8)), 'the counter bytes are the lane\'s to fill');
  t.ok(set.head.subarray(SLEEVE_HEADER_BYTES).equals(Buffer.concat([nameBytes(A), nameBytes(B), Buffer.from([MAX_HOPS])])),
    'inner header: A to B, 32 hops');
  t.equal(set.head.length, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, '29 bytes in all');
  t.equal(set.counter, rings[0]!.sendCounterCell, 'the ring\'s own counter cell');
  t.same([set.host, set.port], [hosts[1], 6783], 'B\'s endpoint');

  onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.sets.length, 1, 'an installed pair is not installed again');
  onFrame[0]!(frame(MAC_B, MAC_A2, 2000, 1), 0, VNET_HDR_BYTES + 2000);
  t.equal(laneA.sets.length, 1, 'a super-frame installs nothing');
  onFrame[0]!(frame(MAC_B, MAC_A2, 1375 + 19), 0, VNET_HDR_BYTES + 1375 + 19);
  t.equal(laneA.sets.length, 1, 'nor a frame over the MTU');

  const clearsAfter = (what: string, act: () => void, expectClear = true): void => {
    onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
    const before = laneA.clears;
    act();
    t.equal(laneA.clears - before, expectClear ? 1 : 0, what);
  };
  clearsAfter('the same status again clears nothing', () => overlays[0]!.handleUdpStatus(B, { hearing: true }), false);
  clearsAfter('a status saying B stopped hearing us clears the lane', () => overlays[0]!.handleUdpStatus(B, { hearing: false }));
  overlays[0]!.handleUdpStatus(B, { hearing: true });
  clearsAfter('new routes clear it', () => direct(0));
  clearsAfter('a key rotation clears it', () => rings[0]!.rotateSend(1, randomBytes(32)));
  t.equal(laneA.sets.at(-1)!.head[1]! & 0x80, 0, 'an entry made before the rotation had phase 0');
  onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.sets.at(-1)!.head[1]! & 0x80, 0x80, 'one made after it carries phase 1');
  clearsAfter('B\'s MAC showing up on our bridge clears it', () => onFrame[0]!(frame(BROADCAST, MAC_B), 0, VNET_HDR_BYTES + 100));
  // Back at B, as far as A knows.
  onFrame[1]!(frame(BROADCAST, MAC_B), 0, VNET_HDR_BYTES + 100);

  // A datagram from B from a new address: authenticated, so B's endpoint moves.
  onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
  const movedBefore = laneA.clears;
  (ports[1] as { host: string }).host = '10.9.0.22';
  onFrame[1]!(frame(MAC_A, MAC_B), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.clears - movedBefore, 1, 'B\'s endpoint moving clears it');
  onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.sets.at(-1)!.host, '10.9.0.22', 'the next entry goes to the new endpoint');

  laneA.seen.push(Buffer.concat([MAC_B, MAC_A, Buffer.alloc(6)]));
  const lastJsFrame = clock.now();
  clock.advance(300);
  const local = overlays[0]!.macTable().find((m) => m.mac === '0a:00:00:00:00:01');
  t.ok(local !== undefined && local.lastSeenMs > lastJsFrame, 'a pair the lane carried keeps its source MAC learnt, on the probe tick');

  // B's container answers: A delivers a plain frame B sent straight to it, and installs a receive entry.
  direct(0);
  const receivesBefore = laneA.receives.length;
  onFrame[1]!(frame(MAC_A, MAC_B), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.receives.length, receivesBefore + 1, 'a frame delivered from B installs a receive entry');
  const rx = laneA.receives.at(-1)!;
  t.equal(rx.type & 0x7f, 1, 'for FRAME datagrams');
  t.ok(rx.names.equals(Buffer.concat([nameBytes(B), nameBytes(A)])), 'from B to us');
  t.ok(rx.macs.equals(Buffer.concat([MAC_A, MAC_B])), 'with that MAC pair');
  t.same([rx.host, rx.port], ['10.9.0.22', 6783], 'from B\'s endpoint');
  t.equal(rx.ring.length, 64, 'naming the phase\'s replay window');
  t.ok(rx.highest[0]! > 0, 'whose highest counter is what JS accepted so far');
  onFrame[1]!(frame(MAC_A, MAC_B), 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.receives.length, receivesBefore + 1, 'an installed receive entry is not installed again');
  const nonPlain = frame(MAC_A, MAC_A2);
  nonPlain[0] = 1;
  nonPlain[6] = 34;
  nonPlain[8] = 16;
  onFrame[1]!(nonPlain, 0, VNET_HDR_BYTES + 100);
  t.equal(laneA.receives.length, receivesBefore + 1, 'a frame with a checksum left to finish installs nothing');
  laneA.seen.push(Buffer.concat([MAC_A, MAC_B, nameBytes(B)]));
  const beforeRx = clock.now();
  clock.advance(300);
  const remote = overlays[0]!.macTable().find((m) => m.mac === '0c:00:00:00:00:01');
  t.ok(remote !== undefined && remote.peer === B && remote.lastSeenMs > beforeRx, 'a pair the lane delivered keeps its source MAC learnt at B');

  laneA.frames = 5;
  const c = overlays[0]!.counters;
  t.equal(c['framesSentLane'], 5, 'the lane\'s frames are counted on their own');
  t.ok((c['framesSentUdp'] ?? 0) >= 5 && (c['framesFromBridge'] ?? 0) >= 5, 'and in the totals');
  t.equal(c['framesReceivedLane'], 3, 'so are the frames it delivered');
  t.ok((c['framesReceivedUdp'] ?? 0) >= 3 && (c['framesToBridge'] ?? 0) >= 3, 'in their totals too');

  // The UDP path goes quiet: the probes mark B as not hearing us without a status; the tick's check clears the lane.
  onFrame[0]!(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
  const quietBefore = laneA.clears;
  ports[0]!.other = null;
  ports[0]!.flush = () => {};
  clock.advance(3 * FAST_OVERLAY_TIMINGS.udpTimeoutMs);
  t.ok(laneA.clears > quietBefore, 'a link gone quiet clears the lane at a probe tick');

  overlays[0]!.handleUdpStatus(B, { hearing: true });
  clearsAfter('B leaving clears it', () => overlays[0]!.removeNeighbour(B));
  overlays.forEach((o) => o.close());
});

t.test('links the lane cannot serve install nothing', { skip: aes === null ? 'no AES-256-GCM here' : false }, async (t) => {
  await loadSodium();
  const clock = new ManualClock();
  for (const cipher of ['chacha20-poly1305', null] as const) {
    const lane = new FakeLane();
    let onFrame: (buf: Buffer, off: number, len: number) => void = () => {};
    const [port] = pairPorts('10.9.0.1', '10.9.0.2');
    port.flush = () => {};
    const o = new Overlay(
      { clock, logger: silentLogger, aead: frameAead(), aes, udp: port, lane: () => lane,
        bridge: { start: (f, end) => { onFrame = (b, off, len) => { f(b, off, len); end(); }; }, write: () => {}, close: () => {} } },
      { localPeer: A, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS },
    );
    o.start();
    o.setRoutes({ nextHop: (dst) => (dst === B ? B : null), broadcastChildren: () => [B] });
    o.addNeighbour({ name: B, host: '10.9.0.2', udpPort: 6783, keys: cipher === null ? null : new SleeveKeyRing(randomBytes(32), randomBytes(32), cipher),
      sendControl: () => {} });
    o.handleUdpStatus(B, { hearing: true });
    o.handleTcpFrame(B, Buffer.concat([nameBytes(B), nameBytes(A), Buffer.from([MAX_HOPS]), frame(BROADCAST, MAC_B)]));
    for (let i = 0; i < LANE_ENTRIES + 2; i++) onFrame(frame(MAC_B, MAC_A), 0, VNET_HDR_BYTES + 100);
    t.equal(lane.sets.length, 0, `${cipher ?? 'plaintext'}: no entry (the lane seals with AES-256-GCM only)`);
    o.close();
  }
});
