// Unit tests of the Docker client: parsing inspect replies and events, and
// the client itself against a fake Docker on a unix socket (inspect, errors,
// an event stream that breaks and is reconnected).

import t from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerClient, parseEvent, parseInspect } from '../../router/host/docker-client';
import { silentLogger } from '../../common/logger';

t.test('Docker reply parsing', async (t) => {
  const id = 'c'.repeat(64);
  t.same(parseInspect({ Id: id, Name: '/web', State: { Pid: 42, Running: true } }, 'web'), { id, name: 'web', pid: 42, running: true });
  t.same(parseInspect({ Id: id, Name: '/web', State: { Pid: 0, Running: false } }, 'web'), { id, name: 'web', pid: 0, running: false });
  t.throws(() => parseInspect({ Name: '/x' }, 'x'), /no container id/);
  t.same(parseEvent(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: id, Attributes: { name: 'web' } }, time: 5 })),
    { action: 'start', id, name: 'web', timeSec: 5 });
  t.equal(parseEvent(JSON.stringify({ Type: 'container', Action: 'exec_start', Actor: { ID: id } })), null);
  t.equal(parseEvent(JSON.stringify({ Type: 'network', Action: 'start' })), null);
  t.equal(parseEvent('{not json'), null);
});

t.test('Docker client over a unix socket: inspect, errors, events with reconnect', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weave-fake-docker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'docker.sock');
  const id = 'd'.repeat(64);
  let eventConnections = 0;
  const queries: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker');
    if (url.pathname === '/containers/web/json') {
      res.end(JSON.stringify({ Id: id, Name: '/web', State: { Pid: 9, Running: true } }));
    } else if (url.pathname.startsWith('/containers/')) {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: 'No such container' }));
    } else if (url.pathname === '/events') {
      eventConnections++;
      queries.push(url.searchParams.get('filters') ?? '');
      res.write(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: id, Attributes: { name: 'web' } }, time: 100 }) + '\n');
      // The first stream breaks after one event; the client must come back.
      if (eventConnections === 1) res.end(JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: id }, time: 101 }) + '\n');
    } else {
      res.end('OK');
    }
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  t.teardown(() => { server.closeAllConnections(); server.close(); });

  const client = new DockerClient(silentLogger, { socketPath });
  t.equal(await client.ping(), true);
  t.same(await client.inspect('web'), { id, name: 'web', pid: 9, running: true });
  t.equal(await client.inspect('nosuch'), null);
  await t.rejects(client.inspect('../etc'), { code: 'config' });
  const absent = new DockerClient(silentLogger, { socketPath: join(dir, 'absent.sock') });
  await t.rejects(absent.inspect('web'), { message: `cannot reach Docker at ${join(dir, 'absent.sock')}: is dockerd running?` });
  t.equal(await absent.ping(), false);

  const seen: string[] = [];
  const watch = client.watchEvents((ev) => seen.push(`${ev.action} ${ev.timeSec}`));
  t.teardown(() => watch.close());
  const deadline = Date.now() + 5000;
  while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  watch.close();
  t.same(seen.slice(0, 3), ['start 100', 'die 101', 'start 100'], 'reconnected after the stream ended');
  t.same(JSON.parse(queries[0] ?? '{}'), { type: ['container'], event: ['start', 'die', 'destroy'] });
});
