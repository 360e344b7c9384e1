// The far sleeve path (router/overlay/far-path.ts, far-session.ts): three
// Overlays in a line, A - B - C, over in-memory ports, AES-256-GCM on every
// hop and an end-to-end key from A to C installed as far-keys.ts would.
// Checked: A's unicast frames to C take the far format, B relays them in
// place without any far key, C opens them byte for byte; without a key they
// go hop by hop and the key is asked for; a hostile relay that holds B's link
// keys (so every hop check passes) flips, swaps, replays, injects and
// reorders, and C drops and counts it all; a rekey and a relay whose links
// are renewed (restart) keep frames flowing; a peer not taking far messages
// refuses them; the receiver's key slots evict unused keys first.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { decodeControlMessage } from '../../router/mesh/protocol';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm, type AesGcm } from '../../router/overlay/aes-gcm';
import { FAR_BODY_AT } from '../../router/overlay/far-path';
import { FarSessions } from '../../router/overlay/far-session';
import { REJECT_AFTER_COUNTER } from '../../router/overlay/replay-window';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import type { LaneStats } from '../../router/overlay/native';
import {
  FramePort, type LaneKeyCells, type LaneOpenerCells, type LoneFrameLane, type RelayEntry, STAGE_SLOT_BYTES,
} from '../../router/overlay/ports';
import { MIN_SPREAD_STRIDE } from '../../router/overlay/segment-receiver';
import { MAX_HOPS, readSleeveHeader, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FAR, VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import { compactSegments, SEGMENT_HEADER_BYTES } from '../../router/overlay/sleeve-segments';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { LinePort } from './line-port';
import { tcpSuperFrame } from './tcp-super-frame';

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const C = '02:00:00:00:00:0c' as PeerName;
const NAMES = [A, B, C];
const HOSTS: Record<string, string> = { [A]: '10.9.0.1', [B]: '10.9.0.2', [C]: '10.9.0.3' };
const FAR_KEY = Buffer.alloc(32, 0x5a);

interface Wire { from: number; to: number; bytes: Buffer; seg: number }

/** Keys of link x -> y. */
const linkKey = (x: number, y: number, gen = 0): Buffer => Buffer.alloc(32, 16 * x + y + 1 + 64 * gen);

function line(aes: AesGcm, opts: { farAtC?: boolean; segmentBytesA?: number; laneAtB?: LoneFrameLane; laneAtEnds?: [LoneFrameLane, LoneFrameLane] } = {}) {
  const lanes = [opts.laneAtEnds?.[0], opts.laneAtB, opts.laneAtEnds?.[1]];
  const clock = new ManualClock();
  const ports = NAMES.map(() => new LinePort());
  const delivered: Buffer[] = [];
  const onFrame: ((buf: Buffer, off: number, len: number) => void)[] = [];
  const bridges: FramePort[] = NAMES.map((_, i) => ({
    start: (f) => { onFrame[i] = f; },
    write: (buf, off, len) => { if (i === 2) delivered.push(Buffer.from(buf.subarray(off, off + len))); },
    close: () => {},
  }));
  const overlays = NAMES.map((name, i) => new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), aes, bridge: bridges[i]!, udp: ports[i]!, ...(lanes[i] ? { lane: () => lanes[i]! } : {}) },
    { localPeer: name, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS, segmentBytes: i === 0 ? opts.segmentBytesA ?? 1472 : 1472 },
  ));
  const wants: PeerName[] = [];
  const unknown: number[] = [];
  overlays.forEach((o, i) => {
    if (i === 2 && opts.farAtC === false) return;
    o.far!.source = { want: (dst) => { wants.push(dst); }, unknownKey: (_origin, keyId) => { unknown.push(keyId); } };
  });
  const next = (self: number, dst: PeerName): PeerName | null => {
    const d = NAMES.indexOf(dst);
    return d < 0 || d === self ? null : NAMES[d > self ? self + 1 : self - 1]!;
  };
  overlays.forEach((o, i) => {
    o.start();
    o.setRoutes({ nextHop: (dst) => next(i, dst), broadcastChildren: () => [], hops: (dst) => Math.abs(NAMES.indexOf(dst) - i) });
  });
  const controls: { from: number; to: number; msg: Uint8Array }[] = [];
  /** (Re)connects the links of B, as after a restart: fresh link keys. */
  const connect = (gen: number): void => {
    for (const [x, y] of [[0, 1], [1, 0], [1, 2], [2, 1]] as const) {
      overlays[x]!.addNeighbour({
        name: NAMES[y]!, host: HOSTS[NAMES[y]!]!, udpPort: 6783, keys: new SleeveKeyRing(linkKey(x, y, gen), linkKey(y, x, gen), 'aes-256-gcm'),
        sendControl: (msg) => { controls.push({ from: x, to: y, msg }); },
      });
      overlays[x]!.handleUdpStatus(NAMES[y]!, { hearing: true, segments: true, far: x === 1 && y === 2 ? opts.farAtC !== false : true });
    }
  };
  connect(0);
  const hostIndex = (host: string): number => NAMES.findIndex((n) => HOSTS[n] === host);
  /** Everything node `from` sent since the last call. */
  const take = (from: number): Wire[] => ports[from]!.out.splice(0).map((w) => ({ from, to: hostIndex(w.host), bytes: w.bytes, seg: w.seg }));
  const deliver = (w: Wire): void => {
    const slab = Buffer.alloc(STAGE_SLOT_BYTES + 64);
    w.bytes.copy(slab, 32);
    const to = ports[w.to]!;
    to.handler!(slab, 32, w.bytes.length, HOSTS[NAMES[w.from]!]!, 6783, w.seg);
    to.batchEnd!();
  };
  const run = (): void => {
    for (let moved = true; moved;) {
      moved = false;
      for (let i = 0; i < 3; i++) for (const w of take(i)) { moved = true; deliver(w); }
      // Control messages over the TCP connections: the frames among them.
      for (const c of controls.splice(0)) {
        const m = decodeControlMessage(c.msg);
        moved = true;
        if (m.type === 'far-frame') overlays[c.to]!.handleTcpFar(NAMES[c.from]!, m.message);
        if (m.type === 'frame') overlays[c.to]!.handleTcpFrame(NAMES[c.from]!, m.inner);
      }
    }
  };
  const base = overlays.map((o) => ({ ...o.counters }));
  const count = (i: number, name: string): number => (overlays[i]!.counters[name] ?? 0) - (base[i]![name] ?? 0);
  const send = (f: Buffer): void => { onFrame[0]!(f, 0, f.length); };
  // C's MAC behind C (a broadcast from it), so A's frames to it are unicast.
  const hello = Buffer.alloc(VNET_HDR_BYTES + 64);
  hello.fill(0xff, VNET_HDR_BYTES, VNET_HDR_BYTES + 6);
  hello.fill(0x02, VNET_HDR_BYTES + 6, VNET_HDR_BYTES + 12);
  hello[VNET_HDR_BYTES + 11] = 0x0b;
  hello.writeUInt16BE(0x0800, VNET_HDR_BYTES + 12);
  overlays[2]!.setRoutes({ nextHop: (dst) => next(2, dst), broadcastChildren: (o) => (o === C ? [B] : []), hops: (dst) => Math.abs(NAMES.indexOf(dst) - 2) });
  overlays[1]!.setRoutes({ nextHop: (dst) => next(1, dst), broadcastChildren: (o) => (o === C ? [A] : []), hops: (dst) => Math.abs(NAMES.indexOf(dst) - 1) });
  onFrame[2]!(hello, 0, hello.length);
  run();
  delivered.length = 0;
  const keys = (id = 1): void => {
    overlays[0]!.far!.farSendKey(C, id, Buffer.from(FAR_KEY.map((b) => b ^ id)));
    overlays[2]!.far!.farReceiveKey(A, id, Buffer.from(FAR_KEY.map((b) => b ^ id)));
  };
  const close = (): void => overlays.forEach((o) => o.close());
  const tick = (ms: number): void => clock.advance(ms);
  return { tick, controls, overlays, delivered, send, take, deliver, run, count, keys, connect, wants, unknown, close };
}

/** What C receives from B as one whole message (segments put together), the hop part opened with B's key to C. */
function openedAtC(aes: AesGcm, w: Wire): { msg: Buffer; hop: SleeveSession } {
  let msg = Buffer.from(w.bytes);
  let len = msg.length;
  // Compacted segments begin 4 bytes in: the 16-byte header then the body (sleeve-segments.ts).
  if (w.seg > 0) { len = SLEEVE_HEADER_BYTES + compactSegments(msg, 0, msg.length, w.seg); msg = msg.subarray(4); }
  const hop = new SleeveSession(frameAead(), new SleeveKeyRing(linkKey(2, 1), linkKey(1, 2), 'aes-256-gcm'), Uint8Array.of(2, 0, 0, 0, 0, 0x0c), aes);
  const h = readSleeveHeader(msg, 0, len);
  if (typeof h === 'string') throw new Error(h);
  if (hop.open(msg, 0, 61, h.counter) !== 29) throw new Error('hop part did not open');
  return { msg: msg.subarray(0, len), hop };
}

function flip(m: Buffer, i: number): void {
  m[i] = m[i]! ^ 1;
}

let counter = 1_000_000;
/** A hostile B: reseals `msg` (opened as above) under B's real key to C with a fresh counter, as version 2. */
function resealAsB(aes: AesGcm, msg: Buffer): Wire {
  const ring = new SleeveKeyRing(linkKey(1, 2), linkKey(2, 1), 'aes-256-gcm');
  ring.sendCounter = counter++;
  const s = new SleeveSession(frameAead(), ring, Uint8Array.of(2, 0, 0, 0, 0, 0x0b), aes);
  const out = Buffer.from(msg);
  s.seal(out, 0, SLEEVE_TYPE_FAR, 29, 2);
  return { from: 1, to: 2, bytes: out, seg: 0 };
}

t.test('far path: A seals once, B relays in place without a far key, C opens byte for byte', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const l = line(aes);
  const first = tcpSuperFrame(30_000, 9);
  l.send(first);
  l.run();
  t.same(l.wants, [C], 'without a key the key is asked for');
  t.equal(l.count(0, 'framesSentFar'), 0, 'and the frame goes hop by hop');
  t.ok(l.delivered[0]?.equals(first), 'arriving all the same');
  l.keys();
  const frames = [tcpSuperFrame(60_000, 1), tcpSuperFrame(20_000, 2), tcpSuperFrame(200, 3, true)];
  for (const f of frames) { l.send(f); l.run(); }
  t.equal(l.delivered.length, 4);
  t.ok(l.delivered.slice(1).every((d, i) => d.equals(frames[i]!)), 'byte for byte');
  t.equal(l.count(0, 'framesSentFar'), 3, 'A sent them far');
  t.equal(l.count(1, 'framesRelayedFar'), 3, 'B relayed them far');
  t.equal(l.count(1, 'framesRelayedInPlace'), 4, 'in place (and the first, hop by hop)');
  t.equal(l.count(1, 'framesRelayedUnmoved'), 2, 'the two that came as segments without moving their chunks');
  t.equal(l.count(2, 'framesReceivedFar'), 3, 'C opened them far');
  l.close();
});

t.test('chunk 0 holds a far message\'s hop part at every stride that leaves chunks spread', async (t) => {
  t.ok(MIN_SPREAD_STRIDE >= FAR_BODY_AT - SLEEVE_HEADER_BYTES, `${MIN_SPREAD_STRIDE} >= ${FAR_BODY_AT - SLEEVE_HEADER_BYTES}`);
});

t.test('far segments at a stride the next hop does not take are put together, then spread at its own', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const l = line(aes, { segmentBytesA: 1000 });
  l.keys();
  const frames = [tcpSuperFrame(60_000, 1), tcpSuperFrame(20_000, 2), tcpSuperFrame(3_000, 3)];
  for (const f of frames) { l.send(f); l.run(); }
  t.equal(l.delivered.length, 3);
  t.ok(l.delivered.every((d, i) => d.equals(frames[i]!)), 'byte for byte');
  t.equal(l.count(1, 'framesRelayedFar'), 3, 'B relayed them far');
  t.equal(l.count(1, 'framesRelayedUnmoved'), 0, 'none left where it came');
  t.equal(l.count(2, 'framesReceivedFar'), 3, 'C opened them');
  l.close();
});

t.test('a hostile relay with B\'s link keys: C drops and counts everything it changes', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const l = line(aes);
  l.keys();
  const f1 = tcpSuperFrame(5_000, 1);
  const f2 = tcpSuperFrame(5_000, 2);
  l.send(f1);
  l.send(f2);
  for (const w of l.take(0)) l.deliver(w);
  const [w1, w2] = l.take(1);
  const m1 = openedAtC(aes, w1!).msg;
  const m2 = openedAtC(aes, w2!).msg;
  // Reordered: the second first; both are accepted once.
  l.deliver(resealAsB(aes, m2));
  l.deliver(resealAsB(aes, m1));
  t.equal(l.delivered.length, 2, 'reordered frames both arrive');
  t.ok(l.delivered[0]!.equals(f2) && l.delivered[1]!.equals(f1));
  const drops = (r: string): number => l.count(2, `frames_dropped{reason="${r}"}`);
  l.deliver(resealAsB(aes, m1));
  t.equal(drops('replay'), 1, 'a replay under a fresh hop counter is dropped by the far window');
  const forged: [string, (m: Buffer) => void, string][] = [
    ['a flipped body byte', (m) => flip(m, m.length - 100), 'auth'],
    ['a flipped far tag byte', (m) => flip(m, m.length - 1), 'auth'],
    ['another counter', (m) => flip(m, 16 + 13 + 15), 'auth'],
    ['another key id', (m) => flip(m, 16 + 13 + 7), 'far-key'],
    ['another far version', (m) => { m[16 + 13] = 2; }, 'auth'],
    ['another origin', (m) => flip(m, 16 + 5), 'far-key'],
    ['injected bytes', (m) => { m.fill(0x77, 61); }, 'auth'],
  ];
  for (const [what, change, reason] of forged) {
    const before = drops(reason);
    const m = Buffer.from(m1);
    change(m);
    l.deliver(resealAsB(aes, m));
    t.equal(drops(reason), before + 1, `${what}: dropped as ${reason}`);
  }
  t.equal(l.delivered.length, 2, 'nothing forged was delivered');
  t.same(l.unknown, [0, 1], 'unknown key ids (or keys of an origin we share none with) are reported to the key exchange');
  // A stranger without B's link keys: any change to the hop part fails the hop check.
  const stranger = Buffer.from(w1!.bytes);
  flip(stranger, SEGMENT_HEADER_BYTES + 3);
  const authBefore = drops('auth');
  l.deliver({ ...w1!, bytes: stranger });
  t.equal(drops('auth'), authBefore + 1, 'a stranger\'s change fails at the hop');
  l.close();
});

t.test('a rekey and a relay restart keep far frames flowing; a peer without far refuses them', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const l = line(aes);
  l.keys(1);
  l.send(tcpSuperFrame(10_000, 1));
  const inFlight = l.take(0);
  l.keys(2);
  l.send(tcpSuperFrame(10_000, 2));
  l.run();
  for (const w of inFlight) l.deliver(w);
  l.run();
  t.equal(l.delivered.length, 2, 'the frame sealed under the old key still opens after the switch');
  t.equal(l.count(2, 'framesReceivedFar'), 2);
  l.send(tcpSuperFrame(10_000, 5));
  for (const w of l.take(0)) l.deliver(w);
  const farMsg = openedAtC(aes, l.take(1)[0]!).msg;
  l.connect(1);
  l.send(tcpSuperFrame(10_000, 3));
  l.run();
  t.equal(l.delivered.length, 3, 'after B\'s links are renewed');
  t.equal(l.count(2, 'framesReceivedFar'), 3, 'still far, under the same end-to-end key');
  l.close();

  const old = line(aes, { farAtC: false });
  old.send(tcpSuperFrame(10_000, 4));
  old.run();
  t.equal(old.delivered.length, 1, 'a destination without far keys gets its frames hop by hop');
  t.equal(old.count(0, 'framesSentFar'), 0);
  old.keys(); // as if A held a key anyway
  old.send(tcpSuperFrame(10_000, 4));
  old.run();
  t.equal(old.count(1, 'frames_dropped{reason="no-route"}'), 1, 'B passes no far message to a peer that does not take them');
  old.deliver(resealAsB(aes, farMsg));
  t.equal(old.count(2, 'frames_dropped{reason="type"}'), 1, 'and such a peer refuses one outright');
  t.equal(old.delivered.length, 1);
  old.close();
});

t.test('a relay whose link to the destination is on TCP passes far messages on there', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const l = line(aes);
  l.keys();
  // C hears none of B's UDP: B sends to C over TCP from now on.
  l.overlays[1]!.handleUdpStatus(C, { hearing: false, segments: true, far: true });
  const frames = [tcpSuperFrame(40_000, 1), tcpSuperFrame(300, 2, true)];
  for (const f of frames) { l.send(f); l.run(); }
  t.equal(l.delivered.length, 2, 'both arrive');
  t.ok(l.delivered.every((d, i) => d.equals(frames[i]!)), 'byte for byte');
  t.equal(l.count(0, 'framesSentFar'), 2, 'A sealed them end to end');
  t.equal(l.count(1, 'framesSentTcp'), 2, 'B passed them on over TCP');
  t.equal(l.count(2, 'framesReceivedFar'), 2, 'C opened them end to end');
  // Hostile bytes on that path fail as on UDP.
  l.send(tcpSuperFrame(1000, 3));
  for (const w of l.take(0)) l.deliver(w);
  const c = l.controls.splice(0)[0]!;
  const forged = Buffer.from(c.msg);
  flip(forged, forged.length - 5);
  t.equal(decodeControlMessage(forged).type, 'far-frame');
  l.overlays[2]!.handleTcpFar(B, forged.subarray(1));
  t.equal(l.count(2, 'frames_dropped{reason="auth"}'), 1, 'a changed byte is dropped');
  l.overlays[2]!.handleTcpFar(B, Buffer.alloc(40));
  t.equal(l.count(2, 'frames_dropped{reason="short"}'), 1, 'a short one too');
  t.equal(l.delivered.length, 2);
  l.close();
});

t.test('far key slots: unused ones are evicted first', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const s = new FarSessions(aes);
  t.ok(s.addReceive(A, 1, FAR_KEY, 0));
  t.notOk(s.addReceive(A, 1, FAR_KEY, 1), 'a held key id is refused');
  // Seal one message under id 1 and open it, so slot 1 is used.
  const send = new FarSessions(aes);
  send.setSend(C, 1, FAR_KEY);
  const names = Buffer.alloc(12, 1);
  const first = Buffer.alloc(200);
  const second = Buffer.alloc(200);
  const n = send.seal(C, names, 0, first, 0, 100);
  t.equal(n, 116);
  send.seal(C, names, 0, second, 0, 100);
  const again = Buffer.from(first);
  t.equal(s.open(A, names, 0, first, 0, n), 100, 'opens (and the slot counts as used)');
  for (let id = 2; id <= 6; id++) s.addReceive(A, id, FAR_KEY, id);
  t.equal(s.open(A, names, 0, second, 0, n), 100, 'the used key survives five newer unused ones');
  t.equal(s.open(A, names, 0, again, 0, n), 'replay');
  // Four slots in all: of ids 2..6 (never used), the two oldest went.
  const sealedUnder = (id: number): [Buffer, number, number] => {
    const other = new FarSessions(aes);
    other.setSend(C, id, FAR_KEY);
    const b = Buffer.alloc(200);
    const len = other.seal(C, names, 0, b, 0, 100);
    other.close();
    return [b, 0, len];
  };
  t.equal(s.open(A, names, 0, ...sealedUnder(2)), 'far-key', 'the oldest unused key was evicted');
  t.equal(s.open(A, names, 0, ...sealedUnder(3)), 'far-key', 'and the next');
  t.equal(s.open(A, names, 0, ...sealedUnder(6)), 100, 'the newest is held');
  s.close();
  send.close();
});

t.test('far sealing stops at the counter limit rather than reuse a nonce', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const send = new FarSessions(aes);
  send.setSend(C, 1, FAR_KEY);
  const cells = send.laneSend(C);
  if (cells === null) { t.fail('the AES-256-GCM here has no native handle, so the counter cell cannot be reached'); return; }
  cells.counter[0] = REJECT_AFTER_COUNTER - 1;
  t.equal(send.seal(C, Buffer.alloc(12, 1), 0, Buffer.alloc(200), 0, 100), 116, 'the last counter is used');
  t.equal(send.seal(C, Buffer.alloc(12, 1), 0, Buffer.alloc(200), 0, 100), -1, 'then nothing more is sealed');
  send.close();
});

/** Records B's relaying entries, as the native lane would take them. */
class RelayRecorder implements LoneFrameLane {
  readonly relays: RelayEntry[] = [];
  clears = 0;
  set(): boolean { return false; }
  setReceive(): boolean { return false; }
  setRelay(r: RelayEntry): boolean { this.relays.push(r); return true; }
  setFar(): boolean { return false; }
  setFarReceive(): boolean { return false; }
  clear(): void { this.clears++; }
  takeSeen(): number { return 0; }
  stats(): LaneStats {
    return { frames: 0, bytes: 0, txDroppedAgain: 0, txErrors: 0, entries: 0, rxFrames: 0, rxBytes: 0, rxWriteErrors: 0, relayFrames: 7, relayBytes: 700,
      relayErrors: 1, farFrames: 0, farRxFrames: 0 };
  }
}

t.test('a far message relayed in place installs a relaying entry, once, and changes clear it', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const lane = new RelayRecorder();
  const l = line(aes, { laneAtB: lane });
  l.keys();
  l.send(tcpSuperFrame(20_000, 1));
  l.run();
  t.equal(l.count(1, 'framesRelayedFar'), 1, 'B relayed it far');
  t.equal(lane.relays.length, 1, 'and installed an entry');
  const e = lane.relays[0]!;
  const bytes = (n: PeerName): Buffer => Buffer.from(n.split(':').map((h) => parseInt(h, 16)));
  t.same([e.inHead[0], Buffer.from(e.inHead.subarray(1))], [SLEEVE_TYPE_FAR, bytes(A)], 'in: FAR, key phase 0, from A');
  t.ok(Buffer.from(e.names).equals(Buffer.concat([bytes(A), bytes(C)])), 'from A to C');
  t.same([e.fromHost, e.fromPort, e.toHost, e.toPort], [HOSTS[A], 6783, HOSTS[C], 6783], 'A\'s endpoint in, C\'s out');
  t.same([e.outHead[0], Buffer.from(e.outHead.subarray(1))], [SLEEVE_TYPE_FAR, bytes(B)], 'out: FAR under B\'s key phase, named B');
  t.equal(e.outStride, 1472 - SEGMENT_HEADER_BYTES, 'C takes segments of B\'s stride');
  t.equal(e.ring.length, 64, 'the incoming phase\'s window');
  l.send(tcpSuperFrame(20_000, 2));
  l.run();
  t.equal(lane.relays.length, 1, 'not again for the same pair');
  const clears = lane.clears;
  l.tick(1_100);
  t.equal(lane.clears, clears, 'the probe tick finds it as it was');
  l.overlays[1]!.handleUdpStatus(C, { hearing: false, segments: true, far: true });
  t.ok(lane.clears > clears, 'C no longer hearing B clears it');
  const c = l.overlays[1]!.counters;
  t.equal(c['framesRelayedLane'], 7, 'the lane\'s relayed messages counted');
  t.equal(c['framesRelayedFar'], 2 + 8, 'and folded into the totals: JS\'s 2, the lane\'s 7 and 1 whose send failed');
  l.close();
});

/** Records an end's far entries (and any direct ones), as the native lane would take them. */
class FarRecorder implements LoneFrameLane {
  readonly fars: { macs: Buffer; head: Buffer; hopCounter: Float64Array; farHead: Buffer; farCounter: Float64Array; host: string }[] = [];
  readonly farReceives: { type: number; names: Buffer; origin: Buffer; macs: Buffer; keyId: number; farRing: Int32Array; host: string }[] = [];
  directs = 0;
  clears = 0;
  farFrames = 0;
  set(): boolean { this.directs++; return true; }
  setReceive(): boolean { this.directs++; return true; }
  setRelay(): boolean { return false; }
  setFar(macs: Uint8Array, head: Uint8Array, hop: LaneKeyCells, farHead: Uint8Array, far: LaneKeyCells, host: string): boolean {
    this.fars.push({ macs: Buffer.from(macs), head: Buffer.from(head), hopCounter: hop.counter, farHead: Buffer.from(farHead), farCounter: far.counter, host });
    return true;
  }
  setFarReceive(type: number, names: Uint8Array, origin: Uint8Array, macs: Uint8Array, _hop: LaneOpenerCells, keyId: number,
    far: LaneOpenerCells, host: string): boolean {
    this.farReceives.push({ type, names: Buffer.from(names), origin: Buffer.from(origin), macs: Buffer.from(macs), keyId, farRing: far.ring, host });
    return true;
  }
  clear(): void { this.clears++; }
  takeSeen(): number { return 0; }
  stats(): LaneStats {
    return { frames: this.farFrames, bytes: 0, txDroppedAgain: 0, txErrors: 0, entries: 0, rxFrames: 0, rxBytes: 0, rxWriteErrors: 0, relayFrames: 0,
      relayBytes: 0, relayErrors: 0, farFrames: this.farFrames, farRxFrames: 0 };
  }
}

t.test('a lone frame sent far installs far entries at both ends, once; key and route changes clear them', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const [atA, atC] = [new FarRecorder(), new FarRecorder()];
  const l = line(aes, { laneAtEnds: [atA, atC] });
  l.keys(7);
  const bytes = (n: PeerName): Buffer => Buffer.from(n.split(':').map((h) => parseInt(h, 16)));
  /** One probe interval, its probes answered: the links stay up, and each lane's check runs once. */
  const probe = (): void => { l.tick(300); l.run(); };
  l.send(tcpSuperFrame(30_000, 1));
  l.run();
  t.equal(atA.fars.length + atC.farReceives.length, 0, 'a super-frame installs nothing');
  l.send(tcpSuperFrame(200, 2, true));
  l.run();
  t.equal(l.count(0, 'framesSentFar'), 2, 'A sent both far');
  t.equal(atA.fars.length, 1, 'the lone one installed a far entry at A');
  const e = atA.fars[0]!;
  t.same([e.head[0], e.head[1], Buffer.from(e.head.subarray(2, 8))], [2, SLEEVE_TYPE_FAR, bytes(A)], 'a version 2 FAR header naming A');
  t.ok(e.head.subarray(SLEEVE_HEADER_BYTES, SLEEVE_HEADER_BYTES + 12).equals(Buffer.concat([bytes(A), bytes(C)])), 'inner header A to C');
  t.equal(e.head[SLEEVE_HEADER_BYTES + 12], MAX_HOPS, 'with every hop left');
  t.ok(e.farHead.equals(Buffer.from([1, 0, 0, 0, 0, 0, 0, 7])), 'far header version 1, key id 7');
  t.equal(e.farCounter[0], 2, 'the far send key\'s own counter cell');
  t.ok(e.hopCounter[0]! > 0, 'and the link to B\'s');
  t.equal(e.host, HOSTS[B], 'sent to B');
  t.equal(atC.farReceives.length, 1, 'C delivered it and installed a far receive entry');
  const r = atC.farReceives[0]!;
  t.same([r.type, r.keyId, r.host], [SLEEVE_TYPE_FAR, 7, HOSTS[B]], 'FAR from B\'s endpoint, key 7');
  t.ok(r.names.equals(Buffer.concat([bytes(B), bytes(C)])) && r.origin.equals(bytes(A)), 'through B to C, from A');
  t.ok(r.macs.equals(e.macs), 'the same MAC pair');
  t.equal(atA.directs + atC.directs, 0, 'no direct entries for a peer two hops away');
  l.send(tcpSuperFrame(300, 3, true));
  l.run();
  t.same([atA.fars.length, atC.farReceives.length], [1, 1], 'not again for the same pair');
  const big = tcpSuperFrame(1375 - 40, 4, true);
  l.send(big);
  l.run();
  t.ok(l.delivered.at(-1)?.equals(big), 'a frame too big for version 2 with the far overhead still arrives');
  t.same([atA.fars.length, atC.farReceives.length], [1, 1], 'and installs nothing');

  const clears = [atA.clears, atC.clears];
  probe();
  t.same([atA.clears, atC.clears], clears, 'the probe tick finds both as they were');
  l.keys(8);
  t.ok(atA.clears > clears[0]!, 'a new far send key clears A\'s lane');
  probe();
  t.equal(atC.clears, clears[1], 'C still holds key 7: its entry stands');
  l.send(tcpSuperFrame(200, 5, true));
  l.run();
  t.equal(atA.fars.length, 2, 'A installs again under key 8');
  t.same(atC.farReceives.map((r) => r.keyId), [7, 8], 'C\'s entry for the pair follows A\'s new key');
  l.send(tcpSuperFrame(200, 6, true));
  l.run();
  t.equal(atC.farReceives.length, 2, 'once');
  // An event missed (none is told here): the probe tick's check finds the key gone.
  l.overlays[0]!.far!.sessions.onKeysChanged = null;
  l.overlays[0]!.far!.farSendKey(C, 8, Buffer.from(FAR_KEY.map((b) => b ^ 9)));
  const before = atA.clears;
  probe();
  t.ok(atA.clears > before, 'a far key replaced unannounced, even under the same id: the tick clears it');
  l.overlays[2]!.far!.sessions.onKeysChanged = null;
  l.overlays[2]!.far!.farForget(A);
  t.equal(atC.clears, clears[1], 'C forgets A\'s keys unannounced');
  probe();
  t.ok(atC.clears > clears[1]!, 'the tick finds key 7 gone and clears C\'s lane');

  atA.farFrames = 5;
  const c = l.overlays[0]!.counters;
  t.equal(c['framesSentFarLane'], 5, 'the lane\'s far frames counted on their own');
  t.equal(c['framesSentFar'], 6 + 5, 'and folded into framesSentFar: JS\'s six (every frame above) and the lane\'s');
  l.close();
});
