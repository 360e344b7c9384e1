// The figures and the table of a chaos run (chaos.ts), computed from what the
// probers recorded (chaos-probe.ts) and what the orchestrator saw. Pure: no
// I/O, so the arithmetic of "longest outage after a heal" is easy to check.

import type { ProbeRecord } from './chaos-probe';
import type { FaultKind } from './chaos-faults';

export interface FaultRecord {
  kind: FaultKind;
  hosts: string[];
  /** Other side of a partition. */
  sideB: string[];
  injectedMs: number;
  /** When it was healed (for kill: when the relaunched router answered); null for remove. */
  healedMs: number | null;
  note: string;
}

export interface HostSample { host: string; tMs: number; pid: number | null; rssKb: number | null; gossip: number | null }

export interface ChaosFacts {
  hosts: string[];
  /** Probed containers: name -> host. */
  probed: Record<string, string>;
  records: Record<string, ProbeRecord>;
  faults: FaultRecord[];
  /** When each probed container stopped counting (its host removed). */
  goneAtMs: Record<string, number>;
  verify: { fromMs: number; toMs: number };
  duplicates: string[];
  lost: string[];
  restartsByChaos: number;
  pidChanges: number;
  deadRouters: string[];
  samples: HostSample[];
  timings: string;
  durationS: number;
}

/** unrecovered: pairs with no answer between the heal and the next fault (windowMs later). */
export interface HealFigure { fault: string; healedS: number; windowMs: number; worstMs: number | null; worstPair: string; unrecovered: number }

export interface ChaosFigures {
  heals: HealFigure[];
  /** Per pair "from->to": longest time from a heal to its first answered probe. */
  pairWorstMs: Record<string, number>;
  pairsDownInVerify: string[];
  dnsMissingAfter: number;
  dnsWrongAfter: number;
  dnsWrongDuring: number;
  peakRssMb: Record<string, number>;
  gossipPerSec: { first: number; last: number; max: number };
  mustBeZero: Record<string, number>;
}

/** The first answered probe sent at or after t (a heal counts as recovered at its first answer), from sorted send times. */
export function firstAnsweredAtOrAfter(sorted: number[], t: number): number | null {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < t) lo = mid + 1; else hi = mid;
  }
  return lo < sorted.length ? sorted[lo]! : null;
}

function livePairs(f: ChaosFacts, atMs: number): [string, string][] {
  const names = Object.keys(f.probed).filter((n) => (f.goneAtMs[n] ?? Infinity) > atMs);
  return names.flatMap((a) => names.filter((b) => b !== a).map((b): [string, string] => [a, b]));
}

function answeredSorted(f: ChaosFacts, from: string, to: string): number[] {
  return [...(f.records[from]?.answered[to] ?? [])].sort((x, y) => x - y);
}

export function computeFigures(f: ChaosFacts): ChaosFigures {
  const t0 = f.faults[0]?.injectedMs ?? f.verify.fromMs;
  const heals: HealFigure[] = [];
  const pairWorstMs: Record<string, number> = {};
  for (const [i, fault] of f.faults.entries()) {
    if (fault.healedMs === null) continue;
    const until = f.faults[i + 1]?.injectedMs ?? f.verify.toMs;
    let worst: number | null = 0;
    let worstPair = '';
    let unrecovered = 0;
    for (const [a, b] of livePairs(f, until)) {
      const first = firstAnsweredAtOrAfter(answeredSorted(f, a, b), fault.healedMs);
      const key = `${a}->${b}`;
      const ms = first === null || first > until ? until - fault.healedMs : Math.max(0, first - fault.healedMs);
      if (first === null || first > until) unrecovered++;
      pairWorstMs[key] = Math.max(pairWorstMs[key] ?? 0, ms);
      if (worst !== null && ms > worst) { worst = ms; worstPair = key; }
    }
    heals.push({ fault: `${fault.kind} ${fault.hosts.join(',')}${fault.sideB.length ? ` | ${fault.sideB.join(',')}` : ''}`,
      healedS: (fault.healedMs - t0) / 1000, windowMs: until - fault.healedMs, worstMs: worst, worstPair, unrecovered });
  }
  const pairsDownInVerify = livePairs(f, f.verify.toMs)
    .filter(([a, b]) => !answeredSorted(f, a, b).some((t) => t >= f.verify.fromMs && t <= f.verify.toMs))
    .map(([a, b]) => `${a}->${b}`);
  let dnsMissingAfter = 0;
  let dnsWrongAfter = 0;
  let dnsWrongDuring = 0;
  for (const [name, rec] of Object.entries(f.records)) {
    if ((f.goneAtMs[name] ?? Infinity) <= f.verify.fromMs) continue;
    const inVerify = (t: number): boolean => t >= f.verify.fromMs && t <= f.verify.toMs;
    for (const ts of Object.values(rec.dnsMissing)) dnsMissingAfter += ts.filter(inVerify).length;
    for (const ws of Object.values(rec.dnsWrong)) {
      dnsWrongAfter += ws.filter((w) => inVerify(w.t)).length;
      dnsWrongDuring += ws.filter((w) => !inVerify(w.t)).length;
    }
  }
  const peakRssMb: Record<string, number> = {};
  for (const s of f.samples) {
    if (s.rssKb !== null) peakRssMb[s.host] = Math.max(peakRssMb[s.host] ?? 0, Math.round(s.rssKb / 1024));
  }
  const gossipPerSec = gossipRates(f);
  const mustBeZero = {
    'duplicate addresses': f.duplicates.length,
    'lost containers': f.lost.length,
    'DNS answers missing after convergence': dnsMissingAfter,
    'DNS answers wrong after convergence': dnsWrongAfter,
    'pairs not answering after convergence': pairsDownInVerify.length,
    'router crashes (dead, or restarted without a kill)': f.deadRouters.length + Math.max(0, f.pidChanges - f.restartsByChaos),
  };
  return { heals, pairWorstMs, pairsDownInVerify, dnsMissingAfter, dnsWrongAfter, dnsWrongDuring, peakRssMb, gossipPerSec, mustBeZero };
}

/** Gossip messages (sent + received) per second per router: the first and last 30 s, and the largest rate between samples. */
function gossipRates(f: ChaosFacts): { first: number; last: number; max: number } {
  let max = 0;
  let first = 0;
  let last = 0;
  for (const host of f.hosts) {
    const xs = f.samples.filter((s) => s.host === host && s.gossip !== null);
    const rate = (a: HostSample, b: HostSample): number | null =>
      (b.tMs > a.tMs && b.pid === a.pid && b.gossip! >= a.gossip!) ? ((b.gossip! - a.gossip!) * 1000) / (b.tMs - a.tMs) : null;
    for (let i = 1; i < xs.length; i++) max = Math.max(max, rate(xs[i - 1]!, xs[i]!) ?? 0);
    const span = (from: number, to: number): number => {
      const w = xs.filter((s) => s.tMs >= from && s.tMs <= to);
      return w.length >= 2 ? rate(w[0]!, w[w.length - 1]!) ?? 0 : 0;
    };
    const start = xs[0]?.tMs ?? 0;
    const end = xs[xs.length - 1]?.tMs ?? 0;
    first = Math.max(first, span(start, start + 30_000));
    last = Math.max(last, span(end - 30_000, end));
  }
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { first: r(first), last: r(last), max: r(max) };
}

export function renderTable(f: ChaosFacts, g: ChaosFigures): string {
  const lines: string[] = [];
  const counts = new Map<string, number>();
  for (const x of f.faults) counts.set(x.kind, (counts.get(x.kind) ?? 0) + 1);
  lines.push(`chaos run: ${f.hosts.length} hosts, ${Object.keys(f.probed).length} probed containers, ${f.durationS} s of faults, timings ${f.timings}`);
  lines.push(`faults injected: ${f.faults.length} (${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')})`);
  lines.push('');
  lines.push('  heal at   fault                               longest outage after heal   unrecovered pairs (window)');
  for (const h of g.heals) {
    const worst = h.worstMs === null ? '-' : `${(h.worstMs / 1000).toFixed(1)} s${h.worstPair ? ` (${h.worstPair})` : ''}`;
    lines.push(`  ${h.healedS.toFixed(0).padStart(5)} s  ${h.fault.padEnd(36)} ${worst.padEnd(27)} ${h.unrecovered} (${(h.windowMs / 1000).toFixed(0)} s)`);
  }
  for (const x of f.faults) if (x.kind === 'remove') lines.push(`  removed for good: ${x.hosts.join(',')} (${x.note})`);
  lines.push('');
  const names = Object.keys(f.probed);
  lines.push(`longest outage after a heal, per pair (s; row = from, column = to):`);
  lines.push(`        ${names.map((n) => n.padStart(6)).join('')}`);
  for (const a of names) {
    lines.push(`  ${a.padEnd(6)}${names.map((b) => (a === b ? '     -' : (g.pairWorstMs[`${a}->${b}`] === undefined ? '     .' : (g.pairWorstMs[`${a}->${b}`]! / 1000).toFixed(1).padStart(6)))).join('')}`);
  }
  lines.push('');
  lines.push(`router restarts: ${f.pidChanges} (after a kill -9 by the chaos: ${f.restartsByChaos})`);
  lines.push(`peak RSS (MB): ${Object.entries(g.peakRssMb).map(([h, mb]) => `${h} ${mb}`).join(', ')}`);
  lines.push(`gossip msgs/s per router (sent + received): first 30 s ${g.gossipPerSec.first}, last 30 s ${g.gossipPerSec.last}, highest ${g.gossipPerSec.max}`);
  lines.push(`DNS answers wrong during faults: ${g.dnsWrongDuring}`);
  lines.push('');
  for (const [what, n] of Object.entries(g.mustBeZero)) lines.push(`${n === 0 ? 'ok  ' : 'FAIL'} ${what}: ${n} (must be 0)`);
  if (f.duplicates.length) lines.push(`     duplicates: ${f.duplicates.join('; ')}`);
  if (f.lost.length) lines.push(`     lost: ${f.lost.join('; ')}`);
  if (g.pairsDownInVerify.length) lines.push(`     pairs down: ${g.pairsDownInVerify.join(' ')}`);
  if (f.deadRouters.length) lines.push(`     dead routers: ${f.deadRouters.join(' ')}`);
  return lines.join('\n');
}
