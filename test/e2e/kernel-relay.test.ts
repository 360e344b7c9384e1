// Kernel relays with real routers (router/overlay/kernel-relay.ts,
// router/host/kernel-relay-rules.ts): three hosts in a line with a password,
// h1 and h3 unable to reach each other on the underlay, containers on h1 and
// h3. Checked: the ends get a pair from h2 and use it both ways (status),
// h2's nftables ingress rules carry an iperf3 transfer while h2's router
// relays almost none of it (counters on all three), nothing is refused as
// forged; when h2's rules vanish (its table deleted by hand, as a crash or
// an admin could) pings keep working through h2's router at once, and the
// ends give the pair back and get a fresh one that carries frames again;
// far rekeys (every 4 s here) keep frames on it; `weave stop` on h2 leaves
// no table behind, and a relaunched h2 is asked again. Needs root.

import t from 'tap';
import { run } from '../../scripts/command';
import { tcpPortListening } from '../../scripts/netns';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { KERNEL_RELAY_NFT_FAMILY, KERNEL_RELAY_NFT_TABLE } from '../../router/host/kernel-relay-rules';
import { attachNetns, pingsFrom } from './netns-containers';

t.setTimeout(300_000);

const IPERF_PORT = 5201;

async function counters(h: SimHost): Promise<Record<string, number>> {
  return (await h.weaveStatus()).counters as Record<string, number>;
}

/** h's kernel relay paths as its status shows them. */
async function paths(h: SimHost): Promise<{ peer: string; via: string; inUse: boolean }[]> {
  return (await h.weaveStatus()).dataPlane?.kernelRelay?.paths ?? [];
}

async function relayTable(h: SimHost): Promise<string | null> {
  const r = await h.exec(['nft', 'list', 'table', KERNEL_RELAY_NFT_FAMILY, KERNEL_RELAY_NFT_TABLE]);
  return r.code === 0 ? r.stdout : null;
}

t.test('h2\'s kernel carries h1 <-> h3 far frames; without its rules they go through h2\'s router until a fresh pair', async (t) => {
  // End-to-end keys renewed every 4 s: frames keep the kernel path across rekeys.
  const net = await SimNetwork.create({ hosts: 3, password: 'kernel relay e2e', weaveEnv: { WEAVE_TEST_FAST: '1', WEAVE_REKEY_INTERVAL_MS: '4000' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
    await net.destroy();
  });
  const [h1, h2, h3] = net.hosts as [SimHost, SimHost, SimHost];
  await net.blockBetween('h1', 'h3', 'all');
  for (const [h, peers] of [[h1, []], [h2, [h1]], [h3, [h2]]] as const) {
    const r = await h.weave(['launch', '--nickname', h.name, '--no-discovery', ...peers.map((p) => p.address)]);
    t.equal(r.code, 0, `weave launch on ${h.name}: ${r.stderr.trim()}`);
  }
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 3, {
      what: `${h.name} reaches 3 peers`, timeoutMs: 40_000, detail: () => h.readLog(),
    });
  }
  const name = async (h: SimHost): Promise<string> => (await h.weaveStatus()).name;
  const [n1, n2, n3] = [await name(h1), await name(h2), await name(h3)];
  const ns1 = `${net.prefix}c1`;
  const ns3 = `${net.prefix}c3`;
  for (const [h, ns, ip] of [[h1, ns1, '10.32.7.1'], [h3, ns3, '10.32.7.3']] as const) {
    const r = await attachNetns(h, ns, `${ip}/24`);
    t.equal(r.code, 0, `attach on ${h.name}: ${r.stderr.trim()}`);
  }
  const inUseBothWays = async (what: string): Promise<void> => {
    await waitFor(async () => {
      await pingsFrom(ns1, '10.32.7.3', what);
      const [p1, p3] = [await paths(h1), await paths(h3)];
      return p1.some((p) => p.peer === n3 && p.via === n2 && p.inUse) && p3.some((p) => p.peer === n1 && p.via === n2 && p.inUse);
    }, { what: `kernel paths in use both ways ${what}`, timeoutMs: 60_000, intervalMs: 500, detail: () => `${h1.readLog()}\n${h2.readLog()}\n${h3.readLog()}` });
    t.pass(`h1 and h3 use a kernel path through h2 ${what}`);
  };
  await inUseBothWays('at first');
  const s2 = await h2.weaveStatus();
  t.equal(s2.dataPlane?.kernelRelay?.pairs, 1, 'h2 forwards one pair');
  const table = await relayTable(h2);
  t.ok(table !== null && /fwd ip to/.test(table), 'in its nftables ingress rules');
  const text = await h1.weave(['status']);
  t.match(text.stdout, new RegExp(`KernelRelay: .*${n3.replace(/:/g, '.')} via ${n2.replace(/:/g, '.')} \\(in use\\)`), 'weave status on h1 says so');

  // Bulk: h2's kernel carries it, its router almost none of it.
  const [b1, b2, b3] = [await counters(h1), await counters(h2), await counters(h3)];
  const server = net.spawnIn(ns3, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], {});
  await waitFor(async () => {
    if (!server.running) throw new Error('iperf3 -s exited');
    return tcpPortListening(ns3, IPERF_PORT);
  }, { what: 'iperf3 server listening in c3', timeoutMs: 10_000, intervalMs: 100, detail: () => server.stderr });
  const ip = await run(['ip', 'netns', 'exec', ns1, 'iperf3', '-c', '10.32.7.3', '-p', String(IPERF_PORT), '-t', '3', '-J'], { timeoutMs: 60_000 });
  await server.stop();
  t.equal(ip.code, 0, 'iperf3 runs h1 -> h3');
  if (ip.code === 0) {
    const bps = (JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    t.comment(`iperf3 c1 -> c3 through h2's kernel: ${(bps / 1e6).toFixed(0)} Mbit/s`);
  }
  const [a1, a2, a3] = [await counters(h1), await counters(h2), await counters(h3)];
  const delta = (a: Record<string, number>, b: Record<string, number>, k: string): number => (a[k] ?? 0) - (b[k] ?? 0);
  const sent = delta(a1, b1, 'framesSentKernelRelay');
  const received = delta(a3, b3, 'framesReceivedKernelRelay');
  const relayedByRouter = delta(a2, b2, 'framesRelayed') + delta(a2, b2, 'framesRelayedLane');
  t.ok(sent > 1000, `h1 sent the transfer through the kernel path (${sent} frames)`);
  t.ok(received >= sent * 0.95, `h3 took ${received} of them from it`);
  t.ok(relayedByRouter < sent / 20, `h2's router relayed ${relayedByRouter} frames meanwhile`);
  t.equal(a3['frames_dropped{reason="auth"}'] ?? 0, 0, 'h3 refused nothing as forged');
  t.equal(a3['frames_dropped{reason="kernel-source"}'] ?? 0, 0, 'nor from an unexpected source');

  // h2's rules vanish: h2's router carries the pings at once, the ends give the pair back and get a fresh one.
  const del = await h2.exec(['nft', 'delete', 'table', KERNEL_RELAY_NFT_FAMILY, KERNEL_RELAY_NFT_TABLE]);
  t.equal(del.code, 0, 'h2\'s kernel relay table deleted by hand');
  const relayedBefore = (await counters(h2))['framesRelayedFar'] ?? 0;
  await waitFor(async () => {
    await pingsFrom(ns1, '10.32.7.3', 'without h2\'s rules');
    return ((await counters(h2))['framesRelayedFar'] ?? 0) > relayedBefore + 3;
  }, { what: 'pings through h2\'s router without its rules', timeoutMs: 30_000, intervalMs: 300 });
  t.pass('pings keep working, through h2\'s router');
  await inUseBothWays('after h2 lost its rules');
  t.ok(((await h2.weaveStatus()).dataPlane?.kernelRelay?.pairs ?? 0) === 1, 'with a fresh pair');
  t.ok(/fwd ip to/.test((await relayTable(h2)) ?? ''), 'and fresh rules');

  // Across far rekeys: new keys, the same path, frames still through it.
  const keysBefore = (await counters(h1))['farSendKeys'] ?? 0;
  await waitFor(async () => ((await counters(h1))['farSendKeys'] ?? 0) >= keysBefore + 2, { what: 'h1 renews its far key twice', timeoutMs: 30_000 });
  const kernelBefore = (await counters(h1))['framesSentKernelRelay'] ?? 0;
  await pingsFrom(ns1, '10.32.7.3', 'after rekeys');
  t.ok(((await counters(h1))['framesSentKernelRelay'] ?? 0) > kernelBefore, 'after two far rekeys, pings still take the kernel path');
  t.equal((await counters(h3))['frames_dropped{reason="auth"}'] ?? 0, 0, 'and h3 refused nothing as forged');

  const stop = await h2.weave(['stop'], { timeoutMs: 15_000 });
  t.equal(stop.code, 0, 'weave stop on h2');
  t.equal(await relayTable(h2), null, 'leaves no kernel relay table');
  // The relay back: the ends ask it again.
  const again = await h2.weave(['launch', '--nickname', h2.name, '--no-discovery', h1.address]);
  t.equal(again.code, 0, `weave launch on h2 again: ${again.stderr.trim()}`);
  await inUseBothWays('after h2 came back');
});
