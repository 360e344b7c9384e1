// The control-plane bench (issue 14): for each mesh size, real routers on the
// in-memory network of test/sim with a LAN-like link delay (1 ms one way)
// and the daemon's timings, built the way `weave launch <peers>` builds a
// mesh (every host given 2 or 3 others, no discovery, all booting at once),
// left to converge; then one new peer joins, several times, and we measure
// the simulated time until every peer holds the joiner in its topology and
// its routes and the joiner holds everybody, the gossip each peer received
// meanwhile (messages and payload bytes), and CPU and wall time. Prints one
// table, with how gossip per peer grows against log2(n). Not measured here:
// periodic anti-entropy, which sends a neighbour the whole topology when it
// is not known to hold it (every 30 s, to a few neighbours), so after a
// change costs O(n) bytes per peer per round; the joins fall between rounds.
//
//   node dist/scripts/bench-control-plane.js [--sizes 100,250,500,1000] [--seed N] [--joins N]
//        [--latency-ms N] [--dense-up-to N]
//
// --dense-up-to N adds a second variant for the sizes up to N (none by
// default): discovery on, so every peer dials every peer it learns of, up to
// a connection limit of 32 (a "full-ish" mesh; a full mesh of 1000 is 500,000
// connections).
// Exits 1 when a bound of the issue is broken at the largest size.

import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { SeededRng } from '../common/rng';
import { summaryLine } from './bench-summary';
import { DEFAULT_TIMINGS } from '../router/mesh/constants';
import { loadSodium } from '../router/mesh/sodium';
import { SimMesh, SimPeer } from '../test/sim/mesh';
import { bootMesh, joinTargets, joinFigures, JoinFigures, joinedEverywhere, counterSnapshot } from '../test/sim/join-figures';

interface Options {
  sizes: number[];
  seed: number;
  joins: number;
  latencyMs: number;
  denseUpTo: number;
}

interface Row {
  variant: string;
  n: number;
  meanDegree: number;
  buildWallS: number;
  buildCpuS: number;
  joins: JoinFigures[];
}

/** The convergence bound of issue 14, in simulated ms. */
const CONVERGE_BOUND_MS = 2_000;
/** Gossip per peer may grow at most this much faster than log2(n) between the smallest and largest size (noise). */
const LOG_GROWTH_SLACK = 1.25;
const DENSE_CONN_LIMIT = 32;

function parseArgs(argv: string[]): Options {
  const o: Options = { sizes: [100, 250, 500, 1000], seed: 1, joins: 3, latencyMs: 1, denseUpTo: 0 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const int = (min: number): number => {
      const s = value();
      const v = Number(s);
      if (!Number.isSafeInteger(v) || v < min) throw new Error(`${flag}: expected an integer >= ${min}, got ${s}`);
      return v;
    };
    switch (flag) {
      case '--sizes': o.sizes = value().split(',').map((s) => {
        const v = Number(s);
        if (!Number.isSafeInteger(v) || v < 4 || v > 5000) throw new Error(`--sizes: ${s} is not a size in [4, 5000]`);
        return v;
      }).sort((a, b) => a - b); break;
      case '--seed': o.seed = int(0); break;
      case '--joins': o.joins = int(1); break;
      case '--latency-ms': o.latencyMs = int(0); break;
      case '--dense-up-to': o.denseUpTo = int(0); break;
      default: throw new Error(`unknown argument ${flag}`);
    }
  }
  return o;
}

/** CPU time of this process (user + system): on a shared machine a fairer clock than the wall. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function range(xs: number[], digits: number): string {
  return `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
}

async function measure(variant: 'sparse' | 'dense', n: number, o: Options): Promise<Row> {
  const rng = new SeededRng(o.seed * 1_000_003 + n);
  const mesh = new SimMesh({
    seed: o.seed, discovery: variant === 'dense', timings: DEFAULT_TIMINGS, passwordKey: null,
    connLimit: variant === 'dense' ? DENSE_CONN_LIMIT : 100,
  });
  mesh.net.latencyMs = o.latencyMs;
  try {
    const t0 = performance.now();
    const c0 = cpuMs();
    await bootMesh(mesh, rng, n);
    mesh.net.runUntil(() => mesh.converged(), 600_000, 1_000);
    // Past every route debounce and spacing, so the join is measured on a quiet mesh. Every peer
    // started at once, so periodic gossip rounds fall together, every 30 s from the start: the
    // joins are measured between them (the figures are what a join costs, not anti-entropy).
    mesh.net.run(2_000);
    const buildWallS = (performance.now() - t0) / 1000;
    const buildCpuS = (cpuMs() - c0) / 1000;
    const degrees = mesh.alive().map((p) => p.router.neighbours().length);
    const joins: JoinFigures[] = [];
    for (let j = 0; j < o.joins; j++) {
      const before = counterSnapshot(mesh);
      const w0 = performance.now();
      const jc0 = cpuMs();
      const joiner: SimPeer = await mesh.addPeer(joinTargets(mesh, rng));
      const simMs = mesh.net.runUntil(() => joinedEverywhere(mesh, joiner), 60_000, 5);
      joins.push(joinFigures(mesh, before, simMs, performance.now() - w0, cpuMs() - jc0));
      // Let the join's tail (later route computations, the joiner's relays) finish before the next one.
      mesh.net.runUntil(() => mesh.converged(), 60_000, 500);
      mesh.net.run(2_000);
    }
    return { variant, n, meanDegree: degrees.reduce((a, b) => a + b, 0) / degrees.length, buildWallS, buildCpuS, joins };
  } finally {
    mesh.shutdown();
  }
}

function printTable(rows: Row[], o: Options, wallS: number): boolean {
  const header = ['variant', 'n', 'degree', 'join sim ms', 'msgs/peer', 'KiB/peer', 'msgs/log2n', 'growth', 'log2 growth', 'join cpu ms', 'join wall ms', 'build cpu s', 'build wall s'];
  const lines: string[][] = [];
  const summary: string[] = [];
  let ok = true;
  for (const variant of ['sparse', 'dense']) {
    const rs = rows.filter((r) => r.variant === variant);
    const base = rs[0];
    if (base === undefined) continue;
    const baseMsgs = median(base.joins.map((j) => j.messagesPerPeer));
    for (const r of rs) {
      const ms = r.joins.map((j) => j.simMs);
      const msgs = r.joins.map((j) => j.messagesPerPeer);
      const kib = r.joins.map((j) => j.bytesPerPeer / 1024);
      const growth = median(msgs) / baseMsgs;
      const logGrowth = Math.log2(r.n) / Math.log2(base.n);
      if (r.n === Math.max(...rs.map((x) => x.n))) {
        if (Math.max(...ms) >= CONVERGE_BOUND_MS) ok = false;
        if (growth > logGrowth * LOG_GROWTH_SLACK) ok = false;
        if (variant === 'sparse') {
          summary.push(summaryLine('control.join_sim_ms', Math.max(...ms), `<${CONVERGE_BOUND_MS}`,
            `simulated ms until a peer joining ${r.n} peers is known everywhere (slowest of ${ms.length} joins)`, 0));
          summary.push(summaryLine('control.gossip_growth_vs_log2n', growth / logGrowth, `<=${LOG_GROWTH_SLACK}`,
            `growth of gossip messages per peer for a join from ${base.n} to ${r.n} peers, over log2(n)'s growth`));
        }
      }
      lines.push([
        variant, String(r.n), r.meanDegree.toFixed(1),
        `${median(ms).toFixed(0)} (${range(ms, 0)})`,
        `${median(msgs).toFixed(1)} (${range(msgs, 1)})`,
        `${median(kib).toFixed(1)} (${range(kib, 1)})`,
        (median(msgs) / Math.log2(r.n)).toFixed(2),
        `${growth.toFixed(2)}x`, `${logGrowth.toFixed(2)}x`,
        median(r.joins.map((j) => j.cpuMs)).toFixed(0), median(r.joins.map((j) => j.wallMs)).toFixed(0),
        r.buildCpuS.toFixed(1), r.buildWallS.toFixed(1),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(`\ncontrol plane: one peer joins a converged mesh (${o.joins} joins per size, medians and ranges; seed ${o.seed}, ` +
    `link delay ${o.latencyMs} ms, daemon timings)`);
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
  for (const l of summary) console.log(l);
  console.log(`join sim ms: until every peer holds the joiner in topology and routes and the joiner holds everybody. ` +
    `msgs, KiB: gossip received per peer meanwhile. growth: msgs/peer against the smallest size; log2 growth: log2(n) against it.`);
  console.log(`bounds at the largest size: join under ${CONVERGE_BOUND_MS} simulated ms, growth at most ${LOG_GROWTH_SLACK}x the log2 growth: ` +
    `${ok ? 'met' : 'BROKEN'}. Whole run ${wallS.toFixed(1)} s wall, ${(cpuMs() / 1000).toFixed(1)} s CPU; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}.`);
  return ok;
}

/** One size's joins in a line, so a long run shows its figures as it goes. */
function progress(r: Row): string {
  return r.joins.map((j) => `${j.simMs} ms, ${j.messagesPerPeer.toFixed(1)} msgs/peer, ${(j.bytesPerPeer / 1024).toFixed(1)} KiB/peer`).join('; ') +
    `; build ${r.buildCpuS.toFixed(1)} s CPU`;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  await loadSodium();
  const t0 = performance.now();
  const rows: Row[] = [];
  for (const n of o.sizes) {
    const row = await measure('sparse', n, o);
    rows.push(row);
    console.error(`bench-control-plane: sparse n=${n} done (${((performance.now() - t0) / 1000).toFixed(1)} s): ${progress(row)}`);
  }
  for (const n of o.sizes.filter((s) => s <= o.denseUpTo)) {
    const row = await measure('dense', n, o);
    rows.push(row);
    console.error(`bench-control-plane: dense n=${n} done (${((performance.now() - t0) / 1000).toFixed(1)} s): ${progress(row)}`);
  }
  if (!printTable(rows, o, (performance.now() - t0) / 1000)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`bench-control-plane: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 2;
});
