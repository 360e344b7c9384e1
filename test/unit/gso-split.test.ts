// The GSO splitter: a super-frame too big for one sleeve datagram, split into
// pieces, must put exactly the same packets on the far wire as the original
// would have. A small model of the kernel's segmentation (tcp_gso_segment:
// per-segment lengths, IPv4 ids and header checksums, sequence numbers, flag
// rules, and the TCP checksum finished from the CHECKSUM_PARTIAL seed) segments
// both, and the packets are compared byte for byte; their checksums are also
// checked from scratch. Then hostile frames (refused by reason, never a throw),
// and an Overlay that splits an oversized frame into datagrams the far end
// accepts.

import t from 'tap';
import { randomInt, SeededRng } from '../../common/rng';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { frameAead } from '../../router/overlay/frame-aead';
import { GsoSplitter, GSO_SPLIT_MAX_INPUT_BYTES } from '../../router/overlay/gso-split';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { DatagramPort, FramePort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import {
  INNER_HEADER_BYTES, MAX_SLEEVE_FRAME_BYTES, peerNameBytes, readSleeveHeader, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, VNET_HDR_BYTES,
} from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { checkVnetHeader } from '../../router/overlay/vnet-header';

interface Shape {
  v6?: boolean; vlan?: boolean; mss?: number; payload: number; seq?: number; id?: number; flags?: number;
  ipOptions?: number; tcpOptions?: number;
}

const sumWords = (b: Buffer, from: number, to: number): number => {
  let s = 0;
  for (let i = from; i < to; i += 2) s += (b[i]! << 8) | (i + 1 < to ? b[i + 1]! : 0);
  return s;
};
const fold = (s: number): number => { while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000); return s; };

/** A super-frame as a TAP with TSO hands it over: vnet header, Ethernet, IP, TCP with the pseudo-header seed. */
function superFrame(s: Shape): Buffer {
  const mss = s.mss ?? 1448;
  const l2 = 14 + (s.vlan ? 4 : 0);
  const ipBytes = s.v6 ? 40 : 20 + (s.ipOptions ?? 0);
  const tcpBytes = 20 + (s.tcpOptions ?? 12);
  const hdr = l2 + ipBytes + tcpBytes;
  const f = Buffer.alloc(VNET_HDR_BYTES + hdr + s.payload);
  f[0] = 1; f[1] = s.v6 ? 4 : 1;
  f.writeUInt16LE(hdr, 2); f.writeUInt16LE(mss, 4); f.writeUInt16LE(l2 + ipBytes, 6); f.writeUInt16LE(16, 8);
  const e = VNET_HDR_BYTES;
  f.fill(0x02, e, e + 12);
  if (s.vlan) { f.writeUInt16BE(0x8100, e + 12); f.writeUInt16BE(42, e + 14); }
  f.writeUInt16BE(s.v6 ? 0x86dd : 0x0800, e + l2 - 2);
  const ip = e + l2;
  if (s.v6) {
    f[ip] = 0x60; f.writeUInt16BE(tcpBytes + s.payload, ip + 4); f[ip + 6] = 6; f[ip + 7] = 64;
    for (let i = 0; i < 32; i++) f[ip + 8 + i] = 0xfd + i;
  } else {
    f[ip] = 0x40 | (ipBytes / 4); f.writeUInt16BE(ipBytes + tcpBytes + s.payload, ip + 2); f.writeUInt16BE(s.id ?? 0x1234, ip + 4);
    f.writeUInt16BE(0x4000, ip + 6); f[ip + 8] = 64; f[ip + 9] = 6;
    f.fill(1, ip + 20, ip + ipBytes);
    f.writeUInt32BE(0x0a200001, ip + 12); f.writeUInt32BE(0x0a200102, ip + 16);
    f.writeUInt16BE(~fold(sumWords(f, ip, ip + ipBytes)) & 0xffff, ip + 10);
  }
  const th = ip + ipBytes;
  f.writeUInt16BE(40000, th); f.writeUInt16BE(5201, th + 2); f.writeUInt32BE(s.seq ?? 1000, th + 4); f.writeUInt32BE(777, th + 8);
  f[th + 12] = (tcpBytes / 4) << 4; f[th + 13] = s.flags ?? 0x18; f.writeUInt16BE(500, th + 14);
  f.fill(0x01, th + 20, th + tcpBytes);
  for (let i = 0; i < s.payload; i++) f[th + tcpBytes + i] = (i * 7 + 3) & 0xff;
  f.writeUInt16BE(pseudoSum(f, ip, s.v6 ?? false, tcpBytes + s.payload), th + 16);
  return f;
}

function pseudoSum(f: Buffer, ip: number, v6: boolean, tcpLen: number): number {
  return fold((v6 ? sumWords(f, ip + 8, ip + 40) : sumWords(f, ip + 12, ip + 20)) + 6 + tcpLen);
}

interface Parsed { ip: number; th: number; end: number; v6: boolean }
function parse(f: Buffer): Parsed {
  let ip = VNET_HDR_BYTES + 14;
  if (f.readUInt16BE(VNET_HDR_BYTES + 12) === 0x8100) ip += 4;
  const v6 = f[ip]! >> 4 === 6;
  const th = ip + (v6 ? 40 : (f[ip]! & 15) * 4);
  return { ip, th, end: th + (f[th + 12]! >> 4) * 4, v6 };
}

/** What the far kernel puts on the wire for one frame from a TAP: Ethernet packets with finished checksums. */
function segment(f: Buffer): Buffer[] {
  const { ip, th, end, v6 } = parse(f);
  const gso = f[1] !== 0;
  const mss = gso ? f.readUInt16LE(4) : Infinity;
  const payload = f.length - end;
  const tcpLen = f.length - th;
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < payload || (payload === 0 && i === 0); at += mss, i++) {
    const n = Math.min(mss, payload - at);
    const p = Buffer.concat([f.subarray(VNET_HDR_BYTES, end), f.subarray(end + at, end + at + n)]);
    const pip = ip - VNET_HDR_BYTES, pth = th - VNET_HDR_BYTES;
    const segTcp = end - th + n;
    let seed = p.readUInt16BE(pth + 16);
    if (gso) {
      // Only GSO segments get new IP headers and flags; a plain frame's are what the splitter wrote.
      if (v6) p.writeUInt16BE(segTcp, pip + 4);
      else {
        p.writeUInt16BE(pth - pip + segTcp, pip + 2);
        p.writeUInt16BE((p.readUInt16BE(pip + 4) + i) & 0xffff, pip + 4);
        p.writeUInt16BE(0, pip + 10);
        p.writeUInt16BE(~fold(sumWords(p, pip, pth)) & 0xffff, pip + 10);
      }
      p.writeUInt32BE((p.readUInt32BE(pth + 4) + at) >>> 0, pth + 4);
      if (at + n < payload) p[pth + 13]! &= ~0x09;
      if (i > 0) p[pth + 13]! &= ~0x80;
      seed = fold(seed + (~tcpLen & 0xffff) + segTcp); // the seed's length, moved from the super-frame's to the segment's
    }
    p.writeUInt16BE(0, pth + 16);
    p.writeUInt16BE(~fold(seed + sumWords(p, pth, p.length)) & 0xffff, pth + 16);
    out.push(p);
  }
  return out;
}

/** Checksums of one finished packet, computed from scratch: both must verify. */
function checksumsVerify(p: Buffer): boolean {
  let ip = 14;
  if (p.readUInt16BE(12) === 0x8100) ip += 4;
  const v6 = p[ip]! >> 4 === 6;
  const th = ip + (v6 ? 40 : (p[ip]! & 15) * 4);
  if (!v6 && fold(sumWords(p, ip, th)) !== 0xffff) return false;
  const pseudo = v6 ? sumWords(p, ip + 8, ip + 40) : sumWords(p, ip + 12, ip + 20);
  return fold(pseudo + 6 + (p.length - th) + sumWords(p, th, p.length)) === 0xffff;
}

function pieces(sp: GsoSplitter, n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(sp.scratch.subarray(sp.offsets[i]!, sp.offsets[i]! + sp.lengths[i]!)));
}

const shapes: [string, Shape, number][] = [
  ['IPv4, 64 KiB of IP packet', { payload: 65_535 - 20 - 32 }, 2],
  ['IPv6, 64 KiB of payload', { v6: true, payload: 65_535 - 32, mss: 1428 }, 2],
  ['IPv4 behind a VLAN tag, with IP options', { vlan: true, ipOptions: 8, payload: 65_400 }, 2],
  ['sequence number wraps within the frame', { seq: 0xffff_f000, payload: 65_400 }, 2],
  ['IPv4 id wraps', { id: 0xfffe, payload: 65_400 }, 2],
  ['FIN, PSH and CWR on the original', { flags: 0x80 | 0x19, payload: 65_400 }, 2],
  ['payload not a multiple of the MSS', { payload: 65_401 }, 2],
  ['small MSS (many segments)', { mss: 536, payload: 65_400 }, 2],
  ['MSS bigger than a piece may be: one-segment pieces', { mss: 40_000, payload: 65_400 }, 2],
];

t.test('pieces put the same packets on the wire as the original', async (t) => {
  const sp = new GsoSplitter();
  for (const [name, shape, want] of shapes) {
    const f = superFrame(shape);
    const n = sp.split(f, 0, f.length, MAX_SLEEVE_FRAME_BYTES);
    t.equal(n, want, `${name}: ${want} pieces`);
    if (typeof n !== 'number') continue;
    const ps = pieces(sp, n);
    t.ok(ps.every((p) => p.length <= MAX_SLEEVE_FRAME_BYTES), `${name}: every piece fits a datagram`);
    t.ok(ps.every((p) => checkVnetHeader(p, 0, p.length) === 'ok'), `${name}: every piece passes the receiver's header check`);
    const expected = segment(f);
    const got = ps.flatMap(segment);
    t.equal(got.length, expected.length, `${name}: same number of packets`);
    t.ok(got.every((p, i) => p.equals(expected[i]!)), `${name}: the same packets, byte for byte`);
    t.ok(got.every(checksumsVerify), `${name}: every packet's checksums verify`);
    const segs = ps.map((p) => (p[1] === 0 ? 1 : Math.ceil((p.length - parse(p).end) / p.readUInt16LE(4))));
    t.ok(Math.max(...segs) - Math.min(...segs) <= 1 || segs.at(-1)! < segs[0]!, `${name}: balanced pieces (${segs.join('+')})`);
  }
});

t.test('smaller limits give more pieces, all still exact; offsets are honoured', async (t) => {
  const sp = new GsoSplitter();
  const inner = superFrame({ payload: 30_000, flags: 0x99 });
  const f = Buffer.concat([Buffer.alloc(5, 0xee), inner, Buffer.alloc(3, 0xee)]);
  const n = sp.split(f, 5, inner.length, 9_000);
  t.equal(n, 4, '21 segments of at most 6 per piece');
  const ps = pieces(sp, n as number);
  t.ok(ps.every((p) => p.length <= 9_000));
  t.ok(ps.flatMap(segment).every((p, i, all) => p.equals(segment(inner)[i]!) && all.length === segment(inner).length));
  t.same(ps.map((p) => p[VNET_HDR_BYTES + 14 + 20 + 13]), [0x90, 0x10, 0x10, 0x19], 'CWR first, FIN and PSH last');
});

const hostile: [string, (f: Buffer) => Buffer, string][] = [
  ['a plain frame', (f) => { f[1] = 0; return f; }, 'not-gso'],
  ['UDP segmentation', (f) => { f[1] = 5; return f; }, 'not-gso'],
  ['no checksum to finish', (f) => { f[0] = 0; return f; }, 'csum'],
  ['both checksum flags', (f) => { f[0] = 3; return f; }, 'csum'],
  ['UDP checksum offset', (f) => { f.writeUInt16LE(6, 8); return f; }, 'csum'],
  ['checksum start not at TCP', (f) => { f.writeUInt16LE(30, 6); return f; }, 'csum'],
  ['IPv6 ethertype under a TCPv4 type', (f) => { f.writeUInt16BE(0x86dd, VNET_HDR_BYTES + 12); return f; }, 'l3'],
  ['ARP', (f) => { f.writeUInt16BE(0x0806, VNET_HDR_BYTES + 12); return f; }, 'l3'],
  ['IPv4 total length short of the frame', (f) => { f.writeUInt16BE(f.readUInt16BE(26) - 1, 26); return f; }, 'ip'],
  ['IPv4 more-fragments bit', (f) => { f.writeUInt16BE(0x2000, 30); return f; }, 'ip'],
  ['IPv4 fragment offset', (f) => { f.writeUInt16BE(0x0001, 30); return f; }, 'ip'],
  ['UDP in IPv4', (f) => { f[33] = 17; return f; }, 'ip'],
  ['IHL below 5', (f) => { f[24] = 0x44; return f; }, 'ip'],
  ['IP version 6 in an IPv4 frame', (f) => { f[24] = 0x65; return f; }, 'ip'],
  ['TCP data offset below 5', (f) => { f[44 + 12] = 0x40; return f; }, 'tcp'],
  ['gso_size 0', (f) => { f.writeUInt16LE(0, 4); return f; }, 'mss'],
  ['no payload', () => superFrame({ payload: 0 }), 'mss'],
  ['one segment bigger than a piece', (f) => { f.writeUInt16LE(65_450, 4); return f; }, 'room'],
  ['truncated to the Ethernet header', (f) => f.subarray(0, VNET_HDR_BYTES + 14), 'l3'],
  ['shorter than Ethernet', (f) => f.subarray(0, VNET_HDR_BYTES + 3), 'l3'],
  ['bigger than any IP packet', () => Buffer.alloc(GSO_SPLIT_MAX_INPUT_BYTES + 1), 'l3'],
];

t.test('hostile frames are refused by reason and counted', async (t) => {
  const sp = new GsoSplitter();
  for (const [name, mutate, want] of hostile) {
    const f = mutate(superFrame({ payload: 65_400 }));
    t.equal(sp.split(f, 0, f.length, MAX_SLEEVE_FRAME_BYTES), want, name);
  }
  t.equal(sp.split(Buffer.alloc(100), 50, 60, MAX_SLEEVE_FRAME_BYTES), 'l3', 'a range past the buffer');
  const v6 = superFrame({ v6: true, payload: 65_500 });
  v6[VNET_HDR_BYTES + 14 + 6] = 0; // a hop-by-hop header (BIG TCP's jumbogram) first
  t.equal(sp.split(v6, 0, v6.length, MAX_SLEEVE_FRAME_BYTES), 'ip', 'IPv6 extension header');
  const many = superFrame({ mss: 100, payload: 65_000 });
  t.equal(sp.split(many, 0, many.length, 1_000), 'room', 'more pieces than the scratch holds');
  t.equal(Object.values(sp.refused).reduce((a, b) => a + b), hostile.length + 3, 'every refusal counted');
});

t.test('seeded random mutations yield pieces or a reason, never a throw', async (t) => {
  const sp = new GsoSplitter();
  const rng = new SeededRng(14);
  const base = [superFrame({ payload: 65_400 }), superFrame({ v6: true, vlan: true, payload: 40_000, mss: 1000 })];
  let split = 0;
  for (let i = 0; i < 3_000; i++) {
    const f = Buffer.from(base[i % 2]!);
    for (let k = 1 + randomInt(rng, 4); k > 0; k--) f[randomInt(rng, 121)] = randomInt(rng, 256);
    const len = randomInt(rng, 4) === 0 ? randomInt(rng, f.length + 1) : f.length;
    const n = sp.split(f, 0, len, randomInt(rng, 4) === 0 ? randomInt(rng, 70_001) : MAX_SLEEVE_FRAME_BYTES);
    if (typeof n === 'number') {
      split++;
      const ps = pieces(sp, n);
      const payloadBytes = ps.reduce((a, p) => a + p.length - parse(p).end, 0);
      if (payloadBytes !== len - parse(f).end) { t.fail(`payload lost at iteration ${i}`); return; }
    }
  }
  t.ok(split > 0, `some mutated frames still split (${split})`);
});

t.test('an Overlay sends an oversized super-frame as pieces the far end accepts', async (t) => {
  await loadSodium();
  const US = '02:00:00:00:00:0a' as PeerName;
  const PEER = '02:00:00:00:00:0b' as PeerName;
  const sent: Buffer[] = [];
  const stage = Buffer.alloc(STAGE_SLOT_BYTES);
  const udp: DatagramPort = {
    start: () => {}, stageSlab: () => stage, stageOffset: () => 0, flush: () => {}, close: () => {},
    commit: (len) => { if (stage[1] === SLEEVE_TYPE_FRAME) sent.push(Buffer.from(stage.subarray(0, len))); },
  };
  let onFrame: ((buf: Buffer, off: number, len: number) => void) | null = null;
  const bridge: FramePort = { start: (f) => { onFrame = f; }, write: () => {}, close: () => {} };
  const key = (b: number): Buffer => Buffer.alloc(32, b);
  const overlay = new Overlay({ clock: new ManualClock(), logger: silentLogger, aead: frameAead(), bridge, udp },
    { localPeer: US, mtu: 1410, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS });
  overlay.start();
  overlay.setRoutes({ nextHop: () => PEER, broadcastChildren: (origin) => (origin === US ? [PEER] : []) });
  overlay.addNeighbour({ name: PEER, host: '10.9.0.2', udpPort: 6783, keys: new SleeveKeyRing(key(1), key(2)), sendControl: () => {} });
  overlay.handleUdpStatus(PEER, { hearing: true });
  const f = superFrame({ payload: 65_535 - 20 - 32 });
  f[VNET_HDR_BYTES + 5] = 0x0b; // to 02:02:02:02:02:0b, unknown here: it goes down the broadcast tree
  t.ok(f.length > MAX_SLEEVE_FRAME_BYTES, 'the frame does not fit one datagram');
  onFrame!(f, 0, f.length);
  t.equal(overlay.drops['too-big'], 0, 'not dropped as too big');
  t.equal(overlay.counters.framesSplit, 1);
  t.equal(sent.length, 2, 'two datagrams');
  const far = new SleeveSession(frameAead(), new SleeveKeyRing(key(2), key(1)), peerNameBytes(PEER));
  const opened = sent.map((d) => {
    const h = readSleeveHeader(d, 0, d.length);
    const n = typeof h === 'string' ? h : far.open(d, 0, d.length, h.counter);
    return typeof n === 'string' ? null : d.subarray(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES + n);
  });
  t.ok(opened.every((p) => p !== null && checkVnetHeader(p, 0, p.length) === 'ok'), 'both open and pass the receiver\'s header check');
  t.ok(opened.flatMap((p) => segment(Buffer.from(p!))).every((p, i) => p.equals(segment(f)[i]!)), 'and carry the original\'s packets');
  const odd = Buffer.from(f);
  odd[VNET_HDR_BYTES + 14 + 9] = 17; // not TCP: cannot be split
  onFrame!(odd, 0, odd.length);
  t.equal(overlay.drops['too-big'], 1, 'what cannot be split is dropped and counted');
  overlay.close();
});
