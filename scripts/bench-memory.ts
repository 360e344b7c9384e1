// scripts/bench-memory: the router's RSS (issue 14: under 60 MB idle, under
// 100 MB with 100 peers, flat over a long transfer), of real routers launched
// as users launch them (`weave launch` in a namespace of a SimNetwork, under
// its supervisor; only the router process is counted, as scripts/bench does):
//
// (a) idle: one router, no peers, no containers, once its RSS has settled;
//     then the same router with one container attached (`weave attach` of a
//     netns, as users attach), settled again, and the container detached;
// (b) peers: the same router with N-1 peers that speak the real protocol (the
//     mesh's own Router, many in one process, scripts/bench-memory-peers.ts,
//     each on its own address of host p1), once it has N-1 established
//     connections and all N peers in its topology;
// (c) transfer: a fresh pair t1 - t2 with a container on each, one iperf3 TCP
//     stream c1 -> c2 over the encrypted sleeve for --transfer-seconds, both
//     routers' RSS sampled every few seconds: first, last, min, max and the
//     least-squares slope, so "flat" is a figure; then both routers idle
//     again, once they have given their burst buffers back (idle-memory.ts).
//     Idle before and after, RSS is also split into anonymous memory (the
//     router's own: heaps, slabs) and file pages (the node binary's code and
//     libraries, clean, shared with every node process and dropped by the
//     kernel under pressure): a transfer runs code an idle router never ran,
//     so file pages stay higher; whether the router kept memory is the
//     anonymous part's growth.
//
// Prints one table and SUMMARY lines for scripts/bench.sh. Figures are printed,
// never asserted; the exit code says only whether everything was measured.
// Owns the SimNetwork it creates (namespaces, routers, peer processes,
// container namespaces) and removes it on success, failure and Ctrl-C.
// Traffic stays inside its own namespaces.
//
// Usage: node dist/scripts/bench-memory.js [--peers N] [--transfer-seconds N] [--sample-seconds N] [--repo DIR]

import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { RouterStatus } from '../router/mesh/status';
import { ROUTER_BUNDLE_FILE, routerScript } from '../cli/launch';
import { summaryLine } from './bench-summary';
import { attach } from './bench-weave';
import { type BackgroundProcess, run } from './command';
import { tcpPortListening } from './netns';
import { SimNetwork } from './sim-network';
import type { SimHost } from './sim-host';
import { sleep, waitFor } from './wait';

interface Options {
  peers: number;
  transferSeconds: number;
  sampleSeconds: number;
  /** Repository whose dist/cli/weave.js is measured (another build, for a before/after); default this one. */
  repo: string | undefined;
}

const PASSWORD = 'weave bench';
const PORT = 6783;
const IPERF_PORT = 5201;
/** An idle router's RSS still moves for ~20 s after start (V8's memory reducer, lazy compilation). */
const SETTLE_MS = 25_000;
const SETTLE_SAMPLES = 5;
/** After a transfer: the overlay frees its burst buffers 20 s after the sleeve went quiet (OverlayTimings.idleReleaseMs). */
const IDLE_AFTER_TRANSFER_MS = 30_000;
/** Peers are 10.250.0.101 and up on p1's eth0 (the SimNetwork's default /24; hosts take .1 to .4). */
const PEER_FIRST_OCTET = 101;
const MAX_PEERS = 150;
const PEERS_PER_PROCESS = 50;
const CONTAINER_IPS = ['10.32.9.1', '10.32.9.2'] as const;
const IDLE_CONTAINER_IP = '10.32.8.1';

const USAGE = `usage: node dist/scripts/bench-memory.js [--peers N] [--transfer-seconds N] [--sample-seconds N] [--repo DIR]
  --peers N             peers of the router in (b), itself included, 0 (skip) or 2..${MAX_PEERS} (default 100)
  --transfer-seconds N  length of the iperf3 transfer in (c), 0 (skip) or 10..3600 (default 600)
  --sample-seconds N    RSS sampling interval during the transfer, 1..60 (default 5)
  --repo DIR            measure the build in DIR (its dist/cli/weave.js) instead of this one`;

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const opts: Options = { peers: 100, transferSeconds: 600, sampleSeconds: 5, repo: undefined };
  const int = (flag: string, text: string | undefined, min: number, max: number, zeroOk: boolean): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || ((n < min || n > max) && !(zeroOk && n === 0))) {
      throw new UsageError(`${flag} must be ${zeroOk ? '0 or ' : ''}a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const [flag, inline] = arg.startsWith('--') && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--peers': opts.peers = int(flag, value(), 2, MAX_PEERS, true); break;
      case '--transfer-seconds': opts.transferSeconds = int(flag, value(), 10, 3600, true); break;
      case '--sample-seconds': opts.sampleSeconds = int(flag, value(), 1, 60, false); break;
      case '--repo': opts.repo = resolve(value() ?? ''); break;
      case '--help': case '-h': process.stdout.write(`${USAGE}\n`); process.exit(0); break;
      default: throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------
// The router process and its RSS

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return [];
  }
}

/** The pid of h's router (not its supervisor). */
function routerPid(h: SimHost): number {
  const pid = h.pids().find((p) => {
    const argv = cmdline(p);
    // The supervisor's argv names weave.js and 'router' too.
    if (argv.some((a) => a.endsWith('supervisor.js'))) return false;
    const entry = argv.findIndex((a) => a.endsWith(join('cli', 'weave.js')) || a.endsWith(join('cli', ROUTER_BUNDLE_FILE)));
    return entry >= 0 && argv[entry + 1] === 'router';
  });
  if (pid === undefined) throw new Error(`no router process on ${h.name}\n${h.readLog()}`);
  return pid;
}

/** VmRSS in MB (10^6 bytes, as the targets and scripts/bench's router_rss_setup_mb are). */
function rssMB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return (Number(m[1]) * 1024) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * The median of SETTLE_SAMPLES samples a second apart, taken settleMs from now:
 * a router's RSS once V8 has collected what a setup or a burst left (scripts/bench uses it too).
 */
export async function settledMedian(sample: () => number, settleMs = SETTLE_MS): Promise<number> {
  await sleep(settleMs);
  const xs: number[] = [];
  for (let i = 0; i < SETTLE_SAMPLES; i++) {
    if (i > 0) await sleep(1_000);
    xs.push(sample());
  }
  return median(xs);
}

async function settledRss(pid: number, settleMs = SETTLE_MS): Promise<number> {
  return settledMedian(() => rssMB(pid), settleMs);
}

/** RSS split as /proc/PID/status has it (RssAnon; RssFile plus RssShmem), MB. */
interface RssSplit { rss: number; anon: number; file: number }

function rssSplit(pid: number): RssSplit {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (m === null) throw new Error(`no ${field} for pid ${pid}`);
    return (Number(m[1]) * 1024) / 1e6;
  };
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
}

/** settledMedian of each part of the split (the parts' medians, so they need not add up exactly). */
async function settledSplit(pid: number, settleMs: number): Promise<RssSplit> {
  const xs: RssSplit[] = [];
  await settledMedian(() => { const x = rssSplit(pid); xs.push(x); return x.rss; }, settleMs);
  return { rss: median(xs.map((x) => x.rss)), anon: median(xs.map((x) => x.anon)), file: median(xs.map((x) => x.file)) };
}

/** Least-squares slope of y over t, per minute. */
export function slopePerMinute(samples: readonly { t: number; mb: number }[]): number {
  const n = samples.length;
  if (n < 2) return NaN;
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const my = samples.reduce((a, s) => a + s.mb, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mt) * (s.mb - my);
    den += (s.t - mt) ** 2;
  }
  return den === 0 ? NaN : (num / den) * 60;
}

// ---------------------------------------------------------------------------
// Setups

async function launch(h: SimHost, args: string[]): Promise<void> {
  const r = await h.weave(['launch', '--nickname', h.name, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`weave launch on ${h.name} exited ${r.code}: ${r.stderr.trim()}\n${h.readLog()}`);
}

async function stopRouter(h: SimHost): Promise<void> {
  const r = await h.weave(['stop'], { timeoutMs: 60_000 });
  if (r.code !== 0) process.stderr.write(`bench-memory: weave stop on ${h.name} exited ${r.code}: ${r.stderr.trim()}\n`);
}

function established(s: RouterStatus): number {
  return s.connections.filter((c) => c.state === 'established').length;
}

interface PeersResult { rssMB: number; connected: number; topology: number; convergeS: number }

/** (b): `peers - 1` protocol peers on p1 connect to h1's router; its RSS once it holds them all. */
async function withPeers(h1: SimHost, p1: SimHost, peers: number, say: (l: string) => void): Promise<PeersResult> {
  const addresses = Array.from({ length: peers - 1 }, (_, i) => `10.250.0.${PEER_FIRST_OCTET + i}`);
  await run(['ip', '-n', p1.ns, '-batch', '-'], { check: true, timeoutMs: 30_000, input: addresses.map((a) => `addr add ${a}/24 dev eth0\n`).join('') });
  const worker = join(resolve(__dirname), 'bench-memory-peers.js');
  const procs: BackgroundProcess[] = [];
  const t0 = Date.now();
  for (let i = 0; i < addresses.length; i += PEERS_PER_PROCESS) {
    procs.push(p1.spawn(['node', worker, '--target', `${h1.address}:${PORT}`, ...addresses.slice(i, i + PEERS_PER_PROCESS)], { env: p1.weaveEnv() }));
  }
  let last: RouterStatus | null = null;
  await waitFor(async () => {
    for (const p of procs) if (!p.running) throw new Error(`a peer process exited: ${p.stderr.trim().slice(-2000)}`);
    last = await h1.weaveStatus();
    return established(last) >= peers - 1 && last.peers.filter((p) => p.reachable).length >= peers;
  }, {
    what: `${h1.name} holding ${peers - 1} established connections and ${peers} reachable peers`, timeoutMs: 300_000, intervalMs: 2_000,
    detail: () => (last === null ? '' : `established ${established(last)}, reachable ${last.peers.filter((p) => p.reachable).length}`),
  });
  const convergeS = (Date.now() - t0) / 1000;
  say(`  ${peers - 1} peers connected in ${convergeS.toFixed(0)} s; settling`);
  const rss = await settledRss(routerPid(h1));
  const s = await h1.weaveStatus();
  const result = { rssMB: rss, connected: established(s), topology: s.peers.filter((p) => p.reachable).length, convergeS };
  await Promise.all(procs.map((p) => p.stop('SIGTERM')));
  return result;
}

interface TransferResult { mbps: number; hosts: { name: string; samples: { t: number; mb: number }[]; idleBefore: RssSplit; idleAfter: RssSplit }[] }

/** (c): c1 on t1 -> c2 on t2, one iperf3 stream for `seconds`, both routers' RSS every `every` seconds. */
async function transfer(net: SimNetwork, t1: SimHost, t2: SimHost, seconds: number, every: number, say: (l: string) => void): Promise<TransferResult> {
  await launch(t1, ['--no-discovery']);
  await launch(t2, ['--no-discovery', t1.address]);
  for (const h of [t1, t2]) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, { what: `${h.name} reaches 2 peers`, timeoutMs: 60_000, detail: () => h.readLog() });
  }
  const c1 = await attach(net, t1, 'mc1', CONTAINER_IPS[0]);
  const c2 = await attach(net, t2, 'mc2', CONTAINER_IPS[1]);
  const pingOk = async (): Promise<boolean> =>
    (await run(['ip', 'netns', 'exec', c1, 'ping', '-n', '-c', '1', '-W', '2', CONTAINER_IPS[1]], { timeoutMs: 10_000 })).code === 0;
  await waitFor(pingOk, { what: `c1 pings ${CONTAINER_IPS[1]}`, timeoutMs: 30_000, detail: () => t1.readLog() });
  // Frames go over TCP until the first UDP heartbeat is confirmed; measure the sleeve, as users get it.
  await waitFor(async () => (await t1.weaveStatus()).connections.some((c) => c.state === 'established' && c.dataPath === 'udp'),
    { what: 't1 -> t2 on the UDP sleeve', timeoutMs: 30_000, intervalMs: 500 }).catch(() => say('  warning: t1 -> t2 is not on the UDP sleeve; measuring what there is'));
  const server = net.spawnIn(c2, ['iperf3', '-s', '-p', String(IPERF_PORT)], {});
  await waitFor(async () => {
    if (!server.running) throw new Error(`iperf3 -s exited: ${server.stderr.trim()}`);
    return tcpPortListening(c2, IPERF_PORT);
  }, { what: 'iperf3 server listening', timeoutMs: 10_000, intervalMs: 100 });
  const pids = [t1, t2].map((h) => ({ name: h.name, pid: routerPid(h), samples: [] as { t: number; mb: number }[] }));
  say('  settling before the transfer');
  const idleBefore = await Promise.all(pids.map((p) => settledSplit(p.pid, SETTLE_MS)));
  const t0 = Date.now();
  const sample = (): void => { for (const p of pids) p.samples.push({ t: (Date.now() - t0) / 1000, mb: rssMB(p.pid) }); };
  sample();
  const client = run(['ip', 'netns', 'exec', c1, 'iperf3', '-c', CONTAINER_IPS[1], '-p', String(IPERF_PORT), '-t', String(seconds), '-J'],
    { timeoutMs: (seconds + 60) * 1000 });
  let done = false;
  void client.finally(() => { done = true; });
  let nextLog = t0 + 60_000;
  while (!done) {
    await Promise.race([sleep(every * 1000), client]);
    if (done) break;
    sample();
    if (Date.now() >= nextLog) {
      nextLog += 60_000;
      say(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: ${pids.map((p) => `${p.name} ${p.samples.at(-1)!.mb.toFixed(1)} MB`).join(', ')}`);
    }
  }
  sample();
  const r = await client;
  await server.stop('SIGTERM');
  if (r.code !== 0) throw new Error(`iperf3 -c exited ${r.code}: ${r.stderr.trim() || r.stdout.slice(0, 500)}`);
  const bps = (JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received?.bits_per_second ?? NaN;
  say(`  transfer done; idle again for ${IDLE_AFTER_TRANSFER_MS / 1000} s`);
  const idleAfter = await Promise.all(pids.map((p) => settledSplit(p.pid, IDLE_AFTER_TRANSFER_MS)));
  return { mbps: bps / 1e6, hosts: pids.map((p, i) => ({ name: p.name, samples: p.samples, idleBefore: idleBefore[i]!, idleAfter: idleAfter[i]! })) };
}

// ---------------------------------------------------------------------------

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench-memory: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  const say = (line: string): void => { process.stdout.write(`${line}\n`); };
  const started = Date.now();
  const net = await SimNetwork.create({ hosts: ['h1', 'p1', 't1', 't2'], password: PASSWORD, ...(opts.repo !== undefined ? { repoRoot: opts.repo } : {}) });
  const rows: string[][] = [['phase', 'router', 'RSS MB', 'first', 'last', 'min', 'max', 'slope MB/min', 'detail']];
  const summary: string[] = [];
  let failed = false;
  try {
    const [h1, p1, t1, t2] = net.hosts as [SimHost, SimHost, SimHost, SimHost];
    // The router runs the bundle only when it is current (cli/launch.ts): say which, since it moves the idle figure by ~2.5 MB.
    const script = basename(routerScript(dirname(net.weaveCli)));
    const how = script === ROUTER_BUNDLE_FILE ? `the router runs ${script}` : `the router runs ${script}: no current bundle (npm run build)`;
    say(`bench-memory: ${net.weaveCli}, ${how}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    say('(a) idle: one router, launched, no peers');
    await launch(h1, []);
    const idle = await settledRss(routerPid(h1));
    rows.push(['idle', 'h1', f1(idle), '', '', '', '', '', 'no peers, no containers; median of 5 samples after 25 s']);
    summary.push(summaryLine('memory.idle_rss_mb', idle, '<60', 'router RSS idle, no peers, MB', 1));
    say('    and with one container attached');
    const ns = await attach(net, h1, 'mi1', IDLE_CONTAINER_IP);
    const withContainer = await settledRss(routerPid(h1));
    rows.push(['idle, 1 container', 'h1', f1(withContainer), '', '', '', '', '', `one netns attached (${IDLE_CONTAINER_IP}/24); the same settling`]);
    summary.push(summaryLine('memory.one_container_rss_mb', withContainer, '<60', 'router RSS idle with one container attached, MB', 1));
    const d = await h1.weave(['detach', `netns:${ns}`], { timeoutMs: 60_000 });
    if (d.code !== 0) throw new Error(`weave detach netns:${ns} exited ${d.code}: ${d.stderr.trim()}`);
    await run(['ip', 'netns', 'del', ns], { check: true });
    if (opts.peers > 0) {
      say(`(b) ${opts.peers} peers: ${opts.peers - 1} protocol peers on p1 connect to h1`);
      try {
        const p = await withPeers(h1, p1, opts.peers, say);
        rows.push([`${opts.peers} peers`, 'h1', f1(p.rssMB), '', '', '', '', '',
          `${p.connected} established, ${p.topology} peers reachable; converged in ${p.convergeS.toFixed(0)} s`]);
        summary.push(summaryLine('memory.peers_rss_mb', p.rssMB, '<100', `router RSS with ${opts.peers} peers, MB`, 1));
      } catch (err) {
        failed = true;
        say(`  FAILED: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    await stopRouter(h1);
    if (opts.transferSeconds > 0) {
      say(`(c) transfer: c1 on t1 -> c2 on t2, one iperf3 stream for ${opts.transferSeconds} s, RSS every ${opts.sampleSeconds} s`);
      try {
        const t = await transfer(net, t1, t2, opts.transferSeconds, opts.sampleSeconds, say);
        for (const h of t.hosts) {
          const xs = h.samples.map((s) => s.mb);
          const slope = slopePerMinute(h.samples);
          // The first seconds touch the data path's buffers once; the second half shows whether it keeps growing.
          const lateSlope = slopePerMinute(h.samples.filter((x) => x.t >= opts.transferSeconds / 2));
          rows.push([`transfer ${opts.transferSeconds} s`, h.name, '', f1(xs[0]!), f1(xs.at(-1)!), f1(Math.min(...xs)), f1(Math.max(...xs)),
            `${slope.toFixed(2)} (2nd half ${lateSlope.toFixed(2)})`, `${xs.length} samples; ${f1(t.mbps)} Mbit/s`]);
          summary.push(summaryLine(`memory.transfer_slope_mb_per_min.${h.name}`, slope, '~0', `router RSS slope over a ${opts.transferSeconds} s transfer, least squares, MB/min`));
          summary.push(summaryLine(`memory.transfer_late_slope_mb_per_min.${h.name}`, lateSlope, '~0', 'the same over its second half, MB/min'));
          summary.push(summaryLine(`memory.transfer_rss_last_mb.${h.name}`, xs.at(-1)!, '-', `router RSS at the end of the transfer (first ${f1(xs[0]!)}, max ${f1(Math.max(...xs))}), MB`, 1));
          const split = (x: RssSplit): string => `anonymous ${f1(x.anon)}, file pages ${f1(x.file)}`;
          rows.push(['idle before it', h.name, f1(h.idleBefore.rss), '', '', '', '', '', `${split(h.idleBefore)}; settled, as idle above`]);
          rows.push(['idle after it', h.name, f1(h.idleAfter.rss), '', '', '', '', '',
            `${split(h.idleAfter)}; median of 5 samples from ${IDLE_AFTER_TRANSFER_MS / 1000} s after the transfer`]);
          summary.push(summaryLine(`memory.idle_after_transfer_rss_mb.${h.name}`, h.idleAfter.rss, '-',
            `router RSS idle again after the transfer, MB (before it ${f1(h.idleBefore.rss)}; file pages ${f1(h.idleBefore.file)} -> ${f1(h.idleAfter.file)}: code the transfer ran)`, 1));
          // The burst buffers are ~13 MB (idle-memory.ts); what may stay is the data path's optimized code and a few heap
          // pages V8 keeps (0.6-1.1 MB seen; a forced full GC at release took off ~0.2).
          summary.push(summaryLine(`memory.idle_after_transfer_anon_growth_mb.${h.name}`, h.idleAfter.anon - h.idleBefore.anon, '<2',
            `router anonymous memory idle after the transfer minus idle before it, MB (${f1(h.idleBefore.anon)} -> ${f1(h.idleAfter.anon)})`, 1));
        }
        await stopRouter(t1);
        await stopRouter(t2);
      } catch (err) {
        failed = true;
        say(`  FAILED: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } catch (err) {
    failed = true;
    say(`bench-memory: FAILED: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await net.destroy();
  }
  say('');
  say(table(rows));
  say(`RSS is VmRSS of the router process only (not its supervisor), MB (10^6 bytes); load average at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const line of summary) say(line);
  say(`memory section took ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return failed ? 1 : 0;
}

if (require.main === module) {
  main().then((code) => { process.exitCode = code; }, (err: unknown) => {
    process.stderr.write(`bench-memory: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
