// scripts/bench: TCP throughput and RTT of our overlay against wireguard-go
// (and, when installed, tinc in switch mode and nebula) between the same two
// simulated hosts (scripts/sim-network.ts SimNetwork), measured alternately in one
// run: weave, wireguard-go, tinc, nebula, weave, wireguard-go, ... so machine
// noise spreads evenly. Prints each round, then medians, the ratio to
// wireguard-go, and the daemons' CPU% and RSS during the transfers (each
// sample is taken by scripts/bench-measure.ts).
//
// What is measured (printed too): for weave, container to container (two
// namespaces attached with `weave attach`, one per host: veth -> bridge ->
// TAP -> router -> encrypted UDP -> router -> TAP -> bridge -> veth); for the
// others, host to host over their tunnel interface. Speed figures are
// printed, never asserted; the exit code says only whether the bench ran.
//
// It owns the SimNetwork it creates and everything in it, and removes it all
// (namespaces, daemons, TUN/TAP devices, wireguard-go sockets) on success,
// failure and Ctrl-C. Traffic stays inside its own namespaces.
//
// Usage: node dist/scripts/bench.js [--seconds N] [--rounds N] [--overlays wireguard-go,tinc,nebula] [--verbose]
// Exit code 0 when every overlay was measured, 1 on failure, 2 on a usage error.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { run } from './command';
import { SimNetwork } from './sim-network';
import { sleep, waitFor } from './wait';
import { measure, OMIT_SECONDS, type Overlay, ping, PING_COUNT, type Sample, startIperfServer } from './bench-measure';
import { PEER_OVERLAYS, type PeerOverlay, removeWireguardSockets } from './bench-peers';
import type { RouterStatus } from '../router/mesh/status';

interface BenchOptions {
  seconds: number;
  rounds: number;
  /** Reference overlays by name, in measuring order; weave always comes first. */
  overlays: string[];
  /** Named explicitly on the command line: missing binaries are then an error, not a skip. */
  overlaysExplicit: boolean;
  verbose: boolean;
}

const DEFAULT_SECONDS = 5;
const DEFAULT_ROUNDS = 3;
const PASSWORD = 'weave bench';
const UDP_WAIT_MS = 30_000;
const CONTAINERS = [
  { host: 'h1', name: 'c1', ip: '10.32.1.1' },
  { host: 'h2', name: 'c2', ip: '10.32.1.2' },
] as const;
const REPO_ROOT = resolve(__dirname, '..', '..');
const WEAVE_CLI = join(REPO_ROOT, 'dist', 'cli', 'weave.js');

const USAGE = `usage: node dist/scripts/bench.js [--seconds N] [--rounds N] [--overlays LIST] [--verbose]
  --seconds N     length of each iperf3 transfer, 1..600 (default ${DEFAULT_SECONDS}; one more second is run and not counted)
  --rounds N      rounds of alternating measurements, 1..50 (default ${DEFAULT_ROUNDS})
  --overlays LIST reference overlays besides weave, comma-separated from: ${PEER_OVERLAYS.map((p) => p.name).join(', ')}
                  (default: all whose binaries are installed; "none" for weave alone)
  --verbose       log every namespace and firewall command`;

class UsageError extends Error {}

function parseArgs(argv: string[]): BenchOptions {
  const opts: BenchOptions = {
    seconds: DEFAULT_SECONDS, rounds: DEFAULT_ROUNDS, overlays: PEER_OVERLAYS.map((p) => p.name), overlaysExplicit: false, verbose: false,
  };
  const intArg = (flag: string, value: string | undefined, min: number, max: number): number => {
    const n = Number(value);
    if (value === undefined || !/^\d+$/.test(value) || n < min || n > max) throw new UsageError(`${flag} needs an integer from ${min} to ${max}, got ${JSON.stringify(value ?? '')}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--seconds': opts.seconds = intArg(flag, value(), 1, 600); break;
      case '--rounds': opts.rounds = intArg(flag, value(), 1, 50); break;
      case '--overlays': {
        const list = (value() ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
        const names = list.length === 1 && list[0] === 'none' ? [] : list.map((s) => (s === 'wireguard' || s === 'wg' ? 'wireguard-go' : s));
        for (const n of names) {
          if (!PEER_OVERLAYS.some((p) => p.name === n)) throw new UsageError(`unknown overlay ${JSON.stringify(n)}; known: ${PEER_OVERLAYS.map((p) => p.name).join(', ')}, none`);
        }
        if (list.length === 0) throw new UsageError('--overlays needs a list (or "none")');
        opts.overlays = [...new Set(names)];
        opts.overlaysExplicit = true;
        break;
      }
      case '--verbose': opts.verbose = true; break;
      case '--help': case '-h': process.stdout.write(`${USAGE}\n`); process.exit(0); break;
      default: throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------
// Small helpers

function which(bin: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, bin)));
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmt(x: number, digits = 0): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()).join('\n');
}

// ---------------------------------------------------------------------------
// Setting up our overlay

async function setupWeave(net: SimNetwork): Promise<Overlay> {
  for (let i = 0; i < net.hosts.length; i++) {
    const h = net.hosts[i]!;
    const peers = i === 0 ? [] : [net.hosts[0]!.address];
    const r = await h.weave(['launch', '--nickname', h.name, ...peers], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`weave launch on ${h.name} exited ${r.code}: ${r.stderr.trim()}\n${h.readLog()}`);
  }
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === net.hosts.length, {
      what: `${h.name} reaches ${net.hosts.length} peers`, timeoutMs: 60_000, detail: () => h.readLog(),
    });
  }
  for (const c of CONTAINERS) {
    const h = net.host(c.host);
    const ns = `${net.prefix}${c.name}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await h.weave(['attach', `${c.ip}/24`, `netns:${ns}`], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`weave attach ${c.ip}/24 netns:${ns} on ${c.host} exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
  }
  const [c1, c2] = CONTAINERS;
  const overlay: Overlay = {
    name: 'weave',
    clientNs: `${net.prefix}${c1.name}`,
    serverNs: `${net.prefix}${c2.name}`,
    serverAddress: c2.ip,
    path: '',
    mtu: 0,
    version: '',
    // The router itself: its supervisor (cli/supervisor.js, whose argv also
    // names weave.js and 'router') is a separate idle process, not the overlay.
    isDaemon: (cmd) => cmd.some((a) => a.endsWith(join('cli', 'weave.js'))) && cmd.includes('router') && !cmd.some((a) => a.endsWith('supervisor.js')),
  };
  // The first pings also teach both routers' MAC tables.
  await waitFor(async () => (await ping(overlay, 1)).ok, { what: `${c1.name} pings ${c2.ip} over weave`, timeoutMs: 30_000, detail: () => net.hosts[0]!.readLog() });
  // Frames travel over TCP until the first UDP heartbeat is confirmed (one heartbeat interval, 5 s by default).
  const established = (st: RouterStatus) => st.connections.find((c) => c.state === 'established' && c.nickname === c2.host);
  let s: RouterStatus = await net.hosts[0]!.weaveStatus();
  try {
    s = await waitFor(async () => {
      const st = await net.hosts[0]!.weaveStatus();
      return established(st)?.dataPath === 'udp' ? st : null;
    }, { what: `${c1.host} -> ${c2.host} on the UDP sleeve`, timeoutMs: UDP_WAIT_MS, intervalMs: 500 });
  } catch {
    s = await net.hosts[0]!.weaveStatus();
    say(`    warning: after ${UDP_WAIT_MS / 1000} s ${c1.host} -> ${c2.host} is still not on the UDP sleeve; measuring what there is`);
  }
  const link = established(s);
  const sleeve = `${link?.encrypted ? 'encrypted' : 'UNENCRYPTED'} ${link?.dataPath === 'udp' ? 'UDP sleeve' : `${(link?.dataPath ?? '?').toUpperCase()} fallback (${link?.dataPathInfo ?? ''})`}`;
  const rev = await run(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
  overlay.mtu = s.dataPlane?.mtu ?? 0;
  overlay.version = `weave (this repo${rev.code === 0 ? ` at ${rev.stdout.trim()}` : ''}, router ${s.version})`;
  overlay.path = `container ${c1.name} (on ${c1.host}) -> container ${c2.name} (on ${c2.host}), ${c1.ip} -> ${c2.ip}: veth, bridge, TAP, ` +
    `router, ${sleeve}${s.dataPlane?.aead ? ` (${s.dataPlane.aead})` : ''}, router, TAP, bridge, veth`;
  return overlay;
}

// ---------------------------------------------------------------------------
// Main

async function bench(opts: BenchOptions): Promise<number> {
  const started = Date.now();
  if (!existsSync(WEAVE_CLI)) throw new Error(`${WEAVE_CLI} is missing: build first (scripts/bench.sh does)`);
  for (const bin of ['iperf3', 'ping', 'ss']) if (!which(bin)) throw new Error(`${bin} is not installed (scripts/bench.sh installs it)`);
  const peers: PeerOverlay[] = [];
  for (const name of opts.overlays) {
    const p = PEER_OVERLAYS.find((x) => x.name === name)!;
    const missing = p.needs.filter((n) => !which(n.bin));
    if (missing.length === 0) peers.push(p);
    else if (opts.overlaysExplicit || p.name === 'wireguard-go') {
      throw new Error(`${p.name} needs ${missing.map((n) => `${n.bin} (Debian ${n.pkg})`).join(', ')}; scripts/bench.sh installs them`);
    } else say(`(skipping ${p.name}: ${missing.map((n) => `${n.bin} from Debian ${n.pkg}`).join(', ')} not installed)`);
  }

  const tag = randomBytes(2).toString('hex');
  process.on('exit', removeWireguardSockets);
  const net = await SimNetwork.create({
    hosts: 2, prefix: `wvb${tag}-`, password: PASSWORD,
    ...(opts.verbose ? { log: (l: string) => process.stderr.write(`${l}\n`) } : {}),
  });
  let failed = false;
  try {
    const [a, b] = [net.hosts[0]!, net.hosts[1]!];
    say(`==> two simulated hosts ${a.name} (${a.address}) and ${b.name} (${b.address}) in namespaces ${net.prefix}*, one veth bridge between them`);
    say('==> setting up weave');
    const overlays: Overlay[] = [await setupWeave(net)];
    for (const p of peers) {
      say(`==> setting up ${p.name}`);
      try {
        const o: Overlay = { name: p.name, ...(await p.setup(net, a, b, tag)) };
        await waitFor(async () => (await ping(o, 1)).ok, { what: `${o.serverAddress} answering over ${o.name}`, timeoutMs: 30_000 });
        overlays.push(o);
      } catch (e) {
        if (p.name === 'wireguard-go') throw e;
        failed = true;
        say(`    ${p.name} could not be set up, left out: ${e instanceof Error ? e.message.split('\n').slice(0, 3).join(' | ') : String(e)}`);
      }
    }
    for (const ns of new Set(overlays.map((o) => o.serverNs))) await startIperfServer(net, ns);

    say('');
    say(`What is measured (iperf3 TCP, 1 stream, ${opts.seconds} s after ${OMIT_SECONDS} s not counted, client -> server; RTT = ping -c ${PING_COUNT} average after each transfer):`);
    for (const o of overlays) say(`  ${o.name.padEnd(13)} ${o.path}; MTU ${o.mtu}; ${o.version}`);
    say(`CPU% = the overlay's own daemons on each host (weave: the router processes; not iperf3), % of one core over the transfer; ${availableParallelism()} cores here.`);
    say('');

    const samples = new Map<string, Sample[]>(overlays.map((o) => [o.name, []]));
    for (let round = 1; round <= opts.rounds; round++) {
      const parts: string[] = [];
      for (const o of overlays) {
        const s = await measure(net, o, opts.seconds);
        samples.get(o.name)!.push(s);
        if (s.error !== null) failed = true;
        parts.push(`${o.name} ${s.error !== null ? `FAILED (${s.error})` : `${fmt(s.mbps)} Mbit/s, rtt ${fmt(s.rttMs, 2)} ms`}`);
        await sleep(200);
      }
      say(`round ${round}/${opts.rounds}: ${parts.join(' | ')}`);
    }

    // A switch to the TCP fallback mid-run would make weave's figures meaningless: say so.
    const after = await a.weaveStatus().catch(() => null);
    const path = after?.connections.find((c) => c.state === 'established' && c.nickname === b.name)?.dataPath;
    if (path !== 'udp') say(`warning: after the rounds weave's ${a.name} -> ${b.name} data path is ${path ?? 'unknown'}, not the UDP sleeve`);

    const hostNames = net.hosts.map((h) => h.name);
    const rows: string[][] = [[
      'overlay', 'Mbit/s (median)', 'min..max', 'RTT ms', 'retrans', ...hostNames.map((n) => `CPU% ${n}`), ...hostNames.map((n) => `RSS MiB ${n}`),
    ]];
    for (const o of overlays) {
      const ss = samples.get(o.name)!;
      const mb = ss.map((s) => s.mbps).filter(Number.isFinite);
      rows.push([
        o.name === 'weave' ? 'weave (ours)' : o.name,
        fmt(median(mb)),
        mb.length > 0 ? `${fmt(Math.min(...mb))}..${fmt(Math.max(...mb))}` : '-',
        fmt(median(ss.map((s) => s.rttMs)), 2),
        fmt(median(ss.map((s) => s.retransmits))),
        ...hostNames.map((n) => fmt(median(ss.map((s) => s.cpuPct.get(n) ?? NaN)))),
        ...hostNames.map((n) => fmt(median(ss.map((s) => s.rssMiB.get(n) ?? NaN)))),
      ]);
    }
    say('');
    say(`Results, median of ${opts.rounds} round${opts.rounds === 1 ? '' : 's'}:`);
    say(table(rows));
    const ours = samples.get('weave')!;
    const wg = samples.get('wireguard-go');
    say('');
    if (wg) {
      const tput = median(ours.map((s) => s.mbps)) / median(wg.map((s) => s.mbps));
      const rtt = median(ours.map((s) => s.rttMs)) / median(wg.map((s) => s.rttMs));
      say(`ratio weave / wireguard-go: throughput ${fmt(tput, 2)}x, RTT ${fmt(rtt, 2)}x ` +
        `(weave container-to-container vs wireguard-go host-to-host, same two namespaces and underlay)`);
    }
    say(`bench took ${fmt((Date.now() - started) / 1000)} s`);
  } finally {
    say('==> cleaning up');
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 }).catch(() => undefined);
    await net.destroy();
    removeWireguardSockets();
  }
  return failed ? 1 : 0;
}

async function main(): Promise<void> {
  let opts: BenchOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`bench: ${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  try {
    process.exitCode = await bench(opts);
  } catch (e) {
    process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}

void main();
