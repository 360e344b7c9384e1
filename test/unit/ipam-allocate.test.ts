// Ipam on the fake in-memory hub: the request flow (allocate, claim, release,
// grace, donation, full), consensus and its status text, rmpeer, reset,
// hostile gossip. Time is a ManualClock; every waiting request is driven by
// running the fake network.

import t from 'tap';
import { parseIpamConfig } from '../../ipam/config';
import { IpamError } from '../../ipam/errors';
import { Ipam } from '../../ipam/ipam';
import { encodeIpamMessage } from '../../ipam/messages';
import { MemoryIpamStore } from '../../ipam/persistence';
import { Ring } from '../../ipam/ring';
import { AddressRange } from '../../ipam/address-range';
import { silentLogger } from '../../common/logger';
import type { PeerName } from '../../router/mesh/peer-name';
import { SeededRng } from '../../common/rng';
import { FakeNet } from './ipam-fake-hub';
import { peer, rejectsIpam, throwsIpam } from './ipam-helpers';

interface Made {
  net: FakeNet;
  ipams: Ipam[];
  names: PeerName[];
  stores: MemoryIpamStore[];
}

function make(count: number, init: (names: PeerName[]) => string, range = '10.32.0.0/12', extra: { rangeV6?: string; defaultSubnet?: string } = {}): Made {
  const net = new FakeNet();
  const names = Array.from({ length: count }, (_, i) => peer(i));
  const stores = names.map(() => new MemoryIpamStore());
  const ipams = names.map((n, i) => new Ipam(
    { hub: net.hub(n), clock: net.clock, rng: new SeededRng(i + 1), logger: silentLogger, store: stores[i]! },
    { config: parseIpamConfig({ range, init: init(names), initialPeerCount: count, ...extra }) },
  ));
  return { net, ipams, names, stores };
}

/** Runs the network until the promise settles (or maxMs of simulated time). */
async function settle<T>(net: FakeNet, p: Promise<T>, maxMs = 60_000): Promise<T> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  for (let ms = 0; !done && ms <= maxMs; ms += 50) {
    net.run(50);
    await new Promise((r) => setImmediate(r));
  }
  return p;
}

const seedAll = (names: PeerName[]): string => `seed=${names.join(',')}`;

t.test('seeded peers allocate unique addresses at once; allocate is idempotent per container', async (t) => {
  const { net, ipams } = make(3, seedAll);
  const got: string[] = [];
  for (let i = 0; i < 30; i++) got.push(await settle(net, ipams[i % 3]!.allocate(`c${i}`)));
  t.equal(new Set(got).size, 30, 'unique');
  t.ok(got.every((a) => /^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/.test(a)), 'inside the range, default prefix');
  t.equal(await settle(net, ipams[0]!.allocate('c0')), got[0], 'same container, same address');
  t.notOk(got.includes('10.32.0.0/12'), 'never the network address');
  const sub = await settle(net, ipams[1]!.allocate('c1', { subnet: 'net:10.40.1.0/24' }));
  t.match(sub, /^10\.40\.1\.\d+\/24$/);
  t.not(sub, '10.40.1.0/24');
  t.same(ipams[1]!.addressesOf('c1').sort(), [got[1]!, sub].sort());
  throwsIpam(t, () => ipams[0]!.allocate('c', { subnet: '10.99.0.0/24' }), 'config', /not inside the IPAM range/);
  throwsIpam(t, () => ipams[0]!.allocate(''), 'config');
  throwsIpam(t, () => ipams[0]!.allocate('x\ny'), 'config', /control/);
});

t.test('claim: own space at once, refused when another container holds it, outside the range passes through', async (t) => {
  const { net, ipams } = make(2, seedAll);
  const a = await settle(net, ipams[0]!.allocate('web'));
  await rejectsIpam(t, settle(net, ipams[0]!.claim('db', a)), 'conflict', /held by container web/);
  t.equal(await settle(net, ipams[0]!.claim('web', a)), a, 'the holder may claim again');
  t.equal(await settle(net, ipams[0]!.claim('x', '192.168.7.9/24')), '192.168.7.9/24');
  throwsIpam(t, () => ipams[0]!.claim('x', '10.32.0.0/12'), 'config', /network address/);
  // An address in the other peer's share: it hands that one address over.
  const theirs = '10.44.0.9/12';
  t.equal(await settle(net, ipams[0]!.claim('api', theirs)), theirs);
  t.same(ipams[0]!.addressesOf('api'), [theirs]);
  net.run(2_000);
  await rejectsIpam(t, settle(net, ipams[1]!.claim('other', theirs)), 'conflict', /in use on peer|held by/);
});

t.test('release and grace: a dead container keeps its address until the grace period ends', async (t) => {
  const { net, ipams } = make(1, seedAll);
  const ipam = ipams[0]!;
  const a = await settle(net, ipam.allocate('c1'));
  t.same(ipam.releaseContainer('c1', { graceMs: 10_000 }), [a]);
  net.run(5_000);
  t.same(ipam.addressesOf('c1'), [a], 'still held during the grace period');
  t.equal(await settle(net, ipam.allocate('c1')), a, 'restart within grace gets the same address');
  net.run(20_000);
  t.same(ipam.addressesOf('c1'), [a], 'revived: not released by the old timer');
  ipam.releaseContainer('c1', { graceMs: 1_000 });
  net.run(1_500);
  t.same(ipam.addressesOf('c1'), [], 'released after grace');
  const b = await settle(net, ipam.allocate('c2'));
  t.equal(b, a, 'the lowest free address is reused');
  t.same(ipam.releaseContainer('c2'), [b], 'removed: released at once');
  t.same(ipam.addressesOf('c2'), []);
  t.same(ipam.release('nobody'), []);
});

t.test('a peer out of space asks another and gets some; a full range is refused', async (t) => {
  // /28: 16 addresses, 14 usable, 7 each.
  const { net, ipams } = make(2, seedAll, '10.9.0.0/28');
  const got: string[] = [];
  for (let i = 0; i < 12; i++) got.push(await settle(net, ipams[0]!.allocate(`c${i}`)));
  t.equal(new Set(got).size, 12);
  t.ok(ipams[0]!.status().local.owned > 8, 'peer 0 received space');
  got.push(await settle(net, ipams[1]!.allocate('d0')));
  got.push(await settle(net, ipams[1]!.allocate('d1')));
  t.equal(new Set(got).size, 14, 'all 14 usable addresses handed out once');
  net.run(3_000);
  await rejectsIpam(t, settle(net, ipams[0]!.allocate('late')), 'full', /no free address left in 10\.9\.0\.0\/28/);
  ipams[1]!.release('d0');
  net.run(3_000);
  t.match(await settle(net, ipams[0]!.allocate('late')), /^10\.9\.0\.\d+\/28$/, 'freed space moves to where it is needed');
});

t.test('consensus waits with an exact status, times out clearly, then completes when a quorum meets', async (t) => {
  const { net, ipams, names } = make(3, () => 'consensus=3');
  net.partition([names[2]!], [names[0]!, names[1]!]);
  net.gossipRound();
  t.equal(ipams[0]!.waitingFor(), 'awaiting consensus: 2 of 3 peers known, need quorum 2; not started (starts on the first allocation or weave prime)');
  t.equal(ipams[2]!.waitingFor(), 'awaiting consensus: 1 of 3 peers known, need quorum 2; not started (starts on the first allocation or weave prime)');
  const progress: string[] = [];
  const p = ipams[2]!.allocate('c1', { timeoutMs: 5_000, onWaiting: (w) => progress.push(w) });
  await rejectsIpam(t, settle(net, p), 'timeout', /^could not get an address for c1 in 10\.32\.0\.0\/12 within 5 s: awaiting consensus: 1 of 3 peers known, need quorum 2; round \d+: 1 of 2 promises; needs 1 more reachable peer: launch it with this host's address, or run weave connect <address> here$/);
  t.ok(progress.length > 0 && progress[0]!.startsWith('awaiting consensus: 1 of 3 peers known, need quorum 2'), 'progress reported');
  t.equal(ipams[2]!.status().state, 'awaiting-consensus');
  t.equal(ipams[0]!.status().state, 'awaiting-consensus', 'the other side did not start on its own');

  const a = await settle(net, ipams[0]!.allocate('c1'));
  t.match(a, /^10\./);
  t.equal(ipams[1]!.status().state, 'ready', 'the other quorum member has the ring too');
  t.equal(ipams[2]!.status().state, 'awaiting-consensus', 'the cut-off peer is still waiting');
  net.healAll();
  net.gossipRound();
  t.equal(ipams[2]!.status().state, 'ready');
  const seeds = ipams.map((i) => i.status().seed.join(','));
  t.equal(new Set(seeds).size, 1, 'one ring');
  t.same(ipams[0]!.status().seed, [names[0]!, names[1]!], 'seeded by the quorum that agreed');
  const b = await settle(net, ipams[2]!.allocate('c2'));
  t.not(b, a, 'the late peer got space by asking');
});

t.test('prime starts consensus without an allocation; consensus=1 is immediate', async (t) => {
  const { net, ipams } = make(3, () => 'consensus=3');
  await settle(net, ipams[1]!.prime());
  t.ok(ipams.every((i) => i.status().state === 'ready'));
  const single = make(1, () => 'consensus');
  await settle(single.net, single.ipams[0]!.prime());
  t.equal(single.ipams[0]!.status().peers[0]!.owned, 1 << 20);
});

t.test('peers with different consensus counts agree: the first host launched alone, the next given its address, the next allocates first', async (t) => {
  const net = new FakeNet();
  const mk = (i: number, n: number): Ipam => new Ipam(
    { hub: net.hub(peer(i)), clock: net.clock, rng: new SeededRng(i), logger: silentLogger },
    { config: parseIpamConfig({ init: 'consensus', initialPeerCount: n }) },
  );
  const first = mk(0, 1);
  const second = mk(1, 2);
  net.gossipRound();
  t.equal(first.waitingFor(), 'awaiting consensus: 2 of 2 peers known, need quorum 2; not started (starts on the first allocation or weave prime)',
    'the host launched alone counts the peer it reaches');
  const a = await settle(net, second.allocate('c2'));
  const b = await settle(net, first.allocate('c1'));
  t.not(a, b);
  t.same(first.status().seed, second.status().seed, 'one ring');
  t.same(first.status().seed, [peer(0), peer(1)].sort());
  t.same([...first.status().warnings, ...second.status().warnings], [], 'no warning about the counts');
});

t.test('observers never take part in the split but get space when they allocate', async (t) => {
  const net = new FakeNet();
  const mk = (i: number, init: string): Ipam => new Ipam(
    { hub: net.hub(peer(i)), clock: net.clock, rng: new SeededRng(i), logger: silentLogger },
    { config: parseIpamConfig({ init, initialPeerCount: 2 }) },
  );
  const obs = mk(9, 'observer');
  const a = mk(0, 'consensus=2');
  mk(1, 'consensus=2');
  t.match(obs.waitingFor(), /^observer/);
  const p = obs.allocate('c');
  await settle(net, a.prime());
  const addr = await settle(net, p);
  t.match(addr, /^10\./);
  t.notOk(obs.status().seed.includes(peer(9)), 'not in the seed');
});

t.test('rmpeer: refused for live peers and ourselves; takes over a dead peer and its space is used', async (t) => {
  const { net, ipams, names } = make(3, seedAll, '10.9.0.0/26');
  throwsIpam(t, () => ipams[0]!.rmpeer(names[1]!), 'config', /reachable/);
  throwsIpam(t, () => ipams[0]!.rmpeer(names[0]!), 'config', /ourselves/);
  throwsIpam(t, () => ipams[0]!.rmpeer('nope'), 'config', /not a peer name/);
  net.remove(names[2]!);
  ipams[2]!.shutdown();
  const st = ipams[0]!.status();
  const dead = st.peers.find((p) => p.peer === names[2]);
  t.ok(dead?.unreachableOwner, 'status flags the unreachable owner');
  const r = ipams[0]!.rmpeer(names[2]!);
  t.ok(r.addresses > 0);
  net.drain();
  for (const i of [ipams[0]!, ipams[1]!]) t.notOk(i.status().peers.some((p) => p.peer === names[2]), 'no space left with the dead peer');
  const all: string[] = [];
  for (let i = 0; i < 60; i++) all.push(await settle(net, ipams[i % 2]!.allocate(`c${i}`)));
  t.equal(new Set(all).size, 60, 'the whole /26 minus network and broadcast, 2 addresses short of full, all unique');
});

t.test('reset hands our space to a live peer and refuses further use', async (t) => {
  const { net, ipams, names } = make(2, seedAll);
  const before = ipams[1]!.status().peers.find((p) => p.peer === names[1])!.owned;
  const r = ipams[0]!.reset();
  t.equal(r.handedTo, names[1]);
  net.drain();
  t.equal(ipams[1]!.status().peers.find((p) => p.peer === names[1])!.owned, before + r.addresses);
  throwsIpam(t, () => ipams[0]!.allocate('c'), 'config', /reset/);
});

t.test('hostile gossip is refused and changes nothing', async (t) => {
  const { ipams } = make(2, seedAll);
  const ipam = ipams[0]!;
  const before = JSON.stringify(ipam.status());
  const tryMsg = (bytes: Uint8Array): void => {
    try {
      ipam.onGossip(bytes);
      t.fail('accepted');
    } catch (err) {
      t.ok(err instanceof IpamError, String(err));
    }
  };
  tryMsg(Uint8Array.of(1, 1, 4));
  tryMsg(Uint8Array.of(7));
  const foreign = Ring.initialState(AddressRange.parse('10.32.0.0/12', 'r'), [peer(7), peer(8)]);
  tryMsg(encodeIpamMessage({ kind: 'ring', ring: foreign }));
  const otherRange = Ring.initialState(AddressRange.parse('10.40.0.0/16', 'r'), [peer(0), peer(1)]);
  tryMsg(encodeIpamMessage({ kind: 'ring', ring: otherRange }));
  const after = ipam.status();
  t.ok(after.warnings.some((w) => /two address rings met that were set up independently/.test(w)), after.warnings.join(' | '));
  t.ok(after.warnings.some((w) => /10\.40\.0\.0\/16/.test(w)));
  t.same({ ...after, warnings: [] }, { ...JSON.parse(before), warnings: [] }, 'state unchanged');
});

t.test('persistence: restart keeps ring and allocations; another range or name discards them with a warning', async (t) => {
  const { net, ipams, names, stores } = make(2, seedAll);
  const a = await settle(net, ipams[0]!.allocate('c1'));
  ipams[0]!.releaseContainer('c2');
  ipams[0]!.shutdown();
  const again = new Ipam(
    { hub: new FakeNet().hub(names[0]!), clock: net.clock, rng: new SeededRng(5), logger: silentLogger, store: stores[0]! },
    { config: parseIpamConfig({ init: seedAll(names), initialPeerCount: 2 }) },
  );
  t.same(again.addressesOf('c1'), [a]);
  t.equal(again.status().state, 'ready');
  const other = new Ipam(
    { hub: new FakeNet().hub(names[0]!), clock: net.clock, rng: new SeededRng(5), logger: silentLogger, store: stores[0]! },
    { config: parseIpamConfig({ range: '10.48.0.0/16', init: seedAll(names), initialPeerCount: 2 }) },
  );
  t.same(other.addressesOf('c1'), []);
  t.ok(other.status().warnings.some((w) => /for range 10\.32\.0\.0\/12, --ipalloc-range is now 10\.48\.0\.0\/16/.test(w)));
  const renamed = new Ipam(
    { hub: new FakeNet().hub(peer(42)), clock: net.clock, rng: new SeededRng(5), logger: silentLogger, store: stores[1]! },
    { config: parseIpamConfig({ init: seedAll(names), initialPeerCount: 2 }) },
  );
  t.ok(renamed.status().warnings.some((w) => /belongs to peer/.test(w)));
});

t.test('dual stack: the IPv6 address carries the IPv4 offset', async (t) => {
  const { net, ipams } = make(1, seedAll, '10.32.0.0/12', { rangeV6: 'fd00:1:2::/48' });
  const a = await settle(net, ipams[0]!.allocate('c'));
  t.equal(a, '10.32.0.1/12');
  t.equal(ipams[0]!.v6For(a), 'fd00:1:2::1/48');
  t.equal(ipams[0]!.v6For('10.47.255.254/12'), 'fd00:1:2::f:fffe/48');
  t.equal(ipams[0]!.status().allocations[0]!.addressV6, 'fd00:1:2::1/48');
  throwsIpam(t, () => parseIpamConfig({ rangeV6: 'fd00::/120', initialPeerCount: 1 }), 'config', /host bits/);
});

t.test('config parsing names the flag', async (t) => {
  throwsIpam(t, () => parseIpamConfig({ range: '10.32.0.1/12', initialPeerCount: 1 }), 'config', /did you mean 10\.32\.0\.0\/12/);
  throwsIpam(t, () => parseIpamConfig({ init: 'consensus=0', initialPeerCount: 1 }), 'config', /consensus=N/);
  throwsIpam(t, () => parseIpamConfig({ init: 'seed=foo', initialPeerCount: 1 }), 'config', /not a peer name/);
  throwsIpam(t, () => parseIpamConfig({ init: 'bogus', initialPeerCount: 1 }), 'config', /must be consensus/);
  throwsIpam(t, () => parseIpamConfig({ defaultSubnet: '10.64.0.0/24', initialPeerCount: 1 }), 'config', /not inside/);
  t.same(parseIpamConfig({ initialPeerCount: 3 }).init, { mode: 'consensus', peerCount: 3 });
});

t.test('repeated space requests from one peer are not honoured faster than once per half retry period', async (t) => {
  const { ipams, names } = make(2, seedAll, '10.9.0.0/24');
  const req = encodeIpamMessage({ kind: 'space-request', request: { range: AddressRange.parse('10.9.0.0/24', 'r'), subnet: AddressRange.parse('10.9.0.0/24', 'r').cidr } });
  const owned = (): number => ipams[0]!.status().local.owned;
  const before = owned();
  ipams[0]!.onGossipUnicast(names[1]!, req);
  const afterOne = owned();
  for (let i = 0; i < 5; i++) ipams[0]!.onGossipUnicast(names[1]!, req);
  t.ok(afterOne < before, 'the first request is served');
  t.equal(owned(), afterOne, 'the flood is not');
});
