// Weave DNS on a simulated mesh: real routers on an in-memory network and a
// manual clock, each with a DnsService on its gossip hub. Records registered
// anywhere converge everywhere (and answer the same queries), removals
// propagate, a peer without DNS still relays the channel, a departed peer's
// records go away, and a restarted peer's stale records are corrected by the
// peer itself.

import * as packet from 'dns-packet';
import t from 'tap';
import { DnsService } from '../../dns/service';
import { silentLogger } from '../../common/logger';
import { randomInt, SeededRng } from '../../common/rng';
import { SimMesh } from './mesh';
import type { SimPeer } from './mesh';

const SEED = Number(process.env['SIM_SEED'] ?? 11);
const DOMAIN = 'weave.local';

interface DnsPeer {
  peer: SimPeer;
  dns: DnsService;
}

function attachDns(mesh: SimMesh, peer: SimPeer, seed: number): DnsService {
  const dns = new DnsService(
    { hub: peer.router.gossip, clock: mesh.clock, rng: new SeededRng(seed), logger: silentLogger },
    { domain: DOMAIN, ttlS: 1, store: { departedGraceMs: 30_000, tombstoneTtlMs: 120_000 }, tickMs: 1000 },
  );
  dns.start();
  return dns;
}

/** Every live record everyone can see, as one string: equal strings mean the same answers. */
function visible(d: DnsService): string {
  return d.store.snapshot().filter((e) => d.store.isVisible(e)).map((e) => `${e.name}=${e.address}@${e.origin}`).sort().join(' ');
}

function storeDigest(d: DnsService): string {
  return d.store.snapshot().map((e) => `${e.origin}/${e.containerId}/${e.name}/${e.address}/v${e.version}${e.tombstone ? 'x' : ''}`).join(' ');
}

function agree(group: DnsPeer[], digest: (d: DnsService) => string): boolean {
  const first = group[0];
  if (first === undefined) return true;
  const want = digest(first.dns);
  return group.every((g) => digest(g.dns) === want);
}

function ask(d: DnsService, name: string): string[] {
  const q = packet.encode({ type: 'query', id: 1, flags: packet.RECURSION_DESIRED, questions: [{ name, type: 'A' }] });
  const o = d.resolve(q, 'tcp');
  if (o.kind !== 'reply') return [`(${o.kind})`];
  const p = packet.decode(o.bytes) as packet.DecodedPacket & { rcode?: string };
  if (p.rcode !== 'NOERROR') return [`(${p.rcode ?? '?'})`];
  return (p.answers ?? []).map((a) => String((a as { data: unknown }).data)).sort();
}

t.test(`records converge across a 30-peer mesh; departures and restarts clean up (seed ${SEED})`, async (t) => {
  const rng = new SeededRng(SEED);
  const mesh = new SimMesh({ seed: SEED, discovery: false });
  t.teardown(() => mesh.shutdown());
  const peers: DnsPeer[] = [];
  for (let i = 0; i < 30; i++) {
    const targets = i === 0 ? [] : [...new Set([randomInt(rng, i), randomInt(rng, i)])];
    const peer = await mesh.addPeer(targets);
    peers.push({ peer, dns: attachDns(mesh, peer, SEED * 1000 + i) });
  }
  mesh.net.runUntil(() => mesh.converged(), 60_000);
  t.ok(mesh.converged(), 'topology converged');

  // Each peer registers its own container; every third also registers a shared name (round robin).
  for (const [i, p] of peers.entries()) {
    p.dns.register(`netns:c${i}`, `c${i}.${DOMAIN}`, [`10.32.0.${i + 1}`]);
    if (i % 3 === 0) p.dns.register(`netns:c${i}`, `shared.${DOMAIN}`, [`10.32.0.${i + 1}`]);
  }
  let ms = mesh.net.runUntil(() => agree(peers, storeDigest), 60_000);
  t.ok(agree(peers, storeDigest), `every store identical after ${ms} simulated ms`);
  t.equal(peers[0]!.dns.store.size, 40);
  const sharedWant = peers.filter((_, i) => i % 3 === 0).map((_, k) => `10.32.0.${k * 3 + 1}`).sort();
  for (const p of [peers[5]!, peers[17]!, peers[29]!]) {
    t.same(ask(p.dns, `c12.${DOMAIN}`), ['10.32.0.13'], `${p.peer.name} resolves c12`);
    t.same(ask(p.dns, `shared.${DOMAIN}`), sharedWant, `${p.peer.name} resolves shared to all holders`);
  }

  // Removals travel as tombstones.
  peers[12]!.dns.unregister({ containerId: 'netns:c12' });
  ms = mesh.net.runUntil(() => agree(peers, storeDigest), 60_000);
  t.ok(agree(peers, storeDigest), `removal converged after ${ms} ms`);
  t.same(ask(peers[3]!.dns, `c12.${DOMAIN}`), ['(NXDOMAIN)']);

  // A peer leaves: its records stop being answered at once and are dropped after the grace period.
  const gone = peers[7]!;
  mesh.stopPeer(gone.peer.index);
  gone.dns.stop();
  const rest = peers.filter((p) => p !== gone);
  const component = (): DnsPeer[] => {
    const reach = rest[0]!.peer.router.currentRoutes().reachable();
    return rest.filter((p) => reach.has(p.peer.name));
  };
  ms = mesh.net.runUntil(() => component().every((p) => ask(p.dns, `c7.${DOMAIN}`)[0] === '(NXDOMAIN)'), 60_000);
  t.ok(component().every((p) => ask(p.dns, `c7.${DOMAIN}`)[0] === '(NXDOMAIN)'), `c7 unanswered everywhere ${ms} ms after its peer left`);
  t.ok(agree(component(), visible), 'and the remaining peers agree on what they answer');
  mesh.net.runUntil(() => component().every((p) => !p.dns.store.snapshot().some((e) => e.origin === gone.peer.name)), 120_000);
  t.ok(component().every((p) => !p.dns.store.snapshot().some((e) => e.origin === gone.peer.name)), "the departed peer's records are dropped");

  // A peer restarts with an empty store and registers only one of its two names:
  // the other, still held by everyone, is removed by the peer itself (a higher-version tombstone).
  const r = peers[9]!;
  r.dns.stop();
  mesh.stopPeer(r.peer.index);
  const again = await mesh.addPeer([0, 1], r.peer.index);
  const fresh: DnsPeer = { peer: again, dns: attachDns(mesh, again, 99) };
  peers[9] = fresh;
  fresh.dns.register('netns:c9', `c9.${DOMAIN}`, ['10.32.0.10']);
  const live = peers.filter((p) => p !== gone);
  ms = mesh.net.runUntil(() => mesh.converged(mesh.alive()) && agree(live, visible) &&
    ask(live[0]!.dns, `shared.${DOMAIN}`).every((a) => a !== '10.32.0.10'), 120_000);
  t.same(ask(live[0]!.dns, `c9.${DOMAIN}`), ['10.32.0.10'], 'the re-registered name is back');
  t.notOk(ask(live[0]!.dns, `shared.${DOMAIN}`).includes('10.32.0.10'), 'the name it no longer holds is gone');
  t.ok(fresh.dns.store.counters.ownCorrections >= 1, `corrections by the restarted peer: ${fresh.dns.store.counters.ownCorrections}`);
  t.ok(agree(live, visible), `all peers answer alike after ${ms} ms`);

  for (const p of peers) p.dns.stop();
});

t.test('a peer without DNS still relays the channel', async (t) => {
  const mesh = new SimMesh({ seed: SEED + 1, discovery: false });
  t.teardown(() => mesh.shutdown());
  // A line: p0 - p1 - p2, and only the ends run DNS.
  const p0 = await mesh.addPeer([]);
  const p1 = await mesh.addPeer([0]);
  const p2 = await mesh.addPeer([1]);
  void p1;
  mesh.net.runUntil(() => mesh.converged(), 30_000);
  const d0 = attachDns(mesh, p0, 1);
  const d2 = attachDns(mesh, p2, 2);
  d0.register('netns:a', `a.${DOMAIN}`, ['10.32.1.1']);
  d2.register('netns:b', `b.${DOMAIN}`, ['10.32.1.2', 'fd00::2']);
  mesh.net.runUntil(() => d0.lookup(`b.${DOMAIN}`).length === 2 && d2.lookup(`a.${DOMAIN}`).length === 1, 30_000);
  t.same(d0.lookup(`b.${DOMAIN}`), ['10.32.1.2', 'fd00::2']);
  t.same(d2.lookup(`a.${DOMAIN}`), ['10.32.1.1']);
  d0.stop();
  d2.stop();
});
