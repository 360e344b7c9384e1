// The keeper of the Docker network `weave` against a fake engine on a Unix
// socket: no engine yet (waiting, with the reason for status), the engine
// appearing (the network is created with our driver for network and IPAM),
// a network already there (kept), one of the same name with another driver
// (left alone, reported), and removal at weave reset.

import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../common/logger';
import { PluginNetworkKeeper } from '../../router/host/docker-plugin-engine';
import { waitFor } from '../../scripts/wait';

interface FakeEngine {
  networks: Map<string, { Driver: string; IPAM: { Driver: string } }>;
  created: unknown[];
  close(): Promise<void>;
}

async function engine(sock: string): Promise<FakeEngine> {
  const networks = new Map<string, { Driver: string; IPAM: { Driver: string } }>();
  const created: unknown[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const name = decodeURIComponent((req.url ?? '').replace(/^\/networks\//, ''));
      const send = (status: number, body: unknown): void => { res.writeHead(status, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(body)); };
      if (req.method === 'POST' && req.url === '/networks/create') {
        const b = JSON.parse(Buffer.concat(chunks).toString()) as { Name: string; Driver: string; IPAM: { Driver: string } };
        created.push(b);
        networks.set(b.Name, { Driver: b.Driver, IPAM: b.IPAM });
        send(201, { Id: 'x' });
      } else if (req.method === 'GET') {
        const n = networks.get(name);
        if (n === undefined) send(404, { message: `network ${name} not found` });
        else send(200, n);
      } else if (req.method === 'DELETE') {
        if (!networks.delete(name)) send(404, { message: 'not found' });
        else { res.writeHead(204); res.end(); }
      } else send(400, { message: 'unexpected' });
    });
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  return { networks, created, close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

t.test('waits for the engine, then makes the network with our driver; keeps, refuses, removes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-keeper-'));
  const sock = path.join(dir, 'docker.sock');
  const keeper = new PluginNetworkKeeper(sock, silentLogger, 100);
  t.teardown(() => { keeper.stop(); fs.rmSync(dir, { recursive: true, force: true }); });
  keeper.start();
  await waitFor(() => keeper.status().problem?.startsWith('cannot reach Docker') === true, { what: 'the reason there is no network', timeoutMs: 5_000 });
  t.match(keeper.status(), { state: 'waiting', problem: new RegExp(`cannot reach Docker at ${sock}.*made once it answers`) });
  const fake = await engine(sock);
  t.teardown(() => fake.close());
  await waitFor(() => keeper.status().state === 'ready', { what: 'the network once the engine answers', timeoutMs: 5_000 });
  t.match(fake.created, [{ Name: 'weave', Driver: 'weave', IPAM: { Driver: 'weave' }, CheckDuplicate: true }], 'created with our network and IPAM driver');

  const again = new PluginNetworkKeeper(sock, silentLogger, 100);
  again.start();
  await waitFor(() => again.status().state === 'ready', { what: 'an existing network kept', timeoutMs: 5_000 });
  t.equal(fake.created.length, 1, 'not created twice');
  await again.remove();
  t.notOk(fake.networks.has('weave'), 'weave reset removes it');
  await again.remove();
  t.pass('removing a network that is gone is no error');

  fake.networks.set('weave', { Driver: 'bridge', IPAM: { Driver: 'default' } });
  const other = new PluginNetworkKeeper(sock, silentLogger, 100);
  other.start();
  await waitFor(() => other.status().state === 'conflict', { what: 'a foreign network named weave reported', timeoutMs: 5_000 });
  t.match(other.status().problem, /exists with driver "bridge": it is left alone/);
  t.equal(fake.networks.get('weave')?.Driver, 'bridge', 'and left alone');
  other.stop();
});
