// A relay reseals a unicast message where it arrived and sends it from the
// receive buffer (router/overlay/relay-in-place.ts, DatagramPort.sendFrom): three
// Overlays in a line, A - B - C, over in-memory ports that hand B coalesced
// version 3 segments as UDP_GRO does. Checked: frames arrive byte for byte,
// B sends from the very buffer it was handed, only whole messages in the
// receive buffer go in place (reassembled ones and other strides are copied),
// hops still count down, the segment spreading it relies on (chunks back
// where they came from) round-trips, and a relay reads its TAP early in a
// batch of small and big datagrams only when a small one went to its bridge.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { DatagramHandler, DatagramPort, FramePort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import { SLEEVE_HEADER_BYTES, VNET_HDR_BYTES, writeSleeveHeader } from '../../router/overlay/sleeve-codec';
import { compactSegments, SEGMENT_HEADER_BYTES, SEGMENTED_SLEEVE_VERSION, segmentedBytes, spreadSegments } from '../../router/overlay/sleeve-segments';
import { tcpSuperFrame } from './tcp-super-frame';

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const C = '02:00:00:00:00:0c' as PeerName;
const NAMES = [A, B, C];
const HOSTS: Record<string, string> = { [A]: '10.9.0.1', [B]: '10.9.0.2', [C]: '10.9.0.3' };

/** A small broadcast frame from MAC ...:0b, which teaches every peer that the MAC lives behind its sender. */
function announceFrame(): Buffer {
  const f = Buffer.alloc(VNET_HDR_BYTES + 64);
  f.fill(0xff, VNET_HDR_BYTES, VNET_HDR_BYTES + 6);
  f.fill(0x02, VNET_HDR_BYTES + 6, VNET_HDR_BYTES + 12);
  f[VNET_HDR_BYTES + 11] = 0x0b;
  f.writeUInt16BE(0x0800, VNET_HDR_BYTES + 12);
  return f;
}

interface Wire { to: string; bytes: Buffer; seg: number }

/**
 * One node's DatagramPort: commit() and sendFrom() copy what would leave (as
 * the kernel does) and queue it; the line delivers queued datagrams after each
 * batch, as one coalesced slot per GSO send. sendFrom records the buffer it got.
 */
class LinePort implements DatagramPort {
  readonly segmentation = true;
  readonly stage = Buffer.alloc(STAGE_SLOT_BYTES);
  handler: DatagramHandler | null = null;
  batchEnd: (() => void) | null = null;
  smallDone: (() => void) | null = null;
  /** The buffer of the batch being delivered to this node. */
  receiving: Buffer | null = null;
  readonly out: Wire[] = [];
  /** Everything sent, kept. */
  readonly log: Wire[] = [];
  commits = 0;
  sentFrom = 0;
  sentFromForeign = 0;

  constructor(private readonly withSendFrom: boolean) {
    if (!withSendFrom) this.sendFrom = undefined;
  }

  start(h: DatagramHandler, end: () => void, smallDone?: () => void): void { this.handler = h; this.batchEnd = end; this.smallDone = smallDone ?? null; }
  stageSlab(): Buffer { return this.stage; }
  stageOffset(): number { return 0; }
  commit(len: number, host: string, _port: number, seg = 0): void {
    this.commits++;
    this.queue({ to: host, bytes: Buffer.from(this.stage.subarray(0, len)), seg });
  }
  sendFrom?(buf: Buffer, off: number, len: number, host: string, _port: number, seg = 0): void {
    if (!this.withSendFrom) return;
    this.sentFrom++;
    if (buf !== this.receiving) this.sentFromForeign++;
    this.queue({ to: host, bytes: Buffer.from(buf.subarray(off, off + len)), seg });
  }
  flush(): void {}
  private queue(w: Wire): void { this.out.push(w); this.log.push(w); }
  close(): void {}
}

interface Options { password: boolean; sendFrom?: boolean; strides?: [number, number, number]; v3?: boolean; splitSegments?: boolean }

function line(opts: Options) {
  const clock = new ManualClock();
  const ports = NAMES.map(() => new LinePort(opts.sendFrom ?? true));
  const delivered: Buffer[] = [];
  const onFrame: ((buf: Buffer, off: number, len: number) => void)[] = [];
  const drains = NAMES.map(() => 0);
  const bridges: FramePort[] = NAMES.map((_, i) => ({
    start: (f) => { onFrame[i] = f; },
    drainNow: () => { drains[i]!++; },
    write: (buf, off, len) => { if (i === 2) delivered.push(Buffer.from(buf.subarray(off, off + len))); },
    close: () => {},
  }));
  const strides = opts.strides ?? [1472, 1472, 1472];
  const overlays = NAMES.map((name, i) => new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), bridge: bridges[i]!, udp: ports[i]! },
    { localPeer: name, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS, segmentBytes: strides[i]! },
  ));
  // Routes along the line: A and C reach each other through B.
  const next = (self: number, dst: PeerName): PeerName | null => {
    const d = NAMES.indexOf(dst);
    if (d < 0 || d === self) return null;
    return NAMES[d > self ? self + 1 : self - 1]!;
  };
  // Broadcasts flow away from their origin along the line.
  const children = (self: number, origin: PeerName): PeerName[] => {
    const o = NAMES.indexOf(origin);
    return [self - 1, self + 1].filter((k) => k >= 0 && k < NAMES.length && Math.abs(k - o) > Math.abs(self - o)).map((k) => NAMES[k]!);
  };
  overlays.forEach((o, i) => { o.start(); o.setRoutes({ nextHop: (dst) => next(i, dst), broadcastChildren: (origin) => children(i, origin) }); });
  const key = (x: number, y: number): Buffer => Buffer.alloc(32, 16 * x + y + 1);
  for (const [x, y] of [[0, 1], [1, 0], [1, 2], [2, 1]] as const) {
    overlays[x]!.addNeighbour({
      name: NAMES[y]!, host: HOSTS[NAMES[y]!]!, udpPort: 6783, keys: opts.password ? new SleeveKeyRing(key(x, y), key(y, x)) : null, sendControl: () => {},
    });
    overlays[x]!.handleUdpStatus(NAMES[y]!, { hearing: true, segments: opts.v3 ?? true });
  }
  const hostIndex = (host: string): number => NAMES.findIndex((n) => HOSTS[n] === host);
  /** Delivers everything queued, node by node, until the line is quiet. */
  const run = (): void => {
    for (let moved = true; moved;) {
      moved = false;
      ports.forEach((p, from) => {
        const wires = p.out.splice(0);
        for (const w of wires) {
          moved = true;
          const to = ports[hostIndex(w.to)]!;
          const slots = opts.splitSegments === true && w.seg > 0
            ? Array.from({ length: Math.ceil(w.bytes.length / w.seg) }, (_, k) => ({ b: Buffer.from(w.bytes.subarray(k * w.seg, (k + 1) * w.seg)), seg: 0 }))
            : [{ b: Buffer.from(w.bytes), seg: w.seg }];
          for (const s of slots) {
            // A receive slab with room around the datagram, as a real slot has.
            const slab = Buffer.alloc(STAGE_SLOT_BYTES + 64);
            s.b.copy(slab, 32);
            to.receiving = slab;
            to.handler!(slab, 32, s.b.length, HOSTS[NAMES[from]!]!, 6783, s.seg);
            to.batchEnd!();
            to.receiving = null;
          }
        }
      });
    }
  };
  const send = (f: Buffer): void => { onFrame[0]!(f, 0, f.length); run(); };
  const close = (): void => overlays.forEach((o) => o.close());
  // C's MAC becomes known along the line, so A's frames to it are unicast; then counting starts.
  onFrame[2]!(announceFrame(), 0, VNET_HDR_BYTES + 64);
  run();
  const base = overlays.map((o) => ({ ...o.counters }));
  for (const p of ports) { p.commits = 0; p.sentFrom = 0; p.log.length = 0; }
  drains.fill(0);
  /** A counter of node i since the line was set up. */
  const count = (i: number, name: string): number => (overlays[i]!.counters[name] ?? 0) - (base[i]![name] ?? 0);
  return { overlays, ports, delivered, drains, onFrame, send, run, close, count };
}

t.test('spreading from 4 bytes lower puts compacted chunks back where they came from', async (t) => {
  for (const [bodyLen, stride] of [[60_000, 1452], [2905, 1452], [1453, 1452]] as const) {
    const wire = Buffer.alloc(SLEEVE_HEADER_BYTES + segmentedBytes(bodyLen, stride));
    writeSleeveHeader(wire, 0, 1, Uint8Array.of(2, 0, 0, 0, 0, 1), 9, SEGMENTED_SLEEVE_VERSION);
    for (let i = 0; i < bodyLen; i++) wire[SLEEVE_HEADER_BYTES + i] = (i * 7) & 0xff;
    const n = spreadSegments(wire, 0, bodyLen, stride);
    const original = Buffer.from(wire.subarray(0, n));
    const work = Buffer.from(original);
    t.equal(compactSegments(work, 0, n, stride + SEGMENT_HEADER_BYTES), bodyLen);
    t.equal(spreadSegments(work, 4, bodyLen, stride, 0), n, `${bodyLen}/${stride}: same length`);
    t.ok(work.subarray(0, n).equals(original), 'byte for byte the segments that arrived');
  }
  t.throws(() => spreadSegments(Buffer.alloc(100), 8, 10, 4, 3), RangeError, 'more than 4 bytes lower is refused');
});

for (const password of [true, false]) {
  t.test(`relayed super-frames leave from the receive buffer (${password ? 'sealed' : 'plaintext'})`, async (t) => {
    await loadSodium();
    const l = line({ password });
    const frames = [tcpSuperFrame(60_000, 1), tcpSuperFrame(30_000, 2), tcpSuperFrame(200, 3, true)];
    for (const f of frames) l.send(f);
    t.equal(l.delivered.length, 3, 'all arrive at C');
    t.ok(l.delivered.every((d, i) => d.equals(frames[i]!)), 'byte for byte');
    t.equal(l.count(1, 'framesRelayed'), 3);
    t.equal(l.count(1, 'framesRelayedInPlace'), 3, 'every one in place (version 3 and version 2 alike)');
    t.equal(l.ports[1]!.sentFrom, 3);
    t.equal(l.ports[1]!.sentFromForeign, 0, 'from the buffer B was handed, nothing else');
    t.equal(l.ports[1]!.commits, 0, 'no copy into a send slot');
    t.equal(l.count(1, 'framesSentSegmented'), 2, 'the super-frames as version 3 again');
    t.equal(l.count(1, 'framesRelayedUnmoved'), password ? 0 : 2, password ? 'sealed: put together to be opened' : 'plaintext: their chunks never moved');
    t.equal(l.count(2, 'framesReceivedCoalesced'), 2, 'and C took them whole');
    l.close();
  });
}

t.test('what cannot go in place is copied, and still arrives', async (t) => {
  await loadSodium();
  const cases: { what: string; opts: Options; inPlace: number }[] = [
    { what: 'a port without sendFrom', opts: { password: true, sendFrom: false }, inPlace: 0 },
    { what: 'a shorter stride towards C (more segments: they would not fit the span)', opts: { password: true, strides: [1472, 1000, 1472] }, inPlace: 0 },
    { what: 'a longer stride towards C (fewer segments, moved apart in place)', opts: { password: true, strides: [1472, 4000, 1472] }, inPlace: 1 },
    { what: 'segments reassembled one by one', opts: { password: true, splitSegments: true }, inPlace: 0 },
    { what: 'neighbours without version 3 (version 2 in, version 2 out)', opts: { password: true, v3: false }, inPlace: 1 },
    { what: 'plaintext, a shorter stride towards C (put together, then copied)', opts: { password: false, strides: [1472, 1000, 1472] }, inPlace: 0 },
    { what: 'plaintext, a longer stride towards C (put together, then spread in place)', opts: { password: false, strides: [1472, 4000, 1472] }, inPlace: 1 },
  ];
  for (const c of cases) {
    const l = line(c.opts);
    const f = tcpSuperFrame(40_000, 5);
    l.send(f);
    t.equal(l.delivered.length, 1, `${c.what}: arrives`);
    t.ok(l.delivered[0]?.equals(f), `${c.what}: byte for byte`);
    t.equal(l.count(1, 'framesRelayedInPlace'), c.inPlace, `${c.what}: ${c.inPlace === 0 ? 'copied' : 'in place'}`);
    t.equal(l.count(1, 'framesRelayed'), 1);
    t.equal(l.count(1, 'framesRelayedUnmoved'), 0, `${c.what}: no chunk left where it came`);
    l.close();
  }
});

t.test('hops still count down in place', async (t) => {
  await loadSodium();
  // Plaintext, so the inner header can be read on the wire: segment 0's body starts with it, hops left at byte 12.
  const l = line({ password: false });
  l.send(tcpSuperFrame(20_000, 7));
  const hops = (w: Wire | undefined): number | undefined => w?.bytes[SEGMENT_HEADER_BYTES + 12];
  t.equal(l.ports[0]!.log.length, 1);
  t.equal(l.ports[1]!.log.length, 1);
  t.equal(hops(l.ports[0]!.log[0]), 32, 'A sends with MAX_HOPS');
  t.equal(hops(l.ports[1]!.log[0]), 31, 'B passes it on with one fewer');
  t.equal(l.count(1, 'framesRelayedInPlace'), 1);
  l.close();
});

t.test('a mixed batch drains the TAP early only when a small datagram went to the bridge', async (t) => {
  await loadSodium();
  /** B gets what A sends for `frames` as one batch: the small datagrams, the port's onSmallDone, the rest (udp-batch-port.ts's order). */
  const batchAtB = (l: ReturnType<typeof line>, frames: Buffer[]): void => {
    for (const f of frames) l.onFrame[0]!(f, 0, f.length);
    const wires = l.ports[0]!.out.splice(0);
    const b = l.ports[1]!;
    const slabs = wires.map((w) => { const slab = Buffer.alloc(STAGE_SLOT_BYTES + 64); w.bytes.copy(slab, 32); return { slab, w }; });
    const deliver = ({ slab, w }: { slab: Buffer; w: Wire }): void => { b.receiving = slab; b.handler!(slab, 32, w.bytes.length, HOSTS[A]!, 6783, w.seg); };
    slabs.filter((s) => s.w.bytes.length <= 320).forEach(deliver);
    b.smallDone!();
    slabs.filter((s) => s.w.bytes.length > 320).forEach(deliver);
    b.batchEnd!();
    b.receiving = null;
    l.run();
  };
  const small = tcpSuperFrame(60, 3, true);
  const big = tcpSuperFrame(40_000, 4);
  const relayOnly = line({ password: true });
  batchAtB(relayOnly, [small, big]);
  t.equal(relayOnly.delivered.length, 2, 'both reach C');
  t.equal(relayOnly.count(1, 'framesToBridge'), 0, 'nothing went to B\'s bridge');
  t.equal(relayOnly.drains[1], 0, 'so B does not read its TAP early');
  relayOnly.close();

  // A small broadcast from another MAC behind A: B delivers it to its bridge, and may have an answer to send at once.
  const broadcast = Buffer.from(small);
  broadcast.fill(0xff, VNET_HDR_BYTES, VNET_HDR_BYTES + 6);
  broadcast[VNET_HDR_BYTES + 11] = 0x0c;
  const local = line({ password: true });
  batchAtB(local, [broadcast, big]);
  t.equal(local.count(1, 'framesToBridge'), 1, 'the broadcast went to B\'s bridge');
  t.equal(local.drains[1], 1, 'so B reads its TAP before the bulk');
  // The flag is per batch: the next relay-only batch reads nothing early.
  batchAtB(local, [small, big]);
  t.equal(local.drains[1], 1, 'a later relay-only batch does not');
  local.close();
});
