// 200 peers, 10% of them flapping (every connection of a flapping host drops
// and comes back, again and again): gossip per peer per second stays under a
// fixed bound while it goes on, routes are recomputed at a bounded pace, and
// once the flapping stops the whole mesh converges again.

import t from 'tap';
import { randomInt, SeededRng } from '../../common/rng';
import { DEFAULT_TIMINGS, RouterTimings } from '../../router/mesh/constants';
import { GOSSIP_BURST, GOSSIP_TOKEN_INTERVAL_MS } from '../../router/mesh/gossip-outbox';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh } from './mesh';
import { describe, figuresSince, growMesh, snapshot, unreachableKnown } from './gossip-storm';

// The issue asks for 200 (SIM_PEERS=200); the default stays small enough for the suite's
// 600 s per-file timeout on a loaded 2-core machine until the run time at 200 is measured.
const PEERS = Number(process.env['SIM_PEERS'] ?? 60);
const FLAPPING = PEERS / 10;
const FLAP_MS = 30_000;
/**
 * Gossip bounds while flapping, with room over what seed 5 shows (60 peers:
 * 12 messages/peer/s, 29 per flap; 200 peers: 35/s, 26 per flap). Per flap is
 * the figure that must not grow with the mesh: gossip follows churn, not size.
 */
const AVG_BOUND = 60;
const PER_FLAP_BOUND = 60;
const SEED = Number(process.env['SIM_SEED'] ?? 5);
/**
 * The daemon's timings (30 s periodic gossip, 100 ms route debounce), with a
 * heartbeat that notices a dead link within 4 s and retries within 4 s, so
 * flaps of a few seconds really drop and re-make connections.
 */
const TIMINGS: RouterTimings = {
  ...DEFAULT_TIMINGS, heartbeatIntervalMs: 1_000, heartbeatTimeoutMs: 4_000, retryInitialMs: 500, retryMaxMs: 4_000, connectorCheckMs: 1_000,
};

t.test(`${PEERS} peers, ${FLAPPING} of them flapping for ${FLAP_MS / 1000} s (seed ${SEED})`, async (t) => {
  await loadSodium();
  const rng = new SeededRng(SEED);
  const mesh = new SimMesh({ seed: SEED, discovery: false, passwordKey: stretchPassword('sim'), timings: TIMINGS });
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
  // Each flapping host is cut off for 5-8 s (its connections time out), then up for 5-15 s, over and over.
  const endMs = mesh.clock.now() + FLAP_MS;
  const nextFlip = new Map<number, number>([...flapping].map((i) => [i, mesh.clock.now() + randomInt(rng, 8_000)]));
  let flaps = 0;
  while (mesh.clock.now() < endMs) {
    mesh.net.run(250);
    for (const i of flapping) {
      if (mesh.clock.now() < nextFlip.get(i)!) continue;
      const isDown = down.has(i);
      if (isDown) down.delete(i); else { down.set(i, mesh.clock.now()); flaps++; }
      setDown(i, !isDown);
      nextFlip.set(i, mesh.clock.now() + (isDown ? 5_000 + randomInt(rng, 10_000) : 5_000 + randomInt(rng, 3_000)));
    }
  }
  const f = figuresSince(mesh, before);
  const perFlap = (f.receivedPerPeerPerSecond * FLAP_MS) / 1000 / Math.max(1, flaps);
  t.comment(`flapping, ${flaps} flaps in ${FLAP_MS / 1000} simulated s: ${describe(f)}; ${perFlap.toFixed(1)} messages per peer per flap`);
  t.ok(f.receivedPerPeerPerSecond < AVG_BOUND, `gossip stays under ${AVG_BOUND} messages per peer per second on average`);
  t.ok(perFlap < PER_FLAP_BOUND, `and under ${PER_FLAP_BOUND} messages per peer per flap`);
  // No peer gets more than its neighbours' outboxes let through: a burst each, then the paced rate.
  const maxDegree = Math.max(...mesh.alive().map((p) => p.router.neighbours().length));
  const ceiling = maxDegree * (1000 / GOSSIP_TOKEN_INTERVAL_MS + GOSSIP_BURST / (FLAP_MS / 1000));
  t.ok(f.maxReceivedPerPeerPerSecond <= ceiling, `the busiest peer (${f.maxReceivedPerPeerPerSecond.toFixed(1)}/s) stays under the pacing ceiling of its neighbours (${ceiling.toFixed(0)}/s)`);
  t.ok(f.maxRouteComputations <= FLAP_MS / 1000 + 1, 'at most one route computation per second on any peer');

  mesh.net.healAll();
  const after = snapshot(mesh);
  const healMs = mesh.net.runUntil(() => mesh.converged(), 180_000, 500);
  t.ok(mesh.converged(), 'after the flapping stops, every peer agrees on the whole mesh');
  t.comment(`converged ${healMs} simulated ms after the flapping stopped: ${describe(figuresSince(mesh, after))}`);
  t.same(mesh.alive().map(unreachableKnown).filter((n) => n > 0), [], 'nobody keeps peers it cannot reach');
});
