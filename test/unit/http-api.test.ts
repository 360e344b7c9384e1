import http from 'node:http';
import t from 'tap';
import type { RouterControl } from '../../router/api/control';
import { RouterError } from '../../router/mesh/errors';
import { HttpError } from '../../common/api-route';
import { HttpApi } from '../../router/api/http-api';
import { parseLoopbackAddress } from '../../router/api/loopback-address';
import { StatusServer } from '../../router/api/status-server';
import type { RouterStatus } from '../../router/mesh/status';
import { ApiClient, ApiError, resolveApiAddress } from '../../cli/api-client';
import { sampleStatus } from './sample-status';

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

function request(port: number, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
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

async function startApi(t: { teardown(fn: () => unknown): void }, maxBodyBytes?: number): Promise<{ api: HttpApi; control: FakeControl; port: number }> {
  const control = new FakeControl();
  const api = new HttpApi({ control }, { address: '127.0.0.1:0', ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}) });
  await api.listen();
  t.teardown(() => api.close());
  return { api, control, port: api.address().port };
}

t.test('GET /status returns the RouterStatus as JSON', async (t) => {
  const { port, control } = await startApi(t);
  const r = await request(port, 'GET', '/status');
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.same(r.json, control.current);
  const slash = await request(port, 'GET', '/status/?x=1');
  t.equal(slash.status, 200, 'trailing slash and query string are tolerated');
});

t.test('GET /report carries status plus report sections, a failing section does not fail the report', async (t) => {
  const { api, port } = await startApi(t);
  api.addReportSection('ipam', async () => ({ ranges: 3 }));
  api.addReportSection('dns', () => {
    throw new Error('dns store busy');
  });
  t.throws(() => api.addReportSection('ipam', () => 1), /already registered/);
  t.throws(() => api.addReportSection('status', () => 1), /reserved/);
  const r = await request(port, 'GET', '/report');
  t.equal(r.status, 200);
  const body = r.json as Record<string, unknown>;
  t.equal((body['status'] as RouterStatus).name, sampleStatus().name);
  t.same(body['ipam'], { ranges: 3 });
  t.same(body['dns'], { error: 'dns store busy' });
});

t.test('POST /connect and /forget reach the control with validated bodies', async (t) => {
  const { port, control } = await startApi(t);
  let r = await request(port, 'POST', '/connect', JSON.stringify({ peers: ['10.0.0.9', '10.0.0.8:7000'] }), { 'Content-Type': 'application/json' });
  t.equal(r.status, 200);
  r = await request(port, 'POST', '/connect', JSON.stringify({ peers: ['10.0.0.7'], replace: true }));
  t.equal(r.status, 200);
  r = await request(port, 'POST', '/forget', JSON.stringify({ peers: ['10.0.0.9'] }));
  t.equal(r.status, 200);
  t.same(control.calls, ['connect 10.0.0.9,10.0.0.8:7000 replace=false', 'connect 10.0.0.7 replace=true', 'forget 10.0.0.9']);

  for (const [body, pattern] of [
    ['{"peers": "10.0.0.1"}', /"peers" must be an array/],
    ['{"peers": [1]}', /every peer must be a string/],
    ['{"peers": [], "replace": "yes"}', /"replace" must be true or false/],
    ['[]', /expects a JSON object/],
    ['', /expects a JSON object/],
  ] as const) {
    const bad = await request(port, 'POST', '/connect', body);
    t.equal(bad.status, 400, `body ${body}`);
    t.match((bad.json as { error: string }).error, pattern);
  }
  t.equal(control.calls.length, 3, 'bad bodies never reached the router');
});

t.test('RouterError config from the router is a 400 with its message', async (t) => {
  const { port } = await startApi(t);
  const r = await request(port, 'POST', '/connect', JSON.stringify({ peers: ['bad'] }));
  t.equal(r.status, 400);
  t.same(r.json, { error: 'peer address "bad": not a host' });
});

t.test('bad JSON is a 400 with an error message', async (t) => {
  const { port, control } = await startApi(t);
  const r = await request(port, 'POST', '/connect', '{"peers": [');
  t.equal(r.status, 400);
  t.match((r.json as { error: string }).error, /not valid JSON/);
  t.same(control.calls, []);
});

t.test('unknown path is 404, wrong method is 405 with Allow', async (t) => {
  const { port } = await startApi(t);
  const nf = await request(port, 'GET', '/nope');
  t.equal(nf.status, 404);
  t.match((nf.json as { error: string }).error, /no such endpoint: \/nope/);
  const wm = await request(port, 'GET', '/connect');
  t.equal(wm.status, 405);
  t.equal(wm.headers['allow'], 'POST');
  const wm2 = await request(port, 'DELETE', '/status');
  t.equal(wm2.status, 405);
});

t.test('POST /stop answers first, then stops the router', async (t) => {
  const { port, control } = await startApi(t);
  const r = await request(port, 'POST', '/stop');
  t.equal(r.status, 200);
  t.same(r.json, { stopping: true });
  // 'finish' fires once the reply is handed to the socket; give it a tick.
  await new Promise((resolve) => setImmediate(resolve));
  t.same(control.calls, ['stop']);
});

t.test('a crashing handler is a 500 with its message and the server keeps serving', async (t) => {
  const { api, port } = await startApi(t);
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
  let r = await request(port, 'GET', '/boom');
  t.equal(r.status, 500);
  t.same(r.json, { error: 'kaboom' });
  r = await request(port, 'GET', '/async-boom');
  t.equal(r.status, 500);
  t.same(r.json, { error: 'late kaboom' });
  r = await request(port, 'GET', '/teapot');
  t.equal(r.status, 418);
  r = await request(port, 'GET', '/cycle');
  t.equal(r.status, 500);
  r = await request(port, 'GET', '/status');
  t.equal(r.status, 200, 'still serving');
});

t.test('extension routes: params, async handlers, duplicates refused', async (t) => {
  const { api, port } = await startApi(t);
  api.route('DELETE', '/ipam/claims/:cidr', async (req) => ({ released: req.params['cidr'], force: req.query.get('force') }));
  t.throws(() => api.route('delete', '/ipam/claims/:other', () => 1), /already registered/);
  const r = await request(port, 'DELETE', '/ipam/claims/10.32.0.0%2F12?force=1');
  t.equal(r.status, 200);
  t.same(r.json, { released: '10.32.0.0/12', force: '1' });
});

t.test('oversize bodies are refused with 413, declared or streamed', async (t) => {
  const { port, control } = await startApi(t, 1024);
  const big = JSON.stringify({ peers: Array.from({ length: 200 }, (_, i) => `10.0.${i % 250}.1`) });
  t.ok(big.length > 1024);
  const declared = await request(port, 'POST', '/connect', big);
  t.equal(declared.status, 413);
  t.match((declared.json as { error: string }).error, /over the limit of 1024 bytes/);
  // Chunked: no Content-Length, so the limit must hold while reading.
  const streamed = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/connect', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write(big.slice(0, 600));
    req.write(big.slice(600));
    req.end();
  });
  t.equal(streamed, 413);
  t.same(control.calls, []);
  const ok = await request(port, 'GET', '/status');
  t.equal(ok.status, 200);
});

t.test('requests from web pages and foreign Host headers are refused', async (t) => {
  const { port, control } = await startApi(t);
  const r = await request(port, 'POST', '/stop', '', { Origin: 'http://evil.example' });
  t.equal(r.status, 403);
  const h = await request(port, 'GET', '/status', undefined, { Host: 'evil.example:6784' });
  t.equal(h.status, 403);
  const ok = await request(port, 'GET', '/status', undefined, { Host: 'localhost:6784' });
  t.equal(ok.status, 200);
  t.same(control.calls, []);
});

t.test('only loopback addresses are accepted', async (t) => {
  const control = new FakeControl();
  const refused = [
    '0.0.0.0:6784', '10.1.2.3:6784', '[::]:6784', 'example.com:6784', '127.0.0.1', '127.0.0.1:70000',
    '127.000.0.1:6784', '0177.0.0.1:6784', '127.1:6784', '[::1%lo]:6784', // leading zeros, short forms and zone ids are not addresses
  ];
  for (const bad of refused) {
    t.throws(() => new HttpApi({ control }, { address: bad }), { name: 'RouterError', code: 'config' }, bad);
  }
  t.same(parseLoopbackAddress('localhost:6784', 'x'), { host: '127.0.0.1', port: 6784 });
  t.same(parseLoopbackAddress('[::1]:6784', 'x'), { host: '::1', port: 6784 });
  t.same(parseLoopbackAddress('127.0.0.2:1', 'x'), { host: '127.0.0.2', port: 1 });
  t.same(parseLoopbackAddress('[0:0:0:0:0:0:0:1]:6784', 'x'), { host: '::1', port: 6784 }, 'IPv6 in its canonical spelling');
  t.same(parseLoopbackAddress('[::ffff:127.0.0.1]:6784', 'x'), { host: '::ffff:7f00:1', port: 6784 });
});

t.test('listen on a taken port rejects with a clear message', async (t) => {
  const { port } = await startApi(t);
  const second = new HttpApi({ control: new FakeControl() }, { address: `127.0.0.1:${port}` });
  await t.rejects(second.listen(), { code: 'io', message: /another weave router is probably running in this network namespace/ });
  await second.close();
});

t.test('ApiClient: results, API errors as messages, not running, timeouts', async (t) => {
  const { api, port, control } = await startApi(t);
  const client = new ApiClient(`127.0.0.1:${port}`);
  t.same(await client.get('/status'), control.current);
  await client.post('/connect', { peers: ['10.0.0.5'] });
  t.same(control.calls, ['connect 10.0.0.5 replace=false']);
  await t.rejects(client.post('/connect', { peers: ['bad'] }), { name: 'ApiError', kind: 'http', statusCode: 400, message: 'peer address "bad": not a host' });
  t.equal(await client.ping(), true);

  api.route('GET', '/slow', () => new Promise((resolve) => setTimeout(() => resolve({}), 400)));
  await t.rejects(client.get('/slow', 100), { kind: 'timeout', message: /did not answer on 127\.0\.0\.1:\d+ within 0\.1 s/ });

  // A port nobody listens on: bind one, learn its number, close it.
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const free = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const dead = new ApiClient(`127.0.0.1:${free}`);
  const err = await dead.get('/status').catch((e: unknown) => e);
  t.ok(err instanceof ApiError);
  t.equal((err as ApiError).message, `weave router is not running (no answer on 127.0.0.1:${free})`);
  t.equal(await dead.ping(), false);
});

t.test('resolveApiAddress: flag, then WEAVE_API, then default; loopback only', async (t) => {
  t.equal(resolveApiAddress(undefined, {}), '127.0.0.1:6784');
  t.equal(resolveApiAddress(undefined, { WEAVE_API: '127.0.0.5:7000' }), '127.0.0.5:7000');
  t.equal(resolveApiAddress('http://localhost:7001/', { WEAVE_API: '127.0.0.5:7000' }), '127.0.0.1:7001');
  t.throws(() => resolveApiAddress('192.168.1.1:6784', {}), { code: 'config', message: /--api must be a loopback address/ });
  t.throws(() => resolveApiAddress(undefined, { WEAVE_API: 'nonsense' }), { code: 'config', message: /WEAVE_API must be host:port/ });
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
