// scripts/bench-dns: weave DNS against dnsmasq, measured with dnsperf on the
// same simulated host (scripts/sim-network.ts) in one run, the two sides
// alternating round by round so machine noise spreads evenly. Three sections:
//
// - local answers: 200 names under weave.local, registered in weave through
//   the API and given to dnsmasq as a hosts file (answered from its cache);
// - the same at an equal CPU budget: each server's process in its own cgroup
//   limited to --cap percent of a core (50 by default; scripts/cpu-cap.ts).
//   With a whole core each, both servers outrun dnsperf on its one core (98-99%
//   busy here at ~120k queries/s), so the uncapped ratio measures the client;
//   capped, both servers are the limit (throttled in nearly every period, and
//   dnsperf has room left), and the ratio is the servers' own. This is the row
//   issue 14's "1.5x dnsmasq" is judged on; the uncapped one is printed too;
// - forwarding: 200 names under fwd.test that neither holds, sent on to an
//   upstream dnsmasq on another loopback address. The dnsmasq under test runs
//   with --cache-size=0 here, so both sides really forward every query (with
//   its cache, dnsmasq would answer from memory after the first round).
//
// Everything runs inside the one namespace it creates and listens on its
// loopback (127.0.0.1 weave, 127.0.0.2 dnsmasq, 127.0.0.3 the upstream):
// no query leaves it. Figures are printed, never asserted; exit code 0 when
// both sides were measured. Needs root, dnsperf and dnsmasq (bench.sh installs
// them from Debian).
//
// Usage: node dist/scripts/bench-dns.js [--quick] [--rounds N] [--seconds N] [--only local|forwarding] [--no-pin] [--cap PERCENT]
//
// Next to each rate it prints how busy dnsperf's CPU was: near 100%, the client was the limit.
//
// Next to each rate it prints the server's CPU time per answered query (user
// plus system, all threads, from /proc): on a busy machine the rates swing
// with the scheduler, the cost per query much less.
//
// On a machine of two or more CPUs the server under test (weave's router, all
// its threads, and the dnsmasq under test alike) is pinned to CPU 0 and
// dnsperf, with the upstream dnsmasq, to CPU 1. Unpinned on two cores, dnsperf
// competes with the server it measures and bounds both rates (it caps near
// weave's rate, so the ratio measured dnsperf's share of the CPUs); pinned,
// each server has one whole core and dnsperf the other, the same for both.
// --no-pin measures the old way.
//
// WEAVE_BENCH_NODE_OPTIONS is handed to the weave processes as NODE_OPTIONS
// (e.g. "--perf-basic-prof", then `perf record -g -p <router pid>`; node does
// not take --cpu-prof from NODE_OPTIONS).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../cli/api-client';
import type { BackgroundProcess } from './command';
import { SimNetwork } from './sim-network';
import type { SimHost } from './sim-host';
import { sleep } from './wait';
import { summaryLine } from './bench-summary';
import { CpuCap } from './cpu-cap';

const NAMES = 200;
const WEAVE_ADDR = '127.0.0.1';
const DNSMASQ_ADDR = '127.0.0.2';
const UPSTREAM_ADDR = '127.0.0.3';
const SERVER_CPU = '0';
const LOAD_CPU = '1';

export interface RoundsOptions { rounds: number; seconds: number }

/** --quick, --rounds N, --seconds N; other flags (bench.sh passes its own) are ignored. */
export function parseRoundsArgs(argv: string[], defaults: RoundsOptions): RoundsOptions {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') out.rounds = 1;
    else if (a === '--rounds' || a === '--seconds') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 600) throw new Error(`${a} needs a whole number from 1 to 600`);
      if (a === '--rounds') out.rounds = n;
      else out.seconds = n;
    }
  }
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function loadAverage(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}

/** --only local|forwarding: run one section. */
function onlySection(argv: string[]): string | null {
  const i = argv.indexOf('--only');
  if (i < 0) return null;
  const v = argv[i + 1];
  if (v !== 'local' && v !== 'forwarding') throw new Error('--only takes local or forwarding');
  return v;
}

/** --cap PERCENT: each server's share of CPU 0 in the capped round (default 50). */
function capArg(argv: string[]): number {
  const i = argv.indexOf('--cap');
  if (i < 0) return 50;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new Error('--cap takes a whole percentage from 1 to 100');
  return n;
}

/** CPU time of a process so far (all threads), in ms, user and system apart; 0 once it is gone. */
function cpuMs(pid: number): { user: number; system: number } {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are fields 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
  } catch {
    return { user: 0, system: 0 };
  }
}

/** Busy and total jiffies of one CPU so far, from /proc/stat (idle and iowait are not busy). */
function cpuJiffies(cpu: string): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

/** Pins every thread of `pid` to `cpu` (util-linux taskset); later threads inherit it. */
async function pin(h: SimHost, pid: number, cpu: string): Promise<void> {
  if (!(pid > 0)) throw new Error(`no process to pin to CPU ${cpu}`);
  const r = await h.exec(['taskset', '--all-tasks', '--cpu-list', '--pid', cpu, String(pid)]);
  if (r.code !== 0) throw new Error(`taskset ${pid} to CPU ${cpu}: ${r.stderr}`);
}

/**
 * One dnsperf run: the rate, and the server's CPU microseconds per completed
 * query, and of those the user-space part (the kernel's part, sending and
 * receiving and the loopback delivery to the client, is much the same work
 * for any server; the user part is what the server's own code costs).
 */
async function dnsperf(h: SimHost, server: string, serverPid: number, dataFile: string, seconds: number, pinned: boolean): Promise<{ qps: number; usPerQuery: number; userUsPerQuery: number; clientBusyPct: number }> {
  const cpuBefore = cpuMs(serverPid);
  const loadBefore = cpuJiffies(LOAD_CPU);
  const r = await h.exec([...(pinned ? ['taskset', '--cpu-list', LOAD_CPU] : []), 'dnsperf', '-s', server, '-p', '53', '-d', dataFile, '-l', String(seconds), '-c', '4', '-q', '200', '-t', '2'], {
    timeoutMs: (seconds + 30) * 1000,
  });
  const m = /Queries per second:\s+([\d.]+)/.exec(r.stdout);
  const lost = /Queries lost:\s+(\d+)/.exec(r.stdout);
  if (r.code !== 0 || m === null) throw new Error(`dnsperf against ${server} exited ${r.code}: ${r.stdout}${r.stderr}`);
  if (lost !== null && Number(lost[1]) > 0) process.stdout.write(`    (${server}: ${lost[1]} queries lost)\n`);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const cpuAfter = cpuMs(serverPid);
  const loadAfter = cpuJiffies(LOAD_CPU);
  const per = (ms: number): number => (completed > 0 ? (ms * 1000) / completed : NaN);
  return {
    qps: Number(m[1]),
    usPerQuery: per(cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system),
    userUsPerQuery: per(cpuAfter.user - cpuBefore.user),
    clientBusyPct: (100 * (loadAfter.busy - loadBefore.busy)) / Math.max(1, loadAfter.total - loadBefore.total),
  };
}

function startDnsmasq(h: SimHost, args: string[]): BackgroundProcess {
  return h.spawn(['dnsmasq', '--keep-in-foreground', '--no-daemon', '--user=root', '--group=root', '--no-resolv', '--no-hosts',
    '--bind-interfaces', '--port=53', '--pid-file=', '--log-facility=-', ...args]);
}

async function main(): Promise<void> {
  const opts = parseRoundsArgs(process.argv.slice(2), { rounds: 3, seconds: 5 });
  const dir = mkdtempSync(join(tmpdir(), 'weave-bench-dns-'));
  const only = onlySection(process.argv.slice(2));
  const pinned = !process.argv.includes('--no-pin') && cpus().length >= 2;
  const capPercent = capArg(process.argv.slice(2));
  const nodeOptions = process.env.WEAVE_BENCH_NODE_OPTIONS;
  const net = await SimNetwork.create({ hosts: 1, weaveEnv: { WEAVE_TEST_FAST: '1', ...(nodeOptions === undefined ? {} : { NODE_OPTIONS: nodeOptions }) } });
  const daemons: BackgroundProcess[] = [];
  const caps: CpuCap[] = [];
  try {
    const h = net.host('h1');
    await h.exec(['ip', 'addr', 'add', `${DNSMASQ_ADDR}/8`, 'dev', 'lo']);
    await h.exec(['ip', 'addr', 'add', `${UPSTREAM_ADDR}/8`, 'dev', 'lo']);
    const hosts: string[] = [];
    const fwdHosts: string[] = [];
    const local: string[] = [];
    const forwarded: string[] = [];
    for (let i = 0; i < NAMES; i++) {
      const ip = `10.40.${i >> 8}.${(i & 255) + 1}`;
      hosts.push(`${ip} n${i}.weave.local`);
      fwdHosts.push(`10.41.${i >> 8}.${(i & 255) + 1} f${i}.fwd.test`);
      local.push(`n${i}.weave.local A`);
      forwarded.push(`f${i}.fwd.test A`);
    }
    writeFileSync(join(dir, 'hosts'), `${hosts.join('\n')}\n`);
    writeFileSync(join(dir, 'upstream-hosts'), `${fwdHosts.join('\n')}\n`);
    writeFileSync(join(dir, 'local.txt'), `${local.join('\n')}\n`);
    writeFileSync(join(dir, 'forwarded.txt'), `${forwarded.join('\n')}\n`);

    daemons.push(startDnsmasq(h, [`--listen-address=${UPSTREAM_ADDR}`, `--addn-hosts=${join(dir, 'upstream-hosts')}`, '--local=/fwd.test/', '--cache-size=10000']));
    daemons.push(startDnsmasq(h, [`--listen-address=${DNSMASQ_ADDR}`, `--addn-hosts=${join(dir, 'hosts')}`, '--local=/weave.local/',
      `--server=${UPSTREAM_ADDR}`, '--cache-size=0']));
    const launch = await h.weave(['launch', '--nickname', 'h1', '--dns-upstream', UPSTREAM_ADDR], { timeoutMs: 60_000 });
    if (launch.code !== 0) throw new Error(`weave launch: ${launch.stderr}\n${h.readLog()}`);
    const api = new ApiClient(h.apiSocket);
    for (let i = 0; i < NAMES; i++) {
      await api.post('/dns/add', { name: `n${i}`, addresses: [`10.40.${i >> 8}.${(i & 255) + 1}`] });
    }
    await sleep(500);
    for (const d of daemons) if (!d.running) throw new Error(`dnsmasq exited: ${d.stderr}`);
    const weavePid = Number(readFileSync(join(h.datadir, 'weave.pid'), 'utf8').trim());
    const dnsmasqPid = (daemons[1] as BackgroundProcess).pid ?? 0;

    if (pinned) {
      await pin(h, weavePid, SERVER_CPU);
      await pin(h, dnsmasqPid, SERVER_CPU);
      await pin(h, (daemons[0] as BackgroundProcess).pid ?? 0, LOAD_CPU);
      try {
        for (const [name, pid] of [['weave', weavePid], ['dnsmasq', dnsmasqPid]] as const) {
          const cap = CpuCap.create(`weave-bench-dns-${process.pid}-${name}`);
          caps.push(cap);
          cap.add(pid);
        }
      } catch (err) {
        process.stdout.write(`  no CPU cap, so no capped round: ${err instanceof Error ? err.message : String(err)}\n`);
        for (const c of caps.splice(0)) c.destroy();
      }
    }
    process.stdout.write(`DNS: dnsperf, ${NAMES} names, ${opts.seconds} s per run, ${opts.rounds} round(s); ` +
      `${pinned ? `servers on CPU ${SERVER_CPU}, dnsperf and the upstream on CPU ${LOAD_CPU}` : 'not pinned'}; load average ${loadAverage()}\n`);
    const sections = [
      { key: 'local', title: 'local answers', file: join(dir, 'local.txt'), cap: null },
      ...(caps.length === 2 ? [{ key: 'local', title: `local answers, ${capPercent}% of a core each`, file: join(dir, 'local.txt'), cap: capPercent }] : []),
      { key: 'forwarding', title: 'forwarding (dnsmasq --cache-size=0)', file: join(dir, 'forwarded.txt'), cap: null },
    ].filter((s) => only === null || s.key === only);
    const results = sections.map(() => ({ weave: [] as number[], dnsmasq: [] as number[], weaveUs: [] as number[], dnsmasqUs: [] as number[], clientBusy: [] as number[] }));
    for (let r = 0; r < opts.rounds; r++) {
      for (const [i, s] of sections.entries()) {
        const res = results[i] as { weave: number[]; dnsmasq: number[]; weaveUs: number[]; dnsmasqUs: number[]; clientBusy: number[] };
        for (const c of caps) c.limit(s.cap);
        const throttledBefore = caps.map((c) => c.throttledPeriods());
        const w = await dnsperf(h, WEAVE_ADDR, weavePid, s.file, opts.seconds, pinned);
        const d = await dnsperf(h, DNSMASQ_ADDR, dnsmasqPid, s.file, opts.seconds, pinned);
        res.weave.push(w.qps);
        res.dnsmasq.push(d.qps);
        res.weaveUs.push(w.usPerQuery);
        res.dnsmasqUs.push(d.usPerQuery);
        res.clientBusy.push(w.clientBusyPct, d.clientBusyPct);
        process.stdout.write(`  round ${r + 1} ${s.title}: weave ${w.qps.toFixed(0)} q/s (${w.usPerQuery.toFixed(1)} us CPU/query, user ${w.userUsPerQuery.toFixed(1)}), ` +
          `dnsmasq ${d.qps.toFixed(0)} q/s (${d.usPerQuery.toFixed(1)} us CPU/query, user ${d.userUsPerQuery.toFixed(1)}); ` +
          `dnsperf's CPU ${w.clientBusyPct.toFixed(0)}% / ${d.clientBusyPct.toFixed(0)}% busy` +
          `${s.cap === null ? '' : `, servers throttled in ${caps.map((c, k) => c.throttledPeriods() - (throttledBefore[k] ?? 0)).join(' / ')} periods of 10 ms`} (load ${loadAverage()})\n`);
      }
    }
    process.stdout.write('\nDNS (queries/s, median [min-max])\n');
    for (const [i, s] of sections.entries()) {
      const res = results[i] as { weave: number[]; dnsmasq: number[]; weaveUs: number[]; dnsmasqUs: number[]; clientBusy: number[] };
      const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} [${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}]`;
      process.stdout.write(`  ${s.title.padEnd(38)} weave ${fmt(res.weave).padEnd(22)} dnsmasq ${fmt(res.dnsmasq).padEnd(22)} ratio ${(median(res.weave) / median(res.dnsmasq)).toFixed(2)}x; ` +
        `CPU per query weave ${median(res.weaveUs).toFixed(1)} us, dnsmasq ${median(res.dnsmasqUs).toFixed(1)} us; dnsperf's CPU ${median(res.clientBusy).toFixed(0)}% busy\n`);
      // For bench.sh's summary (scripts/bench-summary.ts); issue 14: 1.5x dnsmasq for local answers, at least its rate
      // forwarding. Local answers count at an equal CPU cap when there is one: uncapped, dnsperf's own core is the
      // limit (98-99% busy here) and the ratio measures the client, not the servers.
      const key = s.key === 'forwarding' ? 'dns.forwarding_vs_dnsmasq' : s.cap !== null || caps.length === 0 ? 'dns.local_vs_dnsmasq' : 'dns.local_uncapped_vs_dnsmasq';
      const target = s.key === 'forwarding' ? '>=1' : key === 'dns.local_vs_dnsmasq' ? '>=1.5' : '-';
      process.stdout.write(`${summaryLine(key, median(res.weave) / median(res.dnsmasq), target,
        `DNS ${s.title}, weave / dnsmasq (${median(res.weave).toFixed(0)} / ${median(res.dnsmasq).toFixed(0)} q/s; dnsperf's CPU ${median(res.clientBusy).toFixed(0)}% busy)`)}\n`);
    }
  } finally {
    for (const c of caps) c.destroy();
    for (const d of daemons) await d.stop();
    // A clean stop, so a router run with --cpu-prof writes its profile.
    if (nodeOptions !== undefined) await net.host('h1').weave(['stop'], { timeoutMs: 30_000 }).catch(() => undefined);
    await net.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench-dns: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
