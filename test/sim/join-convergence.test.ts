// Issue 14's control-plane bounds at a size the suite affords: a mesh built
// as `weave launch <peers>` builds one (each host given a few others), one
// peer joins, and every peer must hold it in its topology and routes (and it
// everybody) within the bound of simulated time, with gossip per peer growing
// no faster than log2(n) between a small and a larger mesh.
// scripts/bench-control-plane.ts measures the same up to 1000 peers.

import t from 'tap';
import { SeededRng } from '../../common/rng';
import { DEFAULT_TIMINGS } from '../../router/mesh/constants';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh } from './mesh';
import { bootMesh, counterSnapshot, joinedEverywhere, JoinFigures, joinFigures, joinTargets } from './join-figures';

const SIZES = [40, 120];
const JOINS = 2;
const SEED = Number(process.env['SIM_SEED'] ?? 3);
/** The bound is 2 s at 1000 peers; a join needs one route debounce (100 ms) and a few link delays. */
const CONVERGE_BOUND_MS = 2_000;
/** Messages per peer for a join, per log2(n): seed 3 shows 3.1 at 120 peers (21.6 messages). */
const MESSAGES_PER_LOG2N = 6;
/** Payload bytes per peer for a join, per log2(n): seed 3 shows 0.8 KiB at 120 peers (5.6 KiB). */
const KIB_PER_LOG2N = 2;
/** Growth of messages per peer from the smaller to the larger mesh, against log2(n)'s growth. */
const LOG_GROWTH_SLACK = 1.25;

async function measure(n: number): Promise<JoinFigures[]> {
  const rng = new SeededRng(SEED * 1_000_003 + n);
  const mesh = new SimMesh({ seed: SEED, discovery: false, timings: DEFAULT_TIMINGS, passwordKey: null });
  mesh.net.latencyMs = 1;
  try {
    await bootMesh(mesh, rng, n);
    mesh.net.runUntil(() => mesh.converged(), 120_000, 500);
    mesh.net.run(2_000);
    const figures: JoinFigures[] = [];
    for (let j = 0; j < JOINS; j++) {
      const before = counterSnapshot(mesh);
      const joiner = await mesh.addPeer(joinTargets(mesh, rng));
      const simMs = mesh.net.runUntil(() => joinedEverywhere(mesh, joiner), 10_000, 5);
      figures.push(joinFigures(mesh, before, simMs, 0, 0));
      mesh.net.runUntil(() => mesh.converged(), 10_000, 500);
      mesh.net.run(2_000);
    }
    return figures;
  } finally {
    mesh.shutdown();
  }
}

t.test(`a peer joins meshes of ${SIZES.join(' and ')} peers (seed ${SEED})`, async (t) => {
  await loadSodium();
  const perSize = new Map<number, JoinFigures[]>();
  for (const n of SIZES) {
    const figures = await measure(n);
    perSize.set(n, figures);
    for (const f of figures) {
      t.comment(`${n} peers: joined everywhere after ${f.simMs} simulated ms; gossip per peer ${f.messagesPerPeer.toFixed(1)} messages, ` +
        `${(f.bytesPerPeer / 1024).toFixed(1)} KiB (the busiest peer ${f.maxMessages})`);
      t.ok(f.simMs < CONVERGE_BOUND_MS, `${n} peers: under ${CONVERGE_BOUND_MS} simulated ms`);
      t.ok(f.messagesPerPeer <= MESSAGES_PER_LOG2N * Math.log2(n), `${n} peers: at most ${MESSAGES_PER_LOG2N} x log2(n) messages per peer`);
      t.ok(f.bytesPerPeer / 1024 <= KIB_PER_LOG2N * Math.log2(n), `${n} peers: at most ${KIB_PER_LOG2N} KiB x log2(n) per peer`);
    }
  }
  const worst = (n: number): number => Math.max(...perSize.get(n)!.map((f) => f.messagesPerPeer));
  const best = (n: number): number => Math.min(...perSize.get(n)!.map((f) => f.messagesPerPeer));
  const [small, large] = SIZES as [number, number];
  const growth = worst(large) / best(small);
  const logGrowth = Math.log2(large) / Math.log2(small);
  t.ok(growth <= logGrowth * LOG_GROWTH_SLACK,
    `messages per peer grow ${growth.toFixed(2)}x from ${small} to ${large} peers, log2(n) ${logGrowth.toFixed(2)}x (slack ${LOG_GROWTH_SLACK})`);
});
