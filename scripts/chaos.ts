// The chaos suite: simulated hosts (scripts/sim-network.ts) each run a weave
// router with a container (a network namespace attached with `weave attach`,
// named in weave DNS) that runs a prober (chaos-probe.ts): UDP echo to every
// other container every 200 ms and a DNS lookup of every name every second.
// For a fixed time it injects faults one after another (chaos-faults.ts:
// link flaps, 5% loss, kill -9 + relaunch, partitions with allocations on both
// sides, a host removed for good + `weave rmpeer`), then waits for the mesh to
// converge and checks: no duplicate addresses, no lost containers, DNS right,
// every pair answering. It prints the table of chaos-report.ts and exits 1 when
// a must-be-zero figure is not. Everything lives in the network's namespaces
// and is removed at the end, also on failure or Ctrl-C.
//
// Usage: node dist/scripts/chaos.js [--duration 300] [--hosts 5] [--seed N]
//          [--faults flap,loss,kill,partition,remove] [--timings fast|default] [--json FILE] [--verbose]

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ApiClient } from '../cli/api-client';
import type { RouterStatus } from '../router/mesh/status';
import { run } from './command';
import type { ProbeRecord, ProbeTargets } from './chaos-probe';
import {
  FAULT_KINDS, GAP_S, FaultKind, killRouter, planFaults, PlannedFault, routerPid, setLink, setLoss, setPartition, supervisorPid,
} from './chaos-faults';
import { MAX_RESTART_DELAY_MS } from '../cli/supervisor';
import { ChaosFacts, computeFigures, FaultRecord, HostSample, renderTable, type ChaosFigures } from './chaos-report';
import type { BackgroundProcess } from './command';
import type { SimHost } from './sim-host';
import { SimNetwork } from './sim-network';
import { sleep, waitFor } from './wait';
import { processAlive as alive } from '../common/process-alive';

export interface ChaosOptions {
  durationS: number;
  hosts: number;
  seed: number;
  faults: readonly FaultKind[];
  timings: 'fast' | 'default';
  /** Every fault at its shortest hold (the short run of the test suite). */
  shortHolds?: boolean;
  log?: (line: string) => void;
}

export interface ChaosResult { facts: ChaosFacts; figures: ChaosFigures; table: string; ok: boolean }

export interface Container { name: string; host: string; ns: string; address: string; probe: BackgroundProcess | null }

const PROBE_JS = resolve(__dirname, 'chaos-probe.js');
/** After the last heal: how long the mesh may take to answer again, then the window in which nothing may be wrong. */
const CONVERGE_TIMEOUT_MS = 60_000;
const DNS_SETTLE_MS = 10_000;
const VERIFY_MS = 10_000;

/** The run's state and its steps; exported so test/e2e/faults.test.ts can drive single faults. */
export class Chaos {
  readonly containers: Container[] = [];
  readonly faults: FaultRecord[] = [];
  readonly samples: HostSample[] = [];
  readonly launchArgs = new Map<string, string[]>();
  readonly peerNames = new Map<string, string>();
  readonly removed = new Set<string>();
  readonly goneAtMs: Record<string, number> = {};
  /** Hosts whose router the chaos itself has killed and not yet relaunched. */
  readonly down = new Set<string>();
  readonly deadRouters = new Set<string>();
  restartsByChaos = 0;
  private readonly pids = new Map<string, number>();
  pidChanges = 0;
  private partitionCount = 0;
  private readonly dir: string;

  constructor(readonly net: SimNetwork, readonly opts: ChaosOptions) {
    this.dir = join(net.rootDir, 'chaos');
    mkdirSync(this.dir, { recursive: true });
  }

  log(line: string): void { this.opts.log?.(line); }
  api(h: SimHost): ApiClient { return new ApiClient(h.apiSocket, { timeoutMs: 5_000 }); }
  live(): SimHost[] { return this.net.hosts.filter((h) => !this.removed.has(h.name)); }

  async launch(h: SimHost): Promise<void> {
    const r = await h.weave(['launch', ...this.launchArgs.get(h.name)!], { timeoutMs: 60_000 });
    if (r.code !== 0 && !/already running/i.test(r.stderr)) throw new Error(`weave launch on ${h.name} exited ${r.code}: ${(r.stderr + r.stdout).trim()}`);
  }

  async setup(): Promise<void> {
    const hosts = this.net.hosts;
    const first = hosts[0]!;
    for (const [i, h] of hosts.entries()) {
      // The getting-started order, plus the previous host so the mesh is not a star around h1.
      const peers = [...new Set(i === 0 ? [] : [first.address, hosts[i - 1]!.address])];
      this.launchArgs.set(h.name, ['--nickname', h.name, ...peers]);
      await this.launch(h);
      // Derived from the key in the datadir, so a relaunch keeps it.
      this.peerNames.set(h.name, (await this.api(h).get<RouterStatus>('/status')).name);
    }
    await waitFor(async () => {
      const st = await Promise.all(hosts.map((h) => this.api(h).get<RouterStatus>('/status')));
      return st.every((s) => s.peers.filter((p) => p.reachable).length === hosts.length);
    }, { what: `all ${hosts.length} routers to see each other`, timeoutMs: 90_000, intervalMs: 1000 });
    this.log('mesh formed');
    for (const [i, h] of hosts.entries()) {
      this.containers.push({ ...(await this.attach(h, `c${i + 1}`)), probe: null });
    }
    for (const c of this.containers) this.writeTargets(c);
    for (const c of this.containers) {
      c.probe = this.net.spawnIn(c.ns, ['node', PROBE_JS, '--targets', this.targetsPath(c), '--out', this.outPath(c)], {});
    }
    await this.waitAllAnswering(90_000);
    this.log('every pair answers: faults start');
  }

  async attach(h: SimHost, name: string): Promise<Omit<Container, 'probe'>> {
    const ns = `${this.net.prefix}${name}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await h.weave(['attach', '--name', name, `netns:${ns}`], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`attach ${name} on ${h.name} exited ${r.code}: ${(r.stderr + r.stdout).trim()}`);
    const address = r.stdout.trim().split(/\s+/)[0]!;
    this.log(`${name} on ${h.name}: ${address}`);
    return { name, host: h.name, ns, address };
  }

  targetsPath(c: Container): string { return join(this.dir, `${c.name}.targets.json`); }
  outPath(c: Container): string { return join(this.dir, `${c.name}.out.json`); }

  writeTargets(c: Container): void {
    const liveOnes = this.containers.filter((x) => !this.removed.has(x.host) && x !== c);
    const t: ProbeTargets = {
      targets: liveOnes.filter((x) => x.probe !== null || this.probedNames().has(x.name)).map((x) => ({ name: x.name, ip: x.address })),
      dnsOnly: liveOnes.filter((x) => !this.probedNames().has(x.name)).map((x) => ({ name: x.name, ip: x.address })),
      gone: this.containers.filter((x) => this.removed.has(x.host)).map((x) => x.name),
      domain: 'weave.local',
    };
    writeFileSync(this.targetsPath(c), JSON.stringify(t));
  }

  private probedNames(): Set<string> { return new Set(this.net.hosts.map((_, i) => `c${i + 1}`)); }
  probed(): Container[] { return this.containers.filter((c) => this.probedNames().has(c.name)); }

  readRecords(): Record<string, ProbeRecord> {
    const out: Record<string, ProbeRecord> = {};
    for (const c of this.probed()) {
      try { out[c.name] = JSON.parse(readFileSync(this.outPath(c), 'utf8')) as ProbeRecord; } catch { /* not written yet */ }
    }
    return out;
  }

  /** Until every live pair got an answer to a probe sent in the last 3 s (records are written every 5 s). */
  async waitAllAnswering(timeoutMs: number): Promise<boolean> {
    try {
      await waitFor(() => {
        const recs = this.readRecords();
        const liveC = this.probed().filter((c) => !this.removed.has(c.host));
        return liveC.every((a) => liveC.every((b) => a === b || (recs[a.name]?.answered[b.name] ?? [])
          .some((t) => t >= (recs[a.name]?.writtenMs ?? 0) - 3_000)));
      }, { what: 'every pair of containers to answer', timeoutMs, intervalMs: 1000 });
      return true;
    } catch {
      return false;
    }
  }

  /** Every 2 s: router pids (restarts, deaths) and RSS; the gossip counters every 10 s. */
  async sample(tick: number): Promise<void> {
    for (const h of this.live()) {
      const pid = routerPid(h);
      const prev = this.pids.get(h.name);
      if (pid !== null && prev !== undefined && pid !== prev && alive(pid)) this.pidChanges++;
      if (pid !== null && alive(pid)) this.pids.set(h.name, pid);
      else if (!this.down.has(h.name)) this.deadRouters.add(h.name);
      let rssKb: number | null = null;
      if (pid !== null) {
        const m = /VmRSS:\s+(\d+)/.exec(safeRead(`/proc/${pid}/status`));
        rssKb = m ? Number(m[1]) : null;
      }
      let gossip: number | null = null;
      if (tick % 5 === 0 && !this.down.has(h.name)) {
        try {
          const s = await this.api(h).get<RouterStatus>('/status');
          gossip = (s.counters['gossipSent'] ?? 0) + (s.counters['gossipReceived'] ?? 0);
        } catch { /* busy or restarting: no sample */ }
      }
      this.samples.push({ host: h.name, tMs: Date.now(), pid, rssKb, gossip });
    }
  }

  async inject(p: PlannedFault): Promise<void> {
    const hosts = p.hosts.map((n) => this.net.host(n));
    const rec: FaultRecord = { kind: p.kind, hosts: p.hosts, sideB: [], injectedMs: Date.now(), healedMs: null, note: '' };
    this.faults.push(rec);
    this.log(`fault: ${p.kind} ${p.hosts.join(',')} for ${p.holdS} s`);
    const hold = (): Promise<void> => sleep(p.holdS * 1000);
    switch (p.kind) {
      case 'flap':
        await setLink(this.net, hosts[0]!, false);
        await hold();
        await setLink(this.net, hosts[0]!, true);
        break;
      case 'loss':
        await setLoss(hosts[0]!, 5);
        await hold();
        await setLoss(hosts[0]!, null);
        break;
      case 'kill': {
        const h = hosts[0]!;
        this.down.add(h.name);
        const pid = await killRouter(h);
        await hold();
        // Under the supervisor of `weave launch` the router is back by itself, after the supervisor's
        // backoff (it doubles while kills come less than a minute apart); else launch it again.
        const supervised = alive(supervisorPid(h) ?? 0);
        const back = await waitFor(() => this.api(h).ping(1_000),
          { what: `${h.name}'s router to answer`, timeoutMs: supervised ? MAX_RESTART_DELAY_MS + 15_000 : 2_000, intervalMs: 250 }).then(() => true, () => false);
        if (!back) await this.launch(h);
        rec.note = `pid ${pid ?? 'none'} killed; ${back ? 'restarted by its supervisor' : 'relaunched with weave launch'}, new pid ${routerPid(h) ?? 'none'}`;
        this.down.delete(h.name);
        this.restartsByChaos++;
        break;
      }
      case 'partition': {
        rec.sideB = this.live().map((h) => h.name).filter((n) => !p.hosts.includes(n));
        await setPartition(this.net, p.hosts, rec.sideB, true);
        const k = ++this.partitionCount;
        // Allocations on both sides while apart; they may only finish after the heal, and must not collide.
        const t0 = Date.now();
        const attaching = [[p.hosts[0]!, `p${k}a`], [rec.sideB[0]!, `p${k}b`]].map(([host, name]) =>
          this.attach(this.net.host(host!), name!).then((c) => ({ ...c, probe: null, at: Date.now() }), (e: unknown) => e as Error));
        // Apart for the hold, and longer (up to 30 s) while an attach is still under way.
        await Promise.race([Promise.all([hold(), Promise.all(attaching)]), sleep(p.holdS * 1000 + 30_000)]);
        await setPartition(this.net, p.hosts, rec.sideB, false);
        rec.healedMs = Date.now();
        const got = await Promise.all(attaching);
        rec.note = got.map((g) => (g instanceof Error ? `attach failed: ${g.message.slice(0, 200)}` :
          `${g.name} on ${g.host} ${g.address} in ${((g.at - t0) / 1000).toFixed(1)} s${g.at > rec.healedMs! ? ' (after the heal)' : ''}`)).join('; ');
        for (const g of got) if (!(g instanceof Error)) this.containers.push(g);
        for (const c of this.probed()) this.writeTargets(c);
        return;
      }
      case 'remove': {
        const h = hosts[0]!;
        this.down.add(h.name);
        await killRouter(h);
        await setLink(this.net, h, false);
        this.removed.add(h.name);
        for (const c of this.containers.filter((x) => x.host === h.name)) {
          this.goneAtMs[c.name] = Date.now();
          await c.probe?.stop();
        }
        const survivor = this.live()[0]!;
        const peerName = this.peerNames.get(h.name)!;
        // rmpeer refuses a peer the survivor still reaches: wait until its connection to h timed out.
        const gone = await waitFor(async () => {
          const s = await survivor.weaveStatus();
          return s.peers.every((p) => p.name !== peerName || !p.reachable);
        }, { what: `${survivor.name} to see ${h.name} unreachable`, timeoutMs: 120_000, intervalMs: 500 }).then(() => null, (e: unknown) => e as Error);
        if (gone !== null) {
          rec.note = `rmpeer not run: ${gone.message.slice(0, 200)}`;
        } else {
          const r = await survivor.weave(['rmpeer', peerName], { timeoutMs: 30_000 });
          rec.note = `rmpeer ${peerName} on ${survivor.name}: ${r.code === 0 ? r.stdout.trim() : `exit ${r.code}: ${r.stderr.trim()}`}`;
        }
        for (const c of this.probed()) if (!this.removed.has(c.host)) this.writeTargets(c);
        return;
      }
    }
    rec.healedMs = Date.now();
  }

  /** Addresses held by two containers, and containers no router lists any more (or with another address). */
  async checkContainers(): Promise<{ duplicates: string[]; lost: string[] }> {
    const seen = new Map<string, string[]>();
    const lost: string[] = [];
    for (const h of this.live()) {
      const ps = await this.api(h).get<{ containers: { id: string; name?: string; addresses: string[] }[] }>('/ps');
      for (const c of ps.containers) for (const a of c.addresses) seen.set(a.split('/')[0]!, [...(seen.get(a.split('/')[0]!) ?? []), `${c.name ?? c.id}@${h.name}`]);
      for (const mine of this.containers.filter((x) => x.host === h.name)) {
        const listed = ps.containers.find((c) => c.addresses.some((a) => a.split('/')[0] === mine.address));
        const inNs = await run(['ip', '-n', mine.ns, '-4', '-o', 'addr', 'show'], { timeoutMs: 10_000 });
        if (listed === undefined || !inNs.stdout.includes(`${mine.address}/`)) lost.push(`${mine.name} on ${h.name} (${mine.address})`);
      }
    }
    const duplicates = [...seen].filter(([, who]) => who.length > 1).map(([a, who]) => `${a}: ${who.join(', ')}`);
    return { duplicates, lost };
  }
}

function safeRead(path: string): string {
  try { return readFileSync(path, 'utf8'); } catch { return ''; }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const net = await SimNetwork.create({
    hosts: opts.hosts, password: `chaos-${randomBytes(6).toString('hex')}`, subnet: '10.251.0.0/24',
    weaveEnv: opts.timings === 'fast' ? { WEAVE_TEST_FAST: '1' } : {},
  });
  const chaos = new Chaos(net, opts);
  let sampling: NodeJS.Timeout | null = null;
  try {
    await chaos.setup();
    let tick = 0;
    let busy = false;
    sampling = setInterval(() => {
      if (busy) return;
      busy = true;
      void chaos.sample(tick++).finally(() => { busy = false; });
    }, 2000);
    const plan = planFaults({ seed: opts.seed, durationS: opts.durationS, hosts: net.hosts.map((h) => h.name), kinds: opts.faults, shortHolds: opts.shortHolds ?? false });
    const start = Date.now();
    const end = start + opts.durationS * 1000;
    let quietUntil = 0;
    for (const p of plan) {
      // A fault that ran long (an attach waiting for the heal, a slow relaunch) pushes the
      // next ones back, so every heal keeps its quiet window; what no longer fits is dropped.
      const at = Math.max(start + p.atS * 1000, quietUntil);
      if (p.kind !== 'remove' && at + p.holdS * 1000 > end) continue;
      if (at > Date.now()) await sleep(at - Date.now());
      await chaos.inject(p);
      quietUntil = Date.now() + GAP_S * 1000;
    }
    const lastHeal = Math.max(...chaos.faults.map((f) => f.healedMs ?? f.injectedMs), Date.now());
    const converged = await chaos.waitAllAnswering(CONVERGE_TIMEOUT_MS);
    chaos.log(converged ? 'converged' : `not converged ${CONVERGE_TIMEOUT_MS / 1000} s after the last heal`);
    const fromMs = Math.max(Date.now(), lastHeal + DNS_SETTLE_MS);
    await sleep(fromMs + VERIFY_MS - Date.now() + 5_500);
    const verify = { fromMs, toMs: fromMs + VERIFY_MS };
    clearInterval(sampling);
    sampling = null;
    const { duplicates, lost } = await chaos.checkContainers();
    for (const c of chaos.probed()) await c.probe?.stop();
    const facts: ChaosFacts = {
      hosts: net.hosts.map((h) => h.name),
      probed: Object.fromEntries(chaos.probed().map((c) => [c.name, c.host])),
      records: chaos.readRecords(), faults: chaos.faults, goneAtMs: chaos.goneAtMs, verify, duplicates, lost,
      restartsByChaos: chaos.restartsByChaos, pidChanges: chaos.pidChanges, deadRouters: [...chaos.deadRouters],
      samples: chaos.samples, timings: opts.timings === 'fast' ? 'fast (WEAVE_TEST_FAST=1)' : 'default', durationS: opts.durationS,
    };
    const figures = computeFigures(facts);
    const table = renderTable(facts, figures);
    return { facts, figures, table, ok: Object.values(figures.mustBeZero).every((n) => n === 0) };
  } catch (e) {
    for (const h of net.hosts) chaos.log(`${h.name} weave.log:\n${h.readLog('weave.log', 15)}`);
    throw e;
  } finally {
    if (sampling !== null) clearInterval(sampling);
    await net.destroy();
  }
}

function parseArgs(argv: string[]): ChaosOptions & { json: string | null } {
  const opts: ChaosOptions & { json: string | null } = {
    durationS: 300, hosts: 5, seed: Date.now() % 100000, faults: FAULT_KINDS, timings: 'fast', json: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string => { const x = argv[++i]; if (x === undefined) throw new Error(`${a} needs a value`); return x; };
    if (a === '--duration') opts.durationS = Number(v());
    else if (a === '--hosts') opts.hosts = Number(v());
    else if (a === '--seed') opts.seed = Number(v());
    else if (a === '--faults') opts.faults = v().split(',').map((k) => { if (!FAULT_KINDS.includes(k as FaultKind)) throw new Error(`unknown fault ${k}`); return k as FaultKind; });
    else if (a === '--timings') { const t = v(); if (t !== 'fast' && t !== 'default') throw new Error('--timings is fast or default'); opts.timings = t; }
    else if (a === '--json') opts.json = v();
    else if (a === '--verbose') opts.log = (line) => process.stdout.write(`==> ${line}\n`);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(opts.durationS) || opts.durationS < 30) throw new Error('--duration must be a whole number of seconds, at least 30');
  if (!Number.isInteger(opts.hosts) || opts.hosts < 3 || opts.hosts > 9) throw new Error('--hosts must be 3 to 9');
  if (!Number.isInteger(opts.seed)) throw new Error('--seed must be an integer');
  return opts;
}

async function main(): Promise<void> {
  let opts: ReturnType<typeof parseArgs>;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`chaos: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
  opts.log ??= (line) => { if (!line.includes('\n')) process.stdout.write(`==> ${line}\n`); };
  process.stdout.write(`==> chaos: ${opts.hosts} hosts, ${opts.durationS} s, seed ${opts.seed}, faults ${opts.faults.join(',')}\n`);
  const result = await runChaos(opts);
  process.stdout.write(`\n${result.table}\n`);
  if (opts.json !== null) writeFileSync(opts.json, JSON.stringify({ figures: result.figures, faults: result.facts.faults, seed: opts.seed }, null, 2));
  process.exit(result.ok ? 0 : 1);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`chaos: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
