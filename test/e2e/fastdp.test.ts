// End-to-end kernel fast path (issue 14): real routers in namespaces, no
// password. h1 - h2 - h3 in a line (h1 and h3 cannot reach each other), h3
// launched with --no-fastdp. Containers on h1 and h2 ping over VXLAN (the
// vxlan device's own counters move, the router's sleeve counters do not);
// h3 is reached through h2 on the sleeve; nftables inside h1 blocking UDP 6784
// to and from h2 sends that pair back to the sleeve within seconds, with the
// reason in status, and unblocking brings the fast path back. The fast path's
// firewall lets only h1 into h2's VXLAN port: a datagram from h3 (h2's
// neighbour, but not on the fast path) is dropped and counted. weave reset on
// h1 leaves no vxlan device, heartbeat TAP or firewall table. A second, small
// mesh with a password never makes a vxlan device. Needs root.

import t from 'tap';
import { run } from '../../scripts/command';
import { SimNetwork } from '../../scripts/sim-network';
import type { SimHost } from '../../scripts/sim-host';
import { waitFor } from '../../scripts/wait';
import type { RouterStatus } from '../../router/mesh/status';

t.setTimeout(240_000);

const VXLAN = 'vxlan-6784';
const NFT_TABLE = 'weave_fastdp_test';

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

function linkTo(s: RouterStatus, nickname: string) {
  return s.connections.find((c) => c.state === 'established' && c.nickname === nickname);
}

async function launchLine(t: Tap, net: SimNetwork, extra: Record<string, string[]> = {}): Promise<void> {
  for (let i = 0; i < net.hosts.length; i++) {
    const h = net.hosts[i]!;
    const peers = i === 0 ? [] : [net.hosts[i - 1]!.address];
    const r = await h.weave(['launch', '--nickname', h.name, '--no-discovery', ...(extra[h.name] ?? []), ...peers]);
    t.equal(r.code, 0, `weave launch on ${h.name}: ${r.stderr.trim()}`);
  }
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === net.hosts.length, {
      what: `${h.name} reaches every peer`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }
}

const FW = ['inet', 'weave-fastdp'];

async function fastdpDropped(h: SimHost): Promise<number> {
  const r = await h.exec(['nft', '-j', 'list', 'counter', ...FW, 'dropped']);
  const items = (JSON.parse(r.stdout) as { nftables: { counter?: { packets: number } }[] }).nftables;
  return items.find((i) => i.counter !== undefined)!.counter!.packets;
}

async function vxlanPackets(h: SimHost): Promise<{ tx: number; rx: number } | null> {
  const r = await h.exec(['ip', '-s', '-j', 'link', 'show', VXLAN]);
  if (r.code !== 0) return null;
  const [link] = JSON.parse(r.stdout) as { stats64: { tx: { packets: number }; rx: { packets: number } } }[];
  return { tx: link!.stats64.tx.packets, rx: link!.stats64.rx.packets };
}

function sleeveFrames(s: RouterStatus): number {
  return (s.counters['framesSentUdp'] ?? 0) + (s.counters['framesSentTcp'] ?? 0);
}

t.test('plaintext mesh: VXLAN between neighbours, the sleeve for the relayed peer, fallback and return, --no-fastdp', async (t) => {
  const net = await SimNetwork.create({ hosts: 3, password: null, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const containers = new Map<string, { ns: string; ip: string }>();
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    for (const c of containers.values()) await run(['ip', 'netns', 'del', c.ns]);
    await net.destroy();
  });
  await net.blockBetween('h1', 'h3', 'all');
  await launchLine(t, net, { h3: ['--no-fastdp'] });
  const [h1, h2, h3] = net.hosts as [SimHost, SimHost, SimHost];

  const attach = async (h: SimHost, name: string, ip: string): Promise<void> => {
    const ns = `${net.prefix}${name}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    containers.set(name, { ns, ip });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await h.weave(['attach', `${ip}/24`, `netns:${ns}`]);
    t.equal(r.code, 0, `attach ${name} on ${h.name}: ${r.stderr.trim()}`);
  };
  const ping = async (from: string, to: string, count = 3): Promise<boolean> => {
    const r = await run(['ip', 'netns', 'exec', containers.get(from)!.ns, 'ping', '-c', String(count), '-i', '0.05', '-W', '2', containers.get(to)!.ip],
      { timeoutMs: 30_000 });
    return r.code === 0;
  };
  const pingEventually = (from: string, to: string) =>
    waitFor(() => ping(from, to), { what: `${from} pings ${to}`, timeoutMs: 20_000 });
  await attach(h1, 'c1', '10.32.9.1');
  await attach(h2, 'c2', '10.32.9.2');
  await attach(h3, 'c3', '10.32.9.3');

  await waitFor(async () => linkTo(await h1.weaveStatus(), 'h2')?.dataPath === 'fastdp' && linkTo(await h2.weaveStatus(), 'h1')?.dataPath === 'fastdp',
    { what: 'h1 and h2 on the fast path', timeoutMs: 15_000, detail: async () => JSON.stringify(linkTo(await h1.weaveStatus(), 'h2')) });
  t.match(linkTo(await h1.weaveStatus(), 'h2')?.dataPathInfo, /VXLAN heartbeats get through both ways/, 'status says why');
  const rendered = await h1.weave(['status', 'connections']);
  t.match(rendered.stdout, /data: fastdp \(VXLAN/, '`weave status connections` shows the fast path');

  // Warm up: ARP goes over the sleeve (broadcasts take the router's tree), then MACs reach the FDB.
  await pingEventually('c1', 'c2');
  await waitFor(async () => (await h1.exec(['bridge', 'fdb', 'show', 'dev', VXLAN])).stdout.includes('dst '), { what: 'FDB entries on h1', timeoutMs: 5_000 });
  await new Promise((r) => setTimeout(r, 600));
  const before = { v1: await vxlanPackets(h1), s1: sleeveFrames(await h1.weaveStatus()) };
  t.ok(await ping('c1', 'c2', 20), 'c1 pings c2 20 times');
  const after = { v1: await vxlanPackets(h1), s1: sleeveFrames(await h1.weaveStatus()) };
  const vxTx = after.v1!.tx - before.v1!.tx;
  const vxRx = after.v1!.rx - before.v1!.rx;
  const sleeve = after.s1 - before.s1;
  t.ok(vxTx >= 20 && vxRx >= 20, `the pings went through h1's vxlan device (tx +${vxTx}, rx +${vxRx})`);
  t.ok(sleeve < 10, `not through h1's router (sleeve frames +${sleeve})`);

  // Only fast-path peers may feed the VXLAN port: h2 lets in h1, not h3 (its neighbour, with --no-fastdp).
  const set2 = (await h2.exec(['nft', '-j', 'list', 'set', ...FW, 'peers'])).stdout;
  t.ok(set2.includes(`"${h1.address}"`) && !set2.includes(`"${h3.address}"`), `h2 lets only h1 send to UDP 6784: ${set2.slice(-120)}`);
  const dropped = await fastdpDropped(h2);
  const sent = await h3.exec(['bash', '-c', `for i in 1 2 3; do printf 'forged' > /dev/udp/${h2.address}/6784; done`]);
  t.equal(sent.code, 0, `h3 sends 3 datagrams to h2's VXLAN port: ${sent.stderr.trim()}`);
  await waitFor(async () => (await fastdpDropped(h2)) >= dropped + 3, { what: 'h2 drops them', timeoutMs: 5_000 });
  const v0 = await vxlanPackets(h1);
  t.ok(await ping('c1', 'c2', 10), 'c1 still pings c2');
  t.ok((await vxlanPackets(h1))!.rx - v0!.rx >= 10, 'over VXLAN: h1 is let in');

  // h3 is not h1's neighbour: relayed by h2 over the sleeve, and its MAC gets no VXLAN entry on h1.
  await pingEventually('c1', 'c3');
  t.notOk(linkTo(await h1.weaveStatus(), 'h3'), 'h1 has no connection to h3');
  const c3mac = JSON.parse((await run(['ip', '-n', containers.get('c3')!.ns, '-j', 'link', 'show', 'ethwe'])).stdout)[0].address as string;
  const fdb1 = (await h1.exec(['bridge', 'fdb', 'show', 'dev', VXLAN])).stdout;
  t.notOk(fdb1.includes(c3mac), `c3's MAC ${c3mac} has no VXLAN entry on h1`);
  const relayedBefore = (await h2.weaveStatus()).counters['framesRelayed'] ?? 0;
  t.ok(await ping('c1', 'c3', 5), 'c1 pings c3');
  t.ok(((await h2.weaveStatus()).counters['framesRelayed'] ?? 0) >= relayedBefore + 10, 'h2 relayed them on the sleeve');

  // h3 runs --no-fastdp: no device there, h2 keeps the sleeve to it and says why.
  t.equal(await vxlanPackets(h3), null, 'no vxlan device on h3');
  t.match(linkTo(await h3.weaveStatus(), 'h2')?.dataPathInfo, /--no-fastdp/, 'h3 says the fast path is off');
  await waitFor(async () => /does not offer/.test(linkTo(await h2.weaveStatus(), 'h3')?.dataPathInfo ?? ''), { what: 'h2 says h3 does not offer it', timeoutMs: 10_000 });
  t.not(linkTo(await h2.weaveStatus(), 'h3')?.dataPath, 'fastdp', 'h2 -> h3 stays on the sleeve');

  // Block UDP 6784 between h1 and h2, inside h1's namespace.
  const block = `table inet ${NFT_TABLE} {
    chain out { type filter hook output priority 0; ip daddr ${h2.address} udp dport 6784 drop; }
    chain in { type filter hook input priority 0; ip saddr ${h2.address} udp dport 6784 drop; }
  }`;
  const r = await h1.exec(['nft', block]);
  t.equal(r.code, 0, `nft blocks UDP 6784 on h1: ${r.stderr.trim()}`);
  const blockedAt = Date.now();
  await waitFor(async () => linkTo(await h1.weaveStatus(), 'h2')?.dataPath !== 'fastdp' && linkTo(await h2.weaveStatus(), 'h1')?.dataPath !== 'fastdp',
    { what: 'h1 and h2 fall back to the sleeve', timeoutMs: 10_000 });
  t.comment(`fell back after ${Date.now() - blockedAt} ms`);
  t.match(linkTo(await h1.weaveStatus(), 'h2')?.dataPathInfo, /fast path: no VXLAN heartbeats get through either way/, 'status says why');
  const v = await vxlanPackets(h1);
  t.ok(await ping('c1', 'c2', 10), 'c1 still pings c2, over the sleeve');
  t.equal((await vxlanPackets(h1))!.rx, v!.rx, 'nothing arrived over VXLAN meanwhile');

  await h1.exec(['nft', 'delete', 'table', 'inet', NFT_TABLE]);
  await waitFor(async () => linkTo(await h1.weaveStatus(), 'h2')?.dataPath === 'fastdp', { what: 'h1 back on the fast path', timeoutMs: 10_000 });
  await new Promise((r) => setTimeout(r, 600));
  const v2 = await vxlanPackets(h1);
  t.ok(await ping('c1', 'c2', 10), 'c1 pings c2 again');
  t.ok((await vxlanPackets(h1))!.tx - v2!.tx >= 10, 'over VXLAN again');

  // weave reset (c1 is attached, hence --force): nothing of the fast path stays behind on h1.
  const reset = await h1.weave(['reset', '--force']);
  t.equal(reset.code, 0, `weave reset on h1: ${reset.stderr.trim()}`);
  t.match(reset.stderr, /removed what fast path made/, 'the fast path\'s reset hook ran');
  for (const dev of [VXLAN, 'vethwe-hb']) t.not((await h1.exec(['ip', 'link', 'show', dev])).code, 0, `no ${dev} on h1`);
  t.not((await h1.exec(['nft', 'list', 'table', ...FW])).code, 0, 'no weave-fastdp table on h1');
});

t.test('with a password the fast path is never used', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'fastdp e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  await launchLine(t, net);
  for (const h of net.hosts) {
    t.equal(await vxlanPackets(h), null, `no vxlan device on ${h.name}`);
    t.not((await h.exec(['nft', 'list', 'table', ...FW])).code, 0, `nor firewall table`);
    const other = h.name === 'h1' ? 'h2' : 'h1';
    const link = linkTo(await h.weaveStatus(), other);
    t.ok(link?.dataPath === 'udp' || link?.dataPath === 'tcp', `${h.name} -> ${other} on the sleeve (${link?.dataPath})`);
    t.match(link?.dataPathInfo, /a password is set/, 'and status says why');
  }
});
