// DNS adapters and glue, on loopback only: the server over UDP and TCP
// (truncation and the TCP retry, pipelining, malformed input), the forwarder
// (a test upstream on 127.0.0.1, SERVFAIL when it is silent, ids and questions
// checked), resolv.conf parsing and re-reading (container resolv.conf
// writing is test/unit/container-resolv.test.ts), the host commands, the mDNS answer
// core, the link-local address, and the daemon glue's container hooks and API.

import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as packet from 'dns-packet';
import t from 'tap';
import { TestSigning } from './test-signing';
import { handleQuery } from '../../dns/answer';
import type { RecordSource } from '../../dns/answer';
import { DnsDaemon, MANUAL_CONTAINER_ID } from '../../dns/daemon';
import { dnsApi, parseDnsChangeBody } from '../../dns/http-routes';
import { Forwarder } from '../../dns/forwarder';
import { HostDnsAddress } from '../../dns/host-setup';
import type { CommandResult } from '../../dns/host-setup';
import { linkLocalAddressFor } from '../../dns/link-local';
import { mdnsReply, mdnsStoreName } from '../../dns/mdns';
import { parseQuery } from '../../dns/message';
import { CONTAINER_RESOLV_MARKER, parseResolvConf, parseUpstream, renderContainerResolvConf } from '../../dns/resolv-conf';
import { DnsServer, newCounters } from '../../dns/server';
import { FixedUpstreams, ResolvConfUpstreams } from '../../dns/upstreams';
import { parseAttachBody } from '../../router/api/container-api';
import type { AttachedContainer } from '../../router/host/attached-container';
import { ManualClock } from '../../common/clock';
import type { Gossip, GossipData, Gossiper, GossipHub, PeerInfo } from '../../router/mesh/gossip';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SeededRng, randomInt } from '../../common/rng';

const LOCAL = '02:00:00:00:00:01' as PeerName;
const CFG = { domain: 'weave.local', ttlS: 1 };

function records(map: Record<string, string[]>): RecordSource {
  return {
    lookup: (n) => [...(map[n] ?? [])].sort(),
    reverse: (a) => Object.keys(map).filter((n) => map[n]!.includes(a)),
    hasNamesBelow: () => false,
  };
}

const BIG = records({
  'web.weave.local': ['10.32.0.1'],
  'big.weave.local': Array.from({ length: 60 }, (_, i) => `10.32.1.${i + 1}`),
});

function q(name: string, type: packet.RecordType = 'A', id = 1): Buffer {
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name, type }] });
}

/**
 * Sends one UDP datagram to host:port on loopback and returns the first reply
 * carrying the query's id (or null after timeoutMs). Other replies are stray,
 * as for a real resolver: the kernel may give this socket the port of a
 * just-closed one whose late answer is still on its way.
 */
function udpAsk(port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => { s.close(); resolve(null); }, timeoutMs);
    s.on('message', (m) => {
      if (msg.length >= 2 && (m.length < 2 || m.readUInt16BE(0) !== msg.readUInt16BE(0))) return;
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(msg, port, '127.0.0.1');
  });
}

function tcpAsk(port: number, msgs: Buffer[], want = msgs.length): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(Buffer.concat(msgs.map((m) => { const l = Buffer.alloc(2); l.writeUInt16BE(m.length); return Buffer.concat([l, m]); })));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= want) { sock.destroy(); resolve(out); }
    });
    sock.on('error', reject);
    setTimeout(() => { sock.destroy(); resolve(out); }, 3000);
  });
}

/** A test upstream on 127.0.0.1: answers x.test A 192.0.2.1; `silent.test` gets no answer; counts queries. */
async function startUpstream(t: Tap): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const u = dgram.createSocket('udp4');
  u.on('message', (m, r) => {
    const p = packet.decode(m);
    // The forwarder sends names in random case (0x20); a server matches them case-insensitively and echoes them as sent.
    const asked = p.questions![0]!.name;
    const name = asked.toLowerCase();
    seen.push(name);
    if (name === 'silent.test') return;
    if (name === 'wrongid.test') {
      u.send(packet.encode({ type: 'response', id: (p.id! + 1) & 0xffff, questions: p.questions, answers: [] }), r.port, r.address);
      return;
    }
    u.send(packet.encode({
      type: 'response', id: p.id, flags: packet.RECURSION_AVAILABLE, questions: p.questions,
      answers: name === 'x.test' ? [{ type: 'A', name: asked, ttl: 5, data: '192.0.2.1' }] : [],
    }), r.port, r.address);
  });
  await new Promise<void>((resolve) => u.bind(0, '127.0.0.1', () => resolve()));
  t.teardown(() => u.close());
  return { port: u.address().port, seen };
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('server on loopback: UDP answers, TC then TCP, pipelining, malformed and random input', async (t) => {
  const up = await startUpstream(t);
  const counters = newCounters();
  const forwarder = new Forwarder({ logger: silentLogger, upstreams: new FixedUpstreams([{ host: '127.0.0.1', port: up.port }]) }, { timeoutMs: 300 });
  const server = new DnsServer({
    resolve: (b, tr) => handleQuery(b, tr, CFG, BIG, new SeededRng(2)),
    forwarder, logger: silentLogger, counters, isAllowedClient: () => false,
  }, { listen: [{ host: '127.0.0.1', port: 0, restricted: false }], tcpIdleTimeoutMs: 500 });
  t.same(await server.start(), []);
  t.teardown(async () => { forwarder.close(); await server.close(); });
  const port = Number(server.addresses()[0]!.split(':')[1]);

  const a = packet.decode((await udpAsk(port, q('web.weave.local', 'A', 77)))!);
  t.equal(a.id, 77);
  t.same(a.answers!.map((x) => (x as { data: string }).data), ['10.32.0.1']);

  const big = (await udpAsk(port, q('big.weave.local')))!;
  t.ok(big.length <= 512, 'UDP reply within 512 bytes');
  t.ok(packet.decode(big).flag_tc, 'TC set');
  const [viaTcp] = await tcpAsk(port, [q('big.weave.local')]);
  t.equal(packet.decode(viaTcp!).answers!.length, 60, 'all 60 over TCP');

  const piped = await tcpAsk(port, [q('web.weave.local', 'A', 1), q('nobody.weave.local', 'A', 2), q('x.test', 'A', 3)]);
  t.same(piped.map((b) => packet.decode(b).id).sort(), [1, 2, 3], 'three queries in one write, three replies');
  const fwd = piped.map((b) => packet.decode(b)).find((p) => p.id === 3)!;
  t.same(fwd.answers!.map((x) => (x as { data: string }).data), ['192.0.2.1'], 'a TCP client is forwarded (over UDP first: this upstream speaks nothing else)');

  const formerr = (await udpAsk(port, Buffer.from([0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0x61])))!;
  t.equal((formerr[3]! & 0xf), 1, 'FORMERR for a broken query');
  t.equal(await udpAsk(port, Buffer.from([1, 2, 3]), 300), null, 'silence for a runt');

  const rng = new SeededRng(99);
  const sent: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    const junk = Buffer.from(new Uint8Array(randomInt(rng, 60)).map(() => randomInt(rng, 256)));
    const sock = dgram.createSocket('udp4');
    sent.push(new Promise((resolve) => sock.send(junk, port, '127.0.0.1', () => { sock.close(); resolve(); })));
  }
  await Promise.all(sent);
  // A burst can overflow the socket's receive buffer; a real client retries too.
  let still: Buffer | null = null;
  for (let i = 0; i < 3 && still === null; i++) still = await udpAsk(port, q('web.weave.local', 'A', 5), 1000);
  t.equal(packet.decode(still!).id, 5, 'still answering after 300 random datagrams');
  t.ok(counters.queries >= 200 && counters.truncated >= 1 && counters.formerr >= 1, JSON.stringify(counters));
});

t.test('forwarder: upstream answer with the client id, SERVFAIL-worthy silence, wrong ids ignored, next upstream tried', async (t) => {
  const up = await startUpstream(t);
  const dead = dgram.createSocket('udp4');
  await new Promise<void>((r) => dead.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => dead.close());
  const f = new Forwarder({
    logger: silentLogger,
    upstreams: new FixedUpstreams([{ host: '127.0.0.1', port: dead.address().port }, { host: '127.0.0.1', port: up.port }]),
  }, { timeoutMs: 200 });
  t.teardown(() => f.close());
  const ask = async (name: string, id: number): Promise<packet.DecodedPacket | null> => {
    const raw = q(name, 'A', id);
    const parsed = parseQuery(raw);
    if (parsed.kind !== 'query') throw new Error('not a query');
    const r = await f.forward(parsed.query, raw, 'udp');
    return r === null ? null : packet.decode(r);
  };
  const r = await ask('x.test', 4242);
  t.equal(r?.id, 4242, 'the client id is put back');
  t.same(r?.answers!.map((x) => (x as { data: string }).data), ['192.0.2.1'], 'the silent first upstream is skipped after its timeout');
  t.equal(await ask('silent.test', 1), null, 'every upstream silent: null (the server answers SERVFAIL)');
  t.equal(await ask('wrongid.test', 2), null, 'a reply with another id is not taken');
  const none = new Forwarder({ logger: silentLogger, upstreams: new FixedUpstreams([]) });
  const raw = q('x.test');
  const parsed = parseQuery(raw);
  if (parsed.kind === 'query') t.equal(await none.forward(parsed.query, raw, 'udp'), null, 'no upstream: null');
});

t.test('resolv.conf: parse, render, upstream parsing, re-read on change', async (t) => {
  const conf = parseResolvConf('# c\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\nnameserver bogus\nsearch A.example b.example.\noptions ndots:2 timeout:1\n');
  t.same(conf, { nameservers: ['10.0.0.2', '::1'], search: ['a.example', 'b.example'], options: ['ndots:2', 'timeout:1'] });
  const text = renderContainerResolvConf('169.254.1.2', 'weave.local', conf);
  t.match(text, CONTAINER_RESOLV_MARKER);
  t.match(text, /\nnameserver 169\.254\.1\.2\n/);
  t.match(text, /\nsearch weave\.local a\.example b\.example\n/);
  t.same(parseUpstream('10.0.0.2'), { host: '10.0.0.2', port: 53 });
  t.same(parseUpstream('10.0.0.2:5353'), { host: '10.0.0.2', port: 5353 });
  t.same(parseUpstream('[fd00::2]:54'), { host: 'fd00::2', port: 54 });
  t.same(parseUpstream('::1'), { host: '::1', port: 53 });
  t.throws(() => parseUpstream('dns.example'), { code: 'config' });
  t.throws(() => parseUpstream('10.0.0.2:0'), { code: 'config' });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-dns-resolv-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'resolv.conf');
  fs.writeFileSync(file, 'nameserver 10.0.0.2\nnameserver 127.0.0.1\n');
  let now = 0;
  const src = new ResolvConfUpstreams(silentLogger, { path: file, isSelf: (u) => u.host === '127.0.0.1' && u.port === 53, checkMs: 1000, now: () => now });
  t.same(src.current(), [{ host: '10.0.0.2', port: 53 }], 'our own address left out');
  fs.writeFileSync(file, 'nameserver 10.0.0.3\n# longer now\n');
  t.same(src.current(), [{ host: '10.0.0.2', port: 53 }], 'not looked at again within checkMs');
  now = 1000;
  t.same(src.current(), [{ host: '10.0.0.3', port: 53 }], 're-read after the change');
  fs.rmSync(file);
  now = 2000;
  t.same(src.current(), [], 'gone: no upstreams');
});

t.test('host address commands: install replaces leftovers, remove undoes exactly that', async (t) => {
  const ran: string[] = [];
  let staleRules = 2;
  const run = async (cmd: string, args: string[]): Promise<CommandResult> => {
    ran.push([cmd, ...args].join(' '));
    if (args[0] === 'rule' && args[1] === 'del' && args.length === 4) return staleRules-- > 0 ? { code: 0, stdout: '', stderr: '' } : { code: 2, stdout: '', stderr: 'RTNETLINK answers: No such file or directory' };
    return { code: 0, stdout: '', stderr: '' };
  };
  const h = new HostDnsAddress(run, silentLogger, { bridge: 'weave', address: '169.254.5.6' });
  await h.install();
  t.same(ran, [
    'ip addr replace 169.254.5.6/32 dev weave scope link',
    'ip route replace default dev weave table 30565',
    'ip rule del pref 30565', 'ip rule del pref 30565', 'ip rule del pref 30565',
    'ip rule add pref 30565 from 169.254.5.6/32 lookup 30565',
  ]);
  ran.length = 0;
  await h.remove();
  t.same(ran, ['ip rule del pref 30565 from 169.254.5.6/32 lookup 30565', 'ip route flush table 30565', 'ip addr del 169.254.5.6/32 dev weave']);
  ran.length = 0;
  await h.remove();
  t.same(ran, [], 'nothing twice');
  const failing = new HostDnsAddress(async () => ({ code: 1, stdout: '', stderr: 'Cannot find device "weave"' }), silentLogger, { bridge: 'weave', address: '169.254.5.6' });
  await t.rejects(failing.install(), { code: 'io', message: /Cannot find device/ });
});

t.test('mDNS core: .local names, legacy unicast, multicast, silence', async (t) => {
  t.equal(mdnsStoreName('Web.local', 'weave.local'), 'web.weave.local');
  t.equal(mdnsStoreName('web.weave.local', 'weave.local'), 'web.weave.local');
  t.equal(mdnsStoreName('web.example.com', 'weave.local'), null);
  t.equal(mdnsStoreName('.local', 'weave.local'), null);
  const recs = records({ 'web.weave.local': ['10.32.0.1', 'fd00::1'] });
  const query = (name: string, type: packet.RecordType, klass?: string): packet.DecodedPacket =>
    packet.decode(packet.encode({ type: 'query', id: 33, questions: [{ name, type, ...(klass !== undefined ? { class: klass as packet.RecordClass } : {}) }] }));
  const legacy = mdnsReply(query('web.local', 'A'), 40000, CFG, recs);
  t.equal(legacy.kind, 'legacy');
  if (legacy.kind === 'legacy') {
    const p = packet.decode(legacy.bytes);
    t.equal(p.id, 33, 'same id');
    t.same(p.questions, [{ name: 'web.local', type: 'A', class: 'IN' }], 'question repeated');
    t.same(p.answers!.map((a) => [(a as { data: string }).data, (a as { flush: boolean }).flush]), [['10.32.0.1', false]]);
  }
  const multi = mdnsReply(query('web.local', 'AAAA'), 5353, CFG, recs);
  t.same(multi.kind === 'multicast' ? multi.answers.map((a) => [(a as { data: string }).data, (a as { flush?: boolean }).flush]) : multi, [['fd00::1', true]]);
  t.same(mdnsReply(query('nobody.local', 'A'), 5353, CFG, recs), { kind: 'none' });
  t.same(mdnsReply(query('web.local', 'TXT'), 5353, CFG, recs), { kind: 'none' });
  // A QU question: dns-packet reports class 32769 as UNKNOWN_32769.
  const qu = packet.encode({ type: 'query', id: 0, questions: [{ name: 'web.local', type: 'A' }] });
  qu.writeUInt16BE(0x8001, qu.length - 2);
  t.equal(mdnsReply(packet.decode(qu), 5353, CFG, recs).kind, 'multicast', 'the unicast-response bit does not hide the question');
});

t.test('link-local address: stable, in 169.254.1-254.1-254', async (t) => {
  const a = linkLocalAddressFor(LOCAL);
  t.equal(a, linkLocalAddressFor(LOCAL));
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const name = `02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}` as PeerName;
    const addr = linkLocalAddressFor(name);
    const m = /^169\.254\.(\d+)\.(\d+)$/.exec(addr);
    if (m === null || Number(m[1]) < 1 || Number(m[1]) > 254 || Number(m[2]) < 1 || Number(m[2]) > 254) return t.fail(addr);
    seen.add(addr);
  }
  t.ok(seen.size > 1950, `${seen.size} distinct addresses for 2000 names`);
});

/** A hub for one peer: gossip goes nowhere, reachability is set by the test. */
class LonelyHub implements GossipHub {
  readonly localPeer = LOCAL;
  readonly signing = new TestSigning(LOCAL);
  listeners: ((r: ReadonlySet<PeerName>) => void)[] = [];
  broadcasts: GossipData[] = [];
  addChannel(_name: string, _g: Gossiper): Gossip {
    return { gossipUnicast: () => false, gossipBroadcast: (u) => { this.broadcasts.push(u); }, gossipNeighbourSubset: () => undefined };
  }
  knownPeers(): PeerInfo[] { return [{ name: LOCAL, nickname: 'me' }, { name: '02:00:00:00:00:02' as PeerName, nickname: 'other' }]; }
  onReachablePeersChanged(l: (r: ReadonlySet<PeerName>) => void): void { this.listeners.push(l); }
}

function container(over: Partial<AttachedContainer>): AttachedContainer {
  return { id: 'netns:c1', name: 'c1', kind: 'netns', ifname: 'ethwe', mac: '02:00:00:00:00:aa', addresses: ['10.32.0.1/12'], hostIfname: 'vethwensabc', pid: null, ...over };
}

t.test('daemon glue: container hooks, API, status', async (t) => {
  const hub = new LonelyHub();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-dns-glue-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dns = new DnsDaemon(
    { hub, clock: new ManualClock(), rng: new SeededRng(1), logger: silentLogger, run: async () => ({ code: 0, stdout: '', stderr: '' }) },
    { domain: 'weave.local', ttlS: 1, upstreams: [], resolvConf: '/nonexistent', bridge: 'weave', datadir: dir, port: 0, hostIntegration: false },
  );
  await dns.start();
  t.teardown(() => dns.close());

  dns.onAttached(container({}), ['10.32.0.1/12']);
  dns.onAttached(container({ id: 'f'.repeat(64), name: 'api_1', kind: 'docker', pid: 10, addresses: ['10.32.0.2/12', '10.32.0.3/12'] }), ['10.32.0.2/12', '10.32.0.3/12']);
  dns.onAttached(container({ id: 'netns:c3', name: 'c3', withoutDns: true, addresses: ['10.32.0.4/12'] }), ['10.32.0.4/12']);
  dns.onAttached(container({ id: 'pid:7', name: 'sleep', kind: 'pid', pid: 7, addresses: ['10.32.0.5/12'] }), ['10.32.0.5/12']);
  dns.onAttached(container({ id: 'pid:8', name: 'sleep', kind: 'pid', pid: 8, dnsName: 'worker', addresses: ['10.32.0.6/12'] }), ['10.32.0.6/12']);
  t.same(dns.lookup('c1'), { name: 'c1.weave.local', addresses: ['10.32.0.1'] });
  t.same(dns.lookup('api_1').addresses, ['10.32.0.2', '10.32.0.3']);
  t.same(dns.lookup('c3').addresses, [], '--without-dns: no name');
  t.same(dns.lookup('sleep').addresses, [], 'pid: containers get no name of their own');
  t.same(dns.lookup('worker').addresses, ['10.32.0.6'], 'but --name gives one');
  t.ok(dns.isLocalClient('10.32.0.4'), 'a --without-dns container may still ask');
  t.notOk(dns.isLocalClient('10.99.0.1'));
  t.equal(hub.broadcasts.length, 3, 'each registration is broadcast');

  // Partial detach: one address goes, the name stays.
  dns.onDetached(container({ id: 'f'.repeat(64), name: 'api_1', kind: 'docker', pid: 10, addresses: ['10.32.0.2/12'] }), ['10.32.0.3/12'], 'detach');
  t.same(dns.lookup('api_1').addresses, ['10.32.0.2']);
  dns.onDetached(container({ id: 'f'.repeat(64), name: 'api_1', kind: 'docker', pid: 10, addresses: ['10.32.0.2/12'] }), ['10.32.0.2/12'], 'died');
  t.same(dns.lookup('api_1').addresses, [], 'death removes the rest');
  t.notOk(dns.isLocalClient('10.32.0.2'));

  // The API, as the routes DNS exports for the daemon to mount.
  const endpoints = dnsApi(dns);
  const routes = new Map(endpoints.routes.map((r) => [`${r.method} ${r.path}`, r.handler as (req: { body: unknown; query: URLSearchParams }) => unknown]));
  const sections = endpoints.reportSections.map((s) => s.name);
  t.same([...routes.keys()].sort(), ['GET /dns', 'GET /dns/lookup', 'POST /dns/add', 'POST /dns/remove']);
  t.same(sections, ['dns']);
  const call = (k: string, body: unknown, query = ''): unknown => routes.get(k)!({ body, query: new URLSearchParams(query) });
  t.same(call('POST /dns/add', { name: 'db', addresses: ['10.32.0.9'] }), { changed: [{ name: 'db.weave.local', address: '10.32.0.9' }] });
  t.same(dns.status().records.find((r) => r.name === 'db.weave.local')?.container, MANUAL_CONTAINER_ID);
  t.same(call('GET /dns/lookup', undefined, 'name=DB'), { name: 'db.weave.local', addresses: ['10.32.0.9'] });
  t.same(call('GET /dns/lookup', undefined, 'address=10.32.0.9'), { address: '10.32.0.9', names: ['db.weave.local'] });
  t.same(call('POST /dns/add', { container: 'c1', name: 'alias' }), { changed: [{ name: 'alias.weave.local', address: '10.32.0.1' }] }, "a container's addresses by default");
  t.same(call('POST /dns/remove', { name: 'db' }), { changed: [{ name: 'db.weave.local', address: '10.32.0.9' }] });
  for (const [k, body, q, re] of [
    ['POST /dns/add', { name: 'x', addresses: ['nope'] }, '', /not an IP address/],
    ['POST /dns/add', { name: 'x.example.com.', addresses: ['10.0.0.1'] }, '', /not under the weave domain/],
    ['POST /dns/add', { container: 'ghost' }, '', /not attached on this host/],
    ['POST /dns/add', [1], '', /expects a JSON object/],
    ['POST /dns/remove', {}, '', /needs a name, addresses or a container/],
    ['GET /dns/lookup', undefined, '', /exactly one of/],
  ] as const) {
    t.throws(() => call(k, body, q), { code: 'config', message: re }, `${k} ${JSON.stringify(body)} ${q}`);
  }
  t.same(parseDnsChangeBody({ name: 'a', container: 'b', addresses: ['10.0.0.1'] }, '/dns/add'), { name: 'a', container: 'b', addresses: ['10.0.0.1'] });

  const s = dns.status();
  t.equal(s.domain, 'weave.local');
  t.equal(s.address, null, 'no bridge address without host integration');
  t.match(s.listening[0], /^127\.0\.0\.1:\d+$/);
  t.ok(s.records.some((r) => r.name === 'c1.weave.local' && r.visible));
});

t.test('/attach body: --name and --without-dns', async (t) => {
  t.same(parseAttachBody({ container: 'netns:a', addresses: ['10.32.0.1/12'], name: 'web' }), { container: 'netns:a', addresses: ['10.32.0.1/12'], name: 'web' });
  t.same(parseAttachBody({ container: 'netns:a', addresses: ['10.32.0.1/12'], withoutDns: true }), { container: 'netns:a', addresses: ['10.32.0.1/12'], withoutDns: true });
  t.throws(() => parseAttachBody({ container: 'a', addresses: ['10.32.0.1/12'], name: 'x', withoutDns: true }), /contradict/);
  t.throws(() => parseAttachBody({ container: 'a', addresses: ['10.32.0.1/12'], name: 'has space' }), { code: 'config' });
  t.throws(() => parseAttachBody({ container: 'a', addresses: ['10.32.0.1/12'], withoutDns: 'yes' }), { code: 'config' });
  t.same(parseAttachBody({ container: 'netns:a', addresses: [], portSecurity: false }), { container: 'netns:a', addresses: [], portSecurity: false }, '--no-port-security');
  t.same(parseAttachBody({ container: 'netns:a', addresses: [], portSecurity: true }), { container: 'netns:a', addresses: [] }, 'true is the default');
  t.throws(() => parseAttachBody({ container: 'netns:a', addresses: [], portSecurity: 0 }), /portSecurity must be true or false/);
});
