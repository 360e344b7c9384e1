// Kernel relays (router/overlay/kernel-relay.ts, far-path.ts' type 4): three
// Overlays in a line, A - B - C, over in-memory ports, with B's "kernel" played
// by the harness: what an end sends to B's granted port reaches the other end
// from B's partner port, as the nftables rules (router/host/kernel-relay-rules.ts)
// would forward it, and B's router never sees it. Checked: the request, the
// grants and the probes put A -> C frames on the kernel path byte for byte,
// both ways; B's router relays nothing once they do; C refuses type 4 from
// anywhere but the granted port, replays and forgeries; a path that stops
// carrying probes falls back to B's router, and is given back and asked for
// again when that lasts; routes that move release the
// pair everywhere; a grant from a neighbour that is not the way to that peer
// is refused; the relay refuses ends that do not take type 4, and caps pairs
// per peer; lone segments are put back together.

import t, { type Test } from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import { encodeKernelRelay, type KernelRelayMessage } from '../../router/mesh/kernel-relay-messages';
import type { PeerName } from '../../router/mesh/peer-name';
import { decodeControlMessage, NO_KERNEL_RELAY, type KernelRelayFlags } from '../../router/mesh/protocol';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { probeAesGcm, type AesGcm } from '../../router/overlay/aes-gcm';
import { frameAead } from '../../router/overlay/frame-aead';
import { GIVE_BACK_TIMEOUTS, MAX_PAIRS_PER_PEER, REQUEST_RETRY_TIMEOUTS } from '../../router/overlay/kernel-relay';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { type FramePort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import { SLEEVE_TYPE_FAR, SLEEVE_TYPE_FAR_KERNEL, VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import { SEGMENTED_SLEEVE_VERSION } from '../../router/overlay/sleeve-segments';
import { renderStatus } from '../../cli/render-status';
import { sampleStatus } from './sample-status';
import { LinePort, type Sent } from './line-port';
import { tcpSuperFrame } from './tcp-super-frame';

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const C = '02:00:00:00:00:0c' as PeerName;
const NAMES = [A, B, C];
const HOSTS = ['10.9.0.1', '10.9.0.2', '10.9.0.3'];
const PORT_A = 40_001;
const PORT_C = 40_003;
const TAKES: KernelRelayFlags = { takes: true, grants: true };

const linkKey = (x: number, y: number): Buffer => Buffer.alloc(32, 16 * x + y + 1);
const farKey = (from: number, to: number): Buffer => Buffer.alloc(32, 0x50 + 4 * from + to);

function line(aes: AesGcm, opts: { kernelAt?: [boolean, boolean, boolean]; segmentBytesA?: number } = {}) {
  const clock = new ManualClock();
  const ports = NAMES.map(() => new LinePort());
  const delivered: Buffer[][] = [[], [], []];
  const onFrame: ((buf: Buffer, off: number, len: number) => void)[] = [];
  const bridges: FramePort[] = NAMES.map((_, i) => ({
    start: (f) => { onFrame[i] = f; },
    write: (buf, off, len) => { delivered[i]!.push(Buffer.from(buf.subarray(off, off + len))); },
    close: () => {},
  }));
  const opened: { a: { host: string; port: number }; b: { host: string; port: number } }[] = [];
  const closed: { portA: number; portB: number }[] = [];
  let kernelOn = true;
  const rules = {
    open: async (a: { host: string; port: number }, b: { host: string; port: number }) => {
      opened.push({ a, b });
      return { portA: PORT_A + 10 * (opened.length - 1), portB: PORT_C + 10 * (opened.length - 1) };
    },
    close: async (pair: { portA: number; portB: number }) => { closed.push(pair); },
  };
  const overlays = NAMES.map((name, i) => new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), aes, bridge: bridges[i]!, udp: ports[i]!,
      ...(opts.kernelAt?.[i] === false ? {} : { kernelRelay: { rules: i === 1 ? rules : null } }) },
    { localPeer: name, mtu: 1375, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS, segmentBytes: i === 0 ? opts.segmentBytesA ?? 1472 : 1472 },
  ));
  const wants: { by: number; peer: PeerName }[] = [];
  overlays.forEach((o, i) => {
    o.far!.source = { want: (peer) => { wants.push({ by: i, peer }); }, unknownKey: () => {} };
  });
  let hopsAC = 2;
  const next = (self: number, dst: PeerName): PeerName | null => {
    const d = NAMES.indexOf(dst);
    if (d < 0 || d === self) return null;
    if (hopsAC === 1 && self !== 1 && d !== 1) return dst;
    return NAMES[d > self ? self + 1 : self - 1]!;
  };
  const routes = (): void => overlays.forEach((o, i) => o.setRoutes({
    nextHop: (dst) => next(i, dst), broadcastChildren: (orig) => (i === 1 && orig === C ? [A] : i === 2 && orig === C ? [B] : []),
    hops: (dst) => (hopsAC === 1 && i !== 1 && NAMES.indexOf(dst) !== 1 ? 1 : Math.abs(NAMES.indexOf(dst) - i)),
  }));
  overlays.forEach((o) => o.start());
  routes();
  const controls: { from: number; to: number; msg: Uint8Array }[] = [];
  for (const [x, y] of [[0, 1], [1, 0], [1, 2], [2, 1]] as const) {
    overlays[x]!.addNeighbour({
      name: NAMES[y]!, host: HOSTS[y]!, udpPort: 6783, keys: new SleeveKeyRing(linkKey(x, y), linkKey(y, x), 'aes-256-gcm'),
      sendControl: (msg) => { controls.push({ from: x, to: y, msg }); },
    });
    overlays[x]!.handleUdpStatus(NAMES[y]!, { hearing: true, segments: true, far: true, kernel: overlays[y]!.far!.kernel?.flags() ?? NO_KERNEL_RELAY });
  }
  /** What passed through B's "kernel", per direction. */
  const forwarded = { ac: 0, ca: 0 };
  const deliverTo = (to: number, s: Sent, fromHost: string, fromPort: number): void => {
    const slab = Buffer.alloc(STAGE_SLOT_BYTES + 64);
    s.bytes.copy(slab, 32);
    ports[to]!.handler!(slab, 32, s.bytes.length, fromHost, fromPort, s.seg);
    ports[to]!.batchEnd!();
  };
  const route = (from: number, s: Sent): void => {
    const to = HOSTS.indexOf(s.host);
    if (to === 1 && s.port !== 6783) {
      // B's kernel: the granted ports, else nothing listens there.
      const pair = opened.findIndex((_, k) => s.port === PORT_A + 10 * k || s.port === PORT_C + 10 * k);
      if (pair < 0 || !kernelOn || closed.some((c) => c.portA === PORT_A + 10 * pair)) return;
      const fromA = s.port === PORT_A + 10 * pair;
      if (HOSTS[from] !== (fromA ? opened[pair]!.a.host : opened[pair]!.b.host)) return;
      if (fromA) forwarded.ac++; else forwarded.ca++;
      deliverTo(fromA ? 2 : 0, s, HOSTS[1]!, fromA ? PORT_C + 10 * pair : PORT_A + 10 * pair);
      return;
    }
    deliverTo(to, s, HOSTS[from]!, 6783);
  };
  const run = (): void => {
    for (let moved = true; moved;) {
      moved = false;
      for (let i = 0; i < 3; i++) for (const s of ports[i]!.out.splice(0)) { moved = true; route(i, s); }
      for (const c of controls.splice(0)) {
        moved = true;
        const m = decodeControlMessage(c.msg);
        if (m.type === 'far-frame') overlays[c.to]!.handleTcpFar(NAMES[c.from]!, m.message);
        if (m.type === 'frame') overlays[c.to]!.handleTcpFrame(NAMES[c.from]!, m.inner);
        if (m.type === 'kernel-relay') overlays[c.to]!.handleKernelRelay(NAMES[c.from]!, m.relay);
        if (m.type === 'udp-status') overlays[c.to]!.handleUdpStatus(NAMES[c.from]!, m);
      }
    }
  };
  // Each end's MAC learnt behind it (a broadcast from it), so frames between them are unicast.
  const hello = (from: number, mac: number): void => {
    const f = Buffer.alloc(VNET_HDR_BYTES + 64);
    f.fill(0xff, VNET_HDR_BYTES, VNET_HDR_BYTES + 6);
    f.fill(0x02, VNET_HDR_BYTES + 6, VNET_HDR_BYTES + 12);
    f[VNET_HDR_BYTES + 11] = mac;
    f.writeUInt16BE(0x0800, VNET_HDR_BYTES + 12);
    onFrame[from]!(f, 0, f.length);
    run();
  };
  // The harness's frames go 02:..:0a -> 02:..:0b: C owns 0b; A owns 0a.
  hello(2, 0x0b);
  hello(0, 0x0a);
  delivered.forEach((d) => { d.length = 0; });
  // Far keys both ways, as far-keys.ts would install them.
  overlays[0]!.far!.farSendKey(C, 1, farKey(0, 2));
  overlays[2]!.far!.farReceiveKey(A, 1, farKey(0, 2));
  overlays[2]!.far!.farSendKey(A, 1, farKey(2, 0));
  overlays[0]!.far!.farReceiveKey(C, 1, farKey(2, 0));
  const base = overlays.map((o) => ({ ...o.counters }));
  const count = (i: number, name: string): number => (overlays[i]!.counters[name] ?? 0) - (base[i]![name] ?? 0);
  /** Probe ticks (FAST timings: 250 ms), each followed by delivery of all that was sent. */
  const ticks = async (n: number): Promise<void> => {
    for (let k = 0; k < n; k++) {
      clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs);
      run();
      // B's rules open asynchronously, as the real ones do.
      await new Promise((r) => setImmediate(r));
      run();
    }
  };
  const send = (from: number, f: Buffer): void => { onFrame[from]!(f, 0, f.length); run(); };
  const paths = (i: number) => overlays[i]!.statusSummary().kernelRelay?.paths ?? [];
  return {
    overlays, ports, controls, delivered, opened, closed, forwarded, wants, count, ticks, send, run, paths, routes, deliverTo,
    setHopsAC: (h: number) => { hopsAC = h; routes(); },
    setKernel: (on: boolean) => { kernelOn = on; },
    close: () => overlays.forEach((o) => o.close()),
  };
}

/** A -> C frame (the harness's MACs), and C -> A (MACs swapped). */
function frameAC(payload: number, seed: number): Buffer {
  return tcpSuperFrame(payload, seed);
}
function frameCA(payload: number, seed: number, plain = false): Buffer {
  const f = tcpSuperFrame(payload, seed, plain);
  const dst = Buffer.from(f.subarray(VNET_HDR_BYTES, VNET_HDR_BYTES + 6));
  f.copy(f, VNET_HDR_BYTES, VNET_HDR_BYTES + 6, VNET_HDR_BYTES + 12);
  dst.copy(f, VNET_HDR_BYTES + 6);
  return f;
}

async function aesOrSkip(t: Test): Promise<AesGcm | null> {
  await loadSodium();
  const aes = probeAesGcm().aes;
  if (aes === null) t.pass('no AES-256-GCM here');
  return aes;
}

type Line = ReturnType<typeof line>;

/** A line (null without AES-256-GCM, the far path's cipher), closed at teardown, after `ticks` probe ticks. */
async function started(t: Test, opts: Parameters<typeof line>[1] = {}, ticks = 4): Promise<Line | null> {
  const aes = await aesOrSkip(t);
  if (aes === null) return null;
  const l = line(aes, opts);
  t.teardown(l.close);
  await l.ticks(ticks);
  return l;
}

/** What node `from` sends while `act` runs, as it left; `deliver` false: taken off the wire, the line never delivers it. */
function capture(l: Line, from: number, act: () => void, deliver = true): { bytes: Buffer; seg: number }[] {
  const captured: { bytes: Buffer; seg: number }[] = [];
  const port = l.ports[from]!;
  const commit = port.commit.bind(port);
  port.commit = (len, host, p, seg = 0) => {
    if (deliver) commit(len, host, p, seg);
    captured.push({ bytes: Buffer.from(port.stage.subarray(0, len)), seg });
  };
  act();
  port.commit = commit;
  return captured;
}

function decodeKernelRelay(bytes: Uint8Array): KernelRelayMessage {
  const m = decodeControlMessage(bytes);
  if (m.type !== 'kernel-relay') throw new Error(`decoded as ${m.type}`);
  return m.relay;
}

t.test('the kernel relay message codec: round trip and hostile bytes', async (t) => {
  for (const m of [
    { kind: 'request', peer: C, port: 0 }, { kind: 'grant', peer: A, port: 40_001 }, { kind: 'release', peer: A, port: 65_535 },
  ] as KernelRelayMessage[]) {
    t.same(decodeKernelRelay(encodeKernelRelay(m)), m, `${m.kind} round trip`);
  }
  const good = encodeKernelRelay({ kind: 'grant', peer: A, port: 40_001 });
  t.throws(() => decodeControlMessage(good.subarray(0, good.length - 1)), /port/, 'short');
  t.throws(() => decodeControlMessage(Uint8Array.of(...good.subarray(0, 1), 9, ...good.subarray(2))), /unknown kind 9/, 'unknown kind');
  t.throws(() => decodeControlMessage(encodeKernelRelay({ kind: 'grant', peer: A, port: 0 })), /names the relay's port/, 'a grant without a port');
  t.throws(() => decodeControlMessage(encodeKernelRelay({ kind: 'release', peer: A, port: 0 })), /names the relay's port/, 'a release without a port');
  t.throws(() => decodeControlMessage(encodeKernelRelay({ kind: 'request', peer: A, port: 7 })), /carries port 0/, 'a request with a port');
  t.throws(() => encodeKernelRelay({ kind: 'grant', peer: A, port: 70_000 }), RangeError, 'no port above 65535 is written');
  const status = decodeControlMessage(Uint8Array.of(5, 0x61, 0, 0, 0, 0));
  t.same(status.type === 'udp-status' ? status.kernel : null, { takes: true, grants: true }, 'UDP_STATUS bits 5 and 6');
  const old = decodeControlMessage(Uint8Array.of(5, 0x11, 0, 0, 0, 0));
  t.same(old.type === 'udp-status' ? old.kernel : null, NO_KERNEL_RELAY, 'absent from an older peer');
});

t.test('request, grants and probes put A <-> C frames on B\'s kernel, byte for byte, and B\'s router relays none', async (t) => {
  const l = await started(t, {}, 0);
  if (l === null) return;
  l.send(0, frameAC(20_000, 1));
  t.equal(l.count(0, 'framesSentFar'), 1, 'before any grant, far through B\'s router');
  t.equal(l.count(1, 'framesRelayedFar'), 1);
  l.delivered[2]!.length = 0;
  await l.ticks(1);
  t.same(l.opened, [{ a: { host: HOSTS[0], port: 6783 }, b: { host: HOSTS[2], port: 6783 } }], 'B opened one pair between A\'s and C\'s UDP endpoints');
  t.same(l.paths(0), [{ peer: C, via: B, inUse: false }], 'A holds a path to C via B, not in use before probes');
  t.same(l.paths(2), [{ peer: A, via: B, inUse: false }], 'so does C, to A');
  t.equal(l.overlays[1]!.statusSummary().kernelRelay?.pairs, 1, 'B shows the pair');
  await l.ticks(3);
  t.same(l.paths(0), [{ peer: C, via: B, inUse: true }], 'probes both ways: in use at A');
  t.same(l.paths(2), [{ peer: A, via: B, inUse: true }], 'and at C');
  t.ok(l.count(0, 'kernelProbesReceived') > 0 && l.count(2, 'kernelProbesReceived') > 0, 'probes arrived both ways');
  const relayedBefore = l.count(1, 'framesRelayedFar');
  const ac = [frameAC(60_000, 2), frameAC(3_000, 3), tcpSuperFrame(200, 4, true)];
  for (const f of ac) l.send(0, f);
  const ca = [frameCA(40_000, 5), frameCA(100, 6, true)];
  for (const f of ca) l.send(2, f);
  t.equal(l.delivered[2]!.length, 3, 'C got A\'s three frames');
  t.ok(l.delivered[2]!.every((d, i) => d.equals(ac[i]!)), 'byte for byte');
  t.ok(l.delivered[0]!.every((d, i) => d.equals(ca[i]!)) && l.delivered[0]!.length === 2, 'A got C\'s two, byte for byte');
  t.equal(l.count(0, 'framesSentKernelRelay'), 3, 'A sent them through the kernel');
  t.equal(l.count(2, 'framesReceivedKernelRelay'), 3, 'C took them from it');
  t.equal(l.count(1, 'framesRelayedFar'), relayedBefore, 'B\'s router relayed none of them');
  t.equal(l.delivered[1]!.length, 0, 'nor delivered any');
  t.ok(l.forwarded.ac >= 3 + 3 && l.forwarded.ca >= 2 + 3, 'what B\'s kernel forwarded: the frames and the probes');
  t.ok(l.wants.some((w) => w.by === 2 && w.peer === A), 'C asked for a far key to A on its grant (it must probe)');
});

t.test('C takes type 4 only from the granted port, once, and unforged', async (t) => {
  const l = await started(t);
  if (l === null) return;
  const f = frameAC(5_000, 7);
  // One type 4 message as A sent it (B's kernel forwards it as well).
  const captured = capture(l, 0, () => l.send(0, f));
  t.equal(captured.length, 1);
  const msg = captured[0]!;
  t.equal(msg.bytes[1], SLEEVE_TYPE_FAR_KERNEL, 'sleeve type 4');
  t.equal(msg.bytes[0], SEGMENTED_SLEEVE_VERSION, 'as version 3 segments');
  t.ok(l.delivered[2]!.at(-1)?.equals(f), 'delivered through the kernel');
  const before = l.delivered[2]!.length;
  const at = (host: string, port: number, bytes = msg.bytes): void => l.deliverTo(2, { host: HOSTS[2]!, port: 6783, bytes, seg: msg.seg }, host, port);
  at(HOSTS[1]!, 6783);
  at(HOSTS[0]!, PORT_C);
  at(HOSTS[1]!, PORT_A);
  t.equal(l.delivered[2]!.length, before, 'not from B\'s own port, nor from A, nor from the other port of the pair');
  t.equal(l.count(2, 'frames_dropped{reason="kernel-source"}'), 3, 'each counted');
  at(HOSTS[1]!, PORT_C);
  t.equal(l.delivered[2]!.length, before, 'from the granted port again: a replay');
  t.equal(l.count(2, 'frames_dropped{reason="replay"}'), 1);
  const forged = Buffer.from(msg.bytes);
  forged[forged.length - 30]! ^= 1;
  at(HOSTS[1]!, PORT_C, forged);
  t.equal(l.count(2, 'frames_dropped{reason="auth"}'), 1, 'a flipped body byte fails the far AEAD');
  const asType3 = Buffer.from(msg.bytes);
  for (let at = 0; at < asType3.length; at += msg.seg) asType3[at + 1] = SLEEVE_TYPE_FAR;
  at(HOSTS[1]!, PORT_C, asType3);
  t.equal(l.delivered[2]!.length, before, 'relabelled as type 3 it is no neighbour\'s message');
  t.equal(l.count(2, 'frames_dropped{reason="unknown-sender"}'), 1);
  const otherSender = Buffer.from(msg.bytes);
  for (let at = 0; at < otherSender.length; at += msg.seg) otherSender[at + 7]! ^= 1;
  at(HOSTS[1]!, PORT_C, otherSender);
  const otherDst = Buffer.from(msg.bytes);
  otherDst[20 + 11]! ^= 1;
  at(HOSTS[1]!, PORT_C, otherDst);
  t.equal(l.count(2, 'frames_dropped{reason="kernel-source"}'), 5, 'a sleeve sender other than the origin, or a destination other than us: refused');
  t.equal(l.count(2, 'frames_dropped{reason="auth"}'), 1, 'before any AEAD');
});

t.test('a type 4 message whose segments arrive one by one is put back together', async (t) => {
  const l = await started(t);
  if (l === null) return;
  const f = frameAC(9_000, 11);
  const msg = capture(l, 0, () => l.send(0, f), false)[0]!;
  t.ok(msg.seg > 0 && msg.bytes.length > 3 * msg.seg, 'sent as several segments');
  const before = l.delivered[2]!.length;
  const segments: Buffer[] = [];
  for (let at = 0; at < msg.bytes.length; at += msg.seg) segments.push(msg.bytes.subarray(at, Math.min(at + msg.seg, msg.bytes.length)));
  // Last first: out of order too.
  for (const seg of segments.reverse()) l.deliverTo(2, { host: HOSTS[2]!, port: 6783, bytes: seg, seg: 0 }, HOSTS[1]!, PORT_C);
  t.equal(l.delivered[2]!.length, before + 1, 'delivered once whole');
  t.ok(l.delivered[2]!.at(-1)?.equals(f), 'byte for byte');
});

t.test('a path that stops carrying probes falls back to B\'s router, and comes back', async (t) => {
  const l = await started(t);
  if (l === null) return;
  t.same(l.paths(0).map((p) => p.inUse), [true]);
  l.setKernel(false);
  await l.ticks(Math.ceil(FAST_OVERLAY_TIMINGS.udpTimeoutMs / FAST_OVERLAY_TIMINGS.probeIntervalMs) + 1);
  t.same(l.paths(0).map((p) => p.inUse), [false], 'A stopped using it');
  const relayed = l.count(1, 'framesRelayedFar');
  const f = frameAC(8_000, 8);
  l.send(0, f);
  t.ok(l.delivered[2]!.at(-1)?.equals(f), 'the frame arrives through B\'s router');
  t.equal(l.count(1, 'framesRelayedFar'), relayed + 1);
  l.setKernel(true);
  await l.ticks(3);
  t.same(l.paths(0).map((p) => p.inUse), [true], 'in use again once probes pass');
  // Longer: as if B lost its rules. The ends give the pair back, and A asks again later, for fresh rules.
  l.setKernel(false);
  const timeouts = (n: number): number => Math.ceil((n * FAST_OVERLAY_TIMINGS.udpTimeoutMs) / FAST_OVERLAY_TIMINGS.probeIntervalMs);
  await l.ticks(timeouts(GIVE_BACK_TIMEOUTS + 1) + 1);
  t.same(l.paths(0), [], `given back after ${GIVE_BACK_TIMEOUTS} timeouts unused`);
  t.same(l.closed, [{ portA: PORT_A, portB: PORT_C }], 'B closed the rules');
  l.setKernel(true);
  l.send(0, frameAC(1_000, 9));
  await l.ticks(timeouts(REQUEST_RETRY_TIMEOUTS));
  t.equal(l.opened.length, 2, 'asked again: a new pair');
  t.same(l.paths(0).map((p) => p.inUse), [true], 'in use');
});

t.test('routes that move release the pair at the relay and the other end', async (t) => {
  const l = await started(t);
  if (l === null) return;
  l.setHopsAC(1);
  await l.ticks(1);
  t.same(l.paths(0), [], 'A let go');
  t.same(l.paths(2), [], 'C was told');
  t.same(l.closed, [{ portA: PORT_A, portB: PORT_C }], 'B closed the rules');
  t.equal(l.overlays[1]!.statusSummary().kernelRelay?.pairs, 0);
});

t.test('an end whose relay goes drops the path at once; the relay closes pairs of a peer that went', async (t) => {
  const l = await started(t);
  if (l === null) return;
  l.overlays[0]!.removeNeighbour(B);
  t.same(l.paths(0), [], 'A without B: no path through it');
  l.overlays[1]!.removeNeighbour(A);
  l.run();
  t.same(l.closed.length, 1, 'B closed the pair with A');
  t.same(l.paths(2), [], 'and told C');
});

t.test('grants only from the way to that peer; requests only between ends that take type 4, within the cap', async (t) => {
  const aes = await aesOrSkip(t);
  if (aes === null) return;
  const l = line(aes, { kernelAt: [true, true, false] });
  t.teardown(l.close);
  await l.ticks(2);
  t.same(l.opened, [], 'C does not take type 4: B opens nothing');
  t.ok(l.overlays[1]!.counters['kernelRelayRefused']! > 0, 'and counts the refusal');
  // A grant from C (a neighbour of B only): A has no link to C, so it never arrives; B grants for a peer B itself is.
  l.overlays[0]!.handleKernelRelay(B, { kind: 'grant', peer: B, port: 40_100 });
  l.overlays[0]!.handleKernelRelay(B, { kind: 'grant', peer: '02:00:00:00:00:0e' as PeerName, port: 40_101 });
  l.overlays[0]!.handleKernelRelay(B, { kind: 'grant', peer: A, port: 40_102 });
  t.same(l.paths(0), [], 'A refuses grants for the relay itself, itself, or a peer it does not reach through it');
  const releases = l.controls.map((c) => decodeControlMessage(c.msg)).filter((m) => m.type === 'kernel-relay' && m.relay.kind === 'release');
  t.equal(releases.length, 3, 'and tells the relay so');
  l.controls.length = 0;
  // A neighbour that never said it grants is not taken at its word.
  l.overlays[0]!.handleUdpStatus(B, { hearing: true, segments: true, far: true, kernel: { takes: true, grants: false } });
  l.overlays[0]!.handleKernelRelay(B, { kind: 'grant', peer: C, port: 40_103 });
  t.same(l.paths(0), [], 'no grant from a neighbour without bit 6');
  l.overlays[0]!.handleUdpStatus(B, { hearing: true, segments: true, far: true, kernel: TAKES });
  l.overlays[0]!.handleKernelRelay(B, { kind: 'grant', peer: C, port: 40_104 });
  t.same(l.paths(0), [{ peer: C, via: B, inUse: false }], 'the same grant from one that did: taken');
  l.controls.length = 0;
  // Nor from one that is not A's way to that peer.
  l.overlays[0]!.removeNeighbour(B);
  l.overlays[0]!.addNeighbour({ name: B, host: HOSTS[1]!, udpPort: 6783, keys: new SleeveKeyRing(linkKey(0, 1), linkKey(1, 0), 'aes-256-gcm'),
    sendControl: (msg) => { l.controls.push({ from: 0, to: 1, msg }); } });
  l.overlays[0]!.handleUdpStatus(B, { hearing: true, segments: true, far: true, kernel: TAKES });
  const D = '02:00:00:00:00:0d' as PeerName;
  l.overlays[0]!.setRoutes({ nextHop: (dst) => (dst === C ? D : dst === B ? B : null), broadcastChildren: () => [], hops: (dst) => (dst === C ? 2 : 1) });
  l.overlays[0]!.handleKernelRelay(B, { kind: 'grant', peer: C, port: 40_105 });
  t.same(l.paths(0), [], 'no grant for a peer two hops away through another neighbour');
  // An end asks only a neighbour that said it grants (B here is a relay with --no-kernel-relay).
  const l4 = line(aes, { kernelAt: [true, false, true] });
  t.teardown(l4.close);
  const asked: KernelRelayMessage[] = [];
  l4.overlays[1]!.handleKernelRelay = (_from, msg) => { asked.push(msg); };
  l4.send(0, frameAC(1_000, 12));
  await l4.ticks(2);
  t.ok(l4.count(0, 'framesSentFar') > 0, 'A sends far to C');
  t.same(asked, [], 'but asks B nothing');
  // Nor does the relay pair a peer with itself, nor ends that do not hear it, nor anything when it does not grant.
  l.overlays[1]!.handleKernelRelay(A, { kind: 'request', peer: A, port: 0 });
  await new Promise((r) => setImmediate(r));
  t.same(l.opened, [], 'B opens no pair of A with A');
  const l3 = line(aes);
  t.teardown(l3.close);
  l3.overlays[1]!.handleUdpStatus(C, { hearing: false, segments: true, far: true, kernel: TAKES });
  l3.overlays[1]!.handleKernelRelay(A, { kind: 'request', peer: C, port: 0 });
  await new Promise((r) => setImmediate(r));
  t.same(l3.opened, [], 'B opens no pair with an end that does not hear its UDP');
  l3.overlays[1]!.handleUdpStatus(C, { hearing: true, segments: true, far: true, kernel: TAKES });
  l3.overlays[1]!.far!.source = null;
  l3.overlays[1]!.handleKernelRelay(A, { kind: 'request', peer: C, port: 0 });
  await new Promise((r) => setImmediate(r));
  t.same(l3.opened, [], 'nor any when it does not grant (no far keys: a plaintext mesh)');
  // The cap: an end asking for pairs to more peers than MAX_PAIRS_PER_PEER.
  const l2 = line(aes);
  t.teardown(l2.close);
  const relay = l2.overlays[1]!;
  const others = Array.from({ length: MAX_PAIRS_PER_PEER + 3 }, (_, i) => `02:00:00:00:01:${(16 + i).toString(16)}` as PeerName);
  others.forEach((name, i) => {
    relay.addNeighbour({ name, host: `10.9.1.${i + 1}`, udpPort: 6783, keys: new SleeveKeyRing(linkKey(1, 9), linkKey(9, 1), 'aes-256-gcm'), sendControl: () => {} });
    relay.handleUdpStatus(name, { hearing: true, segments: true, far: true, kernel: TAKES });
  });
  for (const name of others) relay.handleKernelRelay(A, { kind: 'request', peer: name, port: 0 });
  relay.handleKernelRelay(A, { kind: 'request', peer: others[0]!, port: 0 });
  await new Promise((r) => setImmediate(r));
  t.equal(l2.opened.length, MAX_PAIRS_PER_PEER, `at most ${MAX_PAIRS_PER_PEER} pairs for A, and a second request for one opens nothing new`);
});

t.test('an end whose port cannot send segments takes no kernel path (a relay passes no IP fragment)', async (t) => {
  const l = await started(t, { segmentBytesA: 0 }, 0);
  if (l === null) return;
  l.send(0, frameAC(20_000, 13));
  await l.ticks(4);
  t.same(l.overlays[0]!.far!.kernel?.flags(), { takes: false, grants: false }, 'A announces neither bit');
  t.same(l.opened, [], 'and B opens no pair for it');
  t.ok(l.delivered[2]!.at(-1)?.equals(frameAC(20_000, 13)), 'its frames go through B\'s router');
});

t.test('weave status shows kernel relays: what we forward here and our paths through others', async (t) => {
  const dp = { mtu: 1410, bridge: 'weave', aead: 'sodium-native', macs: 3 };
  const relay = renderStatus(sampleStatus({ dataPlane: { ...dp, kernelRelay: { grants: true, pairs: 2, paths: [] } } }));
  t.match(relay, /KernelRelay: grants, 2 pairs forwarded here; no paths through others/);
  const end = renderStatus(sampleStatus({ dataPlane: { ...dp, kernelRelay: { grants: false, pairs: 0, paths: [
    { peer: C, via: B, inUse: true }, { peer: A, via: B, inUse: false },
  ] } } }));
  t.match(end, new RegExp(`KernelRelay: grants none; ${C} via ${B} \\(in use\\), ${A} via ${B} \\(probing\\)`));
  t.notMatch(renderStatus(sampleStatus({ dataPlane: dp })), /KernelRelay/, 'nothing from a data plane without them');
});
