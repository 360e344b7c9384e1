// The README's demo: three simulated hosts (network namespaces, see
// scripts/sim-network.ts) each run a weave router with a shared password. h1 starts
// alone, h2 is given h1, h3 is given only h2, and discovery must connect h1 and
// h3. The demo waits for the full mesh, prints every host's status, then stops
// the routers and removes the network, also on failure or Ctrl-C.
//
// It is a list of steps so later issues can add their own (containers pinging
// and resolving each other) between "mesh formed" and "stop". It never touches
// anything outside the namespaces it creates.
//
// Usage: node dist/scripts/demo.js [--timeout <seconds>] [--verbose]
// Exit code 0 on success, 1 on failure, 2 on a usage error.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { run } from './command';
import type { SimHost } from './sim-host';
import { SimNetwork } from './sim-network';
import { waitFor } from './wait';
import type { RouterStatus } from '../router/mesh/status';

interface DemoOptions {
  timeoutMs: number;
  verbose: boolean;
}

interface DemoHostPlan {
  host: string;
  /** Hosts (by name) given as initial peers on the command line. */
  peers: string[];
}

// Where SimNetwork looks for the CLI by default (dist/cli/weave.js).
const WEAVE_CLI = resolve(__dirname, '..', 'cli', 'weave.js');

const PLAN: DemoHostPlan[] = [
  { host: 'h1', peers: [] },
  { host: 'h2', peers: ['h1'] },
  { host: 'h3', peers: ['h2'] },
];

interface DemoContext {
  opts: DemoOptions;
  net: SimNetwork | null;
  /** Hosts whose router was launched, so "stop" and failure reports know where to look. */
  launched: SimHost[];
}

interface Step {
  title: string;
  run(ctx: DemoContext): Promise<void>;
}

function progress(line: string): void {
  process.stdout.write(`==> ${line}\n`);
}

function heading(text: string): void {
  const bar = '='.repeat(Math.max(60, text.length + 8));
  process.stdout.write(`\n${bar}\n=== ${text}\n${bar}\n`);
}

function network(ctx: DemoContext): SimNetwork {
  if (ctx.net === null) throw new Error('no network: the "create hosts" step has not run');
  return ctx.net;
}

/** The demo's container on host number i: a namespace registered in weave DNS as c<i+1>. */
function containerOf(net: SimNetwork, h: SimHost, i: number): { host: string; ns: string; name: string } {
  return { host: h.name, ns: `${net.prefix}c${i + 1}`, name: `c${i + 1}` };
}

/** Reachable peers (self included) and established connections, as the wait condition counts them. */
function meshCounts(s: RouterStatus): { peers: number; established: number } {
  return {
    peers: s.peers.filter((p) => p.reachable).length,
    established: new Set(s.connections.filter((c) => c.state === 'established').map((c) => c.peer)).size,
  };
}

async function describeHosts(hosts: SimHost[]): Promise<string> {
  const lines: string[] = [];
  for (const h of hosts) {
    try {
      const s = await h.weaveStatus();
      const c = meshCounts(s);
      const conns = s.connections.map((x) => `${x.address} ${x.state}${x.info ? ` (${x.info})` : ''}`).join('; ');
      lines.push(`  ${h.name}: ${c.peers} reachable peers, ${c.established} established; connections: ${conns || 'none'}`);
    } catch (e) {
      lines.push(`  ${h.name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return lines.join('\n');
}

const STEPS: Step[] = [
  {
    title: 'create three simulated hosts',
    async run(ctx) {
      ctx.net = await SimNetwork.create({
        hosts: PLAN.map((p) => p.host),
        // A fresh password per run: the demo shows encryption, not a secret to remember.
        password: `demo-${randomBytes(8).toString('hex')}`,
        ...(ctx.opts.verbose ? { log: (line: string) => process.stdout.write(`    ${line}\n`) } : {}),
      });
      for (const h of ctx.net.hosts) progress(`host ${h.name}: namespace ${h.ns}, underlay address ${h.address}`);
    },
  },
  {
    title: 'launch weave on every host',
    async run(ctx) {
      const net = network(ctx);
      for (const plan of PLAN) {
        const h = net.host(plan.host);
        const peerAddrs = plan.peers.map((p) => net.host(p).address);
        progress(`${h.name}: weave launch ${peerAddrs.length > 0 ? `with peer ${peerAddrs.join(' ')}` : 'with no peers'}`);
        const r = await h.weave(['launch', '--nickname', h.name, ...peerAddrs], { timeoutMs: 30_000 });
        if (r.code !== 0) {
          throw new Error(`weave launch on ${h.name} exited ${r.code}:\n${(r.stderr + r.stdout).trim()}`);
        }
        ctx.launched.push(h);
      }
    },
  },
  {
    title: 'wait for the mesh to form (h1 and h3 meet through discovery)',
    async run(ctx) {
      const hosts = network(ctx).hosts;
      const want = hosts.length;
      let last = '';
      const formed = waitFor(async () => {
        const counts = await Promise.all(hosts.map(async (h) => meshCounts(await h.weaveStatus())));
        const summary = hosts.map((h, i) => `${h.name}: ${counts[i]?.peers}/${want} peers, ${counts[i]?.established}/${want - 1} connections`).join('; ');
        if (summary !== last) {
          progress(summary);
          last = summary;
        }
        return counts.every((c) => c.peers === want && c.established === want - 1);
      }, {
        what: `every host to see ${want} reachable peers and ${want - 1} established connections`,
        timeoutMs: ctx.opts.timeoutMs,
        intervalMs: 500,
        detail: async () => `current state:\n${await describeHosts(hosts)}`,
      });
      try {
        await formed;
      } catch (e) {
        throw new Error(`the mesh did not form within ${ctx.opts.timeoutMs / 1000} s\n${e instanceof Error ? e.message : String(e)}`);
      }
      progress('mesh formed: every host reaches every other directly');
    },
  },
  {
    title: 'attach a container on every host (addresses from IPAM, names in weave DNS)',
    async run(ctx) {
      const net = network(ctx);
      for (const [i, h] of net.hosts.entries()) {
        const c = containerOf(net, h, i);
        await run(['ip', 'netns', 'add', c.ns], { check: true });
        await run(['ip', '-n', c.ns, 'link', 'set', 'lo', 'up'], { check: true });
        const r = await h.weave(['attach', '--name', c.name, `netns:${c.ns}`], { timeoutMs: 60_000 });
        if (r.code !== 0) throw new Error(`weave attach on ${h.name} exited ${r.code}: ${(r.stderr + r.stdout).trim()}`);
        progress(`${h.name}: container ${c.name} (namespace ${c.ns}) got ${r.stdout.trim()}`);
      }
    },
  },
  {
    title: 'containers resolve each other by name and ping across hosts (encrypted overlay)',
    async run(ctx) {
      const net = network(ctx);
      const all = net.hosts.map((h, i) => containerOf(net, h, i));
      for (const from of all) {
        for (const to of all) {
          if (from === to) continue;
          let out = '';
          let resolved = '';
          await waitFor(async () => {
            // The stock resolver inside the container, through the resolv.conf weave wrote for it.
            const g = await run(['ip', 'netns', 'exec', from.ns, 'getent', 'hosts', to.name], { timeoutMs: 10_000 });
            resolved = g.stdout.trim();
            if (g.code !== 0) { out = `getent hosts ${to.name} failed`; return false; }
            const r = await run(['ip', 'netns', 'exec', from.ns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', to.name], { timeoutMs: 20_000 });
            out = r.stdout + r.stderr;
            return r.code === 0;
          }, { what: `${from.name} on ${from.host} pings ${to.name} on ${to.host} by name`, timeoutMs: ctx.opts.timeoutMs, detail: () => out });
          const rtt = /rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)/.exec(out)?.[1] ?? '?';
          progress(`${from.name} (on ${from.host}) -> ${to.name} (on ${to.host}): resolves to ${resolved.replace(/\s+/g, ' ')}; ping ok, avg rtt ${rtt} ms`);
        }
      }
    },
  },
  {
    title: 'show status from every host',
    async run(ctx) {
      for (const h of network(ctx).hosts) {
        for (const args of [['status'], ['status', 'connections']]) {
          heading(`${h.name} (${h.address}): weave ${args.join(' ')}`);
          const r = await h.weave(args);
          process.stdout.write(r.stdout.endsWith('\n') || r.stdout === '' ? r.stdout : `${r.stdout}\n`);
          if (r.code !== 0) throw new Error(`weave ${args.join(' ')} on ${h.name} exited ${r.code}: ${r.stderr.trim()}`);
        }
      }
      process.stdout.write('\n');
    },
  },
  {
    title: 'stop the routers',
    async run(ctx) {
      await stopRouters(ctx, true);
    },
  },
];

/** `weave stop` on every launched host; strict mode turns a failure into an error. */
async function stopRouters(ctx: DemoContext, strict: boolean): Promise<void> {
  const failures: string[] = [];
  for (const h of [...ctx.launched].reverse()) {
    progress(`${h.name}: weave stop`);
    const r = await h.weave(['stop'], { timeoutMs: 30_000 });
    if (r.code !== 0) failures.push(`weave stop on ${h.name} exited ${r.code}: ${(r.stderr + r.stdout).trim()}`);
  }
  ctx.launched = [];
  if (strict && failures.length > 0) throw new Error(failures.join('\n'));
  for (const f of failures) process.stderr.write(`demo: ${f}\n`);
}

function parseArgs(argv: string[]): DemoOptions {
  const opts: DemoOptions = { timeoutMs: 60_000, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--verbose' || arg === '-v') {
      opts.verbose = true;
    } else if (arg === '--timeout') {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`--timeout expects a whole number of seconds, got ${JSON.stringify(v ?? '')}`);
      opts.timeoutMs = Number(v) * 1000;
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: demo [--timeout <seconds>] [--verbose]\n');
      process.exit(0);
    } else {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}; usage: demo [--timeout <seconds>] [--verbose]`);
    }
  }
  return opts;
}

class UsageError extends Error {}

async function main(): Promise<number> {
  let opts: DemoOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo: must run as root (it creates network namespaces)\n');
    return 1;
  }
  const ctx: DemoContext = { opts, net: null, launched: [] };
  if (!existsSync(WEAVE_CLI)) {
    process.stderr.write(`demo: ${WEAVE_CLI} not found; build first (scripts/setup.sh, or npx tsc -p .)\n`);
    return 1;
  }
  // Runs before netns.ts's own handler, which then destroys the network and exits.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => process.stderr.write(`\ndemo: interrupted (${signal}); removing the simulated network\n`));
  }

  const started = Date.now();
  let failed: unknown = null;
  for (const [i, step] of STEPS.entries()) {
    progress(`step ${i + 1}/${STEPS.length}: ${step.title}`);
    try {
      await step.run(ctx);
    } catch (e) {
      failed = e;
      break;
    }
  }
  if (failed !== null) {
    process.stderr.write(`\ndemo FAILED: ${failed instanceof Error ? failed.message : String(failed)}\n`);
    if (ctx.launched.length > 0) await stopRouters(ctx, false).catch(() => undefined);
  }
  if (ctx.net !== null) {
    progress('removing the simulated network');
    try {
      await ctx.net.destroy();
    } catch (e) {
      process.stderr.write(`demo: cleanup: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
  }
  if (failed !== null) return 1;
  progress(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo: unexpected error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
