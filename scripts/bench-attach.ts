// scripts/bench-attach: how long `weave attach` of a network namespace takes,
// against the CLI's own start (`weave version`) and bare node (`node -e ''`),
// measured alternately round by round on one simulated host
// (scripts/sim-network.ts) so machine noise spreads evenly. The daemon's share
// of an attach is attach wall time minus `weave version` wall time (issue 14:
// under 50 ms); the CLI's start is `weave version` minus `node -e ''`.
// `weave ps` (one API call the daemon answers from memory) splits the first:
// ps minus version is the API round trip, attach minus ps the attach itself.
// Each round also attaches a second namespace straight over the API socket
// from this process (no CLI, no process start): the daemon's own time for an
// attach, the figure least disturbed by a loaded machine.
//
// Every namespace it attaches is its own (the network's prefix), detached and
// deleted after each round; no traffic is sent. Figures are printed, never
// asserted. Needs root.
//
// --steps launches the daemon with --log-level debug and adds, per step of
// the daemon's attach (router/host/attach-steps.ts: resolve, ipam, veth, ...),
// the median of what its `attach steps` log lines say. Off by default, so the
// figures above it come from a daemon logging as it normally does.
//
// Usage: node dist/scripts/bench-attach.js [--quick] [--rounds N] [--steps]

import { ApiClient } from '../cli/api-client';
import { run } from './command';
import { SimNetwork } from './sim-network';
import { loadAverage, median, parseRoundsArgs } from './bench-dns';
import { summaryLine } from './bench-summary';

async function wall(fn: () => Promise<{ code: number; stderr: string }>, what: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr.trim()}`);
  return ms;
}

/** Median per step over the daemon's `attach steps` debug lines (`<step>_ms=N`). */
function printSteps(log: string, fmt: (xs: number[]) => string): void {
  const byStep = new Map<string, number[]>();
  for (const line of log.split('\n')) {
    if (!line.includes(' attach steps ')) continue;
    for (const m of line.matchAll(/ (\w+)_ms=([\d.]+)/g)) {
      const xs = byStep.get(m[1] as string) ?? [];
      xs.push(Number(m[2]));
      byStep.set(m[1] as string, xs);
    }
  }
  process.stdout.write(`\ndaemon steps (median [min-max] of ${byStep.get('total')?.length ?? 0} attaches)\n`);
  for (const [step, xs] of byStep) process.stdout.write(`  ${step.padEnd(32)} ${fmt(xs)}\n`);
}

async function main(): Promise<void> {
  const opts = parseRoundsArgs(process.argv.slice(2), { rounds: 10, seconds: 0 });
  const rounds = opts.rounds === 1 ? 3 : opts.rounds;
  const net = await SimNetwork.create({ hosts: 1, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  try {
    const h = net.host('h1');
    const withSteps = process.argv.includes('--steps');
    const launch = await h.weave(['launch', '--nickname', 'h1', ...(withSteps ? ['--log-level', 'debug'] : [])], { timeoutMs: 60_000 });
    if (launch.code !== 0) throw new Error(`weave launch: ${launch.stderr}\n${h.readLog()}`);
    const node: number[] = [];
    const version: number[] = [];
    const attach: number[] = [];
    const ps: number[] = [];
    const api: number[] = [];
    const client = new ApiClient(h.apiSocket);
    process.stdout.write(`attach: ${rounds} rounds; load average ${loadAverage()}\n`);
    for (let r = 0; r < rounds; r++) {
      const ns = `${net.prefix}a${r}`;
      const nsApi = `${net.prefix}b${r}`;
      await run(['ip', 'netns', 'add', ns], { check: true });
      await run(['ip', 'netns', 'add', nsApi], { check: true });
      try {
        const t0 = process.hrtime.bigint();
        await client.post('/attach', { container: `netns:${nsApi}`, addresses: [`10.32.6.${r + 1}/24`] });
        api.push(Number(process.hrtime.bigint() - t0) / 1e6);
        await client.post('/detach', { container: `netns:${nsApi}` });
        node.push(await wall(() => h.exec(['node', '-e', '']), 'node -e'));
        version.push(await wall(() => h.weave(['version']), 'weave version'));
        ps.push(await wall(() => h.weave(['ps']), 'weave ps'));
        attach.push(await wall(() => h.weave(['attach', `10.32.5.${r + 1}/24`, `netns:${ns}`]), 'weave attach'));
        const d = await h.weave(['detach', `netns:${ns}`]);
        if (d.code !== 0) throw new Error(`weave detach: ${d.stderr}`);
      } finally {
        await run(['ip', 'netns', 'del', ns]);
        await run(['ip', 'netns', 'del', nsApi]);
      }
      process.stdout.write(`  round ${r + 1}: node ${node[r]?.toFixed(0)} ms, weave version ${version[r]?.toFixed(0)} ms, weave ps ${ps[r]?.toFixed(0)} ms, weave attach ${attach[r]?.toFixed(0)} ms, API attach ${api[r]?.toFixed(0)} ms\n`);
    }
    const diffs = attach.map((a, i) => a - (version[i] as number));
    const starts = version.map((v, i) => v - (node[i] as number));
    const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} ms [${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}]`;
    process.stdout.write(`\nattach latency (median [min-max]; load average ${loadAverage()})\n`);
    process.stdout.write(`  node -e ''                       ${fmt(node)}\n`);
    process.stdout.write(`  weave version                    ${fmt(version)}\n`);
    process.stdout.write(`  weave ps                         ${fmt(ps)}\n`);
    process.stdout.write(`  weave attach                     ${fmt(attach)}\n`);
    process.stdout.write(`  attach - version (daemon side)   ${fmt(diffs)}   target < 50 ms\n`);
    process.stdout.write(`  version - node (CLI start)       ${fmt(starts)}\n`);
    process.stdout.write(`  attach over the API (no CLI)     ${fmt(api)}\n`);
    process.stdout.write(`  attach - ps (the attach itself)  ${fmt(attach.map((a, i) => a - (ps[i] as number)))}\n`);
    // For bench.sh's summary (scripts/bench-summary.ts).
    process.stdout.write(`${summaryLine('attach.daemon_ms', median(diffs), '<50', 'weave attach minus weave version (the daemon\'s side), ms', 0)}\n`);
    process.stdout.write(`${summaryLine('attach.cli_start_ms', median(starts), '-', 'weave version minus node -e \'\' (the CLI\'s own start), ms', 0)}\n`);
    if (withSteps) printSteps(h.readLog('weave.log', 100_000), fmt);
  } finally {
    await net.destroy();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench-attach: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
