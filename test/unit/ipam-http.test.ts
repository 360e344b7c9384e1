// The IPAM glue: HTTP endpoints on a real HttpApi (on a Unix socket), the host route
// check on a scripted `ip -j route`, the container hooks, and the CLI rendering.

import http from 'node:http';
import t from 'tap';
import { ipamSummaryLine, renderIpamStatus } from '../../cli/ipam-commands';
import { parseIpamConfig } from '../../ipam/config';
import { ipamContainerListener, parseAddressRequests, resolveAddresses } from '../../ipam/container-hook';
import { checkRangeFreeOnHost, RouteRunner } from '../../ipam/host-check';
import { ipamApi } from '../../ipam/http-routes';
import { Ipam } from '../../ipam/ipam';
import { SystemClock } from '../../common/clock';
import type { RouterControl } from '../../router/api/control';
import { HttpApi } from '../../router/api/http-api';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import { FakeNet } from './ipam-fake-hub';
import { peer, rejectsIpam } from './ipam-helpers';
import { sampleStatus } from './sample-status';
import { tempSocketPath } from './temp-socket';

const control: RouterControl = { status: () => sampleStatus(), connect: () => undefined, forget: () => undefined, stop: () => undefined };

function newIpam(init: string, rangeV6?: string): { ipam: Ipam; net: FakeNet } {
  const net = new FakeNet();
  const ipam = new Ipam(
    { hub: net.hub(peer(0)), clock: new SystemClock(), rng: new SeededRng(1), logger: silentLogger },
    { config: parseIpamConfig({ init, initialPeerCount: 1, ...(rangeV6 ? { rangeV6 } : {}) }) },
  );
  return { ipam, net };
}

function call(socketPath: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request({ socketPath, method, path, agent: false, headers: payload ? { 'Content-Type': 'application/json' } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

t.test('HTTP endpoints: allocate, claim, release, status, prime, rmpeer, report; errors map to 400/409', async (t) => {
  const { ipam } = newIpam(`seed=${peer(0)}`, 'fd00:1:2::/48');
  const api = new HttpApi({ control }, { socketPath: tempSocketPath(t), gid: null });
  api.mount(ipamApi(ipam));
  await api.listen();
  t.teardown(() => api.close());
  const sock = api.socketPath();

  const a = await call(sock, 'POST', '/ipam/allocate', { container: 'c1' });
  t.same(a, { status: 200, json: { address: '10.32.0.1/12', addressV6: 'fd00:1:2::1/48' } });
  const s = await call(sock, 'POST', '/ipam/allocate', { container: 'c2', subnet: 'net:10.33.0.0/24' });
  t.equal(s.json['address'], '10.33.0.1/24');
  t.equal((await call(sock, 'POST', '/ipam/allocate', { container: 'c1', subnet: '10.99.0.0/24' })).status, 400);
  t.equal((await call(sock, 'POST', '/ipam/allocate', { container: 7 })).status, 400);
  t.equal((await call(sock, 'POST', '/ipam/allocate', '[1]')).status, 400);
  t.equal((await call(sock, 'POST', '/ipam/allocate', { container: 'c', timeoutMs: -1 })).status, 400);
  const conflict = await call(sock, 'POST', '/ipam/claim', { container: 'other', address: '10.32.0.1/12' });
  t.equal(conflict.status, 409);
  t.match(conflict.json['error'], /held by container c1/);
  t.same((await call(sock, 'GET', '/ipam/containers/c1')).json, { addresses: ['10.32.0.1/12'] });
  t.same((await call(sock, 'POST', '/ipam/release', { container: 'c1' })).json, { released: ['10.32.0.1/12'] });
  t.equal((await call(sock, 'POST', '/ipam/release', { container: 'c2', address: '10.33.0.1/24', graceMs: 5 })).status, 400);
  const st = await call(sock, 'GET', '/ipam/status');
  t.equal(st.json['state'], 'ready');
  t.same((await call(sock, 'POST', '/ipam/prime', {})).json, { ready: true, waitingFor: null });
  const rm = await call(sock, 'POST', '/ipam/rmpeer', { peer: peer(0) });
  t.equal(rm.status, 400);
  t.match(rm.json['error'], /ourselves/);
  const report = await call(sock, 'GET', '/report');
  t.equal((report.json['ipam'] as Record<string, unknown>)['range'], '10.32.0.0/12');
});

t.test('HTTP prime answers "not ready" with what it waits for instead of failing', async (t) => {
  const { ipam } = newIpam('consensus=2');
  const api = new HttpApi({ control }, { socketPath: tempSocketPath(t), gid: null });
  api.mount(ipamApi(ipam));
  await api.listen();
  t.teardown(() => { ipam.shutdown(); return api.close(); });
  const r = await call(api.socketPath(), 'POST', '/ipam/prime', { waitMs: 50 });
  t.equal(r.status, 200);
  t.equal(r.json['ready'], false);
  t.match(r.json['waitingFor'], /^awaiting consensus: 1 of 2 peers known, need quorum 2; round 1: 1 of 2 promises; needs 1 more reachable peer/);
  const timeout = await call(api.socketPath(), 'POST', '/ipam/allocate', { container: 'c', timeoutMs: 50 });
  t.equal(timeout.status, 504);
  t.match(timeout.json['error'], /within 0\.1 s|within 0\.0 s|within 0\.05|awaiting consensus/);
});

function fakeRunner(v4: unknown[], v6: unknown[] = []): RouteRunner & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    run(cmd, args) {
      calls.push([cmd, ...args].join(' '));
      return Promise.resolve({ code: 0, stdout: JSON.stringify(args[0] === '-6' ? v6 : v4), stderr: '' });
    },
  };
}

t.test('launch check: a range overlapping a host route is refused, naming the route', async (t) => {
  const routes = [
    { dst: 'default', gateway: '192.168.1.1', dev: 'eth0' },
    { dst: '0.0.0.0/0', dev: 'tun0' },
    { dst: '192.168.1.0/24', dev: 'eth0' },
    { dst: '10.32.0.0/12', dev: 'weave' },
    { type: 'local', dst: '127.0.0.1', dev: 'lo', table: 'local' },
  ];
  const ok = fakeRunner(routes);
  await checkRangeFreeOnHost('10.32.0.0/12', ok);
  t.same(ok.calls, ['ip -4 -j route show table all']);
  await t.rejects(checkRangeFreeOnHost('10.32.0.0/12', fakeRunner([...routes, { dst: '10.40.3.0/24', dev: 'docker0' }])), /--ipalloc-range 10\.32\.0\.0\/12 overlaps a route on this host \(10\.40\.3\.0\/24 dev docker0\)/);
  await t.rejects(checkRangeFreeOnHost('10.0.0.0/8', fakeRunner([{ type: 'local', dst: '10.1.2.3', dev: 'eth1', table: 'local' }])), /local 10\.1\.2\.3 dev eth1 table local/);
  await checkRangeFreeOnHost('fd00:1::/48', fakeRunner([], [{ dst: 'fe80::/64', dev: 'eth0' }, { dst: 'default', dev: 'eth0' }]), { what: '--ipalloc-range-v6' });
  await t.rejects(checkRangeFreeOnHost('fd00:1::/48', fakeRunner([], [{ dst: 'fd00:1:0:5::/64', dev: 'wg0' }]), { what: '--ipalloc-range-v6' }), /--ipalloc-range-v6 fd00:1::\/48 overlaps/);
  const broken: RouteRunner = { run: () => Promise.resolve({ code: 0, stdout: 'not json', stderr: '' }) };
  await t.rejects(checkRangeFreeOnHost('10.32.0.0/12', broken), /cannot parse/);
});

t.test('attach addresses: net:, ip: and bare CIDRs; a failed attach releases what it allocated', async (t) => {
  t.same(parseAddressRequests([]), [{ kind: 'allocate', subnet: null }]);
  t.same(parseAddressRequests(['net:default', 'net:10.32.1.0/24', 'ip:10.32.0.9/12', '10.32.0.8/12']), [
    { kind: 'allocate', subnet: null }, { kind: 'allocate', subnet: '10.32.1.0/24' }, { kind: 'claim', cidr: '10.32.0.9/12' }, { kind: 'claim', cidr: '10.32.0.8/12' },
  ]);
  t.throws(() => parseAddressRequests(['10.32.0.8']), /needs a prefix length/);
  const { ipam } = newIpam(`seed=${peer(0)}`);
  await ipam.allocate('holder', { subnet: '10.32.0.0/24' });
  t.same(await resolveAddresses(ipam, 'c', parseAddressRequests(['net:10.32.1.0/24', '10.32.0.20/12'])), ['10.32.1.1/24', '10.32.0.20/12']);
  await rejectsIpam(t, resolveAddresses(ipam, 'd', parseAddressRequests(['net:10.32.2.0/24', '10.32.0.1/24'])), 'conflict');
  t.same(ipam.addressesOf('d'), [], 'rolled back');
});

t.test('container listener: detach frees at once, death after the grace period, destroy at once, re-attach revives', async (t) => {
  const net = new FakeNet();
  const ipam = new Ipam(
    { hub: net.hub(peer(0)), clock: net.clock, rng: new SeededRng(1), logger: silentLogger },
    { config: parseIpamConfig({ init: `seed=${peer(0)}`, initialPeerCount: 1 }) },
  );
  const l = ipamContainerListener(ipam, { graceMs: 10_000, logger: silentLogger });
  const a = await ipam.allocate('x');
  const b = await ipam.allocate('x', { subnet: '10.40.0.0/24' });
  l.onDetached({ id: 'x' }, [b], 'detach');
  t.same(ipam.addressesOf('x'), [a]);
  l.onDetached({ id: 'x' }, [a], 'died');
  net.run(5_000);
  await l.onAttached({ id: 'x' }, [a]);
  net.run(10_000);
  t.same(ipam.addressesOf('x'), [a], 'restarted within the grace period: kept');
  l.onDetached({ id: 'x' }, [a], 'died');
  net.run(10_001);
  t.same(ipam.addressesOf('x'), [], 'released after the grace period');
  await ipam.allocate('y');
  l.onDetached({ id: 'y' }, [], 'destroyed');
  t.same(ipam.addressesOf('y'), []);
});

t.test('status rendering flags unreachable owners and what IPAM waits for', async (t) => {
  const { ipam } = newIpam(`seed=${peer(0)},${peer(1)}`);
  const text = renderIpamStatus(ipam.status());
  t.match(text, /Range: 10\.32\.0\.0\/12/);
  t.match(text, /0a:00:00:00:00:01.*UNREACHABLE: weave rmpeer/);
  t.match(text, /0a:00:00:00:00:00.*self/);
  t.match(ipamSummaryLine(ipam.status()), /^ready, range 10\.32\.0\.0\/12, 0 of 524288 addresses here in use$/);
  const waiting = newIpam('consensus=3').ipam;
  t.match(renderIpamStatus(waiting.status()), /Status: awaiting consensus: 1 of 3 peers known, need quorum 2/);
  t.match(renderIpamStatus(waiting.status()), /consensus among 3 \(quorum 2\)/);
});
