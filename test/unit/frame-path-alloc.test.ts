// Issue 14: "nothing on the per-frame path allocates". Three Overlays in a
// line, A - B - C, AES-256-GCM on every hop and an end-to-end key from A to
// C, over ports that allocate nothing themselves (each datagram is copied
// into one of a fixed ring of buffers; the stage copy is the addon's, as the
// real port's) and on the daemon's wall clock, Date.now (the monotonic one
// reads like performance.now but stands still, see line()). Frames
// go in batches of BATCH, as the TAP and the UDP socket hand them over, each
// frame inside a read slab at an offset. After a warm-up, JS heap growth per
// frame is measured (V8's used heap size around a run with no collection in
// it, the median of several runs) for what
// the data path does most: super-frames and lone frames A -> B straight
// (sealed, segmented, opened, delivered), the answers B -> A, and A -> C
// relayed far by B in place, each with the lone-frame lane's offers
// (lane-entries.ts) made. What a batch costs (each router on the way reads
// the wall clock once and the monotonic one once or twice, a heap number
// each) comes to about 2 bytes per frame at this batch size; a path that
// makes a Buffer view, a closure, a clock reading or an entry object per
// frame shows as 16 or more bytes per frame.

import t from 'tap';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm, type AesGcm } from '../../router/overlay/aes-gcm';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { type LaneStats, loadNative } from '../../router/overlay/native';
import { DatagramHandler, DatagramPort, FramePort, type LoneFrameLane, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import { VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import { tcpSuperFrame } from './tcp-super-frame';

const NAMES = ['02:00:00:00:00:0a', '02:00:00:00:00:0b', '02:00:00:00:00:0c'] as PeerName[];
const HOSTS = ['10.9.0.1', '10.9.0.2', '10.9.0.3'];
/** Frames per batch, as a busy TAP or UDP socket hands them over (both read up to 64 per wakeup). */
const BATCH = 64;
const RING = 2 * BATCH;
const WIRE_BYTES = STAGE_SLOT_BYTES + 64;
const AT = 32;
/** Below one object header: a path that allocates anything per frame shows as 16 bytes or more. */
const MAX_BYTES_PER_FRAME = 4;
/** The real port's copy into its stage (udp-batch-port.ts): the addon's, which makes no view. */
const copyBytes = (dst: Buffer, dstOff: number, src: Buffer, srcOff: number, len: number): void => loadNative().copyBytes(dst, dstOff, src, srcOff, len);

/** A port that copies each datagram into the next of RING fixed buffers, for `run` to hand to its receiver. */
class RingPort implements DatagramPort {
  readonly segmentation = true;
  readonly stage = Buffer.alloc(STAGE_SLOT_BYTES);
  handler: DatagramHandler | null = null;
  batchEnd: (() => void) | null = null;
  readonly wires = Array.from({ length: RING }, () => Buffer.alloc(WIRE_BYTES));
  readonly offs = new Int32Array(RING);
  readonly lens = new Int32Array(RING);
  readonly segs = new Int32Array(RING);
  readonly to = new Int32Array(RING);
  head = 0;
  tail = 0;
  constructor(private readonly index: number) {}
  start(h: DatagramHandler, end: () => void): void { this.handler = h; this.batchEnd = end; }
  stageSlab(): Buffer { return this.stage; }
  stageCopy(src: Buffer, srcOff: number, len: number, at: number): void { copyBytes(this.stage, at, src, srcOff, len); }
  stageOffset(): number { return 0; }
  private push(host: string, off: number, len: number, seg: number): Buffer {
    if (this.tail - this.head >= RING) throw new Error('ring full');
    const k = this.tail++ % RING;
    this.offs[k] = off;
    this.lens[k] = len;
    this.segs[k] = seg;
    this.to[k] = HOSTS.indexOf(host);
    return this.wires[k]!;
  }
  commit(len: number, host: string, _port: number, seg = 0): void {
    this.push(host, AT, len, seg).set(this.stage, AT);
  }
  sendFrom(buf: Buffer, off: number, len: number, host: string, _port: number, seg = 0): void {
    if (buf.length !== WIRE_BYTES) throw new Error('sendFrom of a buffer this port did not hand out');
    this.push(host, off, len, seg).set(buf);
  }
  flush(): void {}
  close(): void {}
  /** Hands every datagram queued now to its receiver, then ends the batch of each receiver; false when there was none. */
  deliverBatch(ports: RingPort[], touched: boolean[]): boolean {
    if (this.head === this.tail) return false;
    touched.fill(false);
    for (const end = this.tail; this.head < end;) {
      const k = this.head++ % RING;
      const dst = ports[this.to[k]!]!;
      touched[this.to[k]!] = true;
      const wire = dst.inbox;
      wire.set(this.wires[k]!);
      dst.handler!(wire, this.offs[k]!, this.lens[k]!, HOSTS[this.index]!, 6783, this.segs[k]!);
    }
    for (let i = 0; i < ports.length; i++) if (touched[i]) ports[i]!.batchEnd!();
    return true;
  }
  readonly inbox = Buffer.alloc(WIRE_BYTES);
}

/** A lane that takes every entry and never carries a frame: JS still moves them all, and makes its offers per frame. */
class AcceptingLane implements LoneFrameLane {
  entries = 0;
  set(): boolean { this.entries++; return true; }
  setReceive(): boolean { this.entries++; return true; }
  setRelay(): boolean { this.entries++; return true; }
  setFar(): boolean { this.entries++; return true; }
  setFarReceive(): boolean { this.entries++; return true; }
  clear(): void {}
  takeSeen(): number { return 0; }
  stats(): LaneStats { return { frames: 0, bytes: 0, txDroppedAgain: 0, txErrors: 0, entries: this.entries, rxFrames: 0, rxBytes: 0, rxWriteErrors: 0, relayFrames: 0, relayBytes: 0, relayErrors: 0, farFrames: 0, farRxFrames: 0 }; }
}

function line(aes: AesGcm) {
  // The daemon's wall clock (only the timers are manual; none is due here),
  // and a monotonic one whose readings are heap numbers as performance.now()'s
  // are but which stands still: a batch of 64 sealed super-frames takes
  // milliseconds here, which CoDel (batch-aqm.ts) would take for a standing
  // queue and answer with drops.
  const clock = new (class extends ManualClock { override now(): number { return Date.now(); } })(0);
  const mono = new Float64Array([performance.now() + 0.5]);
  const ports = NAMES.map((_, i) => new RingPort(i));
  const onFrame: ((buf: Buffer, off: number, len: number) => void)[] = [];
  const onBatchEnd: (() => void)[] = [];
  const delivered = [0, 0, 0];
  const bridges: FramePort[] = NAMES.map((_, i) => ({
    start: (f, end) => { onFrame[i] = f; onBatchEnd[i] = end; },
    write: () => { delivered[i]!++; },
    close: () => {},
  }));
  const lanes = NAMES.map(() => new AcceptingLane());
  const overlays = NAMES.map((name, i) => new Overlay(
    { clock, monoMs: () => mono[0]!, logger: silentLogger, aead: frameAead(), aes, bridge: bridges[i]!, udp: ports[i]!, lane: () => lanes[i]! },
    { localPeer: name, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS, segmentBytes: 1472 },
  ));
  overlays.forEach((o) => { o.far!.source = { want: () => {}, unknownKey: () => {} }; });
  const next = (self: number, dst: PeerName): PeerName | null => {
    const d = NAMES.indexOf(dst);
    return d < 0 || d === self ? null : NAMES[d > self ? self + 1 : self - 1]!;
  };
  overlays.forEach((o, i) => {
    o.start();
    const neighbours = NAMES.filter((_, j) => Math.abs(i - j) === 1);
    // A broadcast goes on away from where it came from.
    o.setRoutes({
      nextHop: (dst) => next(i, dst), hops: (dst) => Math.abs(NAMES.indexOf(dst) - i),
      broadcastChildren: (origin) => neighbours.filter((n) => origin === NAMES[i] || Math.abs(NAMES.indexOf(n) - NAMES.indexOf(origin)) > Math.abs(i - NAMES.indexOf(origin))),
    });
  });
  for (const [x, y] of [[0, 1], [1, 0], [1, 2], [2, 1]] as const) {
    overlays[x]!.addNeighbour({
      name: NAMES[y]!, host: HOSTS[y]!, udpPort: 6783,
      keys: new SleeveKeyRing(Buffer.alloc(32, 16 * x + y + 1), Buffer.alloc(32, 16 * y + x + 1), 'aes-256-gcm'), sendControl: () => {},
    });
    overlays[x]!.handleUdpStatus(NAMES[y]!, { hearing: true, segments: true, far: true });
  }
  const farKey = Buffer.alloc(32, 0x5a);
  overlays[0]!.far!.farSendKey(NAMES[2]!, 1, Buffer.from(farKey));
  overlays[2]!.far!.farReceiveKey(NAMES[0]!, 1, Buffer.from(farKey));
  const touched = NAMES.map(() => false);
  const run = (): void => {
    for (let moved = true; moved;) {
      moved = false;
      for (let i = 0; i < ports.length; i++) if (ports[i]!.deliverBatch(ports, touched)) moved = true;
    }
  };
  // Frames sit inside a read slab at an offset, as the TAP port hands them over.
  const slabs = NAMES.map(() => Buffer.alloc(STAGE_SLOT_BYTES + 256));
  /** One batch of `count` copies of f from `from`'s bridge, and everything it makes delivered. */
  const send = (from: number, f: Buffer, count: number): void => {
    f.copy(slabs[from]!, 128);
    for (let i = 0; i < count; i++) onFrame[from]!(slabs[from]!, 128, f.length);
    onBatchEnd[from]!();
    run();
  };
  return { overlays, lanes, delivered, send, close: () => overlays.forEach((o) => o.close()) };
}

/** A unicast frame of `bytes` from MAC 02:..:src to 02:..:dst; `superFrame`: a TCP GSO one. */
function frameBetween(src: number, dst: number, bytes: number, superFrame: boolean): Buffer {
  const f = superFrame ? tcpSuperFrame(bytes, 7) : tcpSuperFrame(bytes, 7, true);
  f.fill(0x02, VNET_HDR_BYTES, VNET_HDR_BYTES + 12);
  f[VNET_HDR_BYTES + 5] = dst;
  f[VNET_HDR_BYTES + 11] = src;
  return f;
}

/**
 * The median heap growth per call of `step` over runs with no collection in
 * them: a background compile adds to a run and the concurrent sweeper may take
 * from one, so neither the least nor the most is the path's own.
 */
function bytesPerCall(step: () => void, calls: number): number {
  const clean: number[] = [];
  for (let run = 0; run < 9; run++) {
    const profiler = new GCProfiler();
    profiler.start();
    const before = getHeapStatistics().used_heap_size;
    for (let i = 0; i < calls; i++) step();
    const after = getHeapStatistics().used_heap_size;
    if (profiler.stop().statistics.length === 0) clean.push((after - before) / calls);
  }
  clean.sort((a, b) => a - b);
  return clean.length === 0 ? Infinity : clean[clean.length >> 1]!;
}

t.test('the frame paths allocate nothing per frame once warm', async (t) => {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) { t.pass('no AES-256-GCM here'); return; }
  const l = line(aes);
  // Each end's MAC behind its peer (a broadcast from it), so the frames below are unicast.
  for (const i of [0, 1, 2]) {
    const hello = frameBetween(0x10 + i, 0xff, 64, false);
    hello.fill(0xff, VNET_HDR_BYTES, VNET_HDR_BYTES + 6);
    l.send(i, hello, 1);
  }
  const paths: [string, number, Buffer, number][] = [
    ['super-frame A -> B, straight (segmented)', 0, frameBetween(0x10, 0x11, 8_000, true), 1],
    ['lone frame A -> B, straight', 0, frameBetween(0x10, 0x11, 200, false), 1],
    ['lone frame B -> A, straight', 1, frameBetween(0x11, 0x10, 60, false), 0],
    ['super-frame A -> C, relayed far by B in place', 0, frameBetween(0x10, 0x12, 8_000, true), 2],
    ['lone frame A -> C, relayed far by B', 0, frameBetween(0x10, 0x12, 200, false), 2],
  ];
  for (const [what, from, frame, to] of paths) {
    const delivered = l.delivered[to]!;
    for (let i = 0; i < 50; i++) l.send(from, frame, BATCH);
    t.equal(l.delivered[to]! - delivered, 50 * BATCH, `${what}: every frame delivered`);
    const perFrame = bytesPerCall(() => l.send(from, frame, BATCH), 40) / BATCH;
    t.ok(perFrame < MAX_BYTES_PER_FRAME, `${what}: ${perFrame.toFixed(1)} heap bytes per frame`);
  }
  t.ok(l.lanes[0]!.entries > 0 && l.lanes[1]!.entries > 0, 'the lone frames were offered to the lane (their per-frame checks measured too)');
  const far = l.overlays[1]!.counters;
  t.ok((far['framesRelayedFar'] ?? 0) >= 2 * 50 * BATCH, 'B relayed the A -> C frames far');
  l.close();
});

t.test('copyBytes copies as memmove does, refuses ranges outside a buffer, and makes no object', async (t) => {
  const native = loadNative();
  const src = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const dst = Buffer.alloc(64, 0xee);
  native.copyBytes(dst, 8, src, 100, 16);
  t.same([...dst.subarray(8, 24)], Array.from({ length: 16 }, (_, i) => 100 + i), 'the bytes land at the offset');
  t.ok(dst[7] === 0xee && dst[24] === 0xee, 'and nothing around them moves');
  const one = Buffer.from(src);
  native.copyBytes(one, 10, one, 0, 100);
  t.same([...one.subarray(10, 110)], Array.from({ length: 100 }, (_, i) => i), 'overlapping ranges of one buffer move as memmove');
  native.copyBytes(dst, 64, src, 256, 0);
  t.pass('an empty copy at both ends is fine');
  t.throws(() => native.copyBytes(dst, 60, src, 0, 8), RangeError, 'a destination range past the end is refused');
  t.throws(() => native.copyBytes(dst, 0, src, 250, 8), RangeError, 'a source range past the end is refused');
  t.throws(() => native.copyBytes(dst, -1, src, 0, 1), RangeError, 'a negative offset is refused');
  t.throws(() => native.copyBytes(dst, 0, src, 0.5, 1), RangeError, 'a fractional offset is refused');
  t.throws(() => native.copyBytes(dst, 0, new Uint16Array(8) as unknown as Uint8Array, 0, 1), TypeError, 'only byte buffers');
  t.throws(() => (native.copyBytes as (...a: unknown[]) => void)(dst, 0, src, 0), TypeError, 'all five arguments');
  const perCopy = bytesPerCall(() => native.copyBytes(dst, 1, src, 3, 40), 5_000);
  t.ok(perCopy < 1, `${perCopy.toFixed(2)} heap bytes per copy`);
});
