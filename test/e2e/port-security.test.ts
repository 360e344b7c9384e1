// End-to-end test of port security (router/host/port-security.ts) with real
// routers: a container on h1 that bridges a TAP of ours into its namespace
// (a nested bridge, as a VPN or a compromised container could) sends what a
// spoofer would: ARP announcements for its neighbour's address, frames with
// the neighbour's MAC, IPv4 from the neighbour's address, and IPv6 neighbour
// adverts for the neighbour's address. Each is dropped at h1's bridge and
// counted; neighbour caches on both hosts and the bridge's idea of where the
// victim lives stay true. A container attached again with a new MAC is
// believed at once (its announcement passes: the guard knew the port before
// it spoke), and `weave attach --no-port-security` of an attached container
// lets it through from then on. Then h1 is relaunched with --no-port-security: the
// table is gone and the same ARP announcement poisons its neighbour's cache
// (so this test can fail, and shows what the guard prevents); relaunched
// without the flag, the table is rebuilt for the restored containers.
// Needs root; touches only namespaces it creates.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { TapDevice } from '../../router/overlay/tap-device';
import { PORT_SECURITY_COUNTER, PORT_SECURITY_TABLE } from '../../router/host/port-security-rules';
import { pingsFrom } from './netns-containers';
import { arpAnnouncement, echoRequestV4, neighborAdvert } from './spoof-frames';

t.setTimeout(300_000);

interface Container { ns: string; host: SimHost; v4: string; v6: string; mac: string }

async function sh(cmd: string[]): Promise<string> {
  const r = await run(cmd, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The neighbour entry's MAC for `ip` in `ns`, or null. */
async function neighbourMac(ns: string, ip: string): Promise<string | null> {
  const entries = JSON.parse(await sh(['ip', '-n', ns, '-j', 'neigh', 'show', ip, 'dev', 'ethwe'])) as { lladdr?: string }[];
  return entries[0]?.lladdr ?? null;
}

async function spoofedCount(h: SimHost): Promise<number> {
  const out = JSON.parse(await sh(['ip', 'netns', 'exec', h.ns, 'nft', '-j', 'list', 'counter', 'bridge', PORT_SECURITY_TABLE, PORT_SECURITY_COUNTER])) as
    { nftables: { counter?: { packets: number } }[] };
  return out.nftables.find((o) => o.counter !== undefined)?.counter?.packets ?? -1;
}

/** The bridge port `weave` has learnt `mac` on, in `h`'s namespace. */
async function fdbPort(h: SimHost, mac: string): Promise<string | null> {
  const entries = JSON.parse(await sh(['bridge', '-n', h.ns, '-j', 'fdb', 'show', 'br', 'weave'])) as { mac: string; ifname: string }[];
  return entries.find((e) => e.mac === mac)?.ifname ?? null;
}

async function tableExists(h: SimHost): Promise<boolean> {
  return (await run(['ip', 'netns', 'exec', h.ns, 'nft', 'list', 'table', 'bridge', PORT_SECURITY_TABLE])).code === 0;
}

t.test('a container cannot speak for its neighbour; --no-port-security lets it', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'port security e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  let tap: TapDevice | null = null;
  t.teardown(async () => {
    tap?.close();
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  const launch = async (h: SimHost, extra: string[] = []): Promise<void> => {
    const r = await h.weave(['launch', '--nickname', h.name, ...extra, ...net.hosts.filter((x) => x !== h).map((x) => x.address)]);
    t.equal(r.code, 0, `launch ${h.name} ${extra.join(' ')}: ${r.stderr.trim()}`);
  };
  const meshed = async (h: SimHost): Promise<void> => {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
      what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  };
  for (const h of net.hosts) await launch(h);
  for (const h of net.hosts) await meshed(h);

  const attach = async (host: SimHost, key: string, n: number, extra: string[] = []): Promise<Container> => {
    const ns = `${net.prefix}${key}`;
    await sh(['ip', 'netns', 'add', ns]);
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const v4 = `10.2.1.${n}`;
    const v6 = `fd00:9::${n}`;
    const r = await host.weave(['attach', ...extra, `${v4}/24`, `${v6}/64`, `netns:${ns}`]);
    t.equal(r.code, 0, `attach ${key} on ${host.name}: ${r.stderr.trim()}`);
    const link = JSON.parse(await sh(['ip', '-n', ns, '-j', 'link', 'show', 'ethwe'])) as { address: string }[];
    return { ns, host, v4, v6, mac: link[0]!.address };
  };
  const victim = await attach(h2, 'v', 1);
  const neighbour2 = await attach(h2, 'o2', 2);
  const spoofer = await attach(h1, 's', 3);
  const neighbour1 = await attach(h1, 'o1', 4);
  const router = await attach(h1, 'r', 5, ['--no-port-security']);

  await t.test('every container speaks for itself: all reach the victim, over both families', async (t) => {
    // A container's first frames (arp_notify, IGMP and MLD reports) can leave before its attach is
    // done and its port in the table, and are dropped: count from once all are attached and have spoken.
    await pingsFrom(neighbour1.ns, victim.v4, 'across hosts');
    await pingsFrom(router.ns, victim.v4, 'across hosts');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const before = await spoofedCount(h1);
    await pingsFrom(neighbour1.ns, victim.v4, 'across hosts');
    await pingsFrom(neighbour2.ns, victim.v4, 'on its host');
    await pingsFrom(spoofer.ns, victim.v4, 'before it misbehaves');
    const r = await run(['ip', 'netns', 'exec', neighbour1.ns, 'ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', victim.v6]);
    t.equal(r.code, 0, `ping -6 across hosts: ${r.stdout.trim().split('\n').pop()}`);
    t.equal(await neighbourMac(neighbour1.ns, victim.v4), victim.mac, "h1's neighbour knows the victim's MAC");
    t.equal(await neighbourMac(neighbour1.ns, victim.v6), victim.mac);
    t.equal(await fdbPort(h1, victim.mac), 'vethwe-tap', 'h1 learnt the victim behind the router');
    const table = await sh(['ip', 'netns', 'exec', h1.ns, 'nft', 'list', 'table', 'bridge', PORT_SECURITY_TABLE]);
    t.equal((table.match(/chain port-vethwe/g) ?? []).length, 2, "a chain for each of h1's two containers");
    t.equal(await spoofedCount(h1), before, 'nothing dropped while everyone behaves');
    t.same((await h1.weaveStatus() as unknown as { portSecurity: unknown }).portSecurity, { ports: 2, unguarded: 1, problem: null }, 'status says so');
    t.equal((await run(['ip', 'netns', 'exec', h1.ns, 'nft', '-j', 'list', 'ruleset'])).code, 0, 'nft can still list the ruleset as JSON (the firewall code reads it so)');
  });

  await t.test('weave attach --no-port-security: that container may send from an address it was not given', async (t) => {
    const before = await spoofedCount(h1);
    await sh(['ip', '-n', router.ns, 'addr', 'add', '10.2.1.50/24', 'dev', 'ethwe']);
    const r = await run(['ip', 'netns', 'exec', router.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '-I', '10.2.1.50', victim.v4]);
    t.equal(r.code, 0, `from 10.2.1.50 across hosts: ${r.stdout.trim().split('\n').pop()}`);
    t.equal(await spoofedCount(h1), before, 'nothing dropped');
  });

  await t.test('a container attached again gets a new MAC, and its announcement reaches the neighbours at once', async (t) => {
    const mover = await attach(h1, 'm', 6);
    await pingsFrom(neighbour1.ns, mover.v4, 'on its host');
    await pingsFrom(neighbour2.ns, mover.v4, 'across hosts');
    t.equal(await neighbourMac(neighbour1.ns, mover.v4), mover.mac, 'the neighbour knows its MAC');
    t.equal((await h1.weave(['detach', `netns:${mover.ns}`])).code, 0, 'detached');
    const r = await h1.weave(['attach', `${mover.v4}/24`, `${mover.v6}/64`, `netns:${mover.ns}`]);
    t.equal(r.code, 0, `attached again: ${r.stderr.trim()}`);
    const mac = (JSON.parse(await sh(['ip', '-n', mover.ns, '-j', 'link', 'show', 'ethwe'])) as { address: string }[])[0]!.address;
    t.not(mac, mover.mac, 'a new MAC');
    // Unheard, the neighbours would keep the old MAC until their entries go stale and traffic makes them probe (5-10 s here).
    for (const n of [neighbour1, neighbour2]) {
      await waitFor(async () => (await neighbourMac(n.ns, mover.v4)) === mac, { what: `${n.ns} learns the new MAC from the announcement`, timeoutMs: 5_000, intervalMs: 100 });
    }
    t.pass('both neighbours took the new MAC from its announcement');
    const status = async (): Promise<unknown> => (await h1.weaveStatus() as unknown as { portSecurity: unknown }).portSecurity;
    t.same(await status(), { ports: 3, unguarded: 1, problem: null }, 'guarded, as attached');
    const off = await h1.weave(['attach', '--no-port-security', `${mover.v4}/24`, `netns:${mover.ns}`]);
    t.equal(off.code, 0, `weave attach --no-port-security of the attached container: ${off.stderr.trim()}`);
    t.same(await status(), { ports: 2, unguarded: 2, problem: null }, 'now let through');
    t.equal((await h1.weave(['detach', `netns:${mover.ns}`])).code, 0, 'and it goes again');
    t.same(await status(), { ports: 2, unguarded: 1, problem: null }, 'its port with it');
  });

  // The spoofer bridges a TAP of ours into its namespace; what we write into the TAP leaves by its ethwe.
  const tapName = `wvtps${process.pid % 100000}`;
  tap = TapDevice.open(tapName);
  await sh(['ip', 'link', 'set', tapName, 'netns', spoofer.ns]);
  await sh(['ip', 'netns', 'exec', spoofer.ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await sh(['ip', '-n', spoofer.ns, 'link', 'add', 'br0', 'type', 'bridge']);
  for (const dev of ['ethwe', tapName]) await sh(['ip', '-n', spoofer.ns, 'link', 'set', dev, 'master', 'br0']);
  for (const dev of ['br0', tapName]) await sh(['ip', '-n', spoofer.ns, 'link', 'set', dev, 'up']);
  const send = (frame: Buffer, times = 3): void => {
    for (let i = 0; i < times; i++) t.ok(tap!.writeFrame(frame, 0, frame.length), 'frame written');
  };
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 500));

  await t.test('ARP for the neighbour\'s address: dropped, caches on both hosts unchanged', async (t) => {
    const before = await spoofedCount(h1);
    send(arpAnnouncement(spoofer.mac, spoofer.mac, victim.v4));
    await settle();
    t.ok(await spoofedCount(h1) >= before + 3, 'the three announcements are counted as spoofed');
    t.equal(await neighbourMac(neighbour1.ns, victim.v4), victim.mac, 'same host: still the victim');
    t.not(await neighbourMac(neighbour2.ns, victim.v4), spoofer.mac, 'across the mesh: never the spoofer');
  });

  await t.test("the neighbour's MAC as source: dropped, the bridges still know where it lives", async (t) => {
    const before = await spoofedCount(h1);
    send(arpAnnouncement(victim.mac, victim.mac, victim.v4));
    await settle();
    t.ok(await spoofedCount(h1) >= before + 3);
    t.equal(await fdbPort(h1, victim.mac), 'vethwe-tap', "h1's bridge was not taught the victim is on the spoofer's port");
    const r = await run(['ip', 'netns', 'exec', neighbour2.ns, 'ping', '-c', '2', '-W', '1', victim.v4]);
    t.equal(r.code, 0, 'the victim\'s neighbour on h2 reaches it at once');
  });

  await t.test("IPv4 from the neighbour's address: dropped", async (t) => {
    const before = await spoofedCount(h1);
    send(echoRequestV4(spoofer.mac, neighbour1.mac, victim.v4, neighbour1.v4));
    await settle();
    t.ok(await spoofedCount(h1) >= before + 3);
  });

  await t.test("a neighbour advert for the neighbour's IPv6 address, from the spoofer's own: dropped", async (t) => {
    const before = await spoofedCount(h1);
    send(neighborAdvert(spoofer.mac, spoofer.v6, victim.v6, spoofer.mac));
    await settle();
    t.ok(await spoofedCount(h1) >= before + 3);
    t.equal(await neighbourMac(neighbour1.ns, victim.v6), victim.mac, "h1's neighbour still has the victim's MAC for its IPv6 address");
  });

  await t.test('--no-port-security: the table goes, and the same announcement poisons the neighbour', async (t) => {
    t.equal((await h1.weave(['stop'])).code, 0);
    await launch(h1, ['--no-port-security']);
    await meshed(h1);
    t.notOk(await tableExists(h1), 'no table');
    t.equal((await h1.weaveStatus() as unknown as { portSecurity: unknown }).portSecurity, null, 'status: off');
    await waitFor(async () => {
      send(arpAnnouncement(spoofer.mac, spoofer.mac, victim.v4), 1);
      await settle();
      return (await neighbourMac(neighbour1.ns, victim.v4)) === spoofer.mac;
    }, { what: "the neighbour's cache poisoned", timeoutMs: 15_000 });
    t.pass("unguarded, the neighbour sends the victim's traffic to the spoofer");
  });

  await t.test('relaunched without the flag: the table is rebuilt for the restored containers', async (t) => {
    t.equal((await h1.weave(['stop'])).code, 0);
    await launch(h1);
    await meshed(h1);
    const table = await sh(['ip', 'netns', 'exec', h1.ns, 'nft', 'list', 'table', 'bridge', PORT_SECURITY_TABLE]);
    t.equal((table.match(/chain port-vethwe/g) ?? []).length, 2, 'both containers guarded again');
    t.same((await h1.weaveStatus() as unknown as { portSecurity: unknown }).portSecurity, { ports: 2, unguarded: 1, problem: null },
      'and the one attached with --no-port-security still is not');
    await sh(['ip', '-n', neighbour1.ns, 'neigh', 'flush', 'dev', 'ethwe']);
    await pingsFrom(neighbour1.ns, victim.v4, 'after the relaunch');
  });
});
