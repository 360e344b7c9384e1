// The CLI's HTTP reply reader (cli/http-reply.ts) and the API client over a
// plain socket (cli/api-client.ts): Content-Length, chunked and close-framed
// replies, split anywhere; malformed or oversized replies as ReplyError, never
// a crash (seeded random bytes); and the client against real servers that
// answer chunked, close without a word, or speak something else.

import net from 'node:net';
import http from 'node:http';
import t from 'tap';
import { ApiClient } from '../../cli/api-client';
import { decodeChunked, HttpReplyReader, MAX_HEAD_BYTES, ReplyError } from '../../cli/http-reply';
import { randomInt, SeededRng } from '../../common/rng';
import { tempSocketPath } from './temp-socket';

/** Feeds `text` in pieces of `step` bytes; the reply, and whether push() said it was whole before the end. */
function read(text: string | Buffer, step = 1_000_000, max = 1024): { status: number; body: string; early: boolean } {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const r = new HttpReplyReader(max);
  let early = false;
  for (let off = 0; off < bytes.length && !early; off += step) early = r.push(bytes.subarray(off, off + step));
  const reply = r.reply();
  return { status: reply.status, body: reply.body.toString('latin1'), early };
}

t.test('framing: Content-Length (whole before the end), chunked, to the end; split at every byte', async (t) => {
  const cl = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}';
  for (const step of [1, 2, 5, 1000]) t.same(read(cl, step), { status: 200, body: '{"a":1}', early: true }, `step ${step}`);
  t.same(read(cl + 'junk after').body, '{"a":1}', 'bytes past the length are not the body');
  const chunked = 'HTTP/1.1 400 Bad Request\r\ntransfer-encoding: Chunked\r\n\r\n3;ext=1\r\n{"e\r\n6\r\nrror"}\r\n0\r\nTrailer: x\r\n\r\n';
  for (const step of [1, 3, 1000]) t.same(read(chunked, step), { status: 400, body: '{"error"}', early: false }, `chunked, step ${step}`);
  t.same(read('HTTP/1.0 200 OK\r\n\r\n[1,2]'), { status: 200, body: '[1,2]', early: false }, 'no length: the body runs to the end');
  t.same(read('HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n'), { status: 204, body: '', early: true }, '204 has no body');
  t.same(read('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), { status: 200, body: '', early: true });
});

t.test('malformed and oversized replies are ReplyErrors that say what', async (t) => {
  const cases: [string | Buffer, ReplyError['problem'], RegExp][] = [
    ['', 'no-reply', /ended before its status line/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\n', 'no-reply', /ended before its status line/],
    ['SSH-2.0-OpenSSH_9.2\r\n\r\n', 'malformed', /is not HTTP: "SSH-2\.0/],
    ['HTTP/1.1 20 OK\r\n\r\n', 'malformed', /is not HTTP/],
    ['HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', 'malformed', /malformed header line/],
    ['HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', 'malformed', /bad Content-Length "-1"/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n', 'malformed', /bad Content-Length/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 'malformed', /bad Content-Length/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 'malformed', /both Content-Length and chunked/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'malformed', /unsupported Transfer-Encoding "gzip"/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc', 'malformed', /ended after 3 of its 5 bytes/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n', 'too-big', /is over 1024 bytes/],
    ['HTTP/1.1 200 OK\r\n\r\n' + 'x'.repeat(1025), 'too-big', /is over 1024 bytes/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n' + 'x'.repeat(1025) + '\r\n0\r\n\r\n', 'too-big', /is over 1024 bytes/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab', 'malformed', /ended inside a chunk/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'malformed', /bad chunk size "zz"/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n', 'malformed', /bad chunk size/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n', 'malformed', /does not end where its size says/],
    ['HTTP/1.1 200 OK\r\nX: ' + 'y'.repeat(MAX_HEAD_BYTES) + '\r\n\r\n', 'too-big', /head over/],
  ];
  for (const [text, problem, message] of cases) {
    t.throws(() => read(text, 7), { name: 'ReplyError', problem, message }, JSON.stringify(text).slice(0, 60));
  }
  t.throws(() => new HttpReplyReader(1024).push(Buffer.alloc(MAX_HEAD_BYTES + 1, 0x41)), { name: 'ReplyError', message: /head over/ }, 'a head without an end is refused once past the cap');
  t.equal(decodeChunked(Buffer.from('0\r\n\r\n'), 10).length, 0);
});

t.test('seeded random bytes and mutated replies: a reply or a ReplyError, never anything else', async (t) => {
  const seed = 0x4e7;
  const rng = new SeededRng(seed);
  const base = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n', 'latin1');
  let replies = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = Buffer.from(base);
    if (i % 2 === 0) {
      for (let k = 0; k < 1 + randomInt(rng, 4); k++) bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
    } else {
      for (let k = 0; k < bytes.length; k++) bytes[k] = randomInt(rng, 4) === 0 ? randomInt(rng, 256) : (base[k] as number);
    }
    const cut = bytes.subarray(0, randomInt(rng, bytes.length + 1));
    try {
      read(cut, 1 + randomInt(rng, 20), 64);
      replies++;
    } catch (err) {
      if (!(err instanceof ReplyError)) t.fail(`seed ${seed}, case ${i}: ${String(err)} on ${JSON.stringify(cut.toString('latin1'))}`);
    }
  }
  t.ok(replies > 0, `${replies} of 3000 still read as a reply`);
});

t.test('ApiClient over a socket: chunked replies, a router that closes without a word, something else answering', async (t) => {
  const sock = tempSocketPath(t);
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      if (req.url === '/slow-chunks') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"echo":');
        setTimeout(() => res.end(`${body}}`), 30);
      } else {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: `no route ${req.url}` }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = new ApiClient(sock);
  t.same(await client.post('/slow-chunks', { x: 'é' }), { echo: { x: 'é' } }, 'a body sent, a chunked reply after a pause read whole');
  await t.rejects(client.get('/nope'), { kind: 'http', statusCode: 404, message: 'no route /nope' });

  const silent = tempSocketPath(t, 'silent.sock');
  const closer = net.createServer((s) => s.once('data', () => s.end()));
  await new Promise<void>((resolve) => closer.listen(silent, resolve));
  t.teardown(() => new Promise<void>((resolve) => closer.close(() => resolve())));
  await t.rejects(new ApiClient(silent).get('/status'), { kind: 'not-running', message: `weave router is not running (the connection on ${silent} was closed)` });

  const other = tempSocketPath(t, 'other.sock');
  const talker = net.createServer((s) => s.once('data', () => s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n')));
  await new Promise<void>((resolve) => talker.listen(other, resolve));
  t.teardown(() => new Promise<void>((resolve) => talker.close(() => resolve())));
  await t.rejects(new ApiClient(other).get('/status'), { kind: 'protocol', message: `reply from ${other} is not HTTP: "SSH-2.0-OpenSSH_9.2"; is that a weave router?` });
});
