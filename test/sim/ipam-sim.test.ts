// IPAM on real routers on the in-memory network (test/sim/mesh.ts) with a
// manual clock: partitions during allocation, a crash and restart from disk,
// rmpeer of a dead peer, and thousands of concurrent allocations. Every run
// ends with the invariants: no address held twice, every address inside its
// holder's own space, one ring on every peer.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { IpamError } from '../../ipam/errors';
import type { Ipam } from '../../ipam/ipam';
import { FileIpamStore } from '../../ipam/persistence';
import { randomInt, SeededRng } from '../../common/rng';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh } from './mesh';
import { allocationsOutsideOwnSpace, attachIpam, duplicates, flush, ringDigest, settleAll } from './ipam-sim-helpers';

const SEED = Number(process.env['IPAM_SEED'] ?? 11);

t.before(async () => { await loadSodium(); });

function fullMesh(n: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => j).filter((j) => j !== i));
}

function checkInvariants(t: Test, ipams: Ipam[]): void {
  t.same(duplicates(ipams), [], 'no address held twice');
  t.same(allocationsOutsideOwnSpace(ipams), [], 'every address inside its holder\'s own space');
  const digests = new Set(ipams.map(ringDigest));
  t.equal(digests.size, 1, 'one ring everywhere');
}

t.test('a partition during the initial split: the majority allocates, the minority waits and says why, then catches up', async (t) => {
  t.comment(`seed ${SEED}`);
  const mesh = new SimMesh({ seed: SEED });
  t.teardown(() => mesh.shutdown());
  const targets = fullMesh(5);
  const hosts = [0, 1, 2, 3, 4].map((i) => `10.0.0.${i}`);
  mesh.net.partition(hosts.slice(0, 2), hosts.slice(2));
  for (let i = 0; i < 5; i++) await mesh.addPeer(targets[i]!);
  const ipams = mesh.peers.map((p) => attachIpam(mesh, p, { init: 'consensus=5', range: '10.32.0.0/16' }, SEED));
  mesh.net.run(3_000);

  const rng = new SeededRng(SEED);
  const minority = Array.from({ length: 20 }, (_, k) => ipams[k % 2]!.allocate(`min-${k}`));
  const majority = Array.from({ length: 300 }, (_, k) => ipams[2 + randomInt(rng, 3)]!.allocate(`maj-${k}`));
  await settleAll(mesh, majority, 60_000);
  await flush();
  t.equal(ipams[0]!.status().state, 'awaiting-consensus');
  t.match(ipams[0]!.waitingFor(), /^awaiting consensus: 2 of 5 peers known, need quorum 3/);
  t.match(ipams[0]!.status().pending[0]!.waitingFor, /^awaiting consensus: 2 of 5 peers known, need quorum 3/);
  t.ok(ipams.slice(2).every((i) => i.status().state === 'ready'), 'majority has the ring');

  mesh.net.healAll();
  const results = await settleAll(mesh, minority, 120_000);
  t.ok(results.every((r) => r.status === 'fulfilled'), 'minority requests complete after the heal');
  mesh.net.run(5_000);
  checkInvariants(t, ipams);
  t.equal(ipams[0]!.status().seed.length, 3, 'the ring was seeded by the majority only');
});

t.test('partitions while space moves: requests wait for unreachable owners, nothing is handed out twice', async (t) => {
  const mesh = new SimMesh({ seed: SEED + 1 });
  t.teardown(() => mesh.shutdown());
  const targets = fullMesh(4);
  for (let i = 0; i < 4; i++) await mesh.addPeer(targets[i]!);
  // A /24: 254 usable addresses, about 63 per peer, so heavy users must borrow.
  const ipams = mesh.peers.map((p) => attachIpam(mesh, p, { init: 'consensus=4', range: '10.9.9.0/24' }, SEED));
  mesh.net.run(3_000);
  await settleAll(mesh, [ipams[0]!.prime()], 30_000);

  const rng = new SeededRng(SEED + 1);
  const wave = (n: number, label: string, on: number[]): Promise<string>[] =>
    Array.from({ length: n }, (_, k) => ipams[on[randomInt(rng, on.length)]!]!.allocate(`${label}-${k}`));
  // {0,1} own about 127 addresses; 150 requests there must borrow from {2,3}.
  const first = wave(150, 'a', [0, 1]);
  // Cut {0,1} from {2,3} while the first wave is still borrowing: its space
  // requests are in flight (a donation takes only milliseconds of simulated time).
  mesh.net.partition(['10.0.0.0', '10.0.0.1'], ['10.0.0.2', '10.0.0.3']);
  const second = wave(60, 'b', [2, 3]);
  mesh.net.run(20_000);
  await flush();
  const waiting = ipams[0]!.status().pending.concat(ipams[1]!.status().pending);
  t.ok(waiting.length > 0, `${waiting.length} requests wait behind the partition`);
  t.ok(waiting.every((p) => /unreachable peer\(s\)/.test(p.waitingFor ?? '')), `they name the unreachable owners: ${waiting[0]?.waitingFor}`);
  t.same(duplicates(ipams), [], 'no duplicates during the partition');
  mesh.net.healAll();
  const all = await settleAll(mesh, [...first, ...second], 120_000);
  const ok = all.filter((r) => r.status === 'fulfilled').length;
  const full = all.filter((r) => r.status === 'rejected' && r.reason instanceof IpamError && r.reason.code === 'full').length;
  t.equal(ok + full, all.length, 'every request either got an address or a clear "full"');
  t.equal(ok, 210, '210 fit in 254');
  mesh.net.run(5_000);
  checkInvariants(t, ipams);
});

t.test('thousands of concurrent allocations and releases across six peers: zero duplicates', async (t) => {
  t.comment(`seed ${SEED}`);
  const mesh = new SimMesh({ seed: SEED + 2 });
  t.teardown(() => mesh.shutdown());
  const targets = [[1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [0, 1]];
  for (let i = 0; i < 6; i++) await mesh.addPeer(targets[i]!);
  // 4094 usable addresses for 3500 allocations: space must move a lot.
  const ipams = mesh.peers.map((p) => attachIpam(mesh, p, { init: 'consensus=6', range: '10.40.0.0/20' }, SEED));
  mesh.net.run(3_000);
  const rng = new SeededRng(SEED + 2);
  const held: { peer: number; container: string }[] = [];
  let released = 0;
  const promises: Promise<string>[] = [];
  for (let k = 0; k < 3500; k++) {
    // Skewed: peers 0 and 1 take most containers, so they must borrow.
    const peer = rng.next() < 0.6 ? randomInt(rng, 2) : 2 + randomInt(rng, 4);
    promises.push(ipams[peer]!.allocate(`c${k}`));
    held.push({ peer, container: `c${k}` });
    if (k % 500 === 499) {
      await settleAll(mesh, promises.slice(-500), 60_000);
      for (let r = 0; r < 50; r++) {
        const victim = held.splice(randomInt(rng, held.length), 1)[0]!;
        ipams[victim.peer]!.releaseContainer(victim.container);
        released++;
      }
    }
  }
  const results = await settleAll(mesh, promises, 120_000);
  const rejected = results.filter((r) => r.status === 'rejected');
  t.same(rejected.map((r) => String((r as PromiseRejectedResult).reason)).slice(0, 3), [], 'every allocation succeeded');
  mesh.net.run(5_000);
  const total = ipams.reduce((n, i) => n + i.status().allocations.length, 0);
  t.equal(total, 3500 - released, 'all live allocations accounted for');
  checkInvariants(t, ipams);
  t.comment(`ring entries after ${3500} allocations: ${ipams[0]!.status().ringEntries}`);
});

t.test('a peer that crashes and restarts from disk keeps its addresses and hands none of them out again', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipam-sim-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const mesh = new SimMesh({ seed: SEED + 3 });
  t.teardown(() => mesh.shutdown());
  const targets = fullMesh(3);
  for (let i = 0; i < 3; i++) await mesh.addPeer(targets[i]!);
  const storeFor = (i: number): FileIpamStore => {
    const d = path.join(dir, `peer${i}`);
    fs.mkdirSync(d, { recursive: true });
    return new FileIpamStore(d);
  };
  const ipams = mesh.peers.map((p) => attachIpam(mesh, p, { init: 'consensus=3', range: '10.32.0.0/22', store: storeFor(p.index) }, SEED));
  mesh.net.run(3_000);
  const before = await settleAll(mesh, Array.from({ length: 40 }, (_, k) => ipams[1]!.allocate(`c${k}`)), 30_000);
  const addresses = before.map((r) => (r as PromiseFulfilledResult<string>).value);
  ipams[1]!.releaseContainer('c0', { graceMs: 60_000 }); // died: kept for its restart
  mesh.net.run(2_000);

  // Crash: no goodbye, the router and IPAM just stop.
  ipams[1]!.shutdown();
  mesh.stopPeer(1);
  await settleAll(mesh, Array.from({ length: 200 }, (_, k) => ipams[k % 2 === 0 ? 0 : 2]!.allocate(`other${k}`)), 60_000);

  const p1 = await mesh.addPeer(targets[1]!, 1);
  ipams[1] = attachIpam(mesh, p1, { init: 'consensus=3', range: '10.32.0.0/22', store: storeFor(1) }, SEED + 100);
  t.same(ipams[1]!.addressesOf('c5'), [addresses[5]], 'restored from disk before any gossip');
  t.equal(ipams[1]!.status().state, 'ready', 'the ring came back from disk');
  mesh.net.run(5_000);
  t.equal(await settleAll(mesh, [ipams[1]!.claim('c7', addresses[7]!)], 10_000).then((r) => (r[0] as PromiseFulfilledResult<string>).value), addresses[7]);
  t.equal(await settleAll(mesh, [ipams[1]!.allocate('c0')], 10_000).then((r) => (r[0] as PromiseFulfilledResult<string>).value), addresses[0], 'the dead container got its address back within the grace period');
  const fresh = await settleAll(mesh, Array.from({ length: 100 }, (_, k) => ipams[1]!.allocate(`new${k}`)), 60_000);
  const freshAddrs = fresh.map((r) => (r as PromiseFulfilledResult<string>).value);
  t.equal(freshAddrs.filter((a) => addresses.includes(a)).length, 0, 'no old address handed out again');
  mesh.net.run(5_000);
  checkInvariants(t, ipams);
});

t.test('rmpeer of a dead peer: its space is taken over once and then used', async (t) => {
  const mesh = new SimMesh({ seed: SEED + 4 });
  t.teardown(() => mesh.shutdown());
  const targets = fullMesh(4);
  for (let i = 0; i < 4; i++) await mesh.addPeer(targets[i]!);
  const ipams = mesh.peers.map((p) => attachIpam(mesh, p, { init: 'consensus=4', range: '10.5.0.0/24' }, SEED));
  mesh.net.run(3_000);
  await settleAll(mesh, Array.from({ length: 40 }, (_, k) => ipams[k % 4]!.allocate(`c${k}`)), 30_000);
  const deadName = mesh.peers[3]!.name;
  ipams[3]!.shutdown();
  mesh.stopPeer(3);
  const live = ipams.slice(0, 3);
  mesh.net.runUntil(() => live[0]!.status().peers.some((p) => p.peer === deadName && p.unreachableOwner), 30_000);
  t.match(live[0]!.status().peers.find((p) => p.peer === deadName), { unreachableOwner: true, reachable: false });

  // Without rmpeer, the dead peer's space is out of reach: more than the rest can hold waits.
  const r = live[0]!.rmpeer(deadName);
  t.ok(r.addresses >= 60, `took over ${r.addresses} addresses`);
  mesh.net.run(3_000);
  for (const i of live) t.notOk(i.status().peers.some((p) => p.peer === deadName), 'every live peer sees the takeover');
  // Fill the whole range from the live peers: 254 usable minus the dead peer's 10 containers.
  const results = await settleAll(mesh, Array.from({ length: 214 }, (_, k) => live[k % 3]!.allocate(`more${k}`)), 120_000);
  const ok = results.filter((x) => x.status === 'fulfilled').length;
  t.equal(ok, 214, 'the taken-over space is handed out');
  mesh.net.run(3_000);
  checkInvariants(t, live);
});
