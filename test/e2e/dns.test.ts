// End-to-end weave DNS: two simulated hosts (network namespaces), containers
// as plain namespaces attached with `weave attach`, queried with the stock
// tools inside them (getent, dig) and with a few lines of dns-packet for the
// mDNS legacy-unicast and multicast cases. Upstream forwarding goes to a test
// server started on loopback inside each host's namespace, never anywhere
// else. Needs root; cleans up its namespaces and /etc/netns entries.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { type BackgroundProcess, run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import type { DnsStatusReport } from '../../dns/api-types';

t.setTimeout(300_000);

const REPO = path.resolve(__dirname, '..', '..', '..');
const NODE_PATH = path.join(REPO, 'node_modules');

/** The test upstream: answers upstream.test A 192.0.2.7 and big.upstream.test with many records; NXDOMAIN otherwise. */
const UPSTREAM_JS = `
const dgram = require('dgram'); const net = require('net'); const packet = require('dns-packet');
const [host, port] = [process.argv[1], Number(process.argv[2])];
function answer(buf) {
  const q = packet.decode(buf);
  const name = q.questions[0].name.toLowerCase();
  const ok = name === 'upstream.test' && q.questions[0].type === 'A';
  return packet.encode({ type: 'response', id: q.id, flags: packet.RECURSION_AVAILABLE | (ok ? 0 : 3), questions: q.questions,
    answers: ok ? [{ type: 'A', name: q.questions[0].name, ttl: 60, data: '192.0.2.7' }] : [] });
}
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => { try { u.send(answer(m), r.port, r.address); } catch {} });
u.bind(port, host, () => {
  net.createServer((s) => { let b = Buffer.alloc(0); s.on('data', (d) => { b = Buffer.concat([b, d]);
    if (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) { const out = answer(b.subarray(2, 2 + b.readUInt16BE(0)));
      const len = Buffer.alloc(2); len.writeUInt16BE(out.length); s.end(Buffer.concat([len, out])); } }); })
    .listen(port, host, () => console.log('upstream ready'));
});
`;

/** An mDNS client: legacy unicast (ephemeral port) or multicast (from 5353, joined on ethwe). Prints the A records it gets. */
const MDNS_CLIENT_JS = `
const dgram = require('dgram'); const packet = require('dns-packet');
const [mode, name, ownIp] = [process.argv[1], process.argv[2], process.argv[3]];
const id = mode === 'legacy' ? 4711 : 0;
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const done = (out) => { console.log(JSON.stringify(out)); s.close(); process.exit(0); };
s.on('message', (m, r) => {
  let p; try { p = packet.decode(m); } catch { return; }
  if (p.type !== 'response' || (mode === 'legacy' && p.id !== id)) return;
  const a = (p.answers || []).filter((x) => x.type === 'A' && x.name.toLowerCase() === name.toLowerCase());
  if (a.length > 0) done({ from: r.address, port: r.port, id: p.id, addresses: a.map((x) => x.data), flush: a.map((x) => !!x.flush), ttl: a[0].ttl });
});
s.bind(mode === 'legacy' ? 0 : 5353, () => {
  if (mode === 'multicast') { s.addMembership('224.0.0.251', ownIp); s.setMulticastInterface(ownIp); }
  const q = packet.encode({ type: 'query', id, questions: [{ name, type: 'A' }] });
  const send = () => s.send(q, 5353, '224.0.0.251');
  send(); setInterval(send, 500);
});
setTimeout(() => done({ timeout: true }), 4000);
`;

interface Container {
  ns: string;
  ip: string;
  host: SimHost;
}

async function inNs(ns: string, cmd: string[], timeoutMs = 20_000): Promise<{ code: number; out: string }> {
  const r = await run(['ip', 'netns', 'exec', ns, ...cmd], { timeoutMs, env: { NODE_PATH } });
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

async function dnsStatus(h: SimHost): Promise<DnsStatusReport> {
  const r = await h.weave(['status', 'dns', '--json']);
  if (r.code !== 0) throw new Error(`weave status dns: ${r.stderr}`);
  return JSON.parse(r.stdout) as DnsStatusReport;
}

t.test('two hosts: names, reverse, NXDOMAIN, forwarding, mDNS, detach', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const upstreams: BackgroundProcess[] = [];
  t.teardown(async () => {
    for (const u of upstreams) await u.stop();
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  const [h1, h2] = [net.host('h1'), net.host('h2')];

  // Each host's resolv.conf (a file of the test's) names an upstream on loopback in that host's namespace.
  // h1 starts out pointing at a server that is not there: SERVFAIL, then the file changes and it works.
  const resolv1 = path.join(net.rootDir, 'h1-resolv.conf');
  const resolv2 = path.join(net.rootDir, 'h2-resolv.conf');
  fs.writeFileSync(resolv1, 'nameserver 127.0.0.3\n');
  fs.writeFileSync(resolv2, 'search example.internal\nnameserver 127.0.0.2\n');
  for (const h of [h1, h2]) {
    const up = h.spawn(['node', '-e', UPSTREAM_JS, '127.0.0.2', '53'], { env: { NODE_PATH } });
    upstreams.push(up);
    await waitFor(() => up.stdout.includes('upstream ready'), { what: `upstream in ${h.name}`, timeoutMs: 10_000, detail: () => up.stderr });
  }
  for (const [h, resolv, peers] of [[h1, resolv1, []], [h2, resolv2, [h1.address]]] as const) {
    const r = await h.weave(['launch', '--nickname', h.name, '--dns-resolv-conf', resolv, ...peers]);
    t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
  }
  for (const h of [h1, h2]) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
      what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }

  const containers = new Map<string, Container>();
  const attach = async (host: SimHost, key: string, ip: string, extra: string[] = []): Promise<Container> => {
    const ns = `${net.prefix}${key}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await host.weave(['attach', ...extra, `${ip}/24`, `netns:${ns}`]);
    t.equal(r.code, 0, `attach ${key} on ${host.name}: ${r.stderr.trim()}`);
    const c = { ns, ip, host };
    containers.set(key, c);
    return c;
  };
  const c1 = await attach(h1, 'c1', '10.32.7.1');
  const c2 = await attach(h2, 'c2', '10.32.7.2', ['--name', 'web']);
  const c3 = await attach(h2, 'c3', '10.32.7.3', ['--without-dns']);
  const c1Name = c1.ns; // registered under its namespace name

  await t.test('container resolvers point at their host', async (t) => {
    const s1 = await dnsStatus(h1);
    const s2 = await dnsStatus(h2);
    t.match(s1.address, /^169\.254\.\d+\.\d+$/);
    t.not(s1.address, s2.address, 'each host has its own address');
    t.ok(s1.listening.includes(`${s1.address}:53`) && s1.listening.includes('127.0.0.1:53'), `listening: ${s1.listening.join(' ')}`);
    const conf1 = fs.readFileSync(`/etc/netns/${c1.ns}/resolv.conf`, 'utf8');
    t.match(conf1, new RegExp(`nameserver ${s1.address!.replace(/\./g, '\\.')}\\n`));
    t.match(conf1, /search weave\.local\n/);
    t.match(fs.readFileSync(`/etc/netns/${c2.ns}/resolv.conf`, 'utf8'), `nameserver ${s2.address}`);
    t.notOk(fs.existsSync(`/etc/netns/${c3.ns}/resolv.conf`), '--without-dns leaves the resolver alone');
    const route = await inNs(c1.ns, ['ip', 'route', 'get', s1.address!]);
    t.match(route.out, /dev ethwe/, 'the DNS address is on-link via ethwe');
  });

  await t.test('the other host\'s container by name: getent, dig (UDP and TCP), dig -x, bare names', async (t) => {
    const g = await waitFor(async () => {
      const r = await inNs(c1.ns, ['getent', 'hosts', 'web']);
      return r.code === 0 ? r : null;
    }, { what: 'getent hosts web in c1', timeoutMs: 15_000, detail: () => h1.readLog() });
    t.match(g.out, /^10\.32\.7\.2\s+web\.weave\.local/);
    const d = await inNs(c1.ns, ['dig', '+short', 'web.weave.local']);
    t.equal(d.out, '10.32.7.2');
    t.equal((await inNs(c1.ns, ['dig', '+short', '+tcp', 'WEB.weave.local'])).out, '10.32.7.2', 'TCP, any case');
    t.equal((await inNs(c1.ns, ['dig', '+short', '-x', '10.32.7.2'])).out, 'web.weave.local.');
    t.equal((await inNs(c1.ns, ['dig', '+short', 'web'])).out, '10.32.7.2', 'a bare name, without the search list');
    const back = await inNs(c2.ns, ['getent', 'hosts', c1Name]);
    t.match(back.out, new RegExp(`^10\\.32\\.7\\.1\\s+${c1Name}\\.weave\\.local`), 'the other way, by namespace name');
    t.equal((await inNs(c1.ns, ['dig', '+short', 'AAAA', 'web.weave.local'])).out, '', 'no AAAA: empty');
    t.not((await inNs(c1.ns, ['getent', 'hosts', c3.ns])).code, 0, 'a --without-dns container has no name');
  });

  await t.test('NXDOMAIN for unknown names, NOERROR without data for types we lack', async (t) => {
    const nx = await inNs(c1.ns, ['dig', 'nope.weave.local']);
    t.match(nx.out, /status: NXDOMAIN/);
    t.match(nx.out, /flags: qr aa rd ra/);
    const mx = await inNs(c1.ns, ['dig', 'MX', 'web.weave.local']);
    t.match(mx.out, /status: NOERROR/);
    t.match(mx.out, /ANSWER: 0/);
  });

  await t.test('names outside the domain go to the upstream of the host resolv.conf, re-read when it changes', async (t) => {
    const fail = await inNs(c1.ns, ['dig', '+time=8', '+tries=1', 'upstream.test']);
    t.match(fail.out, /status: SERVFAIL/, 'the only upstream is not there: SERVFAIL');
    fs.writeFileSync(resolv1, '# changed by the test\nnameserver 127.0.0.2\n');
    const ok = await waitFor(async () => {
      const r = await inNs(c1.ns, ['dig', '+short', '+time=3', '+tries=1', 'upstream.test']);
      return r.out === '192.0.2.7' ? r : null;
    }, { what: 'forwarding after the resolv.conf change', timeoutMs: 20_000 });
    t.equal(ok.out, '192.0.2.7');
    t.equal((await inNs(c1.ns, ['dig', '+short', '+tcp', 'upstream.test'])).out, '192.0.2.7', 'over TCP too');
    t.match((await inNs(c2.ns, ['dig', 'elsewhere.test'])).out, /status: NXDOMAIN/, "upstream's NXDOMAIN is passed on");
    const s = await dnsStatus(h1);
    t.same(s.upstreams, ['127.0.0.2:53']);
    t.ok(s.counters.forwarded >= 3 && s.counters.forwardFailed >= 1, JSON.stringify(s.counters));
  });

  await t.test('mDNS: legacy unicast query from a container gets a unicast reply; multicast gets a multicast one', async (t) => {
    const s1 = await dnsStatus(h1);
    const legacy = await inNs(c1.ns, ['node', '-e', MDNS_CLIENT_JS, 'legacy', 'web.local', c1.ip]);
    const lr = JSON.parse(legacy.out.split('\n').pop() ?? '{}') as { addresses?: string[]; id?: number; from?: string; port?: number; flush?: boolean[]; ttl?: number };
    t.same(lr.addresses, ['10.32.7.2'], `legacy reply: ${legacy.out}`);
    t.equal(lr.id, 4711, 'same id');
    t.equal(lr.from, s1.address, 'from our host');
    t.equal(lr.port, 5353);
    t.same(lr.flush, [false], 'no cache-flush bit in legacy replies');
    t.ok((lr.ttl ?? 99) <= 10);
    const multi = await inNs(c2.ns, ['node', '-e', MDNS_CLIENT_JS, 'multicast', `${c1Name}.local`, c2.ip]);
    const mr = JSON.parse(multi.out.split('\n').pop() ?? '{}') as { addresses?: string[]; flush?: boolean[] };
    t.same(mr.addresses, ['10.32.7.1'], `multicast reply: ${multi.out}`);
    t.same(mr.flush, [true], 'unique records carry the cache-flush bit');
    const none = await inNs(c1.ns, ['node', '-e', MDNS_CLIENT_JS, 'legacy', 'nobody.local', c1.ip]);
    t.match(none.out, /"timeout":true/, 'names we do not hold get no answer');
  });

  await t.test('not an open resolver: nothing on the underlay address, silence for strangers on the overlay address', async (t) => {
    const s1 = await dnsStatus(h1);
    const under = await h2.exec(['dig', '+time=1', '+tries=1', `@${h1.address}`, 'web.weave.local']);
    t.match(under.stdout + under.stderr, /connection refused|timed out|no servers could be reached/i, 'h1 does not listen on its underlay address');
    // h2's host namespace routes h1's overlay address over the underlay: a stranger.
    await h2.exec(['ip', 'route', 'add', `${s1.address}/32`, 'via', h1.address]);
    const before = s1.counters.clientsRefused;
    const stranger = await h2.exec(['dig', '+time=1', '+tries=1', `@${s1.address}`, 'web.weave.local']);
    t.notMatch(stranger.stdout, /status: NOERROR/, 'no answer for a client that is not one of our containers');
    await h2.exec(['ip', 'route', 'del', `${s1.address}/32`]);
    t.ok((await dnsStatus(h1)).counters.clientsRefused > before, 'counted as refused');
    const local = await h1.exec(['dig', '+short', '@127.0.0.1', 'web.weave.local']);
    t.equal(local.stdout.trim(), '10.32.7.2', 'the host itself asks on loopback');
  });

  await t.test('dns-add, dns-lookup and dns-remove from the CLI', async (t) => {
    const add = await h2.weave(['dns-add', '10.32.7.99', '-h', 'manual']);
    t.equal(add.code, 0, add.stderr);
    await waitFor(async () => (await inNs(c1.ns, ['dig', '+short', 'manual.weave.local'])).out === '10.32.7.99', { what: 'manual name on h1', timeoutMs: 10_000 });
    t.equal((await h1.weave(['dns-lookup', 'manual'])).stdout.trim(), '10.32.7.99');
    t.equal((await h1.weave(['dns-lookup', '--reverse', '10.32.7.2'])).stdout.trim(), 'web.weave.local');
    t.equal((await h2.weave(['dns-remove', '-h', 'manual'])).code, 0);
    await waitFor(async () => (await h1.weave(['dns-lookup', 'manual'])).stdout.trim() === '', { what: 'manual name gone on h1', timeoutMs: 10_000 });
    const bad = await h2.weave(['dns-add', '10.32.7.98', '-h', 'x.example.com.']);
    t.not(bad.code, 0);
    t.match(bad.stderr, /not under the weave domain/);
  });

  await t.test('a daemon restart keeps names and resolvers', async (t) => {
    const before = fs.readFileSync(`/etc/netns/${c1.ns}/resolv.conf`, 'utf8');
    t.equal((await h1.weave(['stop'])).code, 0, 'h1 stopped');
    t.notMatch((await h1.exec(['ip', 'rule'])).stdout, /30565/, 'the policy rule went with it');
    t.notMatch((await h1.exec(['ip', 'addr'])).stdout, /169\.254\./, 'and the link-local address');
    t.notOk(fs.existsSync(`/etc/netns/${c1.ns}`), "while no router runs, c1's resolver is as it was (none)");
    const r = await h1.weave(['launch', '--nickname', 'h1', '--dns-resolv-conf', resolv1]);
    t.equal(r.code, 0, r.stderr);
    await waitFor(async () => (await inNs(c1.ns, ['dig', '+short', '+time=1', '+tries=1', 'web.weave.local'])).out === '10.32.7.2', {
      what: 'c1 resolves web after h1 restarted', timeoutMs: 30_000, detail: () => h1.readLog(),
    });
    await waitFor(async () => (await inNs(c2.ns, ['getent', 'hosts', c1Name])).code === 0, { what: 'c2 resolves c1 after h1 restarted', timeoutMs: 20_000 });
    t.equal(fs.readFileSync(`/etc/netns/${c1.ns}/resolv.conf`, 'utf8'), before, "c1's resolver still points at h1");
  });

  await t.test('after detach the name is gone on both hosts within seconds, and the resolver is restored', async (t) => {
    const r = await h2.weave(['detach', `netns:${c2.ns}`]);
    t.equal(r.code, 0, r.stderr);
    const start = Date.now();
    await waitFor(async () => {
      const a = await h1.weave(['dns-lookup', 'web']);
      const b = await h2.weave(['dns-lookup', 'web']);
      return a.stdout.trim() === '' && b.stdout.trim() === '';
    }, { what: 'web gone on both hosts', timeoutMs: 10_000 });
    t.comment(`gone everywhere after ${Date.now() - start} ms`);
    t.match((await inNs(c1.ns, ['dig', 'web.weave.local'])).out, /status: NXDOMAIN/);
    t.notOk(fs.existsSync(`/etc/netns/${c2.ns}/resolv.conf`), 'our resolv.conf removed (there was none before)');
    t.notOk(fs.existsSync(`/etc/netns/${c2.ns}`), 'and the directory we made');
  });

  await t.test("a stopped peer's records stop being answered", async (t) => {
    await attach(h2, 'c4', '10.32.7.4', ['--name', 'api']);
    await waitFor(async () => (await inNs(c1.ns, ['dig', '+short', 'api.weave.local'])).out === '10.32.7.4', { what: 'api visible on h1', timeoutMs: 10_000 });
    t.equal((await h2.weave(['stop'])).code, 0);
    await waitFor(async () => (await inNs(c1.ns, ['dig', '+short', 'api.weave.local'])).out === '', { what: 'api gone on h1', timeoutMs: 20_000 });
    t.pass('gone once h2 is unreachable');
  });
});
