// Connection policy between real routers on the in-memory network: duplicates,
// ourselves, name clashes, the connection limit, passwords, heartbeats and
// discovery. Each case is a small mesh on a manual clock.

import t from 'tap';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { simAddress, SimMesh, simPeerKey } from './mesh';

t.before(async () => { await loadSodium(); });

t.test('peers given each other keep exactly one connection, the same on both ends', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([1]);
  const b = await mesh.addPeer([0]);
  mesh.net.run(3_000);
  const sa = a.router.status().connections.filter((c) => c.state === 'established');
  const sb = b.router.status().connections.filter((c) => c.state === 'established');
  t.equal(sa.length, 1);
  t.equal(sb.length, 1);
  t.not(sa[0]!.outbound, sb[0]!.outbound, 'one end dialed, the other accepted');
  t.ok(a.router.status().targets.every((x) => x.state === 'connected'), 'both targets count as connected');
  t.ok(b.router.status().targets.every((x) => x.state === 'connected'));
});

t.test('a target that is ourselves is suspended, not retried', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([0]);
  mesh.net.run(10_000);
  const target = a.router.status().targets[0]!;
  t.equal(target.state, 'suspended');
  t.match(target.lastError, /ourselves/);
  t.equal(a.router.counters.connectionsDialed, 1);
});

t.test('a peer using our name is refused with the reason, and not retried', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([]);
  const b = await mesh.addPeer([0], 1, { key: simPeerKey(0) });
  mesh.net.run(10_000);
  t.equal(a.router.neighbours().length, 0);
  t.equal(b.router.neighbours().length, 0);
  t.match(b.router.status().targets[0]!.lastError, /uses our name/);
  t.equal(b.router.status().targets[0]!.state, 'suspended');
  t.ok(a.router.status().connections.some((c) => c.state === 'failed' && /our name/.test(c.info)));
});

t.test('the connection limit refuses extra inbound connections', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const hub = await mesh.addPeer([], 0, { connLimit: 2 });
  for (let i = 1; i <= 4; i++) await mesh.addPeer([0]);
  mesh.net.run(5_000);
  t.equal(hub.router.neighbours().length, 2);
  t.ok(hub.router.status().connections.some((c) => c.state === 'failed' && /connection limit/.test(c.info)));
  t.ok(hub.router.counters.connectionsRefusedLimit > 0);
});

t.test('password mismatch and one-sided passwords are refused on both sides with the reason', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([], 0, { passwordKey: stretchPassword('right') });
  const b = await mesh.addPeer([0], 1, { passwordKey: stretchPassword('wrong') });
  const c = await mesh.addPeer([0], 2, { passwordKey: null });
  mesh.net.run(3_000);
  t.equal(a.router.neighbours().length, 0);
  const failedInfo = (p: typeof a) => p.router.status().connections.filter((x) => x.state === 'failed').map((x) => x.info).join('\n');
  t.match(failedInfo(a), /password mismatch/);
  t.match(failedInfo(b), /password mismatch/);
  t.match(failedInfo(a), /peer has no password|has none/);
  t.match(failedInfo(c), /we have no password|peer has a password|has one/);
  t.ok(a.router.status().health.some((h) => h.code === 'password-mismatch'));
});

t.test('a silent peer is dropped after the heartbeat timeout and reconnected when the path returns', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([]);
  const b = await mesh.addPeer([0]);
  mesh.net.run(1_000);
  t.equal(a.router.neighbours().length, 1);
  mesh.net.partition([a.host], [b.host]);
  mesh.net.run(5_000);
  t.equal(a.router.neighbours().length, 0, 'a dropped the silent connection');
  t.equal(b.router.neighbours().length, 0, 'b dropped it too');
  t.equal(a.router.peers.size(), 1, 'and garbage-collected the unreachable peer');
  mesh.net.healAll();
  mesh.net.runUntil(() => a.router.neighbours().length === 1, 10_000);
  t.pass('reconnected after the partition healed');
});

t.test('discovery connects peers that were only given a common neighbour; --no-discovery does not', async (t) => {
  for (const discovery of [true, false]) {
    const mesh = new SimMesh({ discovery });
    await mesh.addPeer([1]);
    await mesh.addPeer([]);
    await mesh.addPeer([1]);
    mesh.net.run(5_000);
    const ends = mesh.peers[0]!.router.neighbours().length;
    t.equal(ends, discovery ? 2 : 1, `discovery=${discovery}: h1 has ${ends} connections`);
    t.equal(mesh.peers[0]!.router.currentRoutes().reachable().size, 3, 'h3 is reachable either way');
    const discovered = mesh.peers[0]!.router.status().targets.filter((x) => !x.direct).map((x) => x.address);
    t.same(discovered, discovery ? [simAddress(2)] : []);
    mesh.shutdown();
  }
});

t.test('forget closes the connection and drops the target; connect --replace swaps targets', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([1]);
  await mesh.addPeer([]);
  await mesh.addPeer([]);
  mesh.net.run(1_000);
  t.equal(a.router.neighbours().length, 1);
  a.router.forget([simAddress(1)]);
  mesh.net.run(1_000);
  t.equal(a.router.neighbours().length, 0);
  t.same(a.router.status().targets, []);
  a.router.connect([simAddress(2)], true);
  mesh.net.run(1_000);
  t.same(a.router.neighbours(), [mesh.peers[2]!.name]);
  t.throws(() => a.router.connect(['not a host!'], false), { code: 'config' });
  t.same(a.router.status().targets.map((x) => x.address), [simAddress(2)], 'a bad address changes nothing');
});
