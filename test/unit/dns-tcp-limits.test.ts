// The DNS server's TCP slots against a client that tries to hold them, on
// loopback with short test timeouts: bytes trickled without completing a query
// (from the start, or after a real query) get the connection closed at the
// query-receive cap; a client sending whole queries stays open past the idle
// time and is closed once it goes quiet; one address cannot take more than its
// share of connections, nor all clients more than the server's; a restricted
// address answers no client that is not allowed; a zero-length message ends it.

import dgram from 'node:dgram';
import net from 'node:net';
import * as packet from 'dns-packet';
import t from 'tap';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import { handleQuery } from '../../dns/answer';
import { Forwarder } from '../../dns/forwarder';
import { DnsServer, newCounters } from '../../dns/server';
import { FixedUpstreams } from '../../dns/upstreams';

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const IDLE_MS = 1500;
const QUERY_MS = 500;
const PER_CLIENT = 3;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function framedQuery(id: number): Buffer {
  const q = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name: 'web.weave.local', type: 'A' }] });
  const len = Buffer.alloc(2);
  len.writeUInt16BE(q.length);
  return Buffer.concat([len, q]);
}

interface ServerChoices { maxTcp?: number; perClient?: number; restricted?: boolean }

async function startServer(t: Tap, choices: ServerChoices = {}): Promise<number> {
  return (await startServerWith(t, choices)).port;
}

async function startServerWith(t: Tap, choices: ServerChoices): Promise<{ port: number; counters: ReturnType<typeof newCounters> }> {
  const counters = newCounters();
  const forwarder = new Forwarder({ logger: silentLogger, upstreams: new FixedUpstreams([]) });
  const server = new DnsServer({
    resolve: (b, tr) => handleQuery(b, tr, { domain: 'weave.local', ttlS: 1 }, {
      lookup: (n) => (n === 'web.weave.local' ? ['10.32.0.1'] : []), reverse: () => [], hasNamesBelow: () => false,
    }, new SeededRng(1)),
    forwarder, logger: silentLogger, counters, isAllowedClient: () => false,
  }, {
    listen: [{ host: '127.0.0.1', port: 0, restricted: choices.restricted ?? false }], tcpIdleTimeoutMs: IDLE_MS, tcpQueryTimeoutMs: QUERY_MS,
    maxTcpConnectionsPerClient: choices.perClient ?? PER_CLIENT, ...(choices.maxTcp !== undefined ? { maxTcpConnections: choices.maxTcp } : {}),
  });
  t.same(await server.start(), []);
  t.teardown(async () => { forwarder.close(); await server.close(); });
  return { port: Number(server.addresses()[0]!.split(':')[1]), counters };
}

interface Client {
  sock: net.Socket;
  /** Resolves with the time the server closed the connection. */
  closed: Promise<number>;
  isClosed(): boolean;
  /** Answers received so far, by id. */
  answers: number[];
}

async function connect(t: Tap, port: number): Promise<Client> {
  const sock = net.connect(port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  const answers: number[] = [];
  let buf = Buffer.alloc(0);
  let closedFlag = false;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      answers.push(buf.readUInt16BE(2));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  const closed = new Promise<number>((resolve) => sock.on('close', () => { closedFlag = true; resolve(Date.now()); }));
  sock.on('error', () => undefined);
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  return { sock, closed, isClosed: () => closedFlag, answers };
}

/** Sends `bytes` one at a time every `everyMs` until the server closes or they run out; returns when it started. */
async function trickle(c: Client, bytes: Buffer, everyMs: number): Promise<{ startedAt: number; sent: number }> {
  const startedAt = Date.now();
  let sent = 0;
  while (sent < bytes.length && !c.isClosed()) {
    c.sock.write(bytes.subarray(sent, sent + 1));
    sent++;
    await Promise.race([sleep(everyMs), c.closed]);
  }
  return { startedAt, sent };
}

t.test('a client trickling one byte every 200 ms is closed at the query-receive cap', async (t) => {
  const port = await startServer(t);
  const c = await connect(t, port);
  const query = framedQuery(1);
  const { startedAt, sent } = await trickle(c, query, 200);
  t.ok(c.isClosed(), 'closed by the server');
  const after = (await c.closed) - startedAt;
  t.ok(sent < query.length, `closed before the query was complete (${sent} of ${query.length} bytes)`);
  t.ok(after >= QUERY_MS - 50 && after < IDLE_MS, `closed ${after} ms after the first byte (cap ${QUERY_MS} ms, idle ${IDLE_MS} ms)`);
  t.same(c.answers, [], 'nothing answered');
});

t.test('a real query, then trickled bytes: the trickle buys nothing', async (t) => {
  const port = await startServer(t);
  const c = await connect(t, port);
  c.sock.write(framedQuery(7));
  await sleep(200);
  t.same(c.answers, [7], 'the whole query is answered');
  const { startedAt } = await trickle(c, framedQuery(8), 150);
  const after = (await c.closed) - startedAt;
  t.ok(after < QUERY_MS + 400, `closed ${after} ms after the trickle began`);
  t.same(c.answers, [7], 'the trickled query never completed');
});

t.test('whole queries keep a connection past the idle time; silence closes it', async (t) => {
  const port = await startServer(t);
  const c = await connect(t, port);
  const start = Date.now();
  let lastQueryAt = start;
  for (let id = 1; Date.now() - start < IDLE_MS * 1.6; id++) {
    c.sock.write(framedQuery(id));
    lastQueryAt = Date.now();
    await sleep(400);
  }
  t.notOk(c.isClosed(), `open after ${Date.now() - start} ms of a query every 400 ms`);
  t.ok(c.answers.length >= 4, `${c.answers.length} answers`);
  const quietFrom = lastQueryAt;
  const closedAt = await Promise.race([c.closed, sleep(IDLE_MS * 3).then(() => -1)]);
  t.ok(closedAt > 0, 'closed when it went quiet');
  const quiet = closedAt - quietFrom;
  t.ok(quiet >= IDLE_MS - 100 && quiet < IDLE_MS + 1000, `closed ${quiet} ms after the last query (idle ${IDLE_MS} ms)`);
});

t.test(`one client address gets at most ${PER_CLIENT} connections`, async (t) => {
  const port = await startServer(t);
  const held = await Promise.all(Array.from({ length: PER_CLIENT }, () => connect(t, port)));
  const extra = await connect(t, port);
  const refused = await Promise.race([extra.closed.then(() => true), sleep(400).then(() => false)]);
  t.ok(refused, 'the next one is closed at once');
  t.notOk(held.some((c) => c.isClosed()), 'the others stay');
  held[0]!.sock.destroy();
  await held[0]!.closed;
  await sleep(50);
  const again = await connect(t, port);
  again.sock.write(framedQuery(3));
  await sleep(200);
  t.same(again.answers, [3], 'a slot freed is usable again');
});

t.test('the server as a whole takes at most its cap of connections, whoever asks', async (t) => {
  const port = await startServer(t, { maxTcp: 2, perClient: 100 });
  const held = await Promise.all([connect(t, port), connect(t, port)]);
  const extra = await connect(t, port);
  t.ok(await Promise.race([extra.closed.then(() => true), sleep(400).then(() => false)]), 'the third is closed at once');
  t.notOk(held.some((c) => c.isClosed()), 'the two stay');
});

t.test('on a restricted address, a client that is not allowed gets nothing over TCP or UDP', async (t) => {
  const { port, counters } = await startServerWith(t, { restricted: true });
  const c = await connect(t, port);
  c.sock.write(framedQuery(5));
  t.ok(await Promise.race([c.closed.then(() => true), sleep(400).then(() => false)]), 'TCP: closed at once');
  t.same(c.answers, [], 'and unanswered');
  const udp = dgram.createSocket('udp4');
  t.teardown(() => udp.close());
  let answered = false;
  udp.on('message', () => { answered = true; });
  udp.send(framedQuery(6).subarray(2), port, '127.0.0.1');
  await sleep(300);
  t.notOk(answered, 'UDP: no answer');
  t.ok(counters.clientsRefused >= 2, `both refusals counted (${counters.clientsRefused})`);
});

t.test('a zero-length TCP message closes the connection', async (t) => {
  const port = await startServer(t);
  const c = await connect(t, port);
  c.sock.write(Buffer.concat([Buffer.from([0, 0]), framedQuery(9)]));
  t.ok(await Promise.race([c.closed.then(() => true), sleep(400).then(() => false)]), 'closed');
  t.same(c.answers, [], 'the query behind it is not answered');
});
