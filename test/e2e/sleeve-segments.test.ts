// Sleeve version 3 end to end: two routers in network namespaces, an
// encrypted iperf3 transfer between containers. The underlay must carry no
// IP fragments (the hosts' FragCreates and ReasmReqds stay near zero; with
// version 2 they grow by thousands a second), the receiver must get whole
// messages coalesced by UDP_GRO, and when the sender's underlay device may
// pass only one segment per packet (gso_max_segs 1: the kernel cuts the GSO
// packet in software, so segments arrive one by one) frames must still get
// through, now by reassembly. Needs root and iperf3.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { tcpPortListening } from '../../scripts/netns';

t.setTimeout(300_000);

const IPERF_PORT = 5201;
/** A few fragments may come from the control connection's start or stray large probes; thousands would mean version 2. */
const FRAGMENT_ALLOWANCE = 50;

/** FragCreates and ReasmReqds of the host namespace's IPv4 stack (/proc/net/snmp is per namespace). */
async function fragCounters(h: SimHost): Promise<{ fragCreates: number; reasmReqds: number }> {
  const r = await h.exec(['cat', '/proc/net/snmp'], { check: true });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Ip:'));
  const names = (lines[0] ?? '').trim().split(/\s+/);
  const values = (lines[1] ?? '').trim().split(/\s+/).map(Number);
  const get = (n: string): number => values[names.indexOf(n)] ?? NaN;
  return { fragCreates: get('FragCreates'), reasmReqds: get('ReasmReqds') };
}

t.test('an encrypted transfer crosses the underlay unfragmented, coalesced, and by reassembly when segments come singly', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'e2e segments', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  t.equal((await h1.weave(['launch', '--nickname', 'h1'])).code, 0, 'launch h1');
  t.equal((await h2.weave(['launch', '--nickname', 'h2', h1.address])).code, 0, 'launch h2');
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
      what: `${h.name} reaches 2 peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }
  const containers: string[] = [];
  for (const [h, ip] of [[h1, '10.32.9.1'], [h2, '10.32.9.2']] as const) {
    const ns = `${net.prefix}c${containers.length + 1}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await h.weave(['attach', `${ip}/24`, `netns:${ns}`]);
    t.equal(r.code, 0, `attach on ${h.name}: ${r.stderr.trim()}`);
    containers.push(ns);
  }
  const [c1, c2] = containers as [string, string];
  await waitFor(async () => (await run(['ip', 'netns', 'exec', c1, 'ping', '-c', '1', '-W', '1', '10.32.9.2'])).code === 0,
    { what: 'c1 pings c2', timeoutMs: 20_000 });
  // The neighbours must have told each other they take version 3 (UDP_STATUS, every probe interval).
  await waitFor(async () => (await h1.weaveStatus()).connections.some((c) => c.dataPath === 'udp'), { what: 'UDP sleeve in use', timeoutMs: 10_000 });

  const transfer = async (what: string): Promise<number> => {
    const server = net.spawnIn(c2, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], {});
    await waitFor(async () => {
      if (!server.running) throw new Error('iperf3 -s exited');
      return tcpPortListening(c2, IPERF_PORT);
    }, { what: 'iperf3 server listening', timeoutMs: 10_000, intervalMs: 100, detail: () => server.stderr });
    const r = await run(['ip', 'netns', 'exec', c1, 'iperf3', '-c', '10.32.9.2', '-p', String(IPERF_PORT), '-t', '3', '-J'], { timeoutMs: 60_000 });
    await server.stop();
    t.equal(r.code, 0, `iperf3 runs (${what})`);
    const bps = r.code === 0 ? (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second : 0;
    t.comment(`iperf3 c1 -> c2 (${what}): ${(bps / 1e6).toFixed(0)} Mbit/s`);
    return bps;
  };

  const before = [await fragCounters(h1), await fragCounters(h2)];
  const s1Before = (await h1.weaveStatus()).counters;
  const s2Before = (await h2.weaveStatus()).counters;
  t.ok(await transfer('GSO both ends') > 0, 'a non-zero rate');
  const after = [await fragCounters(h1), await fragCounters(h2)];
  const s1 = (await h1.weaveStatus()).counters;
  const s2 = (await h2.weaveStatus()).counters;
  const delta = (k: string, a: Record<string, number>, b: Record<string, number>): number => (a[k] ?? 0) - (b[k] ?? 0);
  const sentSegmented = delta('framesSentSegmented', s1, s1Before);
  t.ok(sentSegmented > 1000, `h1 sent ${sentSegmented} frames as version 3`);
  const coalesced = delta('framesReceivedCoalesced', s2, s2Before);
  t.ok(coalesced > sentSegmented / 2, `h2 took ${coalesced} of them whole from UDP_GRO (${delta('messagesReassembled', s2, s2Before)} reassembled)`);
  for (const [i, h] of [h1, h2].entries()) {
    const created = after[i]!.fragCreates - before[i]!.fragCreates;
    const reasm = after[i]!.reasmReqds - before[i]!.reasmReqds;
    t.ok(created <= FRAGMENT_ALLOWANCE && reasm <= FRAGMENT_ALLOWANCE, `${h.name}: ${created} fragments created, ${reasm} reassembly requests`);
  }

  // One segment per packet on h1's underlay: the kernel segments in software, h2 gets each alone.
  await h1.exec(['ip', 'link', 'set', 'dev', 'eth0', 'gso_max_segs', '1'], { check: true });
  const r2Before = (await h2.weaveStatus()).counters;
  t.ok(await transfer('segments one by one') > 0, 'a non-zero rate');
  const r2 = (await h2.weaveStatus()).counters;
  const reassembled = delta('messagesReassembled', r2, r2Before);
  t.ok(reassembled > 1000, `h2 reassembled ${reassembled} messages from single segments`);
  t.equal(delta('frames_dropped{reason="auth"}', r2, r2Before), 0, 'none failed to open');
});
