// Access to the API socket without a kernel boundary: where the socket is for
// a data directory, what a refused or unlucky client is told, what the daemon
// does with whatever already sits at the path, the socket's mode and group,
// and that the open status port has no route that changes anything.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { ApiClient, socketGroupName } from '../../cli/api-client';
import {
  apiSocketFor, checkSocketPath, DEFAULT_API_SOCKET, lookupApiGroup, parseGroupLine, permissionDeniedMessage, resolveApiSocket,
} from '../../cli/api-socket';
import type { GroupEntry } from '../../cli/api-socket';
import { HttpApi } from '../../router/api/http-api';
import { StatusServer } from '../../router/api/status-server';
import { claimSocketPath, socketPathState } from '../../router/api/unix-socket';
import type { RouterControl } from '../../router/api/control';
import { sampleStatus } from './sample-status';
import { tempSocketPath } from './temp-socket';

const rootOnly = { skip: process.geteuid?.() !== 0 ? 'chown needs root' : false };
const control: RouterControl = { status: () => sampleStatus(), connect: () => undefined, forget: () => undefined, stop: () => undefined };

t.test('the socket path follows the data directory', async (t) => {
  t.equal(apiSocketFor('/var/lib/weave'), DEFAULT_API_SOCKET);
  t.equal(apiSocketFor('/var/lib/weave/'), '/run/weave/weave.sock', 'a trailing slash is the same directory');
  const a = apiSocketFor('/tmp/weave-sim-x/h1');
  t.match(a, /^\/run\/weave\/weave-[0-9a-f]{16}\.sock$/);
  t.equal(a.length, 38, 'always well inside sun_path');
  t.not(a, apiSocketFor('/tmp/weave-sim-x/h2'), 'one socket per data directory');
  t.equal(apiSocketFor('/tmp/weave-sim-x/./h1'), a, 'the path as normalised, like the daemon sees it');
  t.equal(apiSocketFor(`/${'d'.repeat(300)}`).length, 38, 'a deep datadir still fits');
  const cwd = process.cwd();
  t.equal(apiSocketFor('rel'), apiSocketFor(path.join(cwd, 'rel')), 'relative means from here');

  t.equal(resolveApiSocket(undefined, {}), DEFAULT_API_SOCKET);
  t.equal(resolveApiSocket(undefined, { WEAVE_DATADIR: '/tmp/d1' }), apiSocketFor('/tmp/d1'));
  t.equal(resolveApiSocket(undefined, { WEAVE_DATADIR: '/tmp/d1' }, '/tmp/d2'), apiSocketFor('/tmp/d2'), 'an explicit datadir wins');
  t.equal(resolveApiSocket(undefined, { WEAVE_DATADIR: '/tmp/d1', WEAVE_API_SOCKET: '/tmp/s.sock' }), '/tmp/s.sock');
  t.equal(resolveApiSocket('/tmp/flag.sock', { WEAVE_API_SOCKET: '/tmp/s.sock' }), '/tmp/flag.sock', 'the flag wins');
  t.throws(() => resolveApiSocket('127.0.0.1:6784', {}), { code: 'config', message: /--api takes the path of the router's API socket \(the API no longer listens on TCP\)/ });
  t.throws(() => resolveApiSocket(undefined, { WEAVE_API_SOCKET: 'http://localhost:6784/' }), { code: 'config', message: /^WEAVE_API_SOCKET takes the path/ });
  t.throws(() => checkSocketPath('weave.sock', '--api'), { message: '--api must be an absolute path, got "weave.sock"' });
  t.throws(() => checkSocketPath(`/${'s'.repeat(107)}`, '--api'), { message: /at most 107 bytes, got 108/ });
  t.equal(checkSocketPath(`/${'s'.repeat(106)}`, '--api').length, 107, '107 bytes fit');
});

t.test('groups: getent lines, a missing group is a clear error', async (t) => {
  t.same(parseGroupLine('weave:x:1234:alice,bob\n'), { name: 'weave', gid: 1234 });
  t.equal(parseGroupLine('weave:x:'), null);
  t.equal(parseGroupLine('weave:x:12a:'), null);
  const groups: Record<string, GroupEntry> = { weave: { name: 'weave', gid: 1234 }, '1234': { name: 'weave', gid: 1234 } };
  const lookup = (k: string): GroupEntry | null => groups[k] ?? null;
  t.same(lookupApiGroup('weave', lookup), { name: 'weave', gid: 1234 });
  t.throws(() => lookupApiGroup('nosuch', lookup), { code: 'config', message: '--api-group: there is no group "nosuch" on this host (create it with groupadd)' });
  t.throws(() => lookupApiGroup('a:b', lookup), { code: 'config', message: /--api-group must be a group name/ });
  t.same(lookupApiGroup('root'), { name: 'root', gid: 0 }, 'the real getent answers for root');
});

t.test('what a refused or unlucky client is told', rootOnly, async (t) => {
  t.equal(permissionDeniedMessage(null), 'permission denied: weave needs root');
  t.equal(permissionDeniedMessage('weave'), 'permission denied: weave needs root or membership of group weave');

  const sock = tempSocketPath(t);
  const client = new ApiClient(sock);
  await t.rejects(client.get('/status'), { kind: 'not-running', message: `weave router is not running (no socket at ${sock})` });
  t.equal(await client.ping(), false);

  // A socket file nobody listens on, as a router killed with SIGKILL leaves it.
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(sock, resolve));
  const stale = `${sock}.stale`;
  fs.linkSync(sock, stale);
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  const staleClient = new ApiClient(stale);
  await t.rejects(staleClient.get('/status'), { kind: 'not-running', message: `weave router is not running (nothing answers on ${stale}; the socket is left from a router that stopped)` });

  // The group the message names is the socket's, looked up by gid.
  const lookup = (k: string): GroupEntry | null => (k === '4321' ? { name: 'weavers', gid: 4321 } : null);
  const owned = `${sock}.owned`;
  fs.writeFileSync(owned, '');
  t.equal(socketGroupName(owned, lookup), null, "root's group (or ours, as root) names no group");
  fs.chownSync(owned, 0, 4321);
  t.equal(socketGroupName(owned, lookup), 'weavers');
  fs.chownSync(owned, 0, 4322);
  t.equal(socketGroupName(owned, lookup), 'with gid 4322', 'a gid the host has no name for');
  t.equal(socketGroupName(`${sock}.none`, lookup), null);
});

t.test('the daemon replaces a stale socket, refuses a live one, leaves anything else alone', async (t) => {
  const sock = tempSocketPath(t);
  t.equal(await socketPathState(sock), 'absent');

  const old = net.createServer();
  await new Promise<void>((resolve) => old.listen(sock, resolve));
  t.equal(await socketPathState(sock), 'live');
  await t.rejects(claimSocketPath({ path: sock, gid: null }, 'HTTP API'), { code: 'io', message: /another weave router is answering on/ });
  t.ok(fs.existsSync(sock), 'a live socket is never taken');
  // Leave the file behind as a dead daemon would: a hard link outlives the close that unlinks the original.
  const keep = `${sock}.keep`;
  fs.linkSync(sock, keep);
  await new Promise<void>((resolve) => old.close(() => resolve()));
  fs.renameSync(keep, sock);
  t.equal(await socketPathState(sock), 'stale');

  const api = new HttpApi({ control }, { socketPath: sock, gid: null });
  await api.listen();
  t.teardown(() => api.close());
  t.same(await new ApiClient(sock).get('/status'), sampleStatus(), 'the stale socket was replaced by a live API');
  const st = fs.statSync(sock);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o660, 'mode 0660');
  t.equal(st.uid, process.geteuid?.() ?? 0);

  const file = `${sock}.file`;
  fs.writeFileSync(file, 'precious');
  await t.rejects(new HttpApi({ control }, { socketPath: file, gid: null }).listen(), { code: 'config', message: /exists and is not a socket; it was not made by weave, so it is left alone/ });
  t.equal(fs.readFileSync(file, 'utf8'), 'precious');
  const link = `${sock}.link`;
  fs.symlinkSync(sock, link);
  await t.rejects(claimSocketPath({ path: link, gid: null }, 'HTTP API'), { code: 'config', message: /is not a socket/ }, 'a symlink is not followed');
});

t.test('the socket goes to the API group; its directory must be ours alone', rootOnly, async (t) => {
  const sock = tempSocketPath(t);
  // The mode the socket had when the daemon first touched it after the bind: a
  // wider one would let anyone connect before it is handed to the group.
  let boundMode = -1;
  const chown = fs.chownSync;
  t.capture(fs, 'chownSync', (p: fs.PathLike, uid: number, gid: number) => {
    if (p === sock && boundMode < 0) boundMode = fs.statSync(sock).mode & 0o777;
    chown(p, uid, gid);
  });
  const api = new HttpApi({ control }, { socketPath: sock, gid: 4321 });
  await api.listen();
  t.teardown(() => api.close());
  t.equal(boundMode, 0o600, 'bound as 0600, whatever the umask');
  const st = fs.statSync(sock);
  t.equal(st.gid, 4321);
  t.equal(st.mode & 0o777, 0o660);
  await api.close();
  t.notOk(fs.existsSync(sock), 'closing removes the socket');

  const dir = path.dirname(sock);
  fs.chmodSync(dir, 0o777);
  // Closed whatever happens: were it to listen after all, the failure shows at once instead of as a hang.
  const refused = new HttpApi({ control }, { socketPath: sock, gid: null });
  t.teardown(() => refused.close());
  await t.rejects(refused.listen(), { code: 'config', message: /must be owned by uid 0 and writable by nobody else .*others could replace the socket/ });
  fs.chmodSync(dir, 0o700);
});

t.test('the status port has nothing that changes state', async (t) => {
  const server = new StatusServer({ status: () => sampleStatus(), renderText: () => 'text\n' }, { address: '127.0.0.1:0' });
  await server.listen();
  t.teardown(() => server.close());
  const { port } = server.address();
  const ask = (method: string, p: string): Promise<number> => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : '{}');
  });
  // Every state-changing endpoint of the API, asked of the status port.
  for (const p of ['/connect', '/forget', '/stop', '/attach', '/detach', '/expose', '/hide', '/dns', '/dns/remove', '/ipam/allocate', '/ipam/claim', '/ipam/release', '/ipam/reset', '/ipam/rmpeer', '/report', '/ps']) {
    t.equal(await ask('POST', p), 404, `POST ${p}`);
  }
  for (const p of ['/status', '/status/json', '/metrics']) {
    t.equal(await ask('POST', p), 405, `POST ${p}`);
    t.equal(await ask('DELETE', p), 405, `DELETE ${p}`);
    t.equal(await ask('GET', p), 200, `GET ${p}`);
  }
});
