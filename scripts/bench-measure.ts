// scripts/bench, measuring: one sample of one overlay is an iperf3 TCP
// transfer (throughput, retransmits), a ping RTT right after it, and the
// overlay daemons' CPU time and resident memory from /proc over the transfer.
// Also starts the iperf3 server the transfers go to. It prints nothing and
// decides nothing: scripts/bench.ts runs the rounds and reports.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { OverlayEndpoints } from './bench-peers';
import { run } from './command';
import { tcpPortListening } from './netns';
import type { SimHost } from './sim-host';
import type { SimNetwork } from './sim-network';
import { waitFor } from './wait';

/** An overlay under test: ours or a reference one, by name. */
export interface Overlay extends OverlayEndpoints {
  name: string;
}

export interface Sample {
  mbps: number;
  retransmits: number;
  rttMs: number;
  /** Per host name: the overlay daemons' CPU, % of one core, over the transfer. */
  cpuPct: Map<string, number>;
  /** Per host name: the overlay daemons' resident memory after the transfer, MiB. */
  rssMiB: Map<string, number>;
  error: string | null;
}

// iperf3 -O: the first second (slow start, MAC learning, handshakes) is not counted.
export const OMIT_SECONDS = 1;
export const PING_COUNT = 10;
const PING_INTERVAL_S = '0.05';
const IPERF_PORT = 5201;

export async function ping(o: Overlay, count: number): Promise<{ ok: boolean; avgMs: number; out: string }> {
  const r = await run(['ip', 'netns', 'exec', o.clientNs, 'ping', '-q', '-n', '-c', String(count), '-i', PING_INTERVAL_S, '-W', '2', o.serverAddress], { timeoutMs: 30_000 });
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  return { ok: r.code === 0, avgMs: m ? Number(m[1]) : NaN, out: r.stdout + r.stderr };
}

/** One transfer of `seconds` (plus OMIT_SECONDS not counted) over `o`, then its RTT. */
export async function measure(net: SimNetwork, o: Overlay, seconds: number): Promise<Sample> {
  const hosts = net.hosts;
  const before = new Map<number, number>();
  for (const h of hosts) for (const pid of daemonPids(h, o)) before.set(pid, cpuTicks(pid));
  const t0 = process.hrtime.bigint();
  const r = await run(['ip', 'netns', 'exec', o.clientNs, 'iperf3', '-c', o.serverAddress, '-p', String(IPERF_PORT),
    '-t', String(seconds), '-O', String(OMIT_SECONDS), '-J'], { timeoutMs: (seconds + OMIT_SECONDS + 30) * 1000 });
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuPct = new Map<string, number>();
  const rssMiB = new Map<string, number>();
  for (const h of hosts) {
    let ticks = 0;
    let rss = 0;
    for (const pid of daemonPids(h, o)) {
      ticks += cpuTicks(pid) - (before.get(pid) ?? NaN);
      rss += rssKiB(pid);
    }
    cpuPct.set(h.name, (ticks / CLOCK_TICKS_PER_S / elapsedS) * 100);
    rssMiB.set(h.name, rss / 1024);
  }
  let mbps = NaN;
  let retransmits = NaN;
  let error: string | null = null;
  try {
    const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
    if (j.error) error = j.error;
    mbps = (j.end?.sum_received?.bits_per_second ?? NaN) / 1e6;
    retransmits = j.end?.sum_sent?.retransmits ?? NaN;
  } catch {
    error = `iperf3 exited ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).slice(0, 300)}`;
  }
  if (error === null && r.code !== 0) error = `iperf3 exited ${r.code}`;
  const p = await ping(o, PING_COUNT);
  return { mbps, retransmits, rttMs: p.avgMs, cpuPct, rssMiB, error };
}

/** An iperf3 server in `ns`, resolved once it listens; it lives as long as the SimNetwork. */
export async function startIperfServer(net: SimNetwork, ns: string): Promise<void> {
  const server = net.spawnIn(ns, ['iperf3', '-s', '-p', String(IPERF_PORT)], {});
  await waitFor(async () => {
    if (!server.running) throw new Error(`iperf3 -s exited: ${server.stderr.trim()}`);
    return tcpPortListening(ns, IPERF_PORT);
  }, { what: `iperf3 server listening in ${ns}`, timeoutMs: 10_000, intervalMs: 100 });
}

// ---------------------------------------------------------------------------
// Processes: which pids are an overlay's daemons, and their CPU time and RSS

const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return [];
  }
}

/** utime + stime of the whole process (all threads), in clock ticks; NaN if it is gone. */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself hold spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return NaN;
  }
}

function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function daemonPids(h: SimHost, o: Overlay): number[] {
  return h.pids().filter((pid) => o.isDaemon(cmdline(pid)));
}
