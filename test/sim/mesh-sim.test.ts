// Many real routers in one process on an in-memory network and a simulated
// clock: joins, departures and a healed partition must all end with every
// peer holding the same topology and the same view of who is reachable.

import t from 'tap';
import { stretchPassword } from '../../router/mesh/password-key';
import { randomInt, SeededRng } from '../../common/rng';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh, SimPeer } from './mesh';

// 200 until signed gossip (41334ce) made a topology change cost an Ed25519 verify per entry per peer:
// 200 peers then took over 10 minutes here; SIM_PEERS=200 runs the old size.
const PEER_COUNT = Number(process.env['SIM_PEERS'] ?? 60);
const SEED = Number(process.env['SIM_SEED'] ?? 7);

function report(t: { comment(msg: string): void }, mesh: SimMesh, phase: string, simulatedMs: number, before: { messages: number }): void {
  const alive = mesh.alive().length;
  const messages = mesh.net.messagesDelivered - before.messages;
  t.comment(`${phase}: converged after ${simulatedMs} simulated ms (${Math.round(simulatedMs / 1000)} gossip rounds); ` +
    `${messages} messages, ${(messages / alive).toFixed(1)} per peer (${alive} peers)`);
  before.messages = mesh.net.messagesDelivered;
}

/** Every peer's next hop chain to every other reaches it: routes agree across the mesh. */
function routesConsistent(group: SimPeer[]): string | null {
  const byName = new Map(group.map((p) => [p.name, p]));
  for (const src of group) {
    for (const dst of group) {
      if (src === dst) continue;
      let at = src;
      for (let hops = 0; at !== dst; hops++) {
        if (hops > group.length) return `route ${src.name} -> ${dst.name} loops`;
        const hop = at.router.nextHop(dst.name);
        const next = hop ? byName.get(hop) : undefined;
        if (!next) return `route ${src.name} -> ${dst.name} breaks at ${at.name}`;
        at = next;
      }
    }
  }
  return null;
}

t.test(`${PEER_COUNT} peers converge through joins, departures and a healed partition (seed ${SEED})`, async (t) => {
  await loadSodium();
  const rng = new SeededRng(SEED);
  const mesh = new SimMesh({ seed: SEED, discovery: false, passwordKey: stretchPassword('sim') });
  t.teardown(() => mesh.shutdown());
  const counters = { messages: 0 };

  const startMs = mesh.clock.now();
  // Joins: each newcomer is given two random earlier peers, like an operator would.
  for (let i = 0; i < PEER_COUNT; i++) {
    const targets = i === 0 ? [] : [...new Set([randomInt(rng, i), randomInt(rng, i)])];
    await mesh.addPeer(targets);
    if (i % 20 === 19) mesh.net.run(50);
  }
  let ms = mesh.clock.now() - startMs + mesh.net.runUntil(() => mesh.converged(), 120_000);
  t.ok(mesh.converged(), 'all peers agree on the topology after the joins');
  t.equal(routesConsistent(mesh.alive()), null, 'unicast routes lead everywhere without loops');
  report(t, mesh, 'joins', ms, counters);

  // Departures: 10% of the peers stop. Their neighbours notice at once (FIN) and
  // everyone forgets them; the rest must stay connected (targets are retried).
  const leaving = new Set<number>();
  while (leaving.size < PEER_COUNT / 10) leaving.add(1 + randomInt(rng, PEER_COUNT - 1));
  for (const i of leaving) mesh.stopPeer(i);
  // Peers whose only links went through departed peers stay cut off; compare within
  // the component of peer 0, which is what every member of it must agree on.
  const component = (): SimPeer[] => {
    const reach = mesh.peers[0]!.router.currentRoutes().reachable();
    return mesh.alive().filter((p) => reach.has(p.name));
  };
  ms = mesh.net.runUntil(() => mesh.converged(component()) && mesh.alive().every((p) => p.router.peers.entries().every((e) => !leaving.has(Number.parseInt(e.nickname.slice(1), 10)))), 120_000);
  t.ok(mesh.converged(component()), 'the remaining peers agree after departures');
  t.ok(mesh.alive().every((p) => p.router.peers.entries().every((e) => mesh.peers[Number.parseInt(e.nickname.slice(1), 10)]!.alive)),
    'departed peers are garbage-collected everywhere');
  report(t, mesh, 'departures', ms, counters);

  // Departed peers come back (a restart: new incarnation, same name and address).
  for (const i of leaving) await mesh.addPeer([0, randomInt(rng, PEER_COUNT)], i);
  ms = mesh.net.runUntil(() => mesh.converged(), 120_000);
  t.ok(mesh.converged(), 'restarted peers rejoin and everyone agrees');
  report(t, mesh, 'restarts', ms, counters);

  // Partition: cut the hosts into two halves; each half must converge on itself,
  // then on the whole mesh once the cut heals (retries go on for ever).
  const left = mesh.alive().filter((p) => p.index % 2 === 0);
  const right = mesh.alive().filter((p) => p.index % 2 === 1);
  mesh.net.partition(left.map((p) => p.host), right.map((p) => p.host));
  const sideOf = (group: SimPeer[]): SimPeer[] => {
    const reach = group[0]!.router.currentRoutes().reachable();
    return group.filter((p) => reach.has(p.name));
  };
  ms = mesh.net.runUntil(() => mesh.converged(sideOf(left)) && mesh.converged(sideOf(right)) &&
    left.every((p) => right.every((q) => !p.router.currentRoutes().reachable().has(q.name))), 120_000);
  t.ok(left.every((p) => right.every((q) => !p.router.currentRoutes().reachable().has(q.name))), 'no route crosses the partition');
  report(t, mesh, 'partition', ms, counters);

  mesh.net.healAll();
  ms = mesh.net.runUntil(() => mesh.converged(), 300_000, 500);
  t.ok(mesh.converged(), 'after the partition heals, all peers agree again');
  t.equal(routesConsistent(mesh.alive()), null, 'routes consistent after healing');
  report(t, mesh, 'heal', ms, counters);
});
