// End-to-end, the getting-started order a new user types: the first host is
// launched with no peers, every other host with the first one's address
// (so `weave launch` gives the first --ipalloc-init consensus=1 and the
// others consensus=2), then containers are attached, the first one on the
// LAST host. Every attach gets a distinct address within 15 s with no
// `weave prime` or restart, the containers ping each other, and
// `weave status ipam` shows no warning (the consensus-count warning the demo
// used to print). The simulation (test/sim/ipam-sim-order.test.ts) covers
// every order; here: two hosts and three hosts with the last attaching
// first, and three hosts attaching all at once right after the launches.

import t from 'tap';
import { ApiClient } from '../../cli/api-client';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';

t.setTimeout(300_000);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** What the issue asks of every attach in this order. */
const ATTACH_WITHIN_MS = 15_000;

interface Attached {
  host: SimHost;
  ns: string;
  address: string;
  ms: number;
}

/** h1 with no peers, then every other host with h1's address, as the getting-started guide has it. */
async function gettingStarted(t: Tap, hosts: number): Promise<SimNetwork> {
  const net = await SimNetwork.create({ hosts, password: 'ipam order e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  const first = net.hosts[0]!;
  for (const h of net.hosts) {
    const r = await h.weave(['launch', '--nickname', h.name, ...(h === first ? [] : [first.address])]);
    t.equal(r.code, 0, `launch ${h.name}${h === first ? ' with no peers' : ` with ${first.address}`}: ${r.stderr.trim()}`);
  }
  return net;
}

/**
 * `weave attach netns:NAME`: the request the CLI sends, sent from this process,
 * so the time measured is the router's (IPAM and plumbing), not a node
 * start-up on a loaded test machine.
 */
async function attach(net: SimNetwork, h: SimHost, name: string): Promise<Attached> {
  const ns = `${net.prefix}${name}`;
  await run(['ip', 'netns', 'add', ns], { check: true });
  const started = Date.now();
  try {
    // Longer than the bound, so a slow attach is measured and reported rather than cut off.
    const reply = await new ApiClient(h.apiSocket).post<{ container: { addresses: string[] } }>('/attach', { container: `netns:${ns}`, addresses: [] }, 60_000);
    return { host: h, ns, address: reply.container.addresses[0]!.split('/')[0]!, ms: Date.now() - started };
  } catch (err) {
    throw new Error(`attach ${name} on ${h.name} failed after ${Date.now() - started} ms: ${String(err)}\n${h.name} weave.log:\n${h.readLog('weave.log', 40)}`);
  }
}

/** Distinct addresses, each attach within the bound, every container pings the next, no IPAM warning anywhere. */
async function check(t: Tap, net: SimNetwork, got: Attached[]): Promise<void> {
  for (const a of got) {
    t.ok(a.ms < ATTACH_WITHIN_MS, `${a.ns} on ${a.host.name}: ${a.address} in ${a.ms} ms`);
    // Where the time went (consensus, or a loaded machine) is in the router's log.
    if (a.ms >= ATTACH_WITHIN_MS / 3) t.comment(`${a.host.name} weave.log:\n${a.host.readLog('weave.log', 30)}`);
  }
  t.equal(new Set(got.map((a) => a.address)).size, got.length, `distinct addresses: ${got.map((a) => a.address).join(' ')}`);
  for (const [i, a] of got.entries()) {
    const b = got[(i + 1) % got.length]!;
    const ping = await run(['ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-W', '2', b.address], { timeoutMs: 20_000 });
    t.equal(ping.code, 0, `${a.host.name} -> ${b.host.name} (${b.address}) pings`);
  }
  for (const h of net.hosts) {
    const st = await h.weave(['status', 'ipam']);
    t.equal(st.code, 0, `weave status ipam on ${h.name}`);
    t.match(st.stdout, /Status: ready/, `${h.name} is ready`);
    t.notMatch(st.stdout, /Warnings:|consensus=\d/, `${h.name} shows no warning`);
  }
}

t.test('two hosts, getting-started order: the second host attaches first, then the first', async (t) => {
  const net = await gettingStarted(t, 2);
  const [h1, h2] = net.hosts as [SimHost, SimHost];
  const got = [await attach(net, h2, 'a2'), await attach(net, h1, 'a1')];
  await check(t, net, got);
});

t.test('three hosts, getting-started order: the last host attaches first, then the others', async (t) => {
  const net = await gettingStarted(t, 3);
  const [h1, h2, h3] = net.hosts as [SimHost, SimHost, SimHost];
  const got = [await attach(net, h3, 'b3'), await attach(net, h1, 'b1'), await attach(net, h2, 'b2')];
  await check(t, net, got);
});

t.test('three hosts, getting-started order: all three attach at once right after the launches', async (t) => {
  const net = await gettingStarted(t, 3);
  const got = await Promise.all(net.hosts.map((h, i) => attach(net, h, `c${i + 1}`)));
  await check(t, net, got);
});
