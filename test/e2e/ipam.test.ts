// End-to-end IPAM: real routers in namespaces hand out addresses with no
// external store. 24 containers attached at once across three hosts get
// unique addresses inside the range; a relaunched router keeps its
// containers' addresses and never hands them out again; a peer waiting for
// consensus says exactly what it waits for, and attach gives up clearly.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(400_000);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

function ipOf(cidr: string): string {
  return cidr.split('/')[0]!;
}

function inRange(ip: string): boolean {
  const [a, b] = ip.split('.').map(Number) as [number, number];
  return a === 10 && b >= 32 && b <= 47;
}

async function network(t: Tap, hosts: number, launchArgs: (h: SimHost, i: number, net: SimNetwork) => string[]): Promise<SimNetwork> {
  const net = await SimNetwork.create({ hosts, password: 'ipam e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  for (const [i, h] of net.hosts.entries()) {
    const r = await h.weave(['launch', '--nickname', h.name, ...launchArgs(h, i, net)]);
    t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
  }
  return net;
}

async function addContainer(net: SimNetwork, name: string): Promise<string> {
  const ns = `${net.prefix}${name}`;
  await run(['ip', 'netns', 'add', ns], { check: true });
  return ns;
}

async function psAddresses(h: SimHost): Promise<Map<string, string[]>> {
  const r = await h.weave(['ps', '--json']);
  const parsed = JSON.parse(r.stdout) as { containers: { name: string; addresses: string[] }[] } | { name: string; addresses: string[] }[];
  const list = Array.isArray(parsed) ? parsed : parsed.containers;
  return new Map(list.map((c) => [c.name, c.addresses]));
}

t.test('24 containers attached concurrently across three hosts get unique addresses; a relaunch keeps them', async (t) => {
  // Every host is given every other, so all three take part in the initial split.
  const net = await network(t, 3, (_h, i, n) => n.hosts.filter((_x, j) => j !== i).map((x) => x.address));
  const jobs: Promise<{ host: SimHost; ns: string; out: string; code: number }>[] = [];
  for (const [hi, h] of net.hosts.entries()) {
    for (let k = 0; k < 8; k++) {
      jobs.push((async () => {
        const ns = await addContainer(net, `c${hi}x${k}`);
        const r = await h.weave(['attach', `netns:${ns}`], { timeoutMs: 90_000 });
        return { host: h, ns, out: r.stdout.trim() + r.stderr.trim(), code: r.code };
      })());
    }
  }
  const results = await Promise.all(jobs);
  const failed = results.filter((r) => r.code !== 0);
  t.same(failed.map((f) => `${f.ns}: ${f.out}`), [], 'every attach succeeded');
  const all = new Map<string, string>();
  for (const h of net.hosts) for (const [name, addrs] of await psAddresses(h)) for (const a of addrs) all.set(ipOf(a), name);
  t.equal(all.size, 24, `24 distinct addresses (${[...all.keys()].sort().join(' ')})`);
  t.ok([...all.keys()].every(inRange), 'all inside 10.32.0.0/12');

  // A quick ping between two hosts' containers through allocated addresses.
  const a = results.find((r) => r.host === net.hosts[0])!;
  const bAddr = [...all.entries()].find(([, n]) => n.startsWith(`${net.prefix}c1x`))![0];
  const ping = await run(['ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-W', '2', bAddr], { timeoutMs: 20_000 });
  t.equal(ping.code, 0, `allocated addresses route across hosts (${bAddr})`);

  // Relaunch h2: its containers keep their addresses, and new containers never get them.
  const h2 = net.hosts[1]!;
  const before = await psAddresses(h2);
  t.equal((await h2.weave(['stop'])).code, 0, 'stop h2');
  const relaunch = await h2.weave(['launch', '--nickname', 'h2', ...net.hosts.filter((x) => x !== h2).map((x) => x.address)]);
  t.equal(relaunch.code, 0, `relaunch h2: ${relaunch.stderr.trim()}`);
  await waitFor(async () => (await h2.weaveStatus()).connections.filter((c) => c.state === 'established').length === 2, { what: 'h2 reconnected', timeoutMs: 30_000 });
  t.same(await psAddresses(h2), before, 'h2 still lists its containers with the same addresses');
  const fresh: string[] = [];
  for (let k = 0; k < 4; k++) {
    const ns = await addContainer(net, `n${k}`);
    const r = await h2.weave(['attach', `netns:${ns}`], { timeoutMs: 60_000 });
    t.equal(r.code, 0, `attach new container ${k} on relaunched h2: ${r.stderr.trim()}`);
    fresh.push(r.stdout.trim());
  }
  t.same(fresh.filter((ip) => all.has(ip)), [], `new addresses (${fresh.join(' ')}) are none of the 24 in use`);
});

t.test('a peer waiting for consensus says what it waits for, and attach gives up clearly', async (t) => {
  const net = await network(t, 1, () => ['--ipalloc-init', 'consensus=3']);
  const h1 = net.hosts[0]!;
  const ns = await addContainer(net, 'lonely');
  const attach = await h1.weave(['attach', `netns:${ns}`], { timeoutMs: 90_000 });
  t.not(attach.code, 0, 'attach fails without a quorum');
  t.match(attach.stderr, /awaiting consensus: 1 of 3 peers known, need quorum 2/, `clear error: ${attach.stderr.trim()}`);
  const status = await h1.weave(['status', 'ipam']);
  t.match(status.stdout, /awaiting consensus: 1 of 3 peers known, need quorum 2/, 'status ipam says what it waits for');
  const link = await run(['ip', '-n', ns, 'link', 'show', 'ethwe']);
  t.not(link.code, 0, 'nothing was left behind in the container');
});
