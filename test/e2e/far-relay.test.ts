// End-to-end keys for relayed frames (router/mesh/far-keys.ts,
// router/overlay/far-path.ts) with real routers: three hosts in a line with a
// password, h1 and h3 unable to reach each other on the underlay, containers
// on h1 and h3. Checked: their frames take the far format (h1 seals, h2
// relays without opening, most of the bulk without moving a byte of its
// body, h3 opens: counters), the ends' lanes seal and open pings both ways
// without JS, iperf3 runs over it, and it
// keeps working, still far, across end-to-end rekeys (every 4 s here), a
// relaunch of the relay h2, UDP blocked between h2 and h3 (h2 passes them on
// over TCP), and a crash of the destination h3's router (the
// supervisor restarts it with no keys: h1 hears UNKNOWN and exchanges again).
// Needs root.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { tcpPortListening } from '../../scripts/netns';
import { attachNetns, pingsFrom } from './netns-containers';

t.setTimeout(400_000);

const IPERF_PORT = 5201;

async function counters(h: SimHost): Promise<Record<string, number>> {
  return (await h.weaveStatus()).counters as Record<string, number>;
}

t.test('relayed frames between h1 and h3 are sealed end to end, across rekeys and restarts', async (t) => {
  const net = await SimNetwork.create({ hosts: 3, password: 'far e2e', weaveEnv: { WEAVE_TEST_FAST: '1', WEAVE_REKEY_INTERVAL_MS: '4000' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
    await net.destroy();
  });
  const [h1, h2, h3] = net.hosts as [SimHost, SimHost, SimHost];
  await net.blockBetween('h1', 'h3', 'all');
  const launch = async (h: SimHost, peers: SimHost[]): Promise<void> => {
    // h2's router relays (test/e2e/kernel-relay.test.ts has its kernel do it).
    const r = await h.weave(['launch', '--nickname', h.name, '--no-discovery', '--no-kernel-relay', ...peers.map((p) => p.address)]);
    t.equal(r.code, 0, `weave launch on ${h.name}: ${r.stderr.trim()}`);
  };
  await launch(h1, []);
  await launch(h2, [h1]);
  await launch(h3, [h2]);
  const allReach = async (): Promise<void> => {
    for (const h of net.hosts) {
      await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 3, {
        what: `${h.name} reaches 3 peers`, timeoutMs: 40_000, detail: () => h.readLog(),
      });
    }
  };
  await allReach();
  const ns1 = `${net.prefix}c1`;
  const ns3 = `${net.prefix}c3`;
  for (const [h, ns, ip] of [[h1, ns1, '10.32.9.1'], [h3, ns3, '10.32.9.3']] as const) {
    const r = await attachNetns(h, ns, `${ip}/24`);
    t.equal(r.code, 0, `attach on ${h.name}: ${r.stderr.trim()}`);
  }
  const pings = (what: string): Promise<void> => pingsFrom(ns1, '10.32.9.3', what);
  /** Pings until h3 has opened more far frames than before (and h1 too, unless oneWay): the far path carries them. */
  const farAgain = async (what: string, oneWay = false): Promise<void> => {
    const before3 = (await counters(h3))['framesReceivedFar'] ?? 0;
    const before1 = (await counters(h1))['framesReceivedFar'] ?? 0;
    await waitFor(async () => {
      await pings(what);
      const c3 = await counters(h3);
      const c1 = await counters(h1);
      return (c3['framesReceivedFar'] ?? 0) > before3 && (oneWay || (c1['framesReceivedFar'] ?? 0) > before1);
    }, { what: `far frames ${oneWay ? 'to h3' : 'both ways'} ${what}`, timeoutMs: 40_000, intervalMs: 500, detail: () => `${h1.readLog()}\n${h3.readLog()}` });
    t.pass(`far frames ${oneWay ? 'to h3' : 'both ways'} ${what}`);
  };

  await farAgain('at first');
  // Then the ends' lanes (native/lane-far.c) seal and open the pings themselves, both ways.
  const endLanes = async (what: string): Promise<void> => {
    const key = ['framesSentFarLane', 'framesReceivedFarLane'] as const;
    const before = await Promise.all([h1, h3].map(async (h) => { const c = await counters(h); return key.map((k) => c[k] ?? 0); }));
    await waitFor(async () => {
      await pings(what);
      const now = await Promise.all([h1, h3].map(async (h) => { const c = await counters(h); return key.map((k) => c[k] ?? 0); }));
      return now.every((n, i) => n.every((v, k) => v > before[i]![k]!));
    }, { what: `the ends' lanes carry pings ${what}`, timeoutMs: 30_000, intervalMs: 500, detail: () => `${h1.readLog()}\n${h3.readLog()}` });
    t.pass(`the ends' lanes carry pings both ways ${what}`);
  };
  await endLanes('at first');
  const c2 = await counters(h2);
  t.ok((c2['framesRelayedFar'] ?? 0) > 0, `h2 relayed far frames (${c2['framesRelayedFar']}) without any far key of its own`);
  t.equal(c2['farSendKeys'] ?? 0, 0, 'h2 holds no far send key (it is neighbour of both)');

  // Bulk over the far path.
  const sentBefore = (await counters(h1))['framesSentFar'] ?? 0;
  const server = net.spawnIn(ns3, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], {});
  await waitFor(async () => {
    if (!server.running) throw new Error('iperf3 -s exited');
    return tcpPortListening(ns3, IPERF_PORT);
  }, { what: 'iperf3 server listening in c3', timeoutMs: 10_000, intervalMs: 100, detail: () => server.stderr });
  const ip = await run(['ip', 'netns', 'exec', ns1, 'iperf3', '-c', '10.32.9.3', '-p', String(IPERF_PORT), '-t', '3', '-J'], { timeoutMs: 60_000 });
  await server.stop();
  t.equal(ip.code, 0, 'iperf3 runs h1 -> h3 through h2');
  if (ip.code === 0) {
    const bps = (JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    t.comment(`iperf3 c1 -> c3 relayed: ${(bps / 1e6).toFixed(0)} Mbit/s`);
  }
  const c1 = await counters(h1);
  t.ok((c1['framesSentFar'] ?? 0) - sentBefore > 1000, `h1 sent the transfer far (${(c1['framesSentFar'] ?? 0) - sentBefore} frames)`);
  const c3 = await counters(h3);
  t.equal(c3['frames_dropped{reason="auth"}'] ?? 0, 0, 'h3 refused nothing as forged');
  const c2After = await counters(h2);
  const unmoved = (c2After['framesRelayedUnmoved'] ?? 0) - (c2['framesRelayedUnmoved'] ?? 0);
  const inLane = (c2After['framesRelayedLane'] ?? 0) - (c2['framesRelayedLane'] ?? 0);
  // The first of each flow in JS, the rest by the lane (native/lane-relay.c), which keeps the segments too.
  t.ok(unmoved + inLane > 100, `h2 passed ${unmoved + inLane} of them on as the segments they came in, no chunk moved (${inLane} in the lane)`);

  // End-to-end rekeys (WEAVE_REKEY_INTERVAL_MS): new keys, frames still far.
  const keysBefore = c1['farSendKeys'] ?? 0;
  await waitFor(async () => ((await counters(h1))['farSendKeys'] ?? 0) >= keysBefore + 2, { what: 'h1 rekeys its far key twice', timeoutMs: 30_000 });
  await farAgain('after rekeys');
  await endLanes('after rekeys');

  // The relay relaunches: new links, same end-to-end keys.
  t.equal((await h2.weave(['stop'], { timeoutMs: 15_000 })).code, 0, 'h2 stops');
  await launch(h2, [h1, h3]);
  await allReach();
  await farAgain('after the relay relaunched');
  await endLanes('after the relay relaunched');

  // UDP blocked between the relay and h3: h2 passes h1's far messages on over TCP (h3's own go hop by hop:
  // its next hop is on TCP).
  await net.blockBetween('h2', 'h3', 'udp');
  const linkPath = async (): Promise<string | undefined> =>
    (await h2.weaveStatus()).connections.find((c) => c.state === 'established' && c.nickname === 'h3')?.dataPath;
  await waitFor(async () => (await linkPath()) === 'tcp', { what: 'h2 sends to h3 over TCP', timeoutMs: 20_000 });
  const tcpBefore = (await counters(h2))['framesSentTcp'] ?? 0;
  await farAgain('with UDP blocked between the relay and h3', true);
  t.ok(((await counters(h2))['framesSentTcp'] ?? 0) > tcpBefore, 'h2 passed far messages on over TCP');
  await net.unblock('h2', 'h3', 'udp');
  await waitFor(async () => (await linkPath()) === 'udp', { what: 'h2 back on UDP to h3', timeoutMs: 20_000 });

  // The destination's router crashes; its supervisor restarts it with no far keys.
  const pid = Number(fs.readFileSync(path.join(h3.datadir, 'weave.pid'), 'utf8').trim());
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => {
    try { return (await h3.weaveStatus()).peers.filter((p) => p.reachable).length === 3; } catch { return false; }
  }, { what: 'h3 restarted by its supervisor and back in the mesh', timeoutMs: 90_000, intervalMs: 1000, detail: () => h3.readLog() });
  await farAgain('after the destination restarted');
  await endLanes('after the destination restarted');
  t.equal((await counters(h3))['frames_dropped{reason="auth"}'] ?? 0, 0, 'and h3 refused nothing as forged');
});
