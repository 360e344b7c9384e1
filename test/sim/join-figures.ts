// What one peer joining a converged simulated mesh costs: shared by the
// control-plane bench (scripts/bench-control-plane.ts) and its test
// (test/sim/join-convergence.test.ts), so both judge the same figures.

import { randomInt, Rng } from '../../common/rng';
import { SimMesh, SimPeer } from './mesh';

export interface CounterSnapshot {
  messages: Map<number, number>;
  bytes: Map<number, number>;
}

export interface JoinFigures {
  /** Simulated ms from the joiner's start until joinedEverywhere held. */
  simMs: number;
  /** Gossip messages received per peer (every peer alive, the joiner included) meanwhile. */
  messagesPerPeer: number;
  /** Gossip payload bytes received per peer meanwhile. */
  bytesPerPeer: number;
  /** The most messages any one peer received (the joiner, usually). */
  maxMessages: number;
  wallMs: number;
  cpuMs: number;
}

export function counterSnapshot(mesh: SimMesh): CounterSnapshot {
  const messages = new Map<number, number>();
  const bytes = new Map<number, number>();
  for (const p of mesh.alive()) {
    messages.set(p.index, p.router.gossip.counters.gossipReceived);
    bytes.set(p.index, p.router.gossip.counters.gossipBytesReceived);
  }
  return { messages, bytes };
}

/**
 * Every peer holds the joiner's entry and a route to it, and the joiner holds
 * an entry and a route for every peer.
 */
export function joinedEverywhere(mesh: SimMesh, joiner: SimPeer): boolean {
  const alive = mesh.alive();
  const own = joiner.router.currentRoutes().reachable();
  if (joiner.router.peers.size() !== alive.length || own.size !== alive.length) return false;
  for (const p of alive) {
    if (!own.has(p.name)) return false;
    if (p === joiner) continue;
    if (p.router.peers.get(joiner.name) === undefined || !p.router.currentRoutes().reachable().has(joiner.name)) return false;
  }
  return true;
}

/** Figures since `before`, over every peer alive now (one that joined since counts from zero). */
export function joinFigures(mesh: SimMesh, before: CounterSnapshot, simMs: number, wallMs: number, cpuMs: number): JoinFigures {
  const alive = mesh.alive();
  let messages = 0;
  let bytes = 0;
  let maxMessages = 0;
  for (const p of alive) {
    const m = p.router.gossip.counters.gossipReceived - (before.messages.get(p.index) ?? 0);
    messages += m;
    bytes += p.router.gossip.counters.gossipBytesReceived - (before.bytes.get(p.index) ?? 0);
    maxMessages = Math.max(maxMessages, m);
  }
  return { simMs, messagesPerPeer: messages / alive.length, bytesPerPeer: bytes / alive.length, maxMessages, wallMs, cpuMs };
}

/**
 * Every host runs `weave launch` with 2 or 3 of the hosts before it as
 * targets, all at once (a cluster booting): the topology of one join after
 * another (gossip-storm.ts growMesh) for a fraction of the work.
 */
export async function bootMesh(mesh: SimMesh, rng: Rng, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const targets = new Set<number>();
    const want = Math.min(i, 2 + randomInt(rng, 2));
    while (targets.size < want) targets.add(randomInt(rng, i));
    await mesh.addPeer([...targets]);
  }
}

/** Three distinct peers of the mesh, as a joiner's `weave launch` targets. */
export function joinTargets(mesh: SimMesh, rng: Rng): number[] {
  const alive = mesh.alive();
  const targets = new Set<number>();
  while (targets.size < Math.min(3, alive.length)) targets.add(alive[randomInt(rng, alive.length)]!.index);
  return [...targets];
}
