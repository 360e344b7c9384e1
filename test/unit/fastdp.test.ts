// The kernel fast path's pure parts: the per-peer decision (fastdp-peer.ts),
// the FDB plan, parser, diff and batch (fastdp-fdb.ts), the heartbeat codec
// (fastdp-heartbeat.ts), and two Fastdp controllers wired to each other
// through in-memory heartbeat ports and fake FDBs on a ManualClock.

import t from 'tap';
import { renderConnections, renderStatus } from '../../cli/render-status';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { decodeControlMessage, encodeUdpStatus } from '../../router/mesh/protocol';
import { Fastdp, type FdbDevice } from '../../router/overlay/fastdp';
import { desiredFdb, diffFdb, fdbBatch, fdbPeerAddresses, parseFdbShow } from '../../router/overlay/fastdp-fdb';
import { fastdpPeersScript, fastdpTableScript, removeFastdpLeftovers } from '../../router/host/fastdp-firewall';
import { FakeCommandRunner } from '../../router/host/command-runner';
import { encodeHeartbeat, heartbeatMac, parseHeartbeat } from '../../router/overlay/fastdp-heartbeat';
import { fastdpHost, FastdpPeer } from '../../router/overlay/fastdp-peer';
import type { FramePort } from '../../router/overlay/ports';
import { sampleStatus } from './sample-status';

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const C = '02:00:00:00:00:0c' as PeerName;
const T = { timeoutMs: 1000 };
const ON = { on: true } as const;

t.test('decision: off here, encrypted, IPv6 and silent peers never take the fast path', async (t) => {
  const p = new FastdpPeer(false, '10.0.0.2');
  p.onReport({ offered: true, hearing: true }, 0);
  t.same(p.decide({ on: false, reason: 'fast path turned off (--no-fastdp)' }, 0, T), { fast: false, reason: 'fast path turned off (--no-fastdp)' });
  t.same(p.flags({ on: false, reason: 'x' }, 0, T), { offered: false, hearing: false }, 'and we do not offer it');
  const enc = new FastdpPeer(true, '10.0.0.2');
  enc.onReport({ offered: true, hearing: true }, 0);
  t.same(enc.decide(ON, 0, T), { fast: false, reason: 'encrypted connection: never the fast path' }, 'whatever the peer says');
  t.same(enc.flags(ON, 0, T), { offered: false, hearing: false });
  const v6 = new FastdpPeer(false, fastdpHost('fd00::2'));
  v6.onReport({ offered: true, hearing: true }, 0);
  t.equal(v6.decide(ON, 0, T).fast, false, 'IPv6 peer');
  const fresh = new FastdpPeer(false, '10.0.0.2');
  t.match(fresh.decide(ON, 0, T).reason, /waiting for the peer/);
  fresh.onReport({ offered: false, hearing: false }, 0);
  t.match(fresh.decide(ON, 0, T).reason, /does not offer the fast path \(older version/);
});

t.test('decision: the peer hearing our heartbeats turns it on; a report against it or silence turns it off', async (t) => {
  const p = new FastdpPeer(false, '10.0.0.2');
  p.onReport({ offered: true, hearing: false }, 0);
  t.same(p.decide(ON, 100, T), { fast: false, reason: 'waiting for the first VXLAN heartbeats' });
  t.same(p.flags(ON, 100, T), { offered: true, hearing: false });
  p.onHeartbeat(200);
  t.same(p.flags(ON, 300, T), { offered: true, hearing: true }, 'we tell it we hear it');
  p.onReport({ offered: true, hearing: true }, 400);
  t.same(p.decide(ON, 500, T), { fast: true, reason: 'VXLAN heartbeats get through both ways' });
  t.same(p.decide(ON, 1500, T), { fast: true, reason: 'peer hears our VXLAN heartbeats; we hear none of its' }, 'one way only: still fast towards it');
  t.equal(p.decide(ON, 2400, T).fast, true, 'a report stays good for two timeouts');
  t.same(p.decide(ON, 2401, T), { fast: false, reason: 'no fast-path report from the peer lately' }, 'silence: back to the sleeve');
  p.onReport({ offered: true, hearing: true }, 3000);
  p.onHeartbeat(3000);
  t.equal(p.decide(ON, 3000, T).fast, true);
  p.onReport({ offered: true, hearing: false }, 3100);
  t.same(p.decide(ON, 3100, T), { fast: false, reason: 'peer hears none of our VXLAN heartbeats (UDP 6784 blocked one way?)' }, 'at once on a report against it');
  p.onReport({ offered: false, hearing: true }, 3200);
  t.equal(p.decide(ON, 3200, T).fast, false, 'hearing without offering counts for nothing');
});

t.test('UDP_STATUS carries the fast-path bits; an older peer\'s message has neither', async (t) => {
  const m = decodeControlMessage(encodeUdpStatus(true, 12, null, { offered: true, hearing: true }));
  t.same(m.type === 'udp-status' && m.fastdp, { offered: true, hearing: true });
  t.equal(m.type === 'udp-status' && m.hearing, true, 'the sleeve bit unchanged');
  const offerOnly = decodeControlMessage(encodeUdpStatus(false, 12, Buffer.alloc(8, 1), { offered: true, hearing: false }));
  t.same(offerOnly.type === 'udp-status' && [offerOnly.hearing, offerOnly.fastdp, offerOnly.echo?.length], [false, { offered: true, hearing: false }, 8]);
  const old = decodeControlMessage(Uint8Array.of(5, 1, 0, 0, 0, 9));
  t.same(old.type === 'udp-status' && old.fastdp, { offered: false, hearing: false });
});

t.test('fastdpHost: IPv4 and IPv4-mapped only', async (t) => {
  t.equal(fastdpHost('10.1.2.3'), '10.1.2.3');
  t.equal(fastdpHost('::ffff:10.1.2.3'), '10.1.2.3');
  t.equal(fastdpHost('fd00::1'), null);
  t.equal(fastdpHost('10.1.2.300'), null);
  t.equal(fastdpHost('10.1.2.3\nfdb del'), null);
});

t.test('FDB plan: fast neighbours\' unicast MACs and offering neighbours\' heartbeat MACs, nothing else', async (t) => {
  const macs = [
    { mac: '0a:00:00:00:00:01', peer: B },
    { mac: '0a:00:00:00:00:02', peer: C }, // C is relayed: not a fast neighbour
    { mac: '0b:00:00:00:00:03', peer: B }, // group bit
    { mac: '00:00:00:00:00:00', peer: B },
    { mac: '0a:00:00:00:00:04', peer: A }, // ours
  ];
  const d = desiredFdb(macs, new Map([[B, '10.0.0.2']]), new Map([[B, '10.0.0.2'], [C, '10.0.0.3']]));
  t.same([...d].sort(), [['0a:00:00:00:00:01', '10.0.0.2'], [heartbeatMac(B), '10.0.0.2'], [heartbeatMac(C), '10.0.0.3']].sort());
});

t.test('FDB: parse what bridge prints, diff, and batch in a safe order', async (t) => {
  const shown = JSON.stringify([
    { mac: '0a:00:00:00:00:01', flags: ['sticky'], master: 'weave', state: 'static' },
    { mac: '0a:00:00:00:00:01', dst: '10.0.0.2', flags: ['self'], state: 'permanent' },
    { mac: '0a:00:00:00:00:05', dst: '10.0.0.9', flags: ['self'], state: 'permanent' },
    { mac: '0a:00:00:00:00:06', flags: [], master: 'weave', state: 'static' },
    { mac: 'be:e9:43:be:82:81', flags: [], master: 'weave', state: 'permanent' },
    { mac: '00:00:00:00:00:00', dst: '10.0.0.7', flags: ['self'], state: 'permanent' },
    { mac: 'nonsense', dst: '10.0.0.2', flags: ['self'] },
    { mac: '0a:00:00:00:00:08', dst: '1.2.3.4; rm', flags: ['self'] },
    7, null,
  ]);
  const actual = parseFdbShow(shown);
  t.same([...actual.tunnel], [['0a:00:00:00:00:01', '10.0.0.2'], ['0a:00:00:00:00:05', '10.0.0.9']], 'tunnel entries; the all-zero and malformed ones ignored');
  t.same([...actual.bridge].sort(), ['0a:00:00:00:00:01', '0a:00:00:00:00:06'], 'static bridge entries; the device\'s own permanent one ignored');
  t.throws(() => parseFdbShow('{oops'), /not JSON/);
  t.same(parseFdbShow(''), { tunnel: new Map(), bridge: new Set() });

  const desired = new Map([['0a:00:00:00:00:01', '10.0.0.2'], ['0a:00:00:00:00:05', '10.0.0.3'], ['0a:00:00:00:00:07', '10.0.0.2']]);
  const diff = diffFdb(actual, desired);
  t.same(diff.set, [{ mac: '0a:00:00:00:00:05', dst: '10.0.0.3' }, { mac: '0a:00:00:00:00:07', dst: '10.0.0.2' }], 'moved and new entries (and half-made ones)');
  t.same(diff.remove, ['0a:00:00:00:00:06'], 'only entries not wanted any more');
  t.same(fdbBatch(diff, actual, 'vxlan-6784'), [
    'fdb del 0a:00:00:00:00:06 dev vxlan-6784 master',
    'fdb replace 0a:00:00:00:00:05 dev vxlan-6784 self dst 10.0.0.3',
    'fdb replace 0a:00:00:00:00:05 dev vxlan-6784 master static sticky',
    'fdb replace 0a:00:00:00:00:07 dev vxlan-6784 self dst 10.0.0.2',
    'fdb replace 0a:00:00:00:00:07 dev vxlan-6784 master static sticky',
  ], 'removals bridge entry first, additions tunnel entry first');
  t.same(diffFdb(actual, new Map([['0a:00:00:00:00:01', '10.0.0.2']])).set, [], 'a complete entry is left alone');
  t.same(fdbBatch({ set: [{ mac: '0a:00:00:00:00:01', dst: '10.0.0.2\nfdb flush' }, { mac: 'x y', dst: '10.0.0.2' }], remove: ['a b'] }, actual, 'vxlan-6784'), [],
    'nothing odd ever reaches a batch line');
  t.throws(() => fdbBatch(diff, actual, 'bad dev'), /bad device name/);
});

t.test('heartbeat codec', async (t) => {
  const f = encodeHeartbeat(A, B);
  t.equal(f.length, 60);
  t.equal(heartbeatMac(B), 'ae:00:00:00:00:0b');
  t.equal(parseHeartbeat(f, 0, f.length, B), A, 'B reads a heartbeat from A');
  t.equal(parseHeartbeat(f, 0, f.length, C), null, 'addressed to someone else');
  t.equal(parseHeartbeat(f, 0, 30, B), null, 'short');
  const wrongSrc = Buffer.from(f);
  wrongSrc[11] = 0x0c;
  t.equal(parseHeartbeat(wrongSrc, 0, 60, B), null, 'Ethernet source not the sender\'s heartbeat MAC');
  const v2 = Buffer.from(f);
  v2[18] = 2;
  t.equal(parseHeartbeat(v2, 0, 60, B), null, 'unknown version');
  const self = encodeHeartbeat(B, B);
  t.equal(parseHeartbeat(self, 0, 60, B), null, 'from ourselves');
  const offset = Buffer.concat([Buffer.alloc(5), f]);
  t.equal(parseHeartbeat(offset, 5, 60, B), A, 'at an offset');
});

/** A heartbeat TAP whose writes land in `peer`'s port, while `link.up`. */
class WirePort implements FramePort {
  peer: WirePort | null = null;
  private onFrame: ((buf: Buffer, off: number, len: number) => void) | null = null;
  constructor(private readonly link: { up: boolean }) {}
  start(onFrame: (buf: Buffer, off: number, len: number) => void): void { this.onFrame = onFrame; }
  write(buf: Buffer, off: number, len: number): void { if (this.link.up) this.peer?.onFrame?.(Buffer.from(buf.subarray(off, off + len)), 0, len); }
  close(): void { this.onFrame = null; }
}

/** An FDB that keeps what the batches say, as `bridge -j fdb show` would print it. */
class FakeFdb implements FdbDevice {
  readonly name = 'vxlan-6784';
  readonly tunnel = new Map<string, string>();
  readonly bridge = new Set<string>();
  batches = 0;
  allowed: readonly string[] = [];
  allowCalls = 0;
  async allowPeers(addresses: readonly string[]): Promise<void> { this.allowed = addresses; this.allowCalls++; }
  async show(): Promise<string> {
    return JSON.stringify([
      ...[...this.tunnel].map(([mac, dst]) => ({ mac, dst, flags: ['self'], state: 'permanent' })),
      ...[...this.bridge].map((mac) => ({ mac, flags: ['sticky'], master: 'weave', state: 'static' })),
    ]);
  }
  async apply(lines: string[]): Promise<void> {
    this.batches++;
    for (const l of lines) {
      const [, verb, mac, , , kind, , dst] = l.split(' ');
      if (verb === 'replace' && kind === 'self') this.tunnel.set(mac!, dst!);
      else if (verb === 'replace') this.bridge.add(mac!);
      else if (kind === 'self') this.tunnel.delete(mac!);
      else this.bridge.delete(mac!);
    }
  }
}

t.test('two controllers: heartbeats prove the path, the FDB follows, and a cut sends both back to the sleeve', async (t) => {
  const clock = new ManualClock(0);
  const link = { up: true };
  const pa = new WirePort(link);
  const pb = new WirePort(link);
  pa.peer = pb;
  pb.peer = pa;
  const fa = new FakeFdb();
  const fb = new FakeFdb();
  const a = new Fastdp({ clock, logger: silentLogger, heartbeats: pa, fdb: fa }, { localPeer: A, local: ON, timings: T });
  const b = new Fastdp({ clock, logger: silentLogger, heartbeats: pb, fdb: fb }, { localPeer: B, local: ON, timings: T });
  const touched: PeerName[] = [];
  a.start({ snapshot: () => [{ mac: '0a:00:00:00:00:01', peer: B }, { mac: '0a:00:00:00:00:02', peer: C }], touchPeer: (p) => touched.push(p) });
  b.start({ snapshot: () => [{ mac: '0a:00:00:00:00:09', peer: A }], touchPeer: () => undefined });
  a.addPeer(B, '10.0.0.2', false);
  b.addPeer(A, '::ffff:10.0.0.1', false);
  const flush = () => new Promise((r) => setImmediate(r));
  // One probe interval: reports cross over TCP, heartbeats over the (fake) VXLAN.
  const round = async (): Promise<void> => {
    clock.advance(250);
    a.onReport(B, b.flags(A));
    b.onReport(A, a.flags(B));
    a.tick();
    b.tick();
    for (let i = 0; i < 5; i++) await flush();
  };
  await round();
  t.equal(a.decision(B)?.fast, false, 'not before the peer reports hearing us');
  t.ok(fa.tunnel.has(heartbeatMac(B)), 'but the heartbeat entry is there');
  t.same(fa.allowed, ['10.0.0.2'], 'and B may send to the VXLAN port (its heartbeats must get in)');
  t.same(fb.allowed, ['10.0.0.1'], 'A on B (from its IPv4-mapped address)');
  t.equal(a.counters.fastdpHeartbeatsSent, 0, 'and no heartbeat left before it was (it would have flooded to the TAP)');
  await round();
  await round();
  t.same(a.decision(B), { fast: true, reason: 'VXLAN heartbeats get through both ways' });
  t.equal(b.decision(A)?.fast, true);
  t.equal(fa.tunnel.get('0a:00:00:00:00:01'), '10.0.0.2', 'B\'s MAC is tunnelled to B');
  t.ok(fa.bridge.has('0a:00:00:00:00:01'), 'and the bridge sends it to the vxlan port');
  t.notOk(fa.tunnel.has('0a:00:00:00:00:02'), 'C\'s MAC (not a neighbour) is not');
  t.equal(fb.tunnel.get('0a:00:00:00:00:09'), '10.0.0.1');
  t.ok(touched.includes(B), 'B\'s MACs are kept from ageing');
  t.match(a.summary(), { on: true, peers: 1, fdbEntries: 2 });
  t.ok(a.counters.fastdpHeartbeatsReceived > 0 && a.counters.fastdpHeartbeatsSent > 0);

  link.up = false;
  for (let i = 0; i < 12; i++) await round();
  t.same(a.decision(B), { fast: false, reason: 'no VXLAN heartbeats get through either way (UDP 6784 blocked?)' });
  t.notOk(fa.tunnel.has('0a:00:00:00:00:01') || fa.bridge.has('0a:00:00:00:00:01'), 'B\'s MAC entries withdrawn');
  t.ok(fa.tunnel.has(heartbeatMac(B)), 'heartbeats keep trying');
  t.equal(a.summary().peers, 0);

  link.up = true;
  for (let i = 0; i < 3; i++) await round();
  t.equal(a.decision(B)?.fast, true, 'back once heartbeats get through');
  t.equal(fa.tunnel.get('0a:00:00:00:00:01'), '10.0.0.2');

  a.removePeer(B);
  await flush();
  await flush();
  t.equal(fa.tunnel.size + fa.bridge.size, 0, 'a neighbour that leaves takes its entries with it');
  t.same(fa.allowed, [], 'and may no longer send to the VXLAN port');
  const calls = fa.allowCalls;
  await round();
  t.equal(fa.allowCalls, calls, 'an unchanged set is not rewritten');
  a.close();
  b.close();
  t.same(b.flags(A), { offered: false, hearing: false }, 'closed (weave reset): no longer offered');
});

t.test('firewall: the allowed set is the FDB\'s addresses, and only IPv4 addresses reach nft', async (t) => {
  const table = desiredFdb([{ mac: '0a:00:00:00:00:01', peer: B }, { mac: '0a:00:00:00:00:02', peer: C }],
    new Map([[B, '10.0.0.2']]), new Map([[B, '10.0.0.2'], [C, '10.0.0.3']]));
  t.same(fdbPeerAddresses(table), ['10.0.0.2', '10.0.0.3'], 'each neighbour once, whether on the fast path or only offering it');
  t.same(fdbPeerAddresses(new Map()), []);
  const ops = (s: string) => (JSON.parse(s) as { nftables: Record<string, Record<string, { elem?: string[] }>>[] }).nftables;
  const set = ops(fastdpPeersScript(['10.0.0.2', '10.0.0.2', '10.0.0.3']));
  t.ok(set[0]!['flush'], 'flushed and refilled in one transaction');
  t.same(set[1]!['add']!['element']!.elem, ['10.0.0.2', '10.0.0.3']);
  t.equal(ops(fastdpPeersScript([])).length, 1, 'an empty set is only flushed');
  for (const bad of ['10.0.0.256', '::1', '10.0.0.2 } ; flush ruleset', '010.0.0.2', '']) {
    t.throws(() => fastdpPeersScript(['10.0.0.2', bad]), RangeError, `refused: ${JSON.stringify(bad)}`);
  }
  const rules = fastdpTableScript(6784);
  t.match(rules, /"drop":null/, 'the table drops what the set does not accept');
  t.throws(() => fastdpTableScript(0), RangeError);
});

t.test('leftovers (a crash, weave reset without a router): device, heartbeat TAP and table go, and nothing there is no error', async (t) => {
  const runner = new FakeCommandRunner(() => ({ code: 1, stderr: 'Cannot find device' }));
  await removeFastdpLeftovers(runner);
  t.same(runner.commands.map((c) => `${c.cmd} ${c.args.join(' ')}`),
    ['ip link del vxlan-6784', 'ip link del vethwe-hb', 'nft delete table inet weave-fastdp']);
  const noNft: FakeCommandRunner = new FakeCommandRunner();
  noNft.run = async (cmd) => { throw new Error(`cannot run ${cmd}: not found`); };
  await t.resolves(removeFastdpLeftovers(noNft), 'a host without nft or ip: nothing to remove, no throw');
});

t.test('a failing FDB is counted and retried, never thrown', async (t) => {
  const clock = new ManualClock(0);
  let fail = true;
  const fdb: FdbDevice = { name: 'vxlan-6784', show: async () => { if (fail) throw new Error('bridge: gone'); return '[]'; }, apply: async () => undefined, allowPeers: async () => undefined };
  const port = new WirePort({ up: false });
  const a = new Fastdp({ clock, logger: silentLogger, heartbeats: port, fdb }, { localPeer: A, local: ON, timings: T });
  a.start({ snapshot: () => [], touchPeer: () => undefined });
  a.addPeer(B, '10.0.0.2', false);
  a.onReport(B, { offered: true, hearing: false });
  a.tick();
  await new Promise((r) => setImmediate(r));
  t.equal(a.counters.fastdpFdbErrors, 1);
  fail = false;
  clock.advance(250);
  a.tick();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.equal(a.summary().fdbEntries, 1, 'the next tick tries again');
});

t.test('weave status shows the fast path, on or why not, and each connection\'s path', async (t) => {
  const dp = { mtu: 1410, bridge: 'weave', aead: 'sodium-native', macs: 3 };
  const on = renderStatus(sampleStatus({ dataPlane: { ...dp, fastdp: { on: true, reason: 'VXLAN on UDP 6784', peers: 1, fdbEntries: 4 } } }));
  t.match(on, /FastPath: on \(VXLAN on UDP 6784\): 1 peer, 4 forwarding entries/);
  const off = renderStatus(sampleStatus({ dataPlane: { ...dp, fastdp: { on: false, reason: 'fast path turned off (--no-fastdp)', peers: 0, fdbEntries: 0 } } }));
  t.match(off, /FastPath: off: fast path turned off \(--no-fastdp\)/);
  t.notMatch(renderStatus(sampleStatus({ dataPlane: dp })), /FastPath/, 'nothing from a data plane without one');
  const conn = {
    address: '10.0.0.2:6783', outbound: true, state: 'established' as const, peer: B, nickname: 'h2', encrypted: false, info: '', sinceMs: 0,
    dataPath: 'fastdp' as const, dataPathInfo: 'VXLAN: VXLAN heartbeats get through both ways',
  };
  t.match(renderConnections(sampleStatus({ connections: [conn] })), /data: fastdp \(VXLAN: VXLAN heartbeats get through both ways\)/);
});
