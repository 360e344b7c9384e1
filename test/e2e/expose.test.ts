// End-to-end `weave expose`, `weave hide` and `weave reset` on two simulated
// hosts. h1 exposes itself: the host pings a container on h2 by its overlay
// address, and a container on h1 reaches an "outside" namespace (a veth from
// h1 to a namespace of ours, 192.168.250.0/24, with no route back to the
// overlay) through NAT, counted there by source address, past a forward
// chain with policy drop. The exposure survives a router restart; hide puts
// addresses, firewall and ip_forward back exactly as they were. reset on h2
// refuses while a container is attached, then hands h2's address space to
// h1 and leaves h2 stopped without its IPAM and peer state. Needs root; all
// traffic stays inside the network's own namespaces.

import { existsSync } from 'node:fs';
import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import type { IpamStatus } from '../../ipam/ipam';

t.setTimeout(300_000);

const OUTSIDE_IP = '192.168.250.1';
const H1_OUTSIDE_IP = '192.168.250.2';
const RANGE_SIZE = 2 ** 20; // 10.32.0.0/12, the default --ipalloc-range

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

async function sh(h: SimHost, cmd: string[]): Promise<string> {
  return (await h.exec(cmd, { check: true, timeoutMs: 15_000 })).stdout;
}

async function bridgeAddresses(h: SimHost): Promise<string[]> {
  const parsed = JSON.parse(await sh(h, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'weave'])) as { addr_info: { local: string; prefixlen: number }[] }[];
  return parsed.flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).sort();
}

async function ipForward(h: SimHost): Promise<string> {
  return (await sh(h, ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim();
}

/** Packets counted by the named rule in the outside namespace's counting table. */
async function counted(ns: string, comment: string): Promise<number> {
  const out = (await run(['ip', 'netns', 'exec', ns, 'nft', '-j', 'list', 'table', 'inet', 'count'], { check: true })).stdout;
  const items = (JSON.parse(out) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[] }).nftables;
  const rule = items.find((i) => i.rule?.comment === comment)?.rule;
  return rule?.expr.find((e) => e.counter !== undefined)?.counter?.packets ?? -1;
}

async function pingOnce(argvPrefix: string[], ip: string): Promise<boolean> {
  return (await run([...argvPrefix, 'ping', '-c', '1', '-W', '1', ip], { timeoutMs: 10_000 })).code === 0;
}

async function attach(t: Tap, net: SimNetwork, h: SimHost, name: string): Promise<{ ns: string; ip: string }> {
  const ns = `${net.prefix}${name}`;
  await run(['ip', 'netns', 'add', ns], { check: true });
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
  const r = await h.weave(['attach', `netns:${ns}`], { timeoutMs: 90_000 });
  t.equal(r.code, 0, `attach ${name} on ${h.name}: ${r.stderr.trim()}`);
  return { ns, ip: r.stdout.trim() };
}

async function ipamStatus(h: SimHost): Promise<IpamStatus> {
  const r = await h.weave(['status', 'ipam', '--json'], { check: true });
  return JSON.parse(r.stdout) as IpamStatus;
}

t.test('expose, NAT to the outside, hide, and reset handing the space over', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'expose e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  const [h1, h2] = net.hosts as [SimHost, SimHost];

  // A firewall that forwards nothing by default, there before the router
  // starts (like dockerd's FORWARD DROP): only our accept rules let traffic through.
  await h1.exec(['nft', '-f', '-'], {
    check: true,
    input: 'table inet wvtest {\n  chain forward {\n    type filter hook forward priority 0; policy drop;\n  }\n}\n',
  });

  // "Outside": a namespace of ours behind h1, with no route back to the overlay.
  const outside = `${net.prefix}out`;
  await run(['ip', 'netns', 'add', outside], { check: true });
  await sh(h1, ['ip', 'link', 'add', 'wvout0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside]);
  await sh(h1, ['ip', 'addr', 'add', `${H1_OUTSIDE_IP}/24`, 'dev', 'wvout0']);
  await sh(h1, ['ip', 'link', 'set', 'wvout0', 'up']);
  for (const argv of [['addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'eth0'], ['link', 'set', 'eth0', 'up'], ['link', 'set', 'lo', 'up']]) {
    await run(['ip', '-n', outside, ...argv], { check: true });
  }
  await run(['ip', 'netns', 'exec', outside, 'nft', '-f', '-'], {
    check: true,
    input: 'table inet count {\n  chain input {\n    type filter hook input priority 0; policy accept;\n' +
      `    ip saddr ${H1_OUTSIDE_IP} icmp type echo-request counter comment "masqueraded"\n` +
      '    ip saddr 10.32.0.0/12 icmp type echo-request counter comment "overlay"\n  }\n}\n',
  });

  for (const [h, other] of [[h1, h2], [h2, h1]] as const) {
    const r = await h.weave(['launch', '--nickname', h.name, other.address]);
    t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
  }
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
      what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }
  const c1 = await attach(t, net, h1, 'c1');
  const c2 = await attach(t, net, h2, 'c2');

  // Rules, not counters (-s): port security's counter may still count a new container's first frames.
  const rulesetBefore = await sh(h1, ['nft', '-s', 'list', 'ruleset']);
  const addressesBefore = await bridgeAddresses(h1);
  const forwardBefore = await ipForward(h1);
  t.equal(forwardBefore, '0', 'a fresh namespace does not forward');
  t.notOk(await pingOnce(['ip', 'netns', 'exec', h1.ns], c2.ip), 'before expose the host cannot reach containers');

  // --- expose
  const exposed = await h1.weave(['expose']);
  t.equal(exposed.code, 0, `weave expose: ${exposed.stderr.trim()}`);
  const hostIp = exposed.stdout.trim();
  t.match(hostIp, /^10\.(3[2-9]|4[0-7])\.\d+\.\d+$/, `expose prints an address in the range (${hostIp})`);
  t.ok((await bridgeAddresses(h1)).includes(`${hostIp}/12`), 'the address is on the weave bridge');
  t.equal(await ipForward(h1), '1', 'ip_forward is on');
  const again = await h1.weave(['expose']);
  t.equal(again.stdout.trim(), hostIp, 'exposing again gives the same address');
  const rulesetExposed = await sh(h1, ['nft', '-s', 'list', 'ruleset']);
  t.match(rulesetExposed, /table ip weave-expose/, 'our NAT table is there');
  t.match(rulesetExposed, /oifname != "weave" ip saddr 10\.32\.0\.0\/12 ip daddr != 10\.32\.0\.0\/12 masquerade/, 'masquerade out of the overlay');
  t.equal(rulesetExposed.match(/comment "weave-expose:weave"/g)?.length, 3, 'one NAT rule and two forward accepts, not duplicated by the second expose');
  const report = JSON.parse((await h1.weave(['report'], { check: true })).stdout) as { expose?: { addresses: string[] } };
  t.same(report.expose?.addresses, [`${hostIp}/12`], 'the report lists the exposed address');
  const allocations = (await ipamStatus(h1)).allocations.filter((a) => a.container === 'weave:expose');
  t.same(allocations.map((a) => a.address), [`${hostIp}/12`], 'IPAM holds it for weave:expose');

  // The host reaches a container on h2 by its overlay address.
  await waitFor(() => pingOnce(['ip', 'netns', 'exec', h1.ns], c2.ip), { what: `h1 (host) pings ${c2.ip} on h2`, timeoutMs: 20_000 });
  t.pass(`the host pings the container on h2 (${c2.ip})`);

  // A container on h1 reaches the outside through NAT.
  await run(['ip', '-n', c1.ns, 'route', 'add', '192.168.250.0/24', 'via', hostIp], { check: true });
  await waitFor(() => pingOnce(['ip', 'netns', 'exec', c1.ns], OUTSIDE_IP), { what: `c1 pings ${OUTSIDE_IP}`, timeoutMs: 20_000 });
  t.ok(await counted(outside, 'masqueraded') > 0, 'the outside saw pings from h1\'s own address');
  t.equal(await counted(outside, 'overlay'), 0, 'and none from an overlay address');

  // --- a restart re-applies the exposure, even after a firewall flush in between
  t.equal((await h1.weave(['stop'])).code, 0, 'stop h1');
  await sh(h1, ['nft', 'delete', 'table', 'ip', 'weave-expose']);
  await sh(h1, ['ip', 'addr', 'del', `${hostIp}/12`, 'dev', 'weave']);
  const relaunch = await h1.weave(['launch', '--nickname', 'h1', h2.address]);
  t.equal(relaunch.code, 0, `relaunch h1: ${relaunch.stderr.trim()}`);
  t.ok((await bridgeAddresses(h1)).includes(`${hostIp}/12`), 'the address is back on the bridge');
  t.equal(await sh(h1, ['nft', '-s', 'list', 'ruleset']), rulesetExposed, 'the firewall is as before the restart');
  await waitFor(() => pingOnce(['ip', 'netns', 'exec', c1.ns], OUTSIDE_IP), { what: `c1 pings ${OUTSIDE_IP} after the restart`, timeoutMs: 20_000 });
  t.pass('NAT works after the restart');

  // --- hide
  const bad = await h1.weave(['hide', '172.31.254.1']);
  t.not(bad.code, 0, 'hiding an address that is not exposed fails');
  t.match(bad.stderr, /172\.31\.254\.1.* is not exposed \(exposed: /, `clear error: ${bad.stderr.trim()}`);
  const hidden = await h1.weave(['hide']);
  t.equal(hidden.code, 0, `weave hide: ${hidden.stderr.trim()}`);
  t.equal(hidden.stdout.trim(), hostIp, 'hide prints what it removed');
  t.same(await bridgeAddresses(h1), addressesBefore, 'the bridge has exactly its addresses from before expose');
  t.equal(await sh(h1, ['nft', '-s', 'list', 'ruleset']), rulesetBefore, 'the firewall is exactly as before expose');
  t.equal(await ipForward(h1), forwardBefore, 'ip_forward is back off');
  t.same((await ipamStatus(h1)).allocations.filter((a) => a.container === 'weave:expose'), [], 'IPAM released the address');
  t.notOk(await pingOnce(['ip', 'netns', 'exec', c1.ns], OUTSIDE_IP), 'without NAT the outside is unreachable again');
  t.equal((await h1.weave(['hide'])).code, 0, 'hiding again is not an error');

  // --- reset h2: refused while a container is attached, then hands its space to h1
  const owners = (s: IpamStatus): number => s.peers.filter((p) => p.owned > 0).length;
  await waitFor(async () => owners(await ipamStatus(h1)) === 2, { what: 'h1 and h2 both own space', timeoutMs: 20_000 });
  const refused = await h2.weave(['reset']);
  t.not(refused.code, 0, 'reset refuses while a container is attached');
  t.match(refused.stderr, /1 container is still attached .*weave reset --force/, `clear error: ${refused.stderr.trim()}`);
  t.equal((await h2.weave(['status'])).code, 0, 'and h2 still runs');
  t.equal((await h2.weave(['detach', `netns:${c2.ns}`])).code, 0, 'detach c2');
  const reset = await h2.weave(['reset']);
  t.equal(reset.code, 0, `weave reset: ${reset.stderr.trim()}`);
  t.match(reset.stdout, /addresses handed to /, `reset says where the space went: ${reset.stdout.trim()}`);
  const status = await waitFor(async () => {
    const s = await ipamStatus(h1);
    const self = s.peers.find((p) => p.self);
    return self?.owned === RANGE_SIZE && owners(s) === 1 ? s : null;
  }, { what: 'h1 owns the whole range', timeoutMs: 20_000, detail: async () => JSON.stringify((await ipamStatus(h1)).peers) });
  t.equal(status.peers.find((p) => p.self)?.owned, RANGE_SIZE, 'h1 owns every address');
  t.not((await h2.weave(['status'])).code, 0, 'h2 is stopped');
  t.notOk(h2.pids().length > 0, 'no process left in h2');
  t.notOk(existsSync(h2.datadir), `h2's data directory is gone (${reset.stderr.trim()})`);
});
