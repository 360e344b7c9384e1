// scripts/bench: TCP throughput and RTT, idle and under load, of our overlay
// against the references and the kernel's ceilings between hosts of one
// SimNetwork (scripts/sim-network.ts), measured alternately in one run
// (weave, weave host to host, weave relayed, weave forwarded, weave fast path, wireguard-go, tinc, nebula, fastd,
// kernel VXLAN, veth, then again) so machine noise spreads evenly. Prints each
// round, then a table of medians and ranges with the ratio to wireguard-go
// and the daemons' CPU and RSS (scripts/bench-report.ts), and the SUMMARY
// lines scripts/bench.sh gathers into its final table.
//
// The network: h1 - h2 for weave (encrypted, container to container; and
// host to host through `weave expose`, the references' own ends, for a like
// for like RTT), the references (host to host over their tunnels) and the
// ceilings; h3, which h1 cannot reach, for weave relayed through h2; g1 - g3,
// whose underlay h2's kernel forwards, for the relayed row's ceiling; f1 - f2
// for weave's plaintext mesh on the kernel fast path. Setups: bench-weave.ts, bench-peers.ts,
// bench-ceilings.ts; one sample: bench-measure.ts. Speed figures are printed,
// never asserted; the exit code says only whether everything was measured.
//
// It owns the SimNetwork it creates and everything in it, and removes it all
// (namespaces, daemons, devices, wireguard-go sockets) on success, failure and
// Ctrl-C. Traffic stays inside its own namespaces.
//
// Usage: node dist/scripts/bench.js [--seconds N] [--rounds N] [--overlays LIST] [--verbose]
// Exit code 0 when every overlay was measured, 1 on failure, 2 on a usage error.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { run } from './command';
import { SimNetwork } from './sim-network';
import { sleep, waitFor } from './wait';
import { daemonRssMiB, LOADED_PING_INTERVAL_S, measure, OMIT_SECONDS, type Overlay, ping, PING_COUNT, type Sample, startIperfServer } from './bench-measure';
import { summaryLine } from './bench-summary';
import { settledMedian } from './bench-memory';
import { PEER_OVERLAYS, removeWireguardSockets } from './bench-peers';
import { setupKernelVxlan, setupVeth } from './bench-ceilings';
import { setupWeaveEncrypted, setupWeaveFastdp, setupWeaveForwarded, setupWeaveHosts, setupWeaveRelayed, vxlanTxPackets } from './bench-weave';
import { fmt, median, RESULTS_LEGEND, resultsTable, summaryLines } from './bench-report';

interface BenchOptions {
  seconds: number;
  rounds: number;
  /** Overlays by name, in measuring order; weave always comes first. */
  overlays: string[];
  /** Named explicitly on the command line: missing binaries are then an error, not a skip. */
  overlaysExplicit: boolean;
  verbose: boolean;
}

const DEFAULT_SECONDS = 5;
const DEFAULT_ROUNDS = 3;
const PASSWORD = 'weave bench';
const WEAVE_CLI = join(resolve(__dirname, '..', '..'), 'dist', 'cli', 'weave.js');
/** Every row the bench can measure, in measuring order. */
const ALL_OVERLAYS = ['weave', 'weave-hosts', 'weave-relayed', 'weave-forwarded', 'weave-fastdp', ...PEER_OVERLAYS.map((p) => p.name), 'vxlan', 'veth'];

const USAGE = `usage: node dist/scripts/bench.js [--seconds N] [--rounds N] [--overlays LIST] [--verbose]
  --seconds N     length of each iperf3 transfer, 2..600 (default ${DEFAULT_SECONDS}; one more second is run and not counted)
  --rounds N      rounds of alternating measurements, 1..50 (default ${DEFAULT_ROUNDS})
  --overlays LIST rows besides weave, comma-separated from: ${ALL_OVERLAYS.slice(1).join(', ')}
                  (default: all, skipping references whose binaries are missing; "none" for weave alone)
  --verbose       log every namespace and firewall command`;

class UsageError extends Error {}

function parseArgs(argv: string[]): BenchOptions {
  const opts: BenchOptions = { seconds: DEFAULT_SECONDS, rounds: DEFAULT_ROUNDS, overlays: ALL_OVERLAYS, overlaysExplicit: false, verbose: false };
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
      case '--seconds': opts.seconds = intArg(flag, value(), 2, 600); break;
      case '--rounds': opts.rounds = intArg(flag, value(), 1, 50); break;
      case '--overlays': {
        const list = (value() ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
        if (list.length === 0) throw new UsageError('--overlays needs a list (or "none")');
        const names = list.length === 1 && list[0] === 'none' ? [] : list.map((s) => (s === 'wireguard' || s === 'wg' ? 'wireguard-go' : s));
        for (const n of names) if (!ALL_OVERLAYS.includes(n)) throw new UsageError(`unknown overlay ${JSON.stringify(n)}; known: ${ALL_OVERLAYS.join(', ')}, none`);
        opts.overlays = ALL_OVERLAYS.filter((n) => n === 'weave' || names.includes(n));
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

function which(bin: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, bin)));
}

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

/** The overlays to measure: reference overlays whose binaries are missing are skipped (wireguard-go, or any named explicitly, is an error). */
function chooseOverlays(opts: BenchOptions): string[] {
  return opts.overlays.filter((name) => {
    const p = PEER_OVERLAYS.find((x) => x.name === name);
    const missing = p?.needs.filter((n) => !which(n.bin)) ?? [];
    if (p === undefined || missing.length === 0) return true;
    const what = missing.map((n) => `${n.bin} (Debian ${n.pkg})`).join(', ');
    if (opts.overlaysExplicit || p.name === 'wireguard-go') throw new Error(`${p.name} needs ${what}; scripts/bench.sh installs them`);
    say(`(skipping ${p.name}: ${what} not installed)`);
    return false;
  });
}

async function setUp(net: SimNetwork, wanted: string[], tag: string): Promise<{ overlays: Overlay[]; failed: boolean }> {
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  const overlays: Overlay[] = [];
  let failed = false;
  say('==> setting up weave (encrypted)');
  const weave = await setupWeaveEncrypted(net, h1, h2, say);
  overlays.push(weave);
  for (const name of wanted.slice(1)) {
    say(`==> setting up ${name}`);
    try {
      let o: Overlay;
      if (name === 'weave-hosts') o = await setupWeaveHosts(weave);
      else if (name === 'weave-relayed') o = await setupWeaveRelayed(net, weave, net.host('h3'), say);
      else if (name === 'weave-forwarded') o = await setupWeaveForwarded(net, [net.host('g1'), net.host('g3')], h2, say);
      else if (name === 'weave-fastdp') o = await setupWeaveFastdp(net, [net.host('f1'), net.host('f2')], say);
      else if (name === 'vxlan') o = await setupKernelVxlan(net, h1, h2);
      else if (name === 'veth') o = await setupVeth(h1, h2);
      else o = { name, label: name, hosts: [h1, h2], ...(await PEER_OVERLAYS.find((p) => p.name === name)!.setup(net, h1, h2, tag)) };
      await waitFor(async () => (await ping(o, 1)).ok, { what: `${o.serverAddress} answering over ${o.name}`, timeoutMs: 30_000 });
      overlays.push(o);
    } catch (e) {
      if (name === 'wireguard-go') throw e;
      failed = true;
      say(`    ${name} could not be set up, left out: ${e instanceof Error ? e.message.split('\n').slice(0, 3).join(' | ') : String(e)}`);
    }
  }
  return { overlays, failed };
}

/** Settling, as scripts/bench-memory measures idle: V8 collects the setup's garbage within ~10 s of it. */
const SETUP_SETTLE_MS = 20_000;

/** The congestion control new TCP connections in namespace `ns` use (per namespace, inherited from the machine's). */
async function congestionControl(ns: string): Promise<string> {
  const r = await run(['ip', 'netns', 'exec', ns, 'cat', '/proc/sys/net/ipv4/tcp_congestion_control']);
  return r.code === 0 ? r.stdout.trim() : 'unknown';
}

async function bench(opts: BenchOptions): Promise<number> {
  const started = Date.now();
  if (!existsSync(WEAVE_CLI)) throw new Error(`${WEAVE_CLI} is missing: build first (scripts/bench.sh does)`);
  for (const bin of ['iperf3', 'ping', 'ss', 'nft']) if (!which(bin)) throw new Error(`${bin} is not installed (scripts/bench.sh installs it)`);
  const wanted = chooseOverlays(opts);
  const hostNames = ['h1', 'h2', ...(wanted.includes('weave-relayed') ? ['h3'] : []), ...(wanted.includes('weave-forwarded') ? ['g1', 'g3'] : []),
    ...(wanted.includes('weave-fastdp') ? ['f1', 'f2'] : [])];

  const tag = randomBytes(2).toString('hex');
  process.on('exit', removeWireguardSockets);
  const net = await SimNetwork.create({
    hosts: hostNames, prefix: `wvb${tag}-`, password: PASSWORD,
    ...(opts.verbose ? { log: (l: string) => process.stderr.write(`${l}\n`) } : {}),
  });
  try {
    say(`==> simulated hosts ${net.hosts.map((h) => `${h.name} (${h.address})`).join(', ')} in namespaces ${net.prefix}*, one veth bridge between them`);
    if (hostNames.includes('h3')) {
      await net.blockBetween('h1', 'h3', 'all');
      say('    h1 and h3 cannot reach each other (nftables drops in both namespaces)');
    }
    const { overlays, failed: setupFailed } = await setUp(net, wanted, tag);
    let failed = setupFailed;
    const weave = overlays[0]!;
    const routerRssSetupMB = await settledMedian(() => (daemonRssMiB(weave).get('h1') ?? NaN) * 1.048576, SETUP_SETTLE_MS);
    for (const ns of new Set(overlays.map((o) => o.serverNs))) await startIperfServer(net, ns);

    say('');
    say(`What is measured (iperf3 TCP, 1 stream, ${opts.seconds} s after ${OMIT_SECONDS} s not counted, client -> server, with fping -p ${LOADED_PING_INTERVAL_S * 1000} (ms) ` +
      `beside it; then ping -c ${PING_COUNT} idle):`);
    for (const o of overlays) say(`  ${o.label.padEnd(16)} ${o.path}; MTU ${o.mtu}; ${o.version}`);
    say(`${availableParallelism()} cores here; load average before the rounds ${load()}; ` +
      `TCP congestion control of the weave client ${await congestionControl(weave.clientNs)} ` +
      '(the machine\'s default: it decides what a drop costs a flow, docs/architecture.md, queueing).');
    say('');

    // Before any transfer, a router has carried only the setup's few frames, and V8 has not yet compiled its
    // frame path the way a transfer makes it (docs/architecture.md, idle round trip): what a lightly used
    // mesh sees. The table's idle RTT is measured after each transfer.
    const fresh = new Map<string, number>();
    for (const o of overlays) fresh.set(o.name, median((await ping(o, PING_COUNT)).times));
    say(`idle RTT before any transfer (median of ${PING_COUNT} pings, ms): ${overlays.map((o) => `${o.name} ${fmt(fresh.get(o.name)!, 3)}`).join(' | ')}`);

    const fastdp = overlays.find((o) => o.name === 'weave-fastdp');
    const vxlanBefore = fastdp ? await vxlanTxPackets(fastdp.hosts[0]!) : NaN;
    const samples = new Map<string, Sample[]>(overlays.map((o) => [o.name, []]));
    for (let round = 1; round <= opts.rounds; round++) {
      const parts: string[] = [];
      for (const o of overlays) {
        const s = await measure(o, opts.seconds);
        samples.get(o.name)!.push(s);
        if (s.error !== null) failed = true;
        parts.push(`${o.name} ${s.error !== null ? `FAILED (${s.error})` : `${fmt(s.mbps)} Mbit/s rtt ${fmt(s.rttMs, 2)}/${fmt(s.loadedRttMs, 2)} ms`}`);
        await sleep(200);
      }
      say(`round ${round}/${opts.rounds} (load ${load()}): ${parts.join(' | ')}`);
    }

    // A switch of path mid-run would make weave's figures meaningless: say so.
    const after = await net.host('h1').weaveStatus().catch(() => null);
    const path = after?.connections.find((c) => c.state === 'established' && c.nickname === 'h2')?.dataPath;
    if (path !== 'udp') say(`warning: after the rounds weave's h1 -> h2 data path is ${path ?? 'unknown'}, not the UDP sleeve`);
    if (fastdp) {
      const st = await fastdp.hosts[0]!.weaveStatus().catch(() => null);
      const p = st?.connections.find((c) => c.state === 'established' && c.nickname === fastdp.hosts[1]!.name)?.dataPath;
      const sent = (await vxlanTxPackets(fastdp.hosts[0]!)) - vxlanBefore;
      say(`weave fast path after the rounds: data path ${p ?? 'unknown'}, vxlan-6784 on ${fastdp.hosts[0]!.name} sent ${fmt(sent)} packets during them`);
      if (p !== 'fastdp') say('warning: the fast path row was not (all) measured on the fast path');
    }

    say('');
    say(`Results, median of ${opts.rounds} round${opts.rounds === 1 ? '' : 's'} (load average now ${load()}):`);
    say(resultsTable(overlays, samples));
    for (const l of RESULTS_LEGEND) say(l);
    say('The weave rows (but weave host-host) and kernel VXLAN are container to container; weave host-host, the references and veth host to host; all over the same underlay.');
    say('');
    for (const l of summaryLines(samples, routerRssSetupMB)) say(l);
    const [freshWeave, freshWg] = [fresh.get('weave') ?? NaN, fresh.get('wireguard-go') ?? NaN];
    say(summaryLine('rtt.fresh_idle_vs_wireguard_go', freshWeave / freshWg, '-',
      `RTT idle before any transfer, weave / wireguard-go (${fmt(freshWeave, 3)} / ${fmt(freshWg, 3)} ms)`));
    say(`throughput section took ${fmt((Date.now() - started) / 1000)} s`);
    return failed ? 1 : 0;
  } finally {
    say('==> cleaning up');
    await Promise.all(net.hosts.map((h) => h.weave(['stop'], { timeoutMs: 15_000 }).catch(() => undefined)));
    await net.destroy();
    removeWireguardSockets();
  }
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
