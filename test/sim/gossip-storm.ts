// Helpers for the gossip-storm simulations: build a mesh the way an operator
// would (each newcomer given a few earlier hosts), and measure what gossip
// costs per peer per second over a window of simulated time.

import { randomInt, Rng } from '../../common/rng';
import { SimMesh, SimPeer } from './mesh';

export interface GossipFigures {
  /** Gossip messages received, per alive peer per simulated second. */
  receivedPerPeerPerSecond: number;
  /** The most any one peer received per simulated second. */
  maxReceivedPerPeerPerSecond: number;
  /** Route computations per alive peer over the window. */
  routeComputationsPerPeer: number;
  /** The most route computations any one peer ran over the window. */
  maxRouteComputations: number;
}

interface Snapshot {
  atMs: number;
  received: Map<number, number>;
  routes: Map<number, number>;
}

export function snapshot(mesh: SimMesh): Snapshot {
  const received = new Map<number, number>();
  const routes = new Map<number, number>();
  for (const p of mesh.alive()) {
    received.set(p.index, p.router.gossip.counters.gossipReceived);
    routes.set(p.index, p.router.counters.routeComputations);
  }
  return { atMs: mesh.clock.now(), received, routes };
}

/** Figures between `before` and now, over the peers alive in both. */
export function figuresSince(mesh: SimMesh, before: Snapshot): GossipFigures {
  // A window of no simulated time (already converged) counts as one millisecond, not a division by zero.
  const seconds = Math.max(1, mesh.clock.now() - before.atMs) / 1000;
  let received = 0;
  let maxReceived = 0;
  let routes = 0;
  let maxRoutes = 0;
  let n = 0;
  for (const p of mesh.alive()) {
    const r0 = before.received.get(p.index);
    const c0 = before.routes.get(p.index);
    if (r0 === undefined || c0 === undefined) continue;
    n++;
    const r = p.router.gossip.counters.gossipReceived - r0;
    const c = p.router.counters.routeComputations - c0;
    received += r;
    routes += c;
    maxReceived = Math.max(maxReceived, r);
    maxRoutes = Math.max(maxRoutes, c);
  }
  return {
    receivedPerPeerPerSecond: n === 0 ? 0 : received / n / seconds,
    maxReceivedPerPeerPerSecond: maxReceived / seconds,
    routeComputationsPerPeer: n === 0 ? 0 : routes / n,
    maxRouteComputations: maxRoutes,
  };
}

export function describe(f: GossipFigures): string {
  return `${f.receivedPerPeerPerSecond.toFixed(2)} gossip messages/peer/s (max ${f.maxReceivedPerPeerPerSecond.toFixed(2)}), ` +
    `${f.routeComputationsPerPeer.toFixed(1)} route computations/peer (max ${f.maxRouteComputations})`;
}

/** Adds `count` peers, each given 2 or 3 distinct earlier peers as targets. */
export async function growMesh(mesh: SimMesh, rng: Rng, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const targets = new Set<number>();
    const want = i === 0 ? 0 : Math.min(i, 2 + randomInt(rng, 2));
    while (targets.size < want) targets.add(randomInt(rng, i));
    await mesh.addPeer([...targets]);
    if (i % 20 === 19) mesh.net.run(50);
  }
}

/** Peers that `p` holds an entry for but cannot reach: what garbage collection must remove. */
export function unreachableKnown(p: SimPeer): number {
  const reach = p.router.currentRoutes().reachable();
  return p.router.peers.entries().filter((e) => !reach.has(e.name)).length;
}

/** The peers `p` can reach, as sim peers. */
export function componentOf(mesh: SimMesh, p: SimPeer): SimPeer[] {
  const reach = p.router.currentRoutes().reachable();
  return mesh.alive().filter((q) => reach.has(q.name));
}
