// The forwarder against an off-path spoofer, on loopback only. A test upstream
// on 127.0.0.1 answers every query with forgeries first (wrong id; right id but
// the name in another case; right id and case but from 127.0.0.2 or from
// another port; another qtype) and only then the real answer: the client must
// get the real one, under its own id and casing. Over 50 queries the upstream
// records the source ports, ids and casings it sees: unpredictable ids, random
// case, and ports that change as pooled sockets are retired (no socket carries
// more than its budget; each replacement gets a fresh random port). Several
// queries in flight on one socket each get their own answer. The TCP fallback
// faces the same forgeries in one stream; the in-flight bound answers at once
// beyond it and every socket is closed once retired and drained. The UDP
// cases run twice: on node:dgram sockets and on the addon's batched connected
// ones (cli/dns-datagrams.ts), when it is built. A client's EDNS size above
// ours goes upstream lowered to ours.

import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import * as packet from 'dns-packet';
import t from 'tap';
import { TextLogger } from '../../common/logger';
import type { Logger } from '../../common/logger';
import { dnsUpstreamSocketOpener } from '../../cli/dns-datagrams';
import { EDNS_MAX_UDP_BYTES } from '../../dns/constants';
import type { OpenUpstreamSocket } from '../../dns/datagram-port';
import type { ForwarderOptions } from '../../dns/forwarder';
import type { Upstream } from '../../dns/resolv-conf';
import { loadNative } from '../../router/overlay/native';
import { Forwarder } from '../../dns/forwarder';
import { parseQuery } from '../../dns/message';
import { FixedUpstreams } from '../../dns/upstreams';

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const REAL = '192.0.2.1';
const FORGED = '203.0.113.66';

interface Seen { port: number; id: number; name: string }

function flipCase(name: string): string {
  return name.replace(/[a-z]/gi, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
}

function response(id: number, name: string, data: string, opts: { type?: packet.RecordType; tc?: boolean; count?: number } = {}): Buffer {
  return packet.encode({
    type: 'response', id, flags: packet.RECURSION_AVAILABLE | (opts.tc === true ? packet.TRUNCATED_RESPONSE : 0),
    questions: [{ name, type: opts.type ?? 'A', class: 'IN' }],
    answers: Array.from({ length: opts.count ?? 1 }, () => ({ type: 'A' as const, name, ttl: 5, data })),
  });
}

function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

function bindUdp(t: Tap, host: string, port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  t.teardown(() => s.close());
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, host, () => resolve(s));
  });
}

/**
 * The upstream: UDP and TCP on 127.0.0.1:port, a spoofer on 127.0.0.2:port and
 * one on 127.0.0.1 at another port. `big.*` names get a TC answer over UDP and,
 * over TCP, two forgeries then the real answer in the same stream.
 */
async function startUpstream(t: Tap): Promise<{ port: number; seen: Seen[]; tcpSeen: Seen[] }> {
  const seen: Seen[] = [];
  const tcpSeen: Seen[] = [];
  const up = await bindUdp(t, '127.0.0.1', 0);
  const port = up.address().port;
  const otherHost = await bindUdp(t, '127.0.0.2', port);
  const otherPort = await bindUdp(t, '127.0.0.1', 0);
  up.on('message', (m, r) => {
    const p = packet.decode(m);
    const { name } = p.questions![0]!;
    const id = p.id!;
    seen.push({ port: r.port, id, name });
    if (name.toLowerCase().startsWith('big.')) {
      up.send(response(id, name, REAL, { tc: true, count: 0 }), r.port, r.address);
      return;
    }
    if (name.toLowerCase().startsWith('silent.')) return;
    // Forgeries first, each with the forged address; the real answer after a pause, so it arrives last.
    up.send(response(id ^ 0x5a5a, name, FORGED), r.port, r.address);
    up.send(response(id, flipCase(name), FORGED), r.port, r.address);
    up.send(response(id, name, FORGED, { type: 'AAAA' }), r.port, r.address);
    otherHost.send(response(id, name, FORGED), r.port, '127.0.0.1');
    otherPort.send(response(id, name, FORGED), r.port, '127.0.0.1');
    setTimeout(() => up.send(response(id, name, REAL), r.port, r.address), 20);
  });
  const tcp = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => s.destroy());
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const p = packet.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      const { name } = p.questions![0]!;
      const id = p.id!;
      tcpSeen.push({ port: s.remotePort ?? 0, id, name });
      s.end(Buffer.concat([
        frame(response(id ^ 1, name, FORGED, { count: 60 })),
        frame(response(id, flipCase(name), FORGED, { count: 60 })),
        frame(response(id, name, REAL, { count: 60 })),
      ]));
    });
  });
  await new Promise<void>((resolve) => tcp.listen(port, '127.0.0.1', () => resolve()));
  t.teardown(() => tcp.close());
  return { port, seen, tcpSeen };
}

function captureLogger(): { logger: TextLogger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new TextLogger('debug', (l) => lines.push(l)), lines };
}

/**
 * A UDP port on 127.0.0.1 that refuses every datagram (the kernel answers ICMP
 * port unreachable) and that no other socket can take while the test runs: a
 * socket holds it, connected to a port that never sends, and a connected UDP
 * socket receives only from its peer. A port bound and then closed could be
 * handed to another test's socket in the meantime, which then swallows the query.
 */
async function refusingUdpPort(t: Tap): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve, reject) => s.connect(9, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve())));
  t.teardown(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return s.address().port;
}

async function ask(f: Forwarder, name: string, id: number, transport: 'udp' | 'tcp' = 'udp'): Promise<packet.DecodedPacket | null> {
  const raw = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name, type: 'A' }] });
  const parsed = parseQuery(raw);
  if (parsed.kind !== 'query') throw new Error('not a query');
  const reply = await f.forward(parsed.query, raw, transport);
  return reply === null ? null : packet.decode(reply);
}

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

function addonBuilt(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}

/** The upstream socket kinds: node:dgram's, and the addon's when it is built. */
const SOCKETS: Array<{ kind: string; open: OpenUpstreamSocket | null }> = [
  { kind: 'node:dgram', open: null },
  ...(addonBuilt() ? [{ kind: 'addon', open: dnsUpstreamSocketOpener() }] : []),
];

for (const { kind, open } of SOCKETS) {
  const forwarder = (logger: Logger, upstreams: Upstream[], opts: Partial<ForwarderOptions>): Forwarder =>
    new Forwarder({ logger, upstreams: new FixedUpstreams(upstreams), ...(open === null ? {} : { openUpstreamSocket: open }) }, opts);

  t.test(`${kind} UDP: forgeries first, the real answer last; only the real one reaches the client`, async (t) => {
    const up = await startUpstream(t);
    const { logger, lines } = captureLogger();
    const pool = { size: 4, maxQueries: 5, maxAgeMs: 60_000 };
    const f = forwarder(logger, [{ host: '127.0.0.1', port: up.port }], { timeoutMs: 2000, pool });
    t.teardown(() => f.close());
    const fdsBefore = openFds();

    const N = 50;
    let good = 0;
    for (let i = 0; i < N; i++) {
      const name = `host-${i}.spoof.example`;
      const r = await ask(f, name, 1000 + i);
      const ok = r !== null && r.id === 1000 + i && r.questions![0]!.name === name &&
        r.answers!.length === 1 && (r.answers![0] as { data: string }).data === REAL;
      if (ok) good++;
      else t.fail(`query ${i}: ${JSON.stringify(r)}`);
    }
    t.equal(good, N, `${N} of ${N} real answers, under the client's id and casing, none forged`);
    t.equal(up.seen.length, N, 'one upstream query per client query');
    const dropped = (why: string): number => lines.filter((l) => l.includes('answer dropped') && l.includes(`why=${why}`)).length;
    t.equal(dropped('wrong-id'), N, 'each wrong-id forgery reached the socket and was dropped');
    t.equal(dropped('wrong-question'), 2 * N, 'each wrong-case and wrong-type forgery reached the socket and was dropped');
    // The two forgeries from another address or port never reach the socket: it is connected to the upstream.

    // Pooled sockets: a port carries at most maxQueries queries, then its socket
    // is retired and its replacement gets a fresh kernel-random port.
    const ports = up.seen.map((s) => s.port);
    const ids = up.seen.map((s) => s.id);
    const perPort = new Map<number, number>();
    for (const p of ports) perPort.set(p, (perPort.get(p) ?? 0) + 1);
    t.ok(perPort.size >= N / pool.maxQueries, `source ports: ${perPort.size} distinct of ${N} queries, at least one per ${pool.maxQueries}`);
    t.ok([...perPort.values()].every((n) => n <= pool.maxQueries), `no port carries more than ${pool.maxQueries} queries`);
    // Spread at random over 4 sockets, about a quarter of consecutive queries share a port (49 of 49 would be one socket at a time).
    const repeats = ports.filter((p, i) => i > 0 && p === ports[i - 1]).length;
    t.ok(repeats < 30, `queries spread over the pool (${repeats} of ${N - 1} consecutive on the same port)`);
    t.ok(new Set(ids).size >= N - 2, `ids: ${new Set(ids).size} distinct of ${N}`);
    const step = (xs: number[], i: number): number => (xs[i]! - xs[i - 1]! + 0x10000) % 0x10000;
    const steps = (xs: number[]): number[] => xs.slice(1).map((_, j) => step(xs, j + 1));
    // Ports in the order they first appear: one per socket, drawn by the kernel.
    for (const [what, xs] of [['ids', ids], ['ports', [...perPort.keys()]]] as const) {
      const s = steps([...xs]);
      t.ok(new Set(s).size >= s.length - 3, `${what}: no repeating step (${new Set(s).size} distinct steps of ${s.length})`);
      t.ok(s.filter((d) => d <= 4 || d >= 0x10000 - 4).length <= 2, `${what}: not sequential`);
    }
    t.notOk(ids.some((id, i) => id === 1000 + i), "the client's id never goes upstream");
    const casings = up.seen.map((s, i) => s.name === `host-${i}.spoof.example` ? 'as-sent' : s.name.toLowerCase() === `host-${i}.spoof.example` ? 'randomised' : 'other');
    t.equal(casings.filter((c) => c === 'other').length, 0, 'the upstream is asked the same name');
    t.ok(casings.filter((c) => c === 'randomised').length >= N - 2, '0x20: the case is randomised');

    // Only the live pool stays open (allow a little for whatever the runtime opens meanwhile), and close() ends it.
    t.ok(f.openSockets() <= pool.size, `${f.openSockets()} pooled sockets open, at most ${pool.size}`);
    t.ok(openFds() <= fdsBefore + pool.size + 2, `fds ${fdsBefore} -> ${openFds()}`);
    f.close();
    t.equal(f.openSockets(), 0, 'close() closes the pool');
    t.ok(openFds() <= fdsBefore + 2, `fds after close ${fdsBefore} -> ${openFds()}`);
  });

  t.test(`${kind}: several queries in flight on one socket: each gets its own answer, cross-wired forgeries dropped`, async (t) => {
    const up = await bindUdp(t, '127.0.0.1', 0);
    const got: Array<{ id: number; name: string; port: number }> = [];
    const K = 6;
    up.on('message', (m, r) => {
      const p = packet.decode(m);
      got.push({ id: p.id!, name: p.questions![0]!.name, port: r.port });
      if (got.length < K) return;
      // All K in flight: answer in reverse order, each real answer after a forgery
      // that pairs the previous query's id (still waiting) with this query's question.
      for (let i = K - 1; i >= 0; i--) {
        const g = got[i]!;
        const other = got[(i - 1 + K) % K]!;
        up.send(response(other.id, g.name, FORGED), g.port, r.address);
        up.send(response(g.id, g.name, `192.0.2.${10 + i}`), g.port, r.address);
      }
    });
    const { logger, lines } = captureLogger();
    const pool = { size: 1, maxQueries: 3, maxAgeMs: 60_000 };
    const f = forwarder(logger, [{ host: '127.0.0.1', port: up.address().port }], { timeoutMs: 2000, pool });
    t.teardown(() => f.close());
    const replies = await Promise.all(Array.from({ length: K }, (_, i) => ask(f, `q${i}.pool.example`, 500 + i)));
    const byName = new Map(got.map((g, i) => [g.name.toLowerCase(), i]));
    for (let i = 0; i < K; i++) {
      const r = replies[i];
      const sent = byName.get(`q${i}.pool.example`)!;
      t.equal((r?.answers?.[0] as { data?: string } | undefined)?.data, `192.0.2.${10 + sent}`, `query ${i}: its own answer`);
      t.equal(r?.id, 500 + i, `query ${i}: the client's id`);
    }
    t.equal(new Set(got.map((g) => g.port)).size, K / pool.maxQueries, `${K} queries on ${K / pool.maxQueries} sockets of ${pool.maxQueries} queries each`);
    const sameSocket = got.filter((g, i) => i > 0 && got[i - 1]!.port === g.port).length;
    const dropped = (why: string): number => lines.filter((l) => l.includes('answer dropped') && l.includes(`why=${why}`)).length;
    t.equal(dropped('wrong-question'), sameSocket, `a forgery with the id of a query waiting on the same socket: wrong question (${sameSocket})`);
    t.equal(dropped('wrong-id'), K - sameSocket, 'one with an id not waiting on that socket: wrong id');
    t.equal(f.openSockets(), 0, 'both retired sockets closed once drained');
  });

  t.test(`${kind}: a client's EDNS size above ours goes upstream as ours; a smaller one as it is`, async (t) => {
    const up = await bindUdp(t, '127.0.0.1', 0);
    const sizes: number[] = [];
    up.on('message', (m, r) => {
      const p = packet.decode(m);
      const opt = p.additionals?.find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
      sizes.push(opt?.udpPayloadSize ?? -1);
      up.send(response(p.id!, p.questions![0]!.name, REAL), r.port, r.address);
    });
    const f = forwarder(new TextLogger('silent'), [{ host: '127.0.0.1', port: up.address().port }], { timeoutMs: 2000 });
    t.teardown(() => f.close());
    for (const size of [4096, 512]) {
      const raw = packet.encode({ type: 'query', id: 7, flags: packet.RECURSION_DESIRED, questions: [{ name: 'edns.example', type: 'A' }],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: size } as packet.Answer] });
      const parsed = parseQuery(raw);
      if (parsed.kind !== 'query') throw new Error('not a query');
      const reply = await f.forward(parsed.query, raw, 'udp');
      t.equal(reply === null ? null : packet.decode(reply).id, 7, `answered (EDNS ${size})`);
    }
    t.same(sizes, [EDNS_MAX_UDP_BYTES, 512]);
  });

  t.test(`${kind}: an upstream that refuses (ICMP port unreachable) hands the query to the next one at once`, async (t) => {
    const up = await startUpstream(t);
    const dead = await refusingUdpPort(t);
    const f = forwarder(new TextLogger('silent'), [{ host: '127.0.0.1', port: dead }, { host: '127.0.0.1', port: up.port }], { timeoutMs: 3000 });
    t.teardown(() => f.close());
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const r = await ask(f, `refused-${i}.spoof.example`, 700 + i);
      const ms = Date.now() - started;
      t.equal((r?.answers?.[0] as { data: string } | undefined)?.data, REAL, `query ${i}: the second upstream's answer`);
      t.ok(ms < 1000, `query ${i}: answered in ${ms} ms, not after the first upstream's 3 s timeout`);
    }
  });

  t.test(`${kind}: TCP fallback: a truncated UDP answer is asked again over TCP; forgeries in the stream are skipped`, async (t) => {
    const up = await startUpstream(t);
    const { logger, lines } = captureLogger();
    const f = forwarder(logger, [{ host: '127.0.0.1', port: up.port }], { timeoutMs: 2000 });
    t.teardown(() => f.close());
    const r = await ask(f, 'big.Spoof.Example', 4321, 'tcp');
    t.equal(r?.id, 4321);
    t.equal(r?.questions![0]!.name, 'big.Spoof.Example', "the client's casing");
    t.equal(r?.answers!.length, 60, 'the full answer over TCP');
    t.ok(r?.answers!.every((a) => (a as { data: string }).data === REAL), 'the real one, not a forgery');
    t.equal(up.tcpSeen.length, 1);
    t.not(up.tcpSeen[0]!.id, up.seen[0]!.id, 'a fresh id for the TCP attempt');
    t.not(up.tcpSeen[0]!.id, 4321);
    t.equal(lines.filter((l) => l.includes('answer dropped')).length, 2, 'wrong id and wrong case dropped');
    const viaUdp = await ask(f, 'big.spoof.example', 99, 'udp');
    t.ok(viaUdp?.flag_tc, 'a UDP client gets the TC answer (it asks us again over TCP)');
  });
}

t.test('in-flight bound: beyond it SERVFAIL at once, sockets released on timeout and close', async (t) => {
  const up = await startUpstream(t);
  const fdsBefore = openFds();
  // Sockets live 300 ms, less than the 400 ms timeout: retired while their queries wait, closed when those time out.
  const pool = { size: 2, maxQueries: 200, maxAgeMs: 300 };
  const f = new Forwarder({ logger: new TextLogger('silent'), upstreams: new FixedUpstreams([{ host: '127.0.0.1', port: up.port }]) }, { timeoutMs: 400, maxInFlight: 4, pool });
  t.teardown(() => f.close());
  const started = Date.now();
  const pending = Array.from({ length: 10 }, (_, i) => ask(f, `silent.${i}.example`, i));
  const firstDone = await Promise.race(pending.map((p, i) => p.then(() => i)));
  t.ok(Date.now() - started < 300, 'the refused ones come back at once');
  t.ok(firstDone >= 4, 'a query beyond the bound');
  await new Promise((r) => setTimeout(r, 150));
  const open = openFds() - fdsBefore;
  t.equal(f.openSockets(), pool.size, `4 queries waiting on ${pool.size} pooled sockets`);
  t.ok(open >= pool.size && open <= pool.size + 2, `no more sockets than the pool (${open} more fds)`);
  t.same(await Promise.all(pending), new Array(10).fill(null), 'all null: the server answers SERVFAIL');
  t.equal(up.seen.length, 4, 'only 4 went upstream');
  t.equal(f.openSockets(), 0, 'retired by age and drained: closed after the timeout');
  t.ok(openFds() <= fdsBefore + 2, 'sockets closed after the timeout');

  const slow = ask(f, 'silent.late.example', 1);
  await new Promise((r) => setTimeout(r, 50));
  f.close();
  t.equal(await slow, null, 'close() ends a query in flight');
  t.equal(await ask(f, 'x.example', 2), null, 'and nothing is forwarded after it');
});
