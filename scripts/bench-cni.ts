// Bench of the weave-net CNI plugin: one simulated host with a router,
// `weave setup-cni` into a temporary directory, then N rounds of
// ADD / CHECK / DEL on fresh namespaces, driven as libcni drives a plugin.
// Prints wall times per command (min, median, p90, max) beside node's own
// start (`node -e 0`), the floor any Node plugin pays. The target for ADD
// is under 200 ms on the project's test machine. Figures, not assertions:
// run `node dist/scripts/bench-cni.js [rounds]`, as root.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './command';
import { runCniPlugin } from './cni-driver';
import { SimNetwork } from './sim-network';
import { waitFor } from './wait';

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return `min ${at(0).toFixed(1)}  median ${at(0.5).toFixed(1)}  p90 ${at(0.9).toFixed(1)}  max ${at(1).toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? '20');
  const net = await SimNetwork.create({ hosts: 1, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const dir = mkdtempSync(join(tmpdir(), 'weave-bench-cni-'));
  try {
    const h = net.host('h1');
    const launch = await h.weave(['launch', '--nickname', 'h1']);
    if (launch.code !== 0) throw new Error(`launch: ${launch.stderr}`);
    const setup = await h.weave(['setup-cni', '--bin-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'conf')]);
    if (setup.code !== 0) throw new Error(`setup-cni: ${setup.stderr}`);
    const plugin = join(dir, 'bin', 'weave-net');
    const conf = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', socket: h.apiSocket };
    const nodeStart: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = process.hrtime.bigint();
      await run([process.execPath, '-e', '0']);
      nodeStart.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const version: number[] = [];
    for (let i = 0; i < 10; i++) version.push((await runCniPlugin(plugin, { command: 'VERSION', config: { cniVersion: '1.0.0' } })).wallMs);
    // The first ADD waits for IPAM to settle its ring; not counted.
    const warm = `${net.prefix}warm`;
    await run(['ip', 'netns', 'add', warm], { check: true });
    const w = await waitFor(async () => {
      const r = await runCniPlugin(plugin, { command: 'ADD', containerId: 'warmup', netns: `/var/run/netns/${warm}`, ifName: 'eth0', config: conf });
      return r.code === 0 ? r : null;
    }, { what: 'a first ADD', timeoutMs: 30_000 });
    void w;
    await runCniPlugin(plugin, { command: 'DEL', containerId: 'warmup', netns: `/var/run/netns/${warm}`, ifName: 'eth0', config: conf });
    const times: Record<'ADD' | 'CHECK' | 'DEL', number[]> = { ADD: [], CHECK: [], DEL: [] };
    for (let i = 0; i < rounds; i++) {
      const ns = `${net.prefix}b${i}`;
      await run(['ip', 'netns', 'add', ns], { check: true });
      const base = { containerId: `bench${i}`, netns: `/var/run/netns/${ns}`, ifName: 'eth0', args: `K8S_POD_NAME=bench-${i}` };
      const add = await runCniPlugin(plugin, { command: 'ADD', ...base, config: conf });
      if (add.code !== 0) throw new Error(`ADD ${i}: ${add.stdout}`);
      times.ADD.push(add.wallMs);
      const check = await runCniPlugin(plugin, { command: 'CHECK', ...base, config: { ...conf, prevResult: add.json } });
      if (check.code !== 0) throw new Error(`CHECK ${i}: ${check.stdout}`);
      times.CHECK.push(check.wallMs);
      const del = await runCniPlugin(plugin, { command: 'DEL', ...base, config: conf });
      if (del.code !== 0) throw new Error(`DEL ${i}: ${del.stdout}`);
      times.DEL.push(del.wallMs);
    }
    process.stdout.write(`weave-net CNI plugin, ${rounds} rounds, wall time per invocation:\n`);
    process.stdout.write(`  node -e 0   ${stats(nodeStart)}\n`);
    process.stdout.write(`  VERSION     ${stats(version)}\n`);
    for (const k of ['ADD', 'CHECK', 'DEL'] as const) process.stdout.write(`  ${k.padEnd(11)} ${stats(times[k])}\n`);
    await h.weave(['stop'], { timeoutMs: 15_000 });
  } finally {
    await net.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-cni: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
