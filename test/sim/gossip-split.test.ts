// A mesh that splits and stays split must not gossip itself to death: after
// the split, gossip per peer per second stays under a fixed bound, routes are
// not recomputed in a loop, and every peer forgets the peers it cannot reach
// (without them coming back through stale gossip from its neighbours).

import t from 'tap';
import { SeededRng } from '../../common/rng';
import { DEFAULT_TIMINGS } from '../../router/mesh/constants';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh } from './mesh';
import { componentOf, describe, figuresSince, growMesh, snapshot, unreachableKnown } from './gossip-storm';

const PEERS = 50;
const CUT_AT = 33;
const SEED = Number(process.env['SIM_SEED'] ?? 11);

t.test(`${PEERS} peers split ${CUT_AT}/${PEERS - CUT_AT} and stay split (seed ${SEED})`, async (t) => {
  await loadSodium();
  const mesh = new SimMesh({ seed: SEED, discovery: false, passwordKey: stretchPassword('sim'), timings: DEFAULT_TIMINGS });
  t.teardown(() => mesh.shutdown());
  await growMesh(mesh, new SeededRng(SEED), PEERS);
  mesh.net.runUntil(() => mesh.converged(), 300_000, 1_000);
  t.ok(mesh.converged(), 'the whole mesh converges before the split');

  const hosts = mesh.alive().map((p) => p.host);
  mesh.net.partition(hosts.slice(0, CUT_AT), hosts.slice(CUT_AT));
  // Heartbeats notice the cut within their timeout; give the mesh that long to settle.
  mesh.net.run(DEFAULT_TIMINGS.heartbeatTimeoutMs * 3);

  const before = snapshot(mesh);
  const windowMs = 15 * 60_000;
  mesh.net.run(windowMs);
  const f = figuresSince(mesh, before);
  t.comment(`split, ${windowMs / 60_000} simulated minutes: ${describe(f)}`);
  const stale = mesh.alive().map(unreachableKnown);
  t.comment(`peers known but unreachable, most on any peer: ${Math.max(...stale)}`);
  for (const p of [mesh.peers[0]!, mesh.peers[PEERS - 1]!]) {
    t.comment(`peer ${p.index}: knows ${p.router.peers.size()}, reaches ${p.router.currentRoutes().reachable().size}`);
  }
  t.ok(f.maxReceivedPerPeerPerSecond < 1, 'no peer receives more than one gossip message per second');
  t.ok(f.maxRouteComputations < 20, 'routes are not recomputed in a loop');
  t.same(stale.filter((n) => n > 0), [], 'every peer has forgotten the peers it cannot reach');
  const sides = [componentOf(mesh, mesh.peers[0]!), componentOf(mesh, mesh.peers[PEERS - 1]!)];
  for (const side of sides) t.ok(mesh.converged(side), `the side of ${side[0]!.index} (${side.length} peers) agrees on its topology`);
});
