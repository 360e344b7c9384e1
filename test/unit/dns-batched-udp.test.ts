// The DNS server on batched UDP (cli/dns-datagrams.ts over the addon's
// recvmmsg/sendmmsg, behind dns/datagram-port.ts): a burst of queries gets
// every answer under its own id, a restricted listener refuses strangers per
// datagram, a forwarded query's answer goes back to its sender after the
// batch is gone, and a port that cannot be opened falls back to node:dgram.
// Loopback only.

import dgram from 'node:dgram';
import * as packet from 'dns-packet';
import t from 'tap';
import type { Test } from 'tap';
import { SeededRng } from '../../common/rng';
import { silentLogger } from '../../common/logger';
import { openDnsDatagramPort } from '../../cli/dns-datagrams';
import { handleQuery } from '../../dns/answer';
import { AnswerCache } from '../../dns/answer-cache';
import type { OpenDatagramPort } from '../../dns/datagram-port';
import { Forwarder } from '../../dns/forwarder';
import { DnsServer, newCounters } from '../../dns/server';
import { FixedUpstreams } from '../../dns/upstreams';

const CFG = { domain: 'weave.local', ttlS: 1 };
const RECORDS = { lookup: (n: string) => (n === 'web.weave.local' ? ['10.32.0.1'] : []), reverse: () => [], hasNamesBelow: () => false };

function query(name: string, id: number): Buffer {
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name, type: 'A' }] });
}

/** Sends every query at once from one socket; collects replies by id until `count` arrived or the wait is over. */
async function burst(port: number, queries: Buffer[], count: number, waitMs = 3000): Promise<Map<number, packet.DecodedPacket>> {
  const sock = dgram.createSocket('udp4');
  const got = new Map<number, packet.DecodedPacket>();
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      sock.on('message', (msg) => {
        const p = packet.decode(msg);
        got.set(p.id ?? -1, p);
        if (got.size >= count) {
          clearTimeout(timer);
          resolve();
        }
      });
      for (const q of queries) sock.send(q, port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
  return got;
}

async function serve(t: Test, opts: { restricted?: boolean; allowed?: boolean; upstreamPort?: number; open?: OpenDatagramPort }) {
  const counters = newCounters();
  const forwarder = new Forwarder({ logger: silentLogger, upstreams: new FixedUpstreams(opts.upstreamPort === undefined ? [] : [{ host: '127.0.0.1', port: opts.upstreamPort }]) });
  const server = new DnsServer({
    resolve: (b, tr) => handleQuery(b, tr, CFG, RECORDS, new SeededRng(1)),
    forwarder, logger: silentLogger, counters, isAllowedClient: () => opts.allowed ?? true,
    openDatagrams: opts.open ?? openDnsDatagramPort,
  }, { listen: [{ host: '127.0.0.1', port: 0, restricted: opts.restricted ?? false }] });
  t.same(await server.start(), []);
  t.teardown(async () => { forwarder.close(); await server.close(); });
  return { port: Number(server.addresses()[0]!.split(':')[1]), counters };
}

t.test('a burst: every query answered under its own id', async (t) => {
  const { port, counters } = await serve(t, {});
  const queries = Array.from({ length: 200 }, (_, i) => query(i % 2 === 0 ? 'web.weave.local' : 'nope.weave.local', i + 1));
  const got = await burst(port, queries, 200);
  t.equal(got.size, 200, 'all 200 answered');
  // Odd ids asked for web, even ones for a name we do not hold.
  t.same((got.get(1)!.answers ?? []).map((a) => (a as { data: string }).data), ['10.32.0.1']);
  t.equal((got.get(2) as { rcode?: string }).rcode, 'NXDOMAIN', 'ids and answers stay paired');
  t.equal(counters.answered + counters.nxdomain, 200);
});

t.test('a restricted listener refuses strangers datagram by datagram', async (t) => {
  const { port, counters } = await serve(t, { restricted: true, allowed: false });
  const got = await burst(port, [query('web.weave.local', 1), query('web.weave.local', 2)], 1, 500);
  t.equal(got.size, 0, 'silence');
  t.equal(counters.clientsRefused, 2);
  t.equal(counters.queries, 0, 'nothing reached the core');
});

t.test('a forwarded answer goes back to its sender after its batch is gone', async (t) => {
  // An upstream on loopback that answers every query with itself as a response (id and question echoed).
  const upstream = dgram.createSocket('udp4');
  upstream.on('message', (msg, rinfo) => {
    const reply = Buffer.from(msg);
    reply[2] = (reply[2] as number) | 0x80;
    setTimeout(() => upstream.send(reply, rinfo.port, rinfo.address), 20);
  });
  await new Promise<void>((resolve) => upstream.bind(0, '127.0.0.1', resolve));
  t.teardown(() => upstream.close());
  const { port, counters } = await serve(t, { upstreamPort: upstream.address().port });
  const queries = Array.from({ length: 20 }, (_, i) => query(`Host${i}.Example.COM`, 100 + i));
  const got = await burst(port, [...queries, query('web.weave.local', 7)], 21);
  t.equal(got.size, 21, 'every forwarded query answered, and the local one');
  t.equal(got.get(105)!.questions?.[0]?.name, 'Host5.Example.COM', 'the client\'s question and casing');
  t.equal(counters.forwarded, 20);
  t.equal(counters.forwardFailed, 0);
});

t.test('a port that cannot be opened: node:dgram instead', async (t) => {
  const { port } = await serve(t, { open: () => { throw new Error('no addon here'); } });
  const got = await burst(port, [query('web.weave.local', 9)], 1);
  t.same((got.get(9)!.answers ?? []).map((a) => (a as { data: string }).data), ['10.32.0.1']);
});

t.test('cached answers are written straight into the send buffer: a burst gets every reply under its own id and casing', async (t) => {
  const cache = new AnswerCache(new SeededRng(2));
  const counters = newCounters();
  const forwarder = new Forwarder({ logger: silentLogger, upstreams: new FixedUpstreams([]) });
  const server = new DnsServer({
    resolve: (b, tr, cacheTried) => {
      const cached = cacheTried === true ? null : cache.lookup(b, tr, 1);
      if (cached !== null) return cached;
      const o = handleQuery(b, tr, CFG, RECORDS, new SeededRng(1));
      if (o.kind === 'reply') cache.remember(b, tr, 1, o.bytes, o.answerKind);
      return o;
    },
    answerUdpFromCache: (q, at, len, out, outAt, cap, hit) => cache.answerInto(q, at, len, 'udp', 1, out, outAt, cap, hit),
    forwarder, logger: silentLogger, counters, isAllowedClient: () => true, openDatagrams: openDnsDatagramPort,
  }, { listen: [{ host: '127.0.0.1', port: 0, restricted: false }] });
  t.same(await server.start(), []);
  t.teardown(async () => { forwarder.close(); await server.close(); });
  const port = Number(server.addresses()[0]!.split(':')[1]);
  const names = ['web.weave.local', 'WEB.weave.local', 'nope.weave.local', 'wEb.WeAvE.lOcAl'];
  const queries = Array.from({ length: 200 }, (_, i) => query(names[i % 4]!, i + 1));
  const got = await burst(port, queries, 200);
  t.equal(got.size, 200, 'all 200 answered');
  for (let i = 0; i < 200; i++) {
    const p = got.get(i + 1)!;
    t.equal(p.questions?.[0]?.name, names[i % 4], `id ${i + 1}: its own question`);
    if (i % 4 === 2) t.equal((p as { rcode?: string }).rcode, 'NXDOMAIN');
    else t.same((p.answers ?? []).map((a) => `${a.name} ${(a as { data: string }).data}`), [`${names[i % 4]} 10.32.0.1`]);
  }
  t.ok(cache.counters.hits >= 190, `answered from the cache (${cache.counters.hits} hits)`);
  t.equal(cache.counters.misses, 200 - cache.counters.hits, 'a miss counted once');
  t.equal(counters.queries, 200);
  t.equal(counters.answered + counters.nxdomain, 200);
});
