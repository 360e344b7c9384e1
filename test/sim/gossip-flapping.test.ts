// 200 peers, 10% of them flapping (every connection of a flapping host drops
// and comes back, again and again): gossip per peer per second stays under a
// fixed bound while it goes on, routes are recomputed at a bounded pace, and
// once the flapping stops the whole mesh converges again.

import t from 'tap';
import { randomInt, SeededRng } from '../../common/rng';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh } from './mesh';
import { describe, figuresSince, growMesh, snapshot, unreachableKnown } from './gossip-storm';

const PEERS = 200;
const FLAPPING = PEERS / 10;
const FLAP_MS = 60_000;
const SEED = Number(process.env['SIM_SEED'] ?? 5);

t.test(`${PEERS} peers, ${FLAPPING} of them flapping for ${FLAP_MS / 1000} s (seed ${SEED})`, async (t) => {
  await loadSodium();
  const rng = new SeededRng(SEED);
  const mesh = new SimMesh({ seed: SEED, discovery: false, passwordKey: stretchPassword('sim') });
  t.teardown(() => mesh.shutdown());
  await growMesh(mesh, rng, PEERS);
  const joinMs = mesh.net.runUntil(() => mesh.converged(), 120_000, 500);
  t.ok(mesh.converged(), `the mesh converges after the joins (${joinMs} simulated ms)`);

  const flapping = new Set<number>();
  while (flapping.size < FLAPPING) flapping.add(1 + randomInt(rng, PEERS - 1));
  const hosts = mesh.alive().map((p) => p.host);
  const down = new Map<number, number>();
  const setDown = (i: number, cut: boolean): void => {
    const me = mesh.peers[i]!.host;
    mesh.net.partition([me], hosts.filter((h) => h !== me), cut);
  };

  const before = snapshot(mesh);
  // Each flapping host is cut off for 1-4 s, then up for 2-8 s, over and over.
  const endMs = mesh.clock.now() + FLAP_MS;
  const nextFlip = new Map<number, number>([...flapping].map((i) => [i, mesh.clock.now() + randomInt(rng, 4_000)]));
  let flaps = 0;
  while (mesh.clock.now() < endMs) {
    mesh.net.run(250);
    for (const i of flapping) {
      if (mesh.clock.now() < nextFlip.get(i)!) continue;
      const isDown = down.has(i);
      if (isDown) down.delete(i); else { down.set(i, mesh.clock.now()); flaps++; }
      setDown(i, !isDown);
      nextFlip.set(i, mesh.clock.now() + (isDown ? 2_000 + randomInt(rng, 6_000) : 1_000 + randomInt(rng, 3_000)));
    }
  }
  const f = figuresSince(mesh, before);
  t.comment(`flapping, ${flaps} flaps in ${FLAP_MS / 1000} simulated s: ${describe(f)}`);
  t.ok(f.receivedPerPeerPerSecond < 5, 'gossip stays under 5 messages per peer per second on average');
  t.ok(f.maxReceivedPerPeerPerSecond < 40, 'and under 40 on the busiest peer');
  t.ok(f.maxRouteComputations <= FLAP_MS / 1000 + 1, 'at most about one route computation per second on any peer');

  mesh.net.healAll();
  const after = snapshot(mesh);
  const healMs = mesh.net.runUntil(() => mesh.converged(), 180_000, 500);
  t.ok(mesh.converged(), 'after the flapping stops, every peer agrees on the whole mesh');
  t.comment(`converged ${healMs} simulated ms after the flapping stopped: ${describe(figuresSince(mesh, after))}`);
  t.same(mesh.alive().map(unreachableKnown).filter((n) => n > 0), [], 'nobody keeps peers it cannot reach');
});
