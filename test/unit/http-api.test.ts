import http from 'node:http';
import path from 'node:path';
import t from 'tap';
import type { RouterControl } from '../../router/api/control';
import { RouterError } from '../../router/mesh/errors';
import { HttpError } from '../../common/api-route';
import { HttpApi } from '../../router/api/http-api';
import { parseLoopbackAddress } from '../../router/api/loopback-address';
import { StatusServer } from '../../router/api/status-server';
import type { RouterStatus } from '../../router/mesh/status';
import { ApiClient, ApiError } from '../../cli/api-client';
import { sampleStatus } from './sample-status';
import { tempSocketPath } from './temp-socket';

class FakeControl implements RouterControl {
  calls: string[] = [];
  current: RouterStatus = sampleStatus();

  status(): RouterStatus {
    return this.current;
  }

  connect(addresses: string[], replace: boolean): void {
    if (addresses.includes('bad')) throw RouterError.config('peer address "bad": not a host');
    this.calls.push(`connect ${addresses.join(',')} replace=${replace}`);
  }

  forget(addresses: string[]): void {
    this.calls.push(`forget ${addresses.join(',')}`);
  }

  stop(): void {
    this.calls.push('stop');
  }
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/** A port on 127.0.0.1 (the status server) or a Unix socket path (the API). */
function where(to: number | string): { host: string; port: number } | { socketPath: string } {
  return typeof to === 'number' ? { host: '127.0.0.1', port: to } : { socketPath: to };
}

function request(to: number | string, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where(to), method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = undefined;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function startApi(t: { teardown(fn: () => unknown): void }, maxBodyBytes?: number): Promise<{ api: HttpApi; control: FakeControl; sock: string }> {
  const control = new FakeControl();
  const api = new HttpApi({ control }, { socketPath: tempSocketPath(t), gid: null, ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}) });
  await api.listen();
  t.teardown(() => api.close());
  return { api, control, sock: api.socketPath() };
}

t.test('GET /status returns the RouterStatus as JSON', async (t) => {
  const { sock, control } = await startApi(t);
  const r = await request(sock, 'GET', '/status');
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.same(r.json, control.current);
  const slash = await request(sock, 'GET', '/status/?x=1');
  t.equal(slash.status, 200, 'trailing slash and query string are tolerated');
});

t.test('GET /report carries status plus report sections, a failing section does not fail the report', async (t) => {
  const { api, sock } = await startApi(t);
  api.addReportSection('ipam', async () => ({ ranges: 3 }));
  api.addReportSection('dns', () => {
    throw new Error('dns store busy');
  });
  t.throws(() => api.addReportSection('ipam', () => 1), /already registered/);
  t.throws(() => api.addReportSection('status', () => 1), /reserved/);
  const r = await request(sock, 'GET', '/report');
  t.equal(r.status, 200);
  const body = r.json as Record<string, unknown>;
  t.equal((body['status'] as RouterStatus).name, sampleStatus().name);
  t.same(body['ipam'], { ranges: 3 });
  t.same(body['dns'], { error: 'dns store busy' });
});

t.test('POST /connect and /forget reach the control with validated bodies', async (t) => {
  const { sock, control } = await startApi(t);
  let r = await request(sock, 'POST', '/connect', JSON.stringify({ peers: ['10.0.0.9', '10.0.0.8:7000'] }), { 'Content-Type': 'application/json' });
  t.equal(r.status, 200);
  r = await request(sock, 'POST', '/connect', JSON.stringify({ peers: ['10.0.0.7'], replace: true }));
  t.equal(r.status, 200);
  r = await request(sock, 'POST', '/forget', JSON.stringify({ peers: ['10.0.0.9'] }));
  t.equal(r.status, 200);
  t.same(control.calls, ['connect 10.0.0.9,10.0.0.8:7000 replace=false', 'connect 10.0.0.7 replace=true', 'forget 10.0.0.9']);

  for (const [body, pattern] of [
    ['{"peers": "10.0.0.1"}', /"peers" must be an array/],
    ['{"peers": [1]}', /every peer must be a string/],
    ['{"peers": [], "replace": "yes"}', /"replace" must be true or false/],
    ['[]', /expects a JSON object/],
    ['', /expects a JSON object/],
  ] as const) {
    const bad = await request(sock, 'POST', '/connect', body);
    t.equal(bad.status, 400, `body ${body}`);
    t.match((bad.json as { error: string }).error, pattern);
  }
  t.equal(control.calls.length, 3, 'bad bodies never reached the router');
});

t.test('RouterError config from the router is a 400 with its message', async (t) => {
  const { sock } = await startApi(t);
  const r = await request(sock, 'POST', '/connect', JSON.stringify({ peers: ['bad'] }));
  t.equal(r.status, 400);
  t.same(r.json, { error: 'peer address "bad": not a host' });
});

t.test('bad JSON is a 400 with an error message', async (t) => {
  const { sock, control } = await startApi(t);
  const r = await request(sock, 'POST', '/connect', '{"peers": [');
  t.equal(r.status, 400);
  t.match((r.json as { error: string }).error, /not valid JSON/);
  t.same(control.calls, []);
});

t.test('unknown path is 404, wrong method is 405 with Allow', async (t) => {
  const { sock } = await startApi(t);
  const nf = await request(sock, 'GET', '/nope');
  t.equal(nf.status, 404);
  t.match((nf.json as { error: string }).error, /no such endpoint: \/nope/);
  const wm = await request(sock, 'GET', '/connect');
  t.equal(wm.status, 405);
  t.equal(wm.headers['allow'], 'POST');
  const wm2 = await request(sock, 'DELETE', '/status');
  t.equal(wm2.status, 405);
});

t.test('POST /stop answers first, then stops the router', async (t) => {
  const { sock, control } = await startApi(t);
  const r = await request(sock, 'POST', '/stop');
  t.equal(r.status, 200);
  t.same(r.json, { stopping: true });
  // 'finish' fires once the reply is handed to the socket; give it a tick.
  await new Promise((resolve) => setImmediate(resolve));
  t.same(control.calls, ['stop']);
});

t.test('a crashing handler is a 500 with its message and the server keeps serving', async (t) => {
  const { api, sock } = await startApi(t);
  api.route('GET', '/boom', () => {
    throw new Error('kaboom');
  });
  api.route('GET', '/async-boom', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    throw new TypeError('late kaboom');
  });
  api.route('GET', '/teapot', () => {
    throw new HttpError(418, 'short and stout');
  });
  api.route('GET', '/cycle', () => {
    const o: Record<string, unknown> = {};
    o['self'] = o;
    return o;
  });
  let r = await request(sock, 'GET', '/boom');
  t.equal(r.status, 500);
  t.same(r.json, { error: 'kaboom' });
  r = await request(sock, 'GET', '/async-boom');
  t.equal(r.status, 500);
  t.same(r.json, { error: 'late kaboom' });
  r = await request(sock, 'GET', '/teapot');
  t.equal(r.status, 418);
  r = await request(sock, 'GET', '/cycle');
  t.equal(r.status, 500);
  r = await request(sock, 'GET', '/status');
  t.equal(r.status, 200, 'still serving');
});

t.test('extension routes: params, async handlers, duplicates refused', async (t) => {
  const { api, sock } = await startApi(t);
  api.route('DELETE', '/ipam/claims/:cidr', async (req) => ({ released: req.params['cidr'], force: req.query.get('force') }));
  t.throws(() => api.route('delete', '/ipam/claims/:other', () => 1), /already registered/);
  const r = await request(sock, 'DELETE', '/ipam/claims/10.32.0.0%2F12?force=1');
  t.equal(r.status, 200);
  t.same(r.json, { released: '10.32.0.0/12', force: '1' });
});

t.test('oversize bodies are refused with 413, declared or streamed', async (t) => {
  const { sock, control } = await startApi(t, 1024);
  const big = JSON.stringify({ peers: Array.from({ length: 200 }, (_, i) => `10.0.${i % 250}.1`) });
  t.ok(big.length > 1024);
  const declared = await request(sock, 'POST', '/connect', big);
  t.equal(declared.status, 413);
  t.match((declared.json as { error: string }).error, /over the limit of 1024 bytes/);
  // Chunked: no Content-Length, so the limit must hold while reading.
  const streamed = await new Promise<number>((resolve, reject) => {
    const req = http.request({ socketPath: sock, method: 'POST', path: '/connect', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write(big.slice(0, 600));
    req.write(big.slice(600));
    req.end();
  });
  t.equal(streamed, 413);
  // Declared too big and never sent: refused from the header alone, without waiting for a byte of it.
  const unsent = await new Promise<number>((resolve, reject) => {
    const req = http.request({ socketPath: sock, method: 'POST', path: '/connect', agent: false, headers: { 'Content-Length': String(1 << 30) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.flushHeaders();
    t.teardown(() => req.destroy());
  });
  t.equal(unsent, 413);
  t.same(control.calls, []);
  const ok = await request(sock, 'GET', '/status');
  t.equal(ok.status, 200);
});

t.test('requests from web pages and foreign Host headers are refused', async (t) => {
  const { sock, control } = await startApi(t);
  const r = await request(sock, 'POST', '/stop', '', { Origin: 'http://evil.example' });
  t.equal(r.status, 403);
  const h = await request(sock, 'GET', '/status', undefined, { Host: 'evil.example:6784' });
  t.equal(h.status, 403);
  const ok = await request(sock, 'GET', '/status', undefined, { Host: 'localhost:6784' });
  t.equal(ok.status, 200);
  t.same(control.calls, []);
});

t.test('the status server takes loopback addresses only', async (t) => {
  const status = sampleStatus();
  const refused = [
    '0.0.0.0:6782', '10.1.2.3:6782', '[::]:6782', 'example.com:6782', '127.0.0.1', '127.0.0.1:70000',
    '127.000.0.1:6782', '0177.0.0.1:6782', '127.1:6782', '[::1%lo]:6782', // leading zeros, short forms and zone ids are not addresses
  ];
  for (const bad of refused) {
    t.throws(() => new StatusServer({ status: () => status, renderText: () => '' }, { address: bad }), { name: 'RouterError', code: 'config' }, bad);
  }
  t.same(parseLoopbackAddress('localhost:6784', 'x'), { host: '127.0.0.1', port: 6784 });
  t.same(parseLoopbackAddress('[::1]:6784', 'x'), { host: '::1', port: 6784 });
  t.same(parseLoopbackAddress('127.0.0.2:1', 'x'), { host: '127.0.0.2', port: 1 });
  t.same(parseLoopbackAddress('[0:0:0:0:0:0:0:1]:6784', 'x'), { host: '::1', port: 6784 }, 'IPv6 in its canonical spelling');
  t.same(parseLoopbackAddress('[::ffff:127.0.0.1]:6784', 'x'), { host: '::ffff:7f00:1', port: 6784 });
});

t.test('a second API on a live socket is refused, the first keeps answering', async (t) => {
  const { sock } = await startApi(t);
  const second = new HttpApi({ control: new FakeControl() }, { socketPath: sock, gid: null });
  await t.rejects(second.listen(), { code: 'io', message: `another weave router is answering on ${sock}; stop it first (weave stop) or use another data directory` });
  await second.close();
  t.equal((await request(sock, 'GET', '/status')).status, 200);
});

t.test('ApiClient: results, API errors as messages, not running, timeouts', async (t) => {
  const { api, sock, control } = await startApi(t);
  const client = new ApiClient(sock);
  t.same(await client.get('/status'), control.current);
  await client.post('/connect', { peers: ['10.0.0.5'] });
  t.same(control.calls, ['connect 10.0.0.5 replace=false']);
  await t.rejects(client.post('/connect', { peers: ['bad'] }), { name: 'ApiError', kind: 'http', statusCode: 400, message: 'peer address "bad": not a host' });
  t.equal(await client.ping(), true);

  api.route('GET', '/slow', () => new Promise((resolve) => setTimeout(() => resolve({}), 400)));
  await t.rejects(client.get('/slow', 100), { kind: 'timeout', message: `weave router did not answer on ${sock} within 0.1 s` });

  const missing = path.join(path.dirname(sock), 'none.sock');
  const dead = new ApiClient(missing);
  const err = await dead.get('/status').catch((e: unknown) => e);
  t.ok(err instanceof ApiError);
  t.equal((err as ApiError).message, `weave router is not running (no socket at ${missing})`);
  t.equal(await dead.ping(), false);
});

t.test('status server: text, JSON and metrics, read-only', async (t) => {
  const status = sampleStatus({ encryption: false });
  const server = new StatusServer({ status: () => status, renderText: (s) => `rendered ${s.nickname}\n` }, { address: '127.0.0.1:0' });
  await server.listen();
  t.teardown(() => server.close());
  const { port } = server.address();
  const text = await request(port, 'GET', '/status');
  t.equal(text.status, 200);
  t.match(text.headers['content-type'], /^text\/plain/);
  t.equal(text.text, 'rendered host1\n');
  const json = await request(port, 'GET', '/status/json');
  t.same(json.json, status);
  const metrics = await request(port, 'GET', '/metrics');
  t.match(metrics.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  t.match(metrics.text, /^weave_encryption_enabled 0$/m);
  const post = await request(port, 'POST', '/status', '{}');
  t.equal(post.status, 405);
  t.throws(() => new StatusServer({ status: () => status, renderText: () => '' }, { address: '0.0.0.0:6782' }), { code: 'config' });
});
