// The live mutation runner: every parser that faces the network, against a
// running daemon rather than its decoders in a unit test. Two simulated hosts:
// h1 runs weave with a container c1 (named in weave DNS); h2 runs no weave and
// plays the stranger on the underlay. Senders (mutate-worker.ts) run inside
// those namespaces, one kind at a time:
//   password mesh   handshake (h2 -> h1:6783), sleeve datagrams (h2 -> h1 UDP
//                   6783), DNS over UDP and TCP and mDNS (c1 -> weave DNS and
//                   224.0.0.251): nothing a stranger sends may change state, so
//                   the status snapshot (peers, connections, IPAM, DNS records,
//                   containers) must be the same afterwards
//   plaintext mesh  h1 relaunched without a password, so a peer speaking the
//                   real handshake reaches gossip: mutated control messages and
//                   gossip of every channel (seeded with what h1 gossips), and
//                   sleeve datagrams from that peer; h1's own container and DNS
//                   name must survive
// After every sender: the router's pid is the same, the API answers, and its
// RSS stays within a bound of the RSS after warm-up. Prints a table; exit 1 on
// any violation.
//
// Usage: node dist/scripts/mutate-live.js [--iterations 20000] [--seed N] [--rss-bound-mb 40]

import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { ApiClient } from '../cli/api-client';
import type { RouterStatus } from '../router/mesh/status';
import { run } from './command';
import { routerPid } from './chaos-faults';
import { processAlive as alive } from '../common/process-alive';
import { SimNetwork } from './sim-network';
import type { WorkerCounts } from './mutate-worker';

export interface MutateOptions { iterations: number; seed: number; rssBoundMb: number; log?: (line: string) => void }

export interface MutateStep {
  phase: 'password' | 'plaintext';
  mode: string;
  counts: WorkerCounts | null;
  workerExit: number;
  pidSame: boolean;
  apiAnswers: boolean;
  /** For the password phase: the snapshot differs (what), else null. */
  stateChange: string | null;
  rssBeforeMb: number;
  rssAfterMb: number;
}

export interface MutateResult { steps: MutateStep[]; warmRssMb: number; peakRssMb: number; violations: string[]; table: string }

const WORKER_JS = resolve(__dirname, 'mutate-worker.js');

/** Thrown by a step after the router died: the remaining steps cannot run. */
class RouterGone extends Error {}

function rssMb(pid: number | null): number {
  if (pid === null) return 0;
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** Drops what changes by itself (times, counters, handshake pressure) and keeps what input could corrupt. */
function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) {
      if (/ms$|Ms$|since|age|counters|handshakes|health|targets|keyEpoch|waiting/i.test(k)) continue;
      out[k] = stable(v);
    }
    return out;
  }
  return value;
}

async function snapshot(api: ApiClient): Promise<Record<string, string>> {
  const status = await api.get<RouterStatus>('/status');
  return {
    peers: JSON.stringify(stable(status.peers)),
    connections: JSON.stringify(stable(status.connections.filter((c) => c.state === 'established'))),
    ipam: JSON.stringify(stable(await api.get('/ipam/status'))),
    dns: JSON.stringify(stable(await api.get('/dns'))),
    containers: JSON.stringify(stable(await api.get('/ps'))),
  };
}

function diff(a: Record<string, string>, b: Record<string, string>): string | null {
  const changed = Object.keys(a).filter((k) => a[k] !== b[k]);
  return changed.length === 0 ? null : changed.map((k) => `${k}: ${a[k]!.slice(0, 300)} -> ${b[k]!.slice(0, 300)}`).join('\n');
}

export async function runMutateLive(opts: MutateOptions): Promise<MutateResult> {
  const log = opts.log ?? ((): void => undefined);
  const net = await SimNetwork.create({ hosts: ['h1', 'attacker'], password: 'mutate-live', subnet: '10.253.0.0/24', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const steps: MutateStep[] = [];
  const violations: string[] = [];
  let warm = 0;
  let peak = 0;
  try {
    const h1 = net.host('h1');
    const attacker = net.host('attacker');
    const api = new ApiClient(h1.apiSocket, { timeoutMs: 10_000 });
    const c1 = `${net.prefix}c1`;
    const launch = async (password: string | null): Promise<void> => {
      const r = await h1.weave(['launch', '--nickname', 'h1'], { password, timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`weave launch exited ${r.code}: ${r.stderr.trim()}`);
    };
    await launch('mutate-live');
    await run(['ip', 'netns', 'add', c1], { check: true });
    const att = await h1.weave(['attach', '--name', 'c1', `netns:${c1}`], { timeoutMs: 120_000 });
    if (att.code !== 0) throw new Error(`attach exited ${att.code}: ${att.stderr.trim()}`);
    const c1Address = att.stdout.trim().split(/\s+/)[0]!;
    log(`h1 up, c1 ${c1Address}`);
    const names = ['c1.weave.local', 'nope.weave.local', `${c1Address.split('.').reverse().join('.')}.in-addr.arpa`, 'weave.local'];

    const step = async (phase: MutateStep['phase'], mode: string, ns: string, extra: string[], compare: boolean): Promise<void> => {
      const pid = routerPid(h1);
      const before = compare ? await snapshot(api) : null;
      const rssBefore = rssMb(pid);
      const seed = opts.seed + steps.length;
      const r = await run(['ip', 'netns', 'exec', ns, 'node', WORKER_JS, mode, '--iterations', String(opts.iterations), '--seed', String(seed), ...extra],
        { timeoutMs: Math.max(120_000, opts.iterations * 50) });
      let counts: WorkerCounts | null = null;
      try { counts = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as WorkerCounts; } catch { /* reported below */ }
      const pidNow = routerPid(h1);
      const pidSame = pid !== null && pidNow === pid && alive(pid);
      const apiAnswers = await api.ping(5_000);
      // The router may still be busy with the last messages: let the state settle before comparing.
      await new Promise((r2) => setTimeout(r2, 1500));
      const after = compare && apiAnswers ? await snapshot(api) : null;
      const s: MutateStep = {
        phase, mode, counts, workerExit: r.code, pidSame, apiAnswers,
        stateChange: before !== null ? (after === null ? 'no snapshot' : diff(before, after)) : null,
        rssBeforeMb: rssBefore, rssAfterMb: rssMb(pidNow),
      };
      steps.push(s);
      peak = Math.max(peak, s.rssAfterMb);
      log(`${phase} ${mode}: ${JSON.stringify(counts)} rss ${s.rssBeforeMb} -> ${s.rssAfterMb} MB`);
      if (r.code !== 0 || counts === null) violations.push(`${phase} ${mode}: the sender failed (exit ${r.code}): ${r.stderr.trim().slice(0, 500)}`);
      if (!pidSame) violations.push(`${phase} ${mode}: the router died or restarted (pid ${pid} -> ${pidNow}):\n${h1.readLog('weave.log', 40)}`);
      if (!apiAnswers) violations.push(`${phase} ${mode}: the API does not answer`);
      if (s.stateChange !== null) violations.push(`${phase} ${mode}: state changed from unauthenticated input:\n${s.stateChange}`);
      if (!pidSame || !apiAnswers) throw new RouterGone();
    };

    const dnsKinds: [string, string[]][] = [['dns-udp', []], ['dns-tcp', []], ['mdns', ['--iface-address', c1Address]]];
    // Warm-up: one short round of everything so lazily built state is there before RSS is measured.
    warm = rssMb(routerPid(h1));
    await step('password', 'handshake', attacker.ns, ['--target', h1.address], true);
    warm = Math.max(warm, steps[0]!.rssAfterMb);
    await step('password', 'sleeve', attacker.ns, ['--target', h1.address], true);
    for (const [mode, extra] of dnsKinds) await step('password', mode, c1, ['--names', names.join(','), ...extra], true);

    // Plaintext: the same router data, no password, so a peer reaches gossip.
    const stop = await h1.weave(['stop'], { timeoutMs: 30_000 });
    if (stop.code !== 0) throw new Error(`weave stop exited ${stop.code}: ${stop.stderr.trim()}`);
    await launch(null);
    await step('plaintext', 'control', attacker.ns, ['--target', h1.address], false);
    const ps = JSON.stringify(await api.get('/ps').catch(() => ({})));
    if (!ps.includes(c1Address)) violations.push(`plaintext control: c1 (${c1Address}) is no longer listed: ${ps.slice(0, 300)}`);
    const lookup = await h1.weave(['dns-lookup', 'c1'], { timeoutMs: 15_000 });
    if (!lookup.stdout.includes(c1Address)) violations.push(`plaintext control: c1 no longer resolves: ${(lookup.stdout + lookup.stderr).trim()}`);

    const last = steps[steps.length - 1]!;
    const finalRss = Math.max(...steps.filter((s) => s.phase === 'password').map((s) => s.rssAfterMb));
    if (finalRss > warm + opts.rssBoundMb) violations.push(`RSS grew from ${warm} MB after warm-up to ${finalRss} MB (bound +${opts.rssBoundMb} MB)`);
    if (last.rssAfterMb > last.rssBeforeMb + opts.rssBoundMb) violations.push(`plaintext control: RSS grew from ${last.rssBeforeMb} to ${last.rssAfterMb} MB (bound +${opts.rssBoundMb} MB)`);
  } catch (e) {
    // A crash is already a violation with the router's log; anything else is the runner's own failure.
    if (!(e instanceof RouterGone)) throw e;
  } finally {
    await net.destroy();
  }
  const table = [
    `live mutation run: ${opts.iterations} messages per sender, seed ${opts.seed}`,
    '  phase      sender      sent   conns  hung up  est.  seeds  replies  rss MB      pid  api  state',
    ...steps.map((s) => `  ${s.phase.padEnd(10)} ${s.mode.padEnd(10)} ${String(s.counts?.sent ?? '-').padStart(6)} ${String(s.counts?.connections ?? '-').padStart(6)} ${String(s.counts?.closedByDaemon ?? '-').padStart(8)} ${String(s.counts?.established ?? '-').padStart(5)} ${String(s.counts?.seeds ?? '-').padStart(6)} ${String(s.counts?.replies ?? '-').padStart(8)}  ${`${s.rssBeforeMb}->${s.rssAfterMb}`.padEnd(10)} ${s.pidSame ? 'same' : 'LOST'} ${s.apiAnswers ? 'ok ' : 'NO '} ${s.phase === 'plaintext' ? 'n/a (peer)' : s.stateChange === null ? 'unchanged' : 'CHANGED'}`),
    `RSS after warm-up ${warm} MB, peak ${peak} MB (bound +${opts.rssBoundMb} MB)`,
    violations.length === 0 ? 'ok: no crash, no state change from unauthenticated input, memory within bound' : `FAIL:\n${violations.join('\n')}`,
  ].join('\n');
  return { steps, warmRssMb: warm, peakRssMb: peak, violations, table };
}

async function main(): Promise<void> {
  const get = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
    if (!Number.isInteger(v) || v < 0) { process.stderr.write(`mutate-live: --${name} must be a whole number\n`); process.exit(2); }
    return v;
  };
  const opts: MutateOptions = {
    iterations: get('iterations', 20_000), seed: get('seed', Date.now() % 100_000), rssBoundMb: get('rss-bound-mb', 40),
    log: (line) => process.stdout.write(`==> ${line}\n`),
  };
  const result = await runMutateLive(opts);
  process.stdout.write(`\n${result.table}\n`);
  process.exit(result.violations.length === 0 ? 0 : 1);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`mutate-live: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
