// A router gives its burst-sized buffers back once a transfer is over
// (router/overlay/idle-memory.ts, native/memory.c), with real routers: two
// hosts with a password and fast timings (quiet for 2 s after a burst), a
// container on each. Checked: after an iperf3 transfer both routers count
// freed bytes and the sender's RSS falls; the freed pages read back as zeros,
// so pings and a second transfer then show that the data path refills them
// without a frame refused. Needs root.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { tcpPortListening } from '../../scripts/netns';
import { attachNetns, pingsFrom } from './netns-containers';

t.setTimeout(300_000);

const IPERF_PORT = 5201;
const MB = 1e6;

async function counters(h: SimHost): Promise<Record<string, number>> {
  return (await h.weaveStatus()).counters as Record<string, number>;
}

function routerRssBytes(h: SimHost): number {
  const pid = readFileSync(path.join(h.datadir, 'weave.pid'), 'utf8').trim();
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for router ${pid}`);
  return Number(m[1]) * 1024;
}

t.test('after a transfer the quiet routers free their buffers, and frames flow as before', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'idle memory e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
    await net.destroy();
  });
  const [h1, h2] = net.hosts as [SimHost, SimHost];
  for (const [h, peers] of [[h1, []], [h2, [h1]]] as const) {
    const r = await h.weave(['launch', '--nickname', h.name, '--no-discovery', ...peers.map((p) => p.address)]);
    t.equal(r.code, 0, `weave launch on ${h.name}: ${r.stderr.trim()}`);
  }
  const ns1 = `${net.prefix}c1`;
  const ns2 = `${net.prefix}c2`;
  for (const [h, ns, ip] of [[h1, ns1, '10.32.9.1'], [h2, ns2, '10.32.9.2']] as const) {
    const r = await attachNetns(h, ns, `${ip}/24`);
    t.equal(r.code, 0, `attach on ${h.name}: ${r.stderr.trim()}`);
  }
  const pings = async (what: string): Promise<void> => {
    await pingsFrom(ns1, '10.32.9.2', what);
    t.pass(`c1 pings c2 ${what}`);
  };
  const transfer = async (seconds: number): Promise<void> => {
    const server = net.spawnIn(ns2, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], {});
    await waitFor(async () => {
      if (!server.running) throw new Error('iperf3 -s exited');
      return tcpPortListening(ns2, IPERF_PORT);
    }, { what: 'iperf3 server listening in c2', timeoutMs: 10_000, intervalMs: 100, detail: () => server.stderr });
    const r = await run(['ip', 'netns', 'exec', ns1, 'iperf3', '-c', '10.32.9.2', '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], { timeoutMs: 60_000 });
    await server.stop();
    t.equal(r.code, 0, `iperf3 c1 -> c2 for ${seconds} s`);
    if (r.code === 0) {
      const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      t.comment(`iperf3 c1 -> c2: ${(bps / 1e6).toFixed(0)} Mbit/s`);
    }
  };

  await pings('at first');
  t.equal((await counters(h1))['memoryReleasedBytes'], 0, 'pings alone release nothing');
  await transfer(3);
  const rssBusy = routerRssBytes(h1);
  for (const h of [h1, h2]) {
    await waitFor(async () => ((await counters(h))['memoryReleasedBytes'] ?? 0) > 4 * MB,
      { what: `${h.name} frees its buffers after the transfer`, timeoutMs: 20_000, intervalMs: 250, detail: () => h.readLog() });
  }
  const released = (await counters(h1))['memoryReleasedBytes'] ?? 0;
  const rssIdle = routerRssBytes(h1);
  t.comment(`h1: freed ${(released / MB).toFixed(1)} MB; router RSS ${(rssBusy / MB).toFixed(1)} MB after the transfer, ${(rssIdle / MB).toFixed(1)} MB once quiet`);
  t.ok(rssIdle < rssBusy - 2 * MB, 'the sending router\'s RSS fell by more than 2 MB');

  await pings('after the release');
  await transfer(2);
  for (const h of [h1, h2]) {
    const c = await counters(h);
    t.equal(c['frames_dropped{reason="auth"}'] ?? 0, 0, `${h.name} refused nothing as forged`);
  }
  const again = (await counters(h1))['memoryReleasedBytes'] ?? 0;
  await waitFor(async () => ((await counters(h1))['memoryReleasedBytes'] ?? 0) > again,
    { what: 'h1 frees its buffers again after the second transfer', timeoutMs: 20_000, intervalMs: 250 });
  t.pass('released again after the second burst');
});
