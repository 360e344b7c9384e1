// End-to-end test of host plumbing and container attachment in real network
// namespaces: one namespace acts as the host (bridge `weave`, a TAP, the
// ContainerManager's commands run there through NetnsCommandRunner), others act
// as containers (netns:NAME). Checks pings over the bridge, refusals that leave
// nothing behind, exact detach, restore after a "daemon restart", and that a
// foreign drop-policy forward chain does not break bridge-local traffic.
// Needs root; touches only namespaces with this run's unique prefix.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecCommandRunner, NetnsCommandRunner } from '../../router/host/command-runner';
import { ContainerManager } from '../../router/host/container-manager';
import { STATE_FILE } from '../../router/host/container-state';
import { ensureBridgeForwarding, removeBridgeForwarding } from '../../router/host/bridge-firewall';
import { ensureBridge, removeBridge } from '../../router/host/host-bridge';
import { detectUnderlayMtu } from '../../router/host/host-link';
import { silentLogger } from '../../common/logger';
import { run } from '../../scripts/command';

t.setTimeout(120_000);

const PREFIX = `wva${randomBytes(2).toString('hex')}-`;
const HOST = `${PREFIX}host`;
const C1 = `${PREFIX}c1`;
const C2 = `${PREFIX}c2`;
const C3 = `${PREFIX}c3`;
const BRIDGE = 'weave';
const TAP = 'wvtap0';
const MTU = 1376;

async function ns(name: string, argv: string[], check = true): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await run(['ip', 'netns', 'exec', name, ...argv], { timeoutMs: 20_000 });
  if (check && r.code !== 0) throw new Error(`${name}: ${argv.join(' ')} failed: ${r.stderr.trim()}`);
  return r;
}

function ping(from: string, to: string): Promise<{ code: number }> {
  return ns(from, ['ping', '-c', '1', '-W', '1', to], false);
}

/** Link names in a namespace, sorted. */
async function links(name: string): Promise<string[]> {
  const r = await ns(name, ['ip', '-j', 'link', 'show']);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
}

/** "ifname addr/prefix" for every address in a namespace, sorted (link-local IPv6 excluded: it comes and goes with links). */
async function addrs(name: string): Promise<string[]> {
  const r = await ns(name, ['ip', '-j', 'addr', 'show']);
  const out: string[] = [];
  for (const l of JSON.parse(r.stdout) as { ifname: string; addr_info?: { local: string; prefixlen: number; scope: string }[] }[]) {
    for (const a of l.addr_info ?? []) if (!a.local.startsWith('fe80:')) out.push(`${l.ifname} ${a.local}/${a.prefixlen}`);
  }
  return out.sort();
}

const datadir = mkdtempSync(join(tmpdir(), 'weave-attach-'));
const hostRunner = new NetnsCommandRunner(new ExecCommandRunner(), HOST);

function newManager(bridge = BRIDGE): ContainerManager {
  return new ContainerManager(
    { runner: hostRunner, docker: null, logger: silentLogger },
    { bridge, mtu: MTU, overlayRoutes: ['10.32.0.0/12'], datadir, hostNetns: `/var/run/netns/${HOST}` },
  );
}

t.teardown(async () => {
  for (const n of [C1, C2, C3, HOST]) await run(['ip', 'netns', 'del', n]);
  rmSync(datadir, { recursive: true, force: true });
  const left = await run(['ip', 'netns', 'list']);
  if (left.stdout.includes(PREFIX)) process.stderr.write(`attach.test: namespaces left behind:\n${left.stdout}\n`);
});

t.before(async () => {
  for (const n of [HOST, C1, C2, C3]) {
    const r = await run(['ip', 'netns', 'add', n]);
    if (r.code !== 0) throw new Error(`ip netns add ${n}: ${r.stderr}`);
    await ns(n, ['ip', 'link', 'set', 'lo', 'up']);
  }
  // Bridged frames go through the ip/inet forward hooks, as on a typical host (per-namespace sysctl).
  await ns(HOST, ['sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1']);
  await ns(HOST, ['ip', 'tuntap', 'add', TAP, 'mode', 'tap']);
});

t.test('bridge setup is idempotent and refuses bad input', async (t) => {
  const first = await ensureBridge({ bridge: BRIDGE, tap: TAP, mtu: MTU }, hostRunner);
  t.equal(first.created, true);
  const second = await ensureBridge({ bridge: BRIDGE, tap: TAP, mtu: MTU }, hostRunner);
  t.equal(second.created, false, 'second call finds the bridge');
  const br = JSON.parse((await ns(HOST, ['ip', '-j', '-d', 'link', 'show', BRIDGE])).stdout) as { mtu: number; flags: string[]; linkinfo: { info_kind: string } }[];
  t.equal(br[0]?.linkinfo.info_kind, 'bridge');
  t.equal(br[0]?.mtu, MTU);
  t.ok(br[0]?.flags.includes('UP'), 'bridge up');
  const tap = JSON.parse((await ns(HOST, ['ip', '-j', 'link', 'show', TAP])).stdout) as { mtu: number; master?: string; flags: string[] }[];
  t.equal(tap[0]?.master, BRIDGE, 'TAP enslaved');
  t.equal(tap[0]?.mtu, MTU);
  t.ok(tap[0]?.flags.includes('UP'), 'TAP up');

  const before = await links(HOST);
  await t.rejects(ensureBridge({ bridge: 'weave two', tap: TAP, mtu: MTU }, hostRunner), /bridge name must be/);
  await t.rejects(ensureBridge({ bridge: 'x'.repeat(16), tap: TAP, mtu: MTU }, hostRunner), /bridge name must be/);
  await t.rejects(ensureBridge({ bridge: 'wvbr2', tap: TAP, mtu: 20 }, hostRunner), /MTU must be/);
  await t.rejects(ensureBridge({ bridge: 'wvbr2', tap: 'nosuchtap', mtu: MTU }, hostRunner), /TAP device nosuchtap does not exist/);
  await t.rejects(ensureBridge({ bridge: 'lo', tap: TAP, mtu: MTU }, hostRunner), /not a bridge/);
  await t.rejects(ensureBridge({ bridge: 'wvbr2', tap: TAP, mtu: MTU }, hostRunner), /already a port of weave/);
  t.same(await links(HOST), before, 'refusals created no link');
});

t.test('underlay MTU: default route interface, else largest up interface', async (t) => {
  // The host namespace has no default route and only lo, the bridge and the TAP up.
  t.equal(await detectUnderlayMtu(hostRunner), MTU, 'largest up non-loopback');
  await ns(HOST, ['ip', 'link', 'add', 'wvul0', 'mtu', '1420', 'type', 'veth', 'peer', 'name', 'wvul1', 'mtu', '1420']);
  await ns(HOST, ['ip', 'link', 'set', 'wvul0', 'up']);
  await ns(HOST, ['ip', 'link', 'set', 'wvul1', 'up']);
  await ns(HOST, ['ip', 'addr', 'add', '192.168.77.1/24', 'dev', 'wvul0']);
  await ns(HOST, ['ip', 'route', 'add', 'default', 'via', '192.168.77.2', 'dev', 'wvul0']);
  t.equal(await detectUnderlayMtu(hostRunner), 1420, 'interface of the default route');
  await ns(HOST, ['ip', 'link', 'del', 'wvul0']);
});

t.test('attach, ping, ps, refusals, detach', async (t) => {
  const m = newManager();
  const pristineHostLinks = await links(HOST);
  const pristineC2 = { links: await links(C2), addrs: await addrs(C2) };

  const a1 = await m.attach(`netns:${C1}`, ['10.32.1.1/12']);
  const a2 = await m.attach(`netns:${C2}`, ['10.32.1.2/12']);
  t.equal(a1.ifname, 'ethwe');
  t.same(a1.addresses, ['10.32.1.1/12']);
  t.match(a1.hostIfname, /^vethwens[0-9a-f]{7}$/);

  t.equal((await ping(C1, '10.32.1.2')).code, 0, 'c1 -> c2 over the bridge');
  t.equal((await ping(C2, '10.32.1.1')).code, 0, 'c2 -> c1 over the bridge');

  const routes = (await ns(C1, ['ip', 'route', 'show', 'dev', 'ethwe'])).stdout;
  t.match(routes, /^10\.32\.0\.0\/12 /m, 'overlay route');
  t.match(routes, /^224\.0\.0\.0\/4 /m, 'multicast route');
  const eth = JSON.parse((await ns(C1, ['ip', '-j', 'link', 'show', 'ethwe'])).stdout) as { mtu: number; address: string; flags: string[] }[];
  t.equal(eth[0]?.mtu, MTU, 'ethwe MTU');
  t.ok(eth[0]?.flags.includes('UP'), 'ethwe up');
  const veth = JSON.parse((await ns(HOST, ['ip', '-j', 'link', 'show', a1.hostIfname])).stdout) as { mtu: number; master: string }[];
  t.equal(veth[0]?.master, BRIDGE, 'host end on the bridge');
  t.equal(veth[0]?.mtu, MTU, 'host end MTU');

  const ps = m.list();
  t.equal(ps.length, 2);
  t.same(ps.map((c) => [c.id, c.name, c.addresses]), [[`netns:${C1}`, C1, ['10.32.1.1/12']], [`netns:${C2}`, C2, ['10.32.1.2/12']]]);
  t.equal(ps[0]?.mac, eth[0]?.address, 'ps shows the MAC of ethwe');
  t.match(ps[1]?.mac ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);

  await t.test('refusals leave nothing behind', async (t) => {
    const hostBefore = await links(HOST);
    const c3Before = { links: await links(C3), addrs: await addrs(C3) };
    await t.rejects(m.attach(`netns:${C3}`, ['10.32.1.1/12']), { message: /10\.32\.1\.1 is already attached to netns:.*c1/ });
    await t.rejects(m.attach(`netns:${C3}`, ['10.32.0.0/12']), { message: /network address/ });
    await t.rejects(m.attach(`netns:${C3}`, ['10.47.255.255/12']), { message: /broadcast address/ });
    await t.rejects(m.attach(`netns:${C3}`, ['10.32.1.300/12']), { message: /IPv4 CIDR/ });
    await t.rejects(m.attach(`netns:${C3}`, []), { message: /an address is required/ });
    await t.rejects(m.attach(`netns:${PREFIX}nosuch`, ['10.32.1.3/12']), { message: /no network namespace named/ });
    await t.rejects(m.attach('pid:4000000', ['10.32.1.3/12']), { message: /no process with pid 4000000/ });
    await t.rejects(m.attach('some-container', ['10.32.1.3/12']), { message: /Docker is not available/ });
    await t.rejects(m.attach('netns:../etc', ['10.32.1.3/12']), { message: /netns:NAME needs/ });
    t.same(await links(HOST), hostBefore, 'no veth left in the host');
    t.same({ links: await links(C3), addrs: await addrs(C3) }, c3Before, 'nothing in c3');
  });

  await t.test('a failure midway is rolled back', async (t) => {
    const hostBefore = await links(HOST);
    const c3Before = { links: await links(C3), addrs: await addrs(C3) };
    // The veth is created, then enslaving it to a missing bridge fails.
    const broken = newManager('wvnosuchbr');
    await t.rejects(broken.attach(`netns:${C3}`, ['10.32.1.3/12']), { message: /wvnosuchbr/ });
    t.same(await links(HOST), hostBefore, 'veth deleted again');
    t.same({ links: await links(C3), addrs: await addrs(C3) }, c3Before, 'no ethwe in c3');
  });

  await t.test('attaching again adds addresses; partial detach removes only those', async (t) => {
    const again = await m.attach(`netns:${C1}`, ['10.32.1.11/12', '10.32.1.1/12']);
    t.same(again.addresses, ['10.32.1.1/12', '10.32.1.11/12']);
    t.equal((await ping(C2, '10.32.1.11')).code, 0, 'new address answers');
    await t.rejects(m.attach(`netns:${C1}`, ['10.32.1.1/24']), { message: /already has 10\.32\.1\.1\/12/ });
    await t.rejects(m.detach(`netns:${C1}`, ['10.32.1.99/12']), { message: /not attached to netns/ });
    const res = await m.detach(`netns:${C1}`, ['10.32.1.11/12']);
    t.same(res.removed, ['10.32.1.11/12']);
    t.equal(res.detached, false);
    t.same((await addrs(C1)).filter((a) => a.startsWith('ethwe')), ['ethwe 10.32.1.1/12']);
    t.equal((await ping(C2, '10.32.1.1')).code, 0, 'remaining address still answers');
    t.match((await ns(C1, ['ip', 'route', 'show', 'dev', 'ethwe'])).stdout, /^224\.0\.0\.0\/4 /m, 'routes kept');
  });

  await t.test('detach removes exactly what attach made', async (t) => {
    const hostBefore = await links(HOST);
    const res = await m.detach(`netns:${C2}`);
    t.equal(res.detached, true);
    t.same(res.removed, ['10.32.1.2/12']);
    t.same(await links(HOST), hostBefore.filter((l) => l !== a2.hostIfname), 'only the veth of c2 is gone from the host');
    t.same(await links(HOST), pristineHostLinks.concat(a1.hostIfname).sort(), 'host is as before c2 was attached');
    t.same({ links: await links(C2), addrs: await addrs(C2) }, pristineC2, 'c2 is as before');
    t.same(m.list().map((c) => c.id), [`netns:${C1}`]);
    await t.rejects(m.detach(`netns:${C2}`), { message: /is not attached/ });
    t.not((await ping(C1, '10.32.1.2')).code, 0, 'c2 no longer reachable');
    // Its address is free again.
    const back = await m.attach(`netns:${C2}`, ['10.32.1.2/12']);
    t.equal(back.hostIfname, a2.hostIfname, 'stable veth name');
    t.equal((await ping(C1, '10.32.1.2')).code, 0, 'reattached');
  });

  await t.test('a restarted manager restores what is still there', async (t) => {
    const saved = JSON.parse(readFileSync(join(datadir, STATE_FILE), 'utf8')) as { containers: unknown[] };
    t.equal(saved.containers.length, 2, 'both recorded');
    const m2 = newManager();
    const restored = await m2.restore();
    t.same(restored.map((c) => c.id).sort(), [`netns:${C1}`, `netns:${C2}`]);
    await t.rejects(m2.attach(`netns:${C3}`, ['10.32.1.2/12']), { message: /already attached/ }, 'restored addresses are taken');
    // The veth of c2 disappears while no daemon runs.
    await ns(HOST, ['ip', 'link', 'del', a2.hostIfname]);
    const m3 = newManager();
    t.same((await m3.restore()).map((c) => c.id), [`netns:${C1}`], 'entry without veth dropped');
    const after = JSON.parse(readFileSync(join(datadir, STATE_FILE), 'utf8')) as { containers: { id: string }[] };
    t.same(after.containers.map((c) => c.id), [`netns:${C1}`], 'record rewritten');
  });
});

t.test('a foreign drop-policy forward chain does not break bridge-local traffic', async (t) => {
  const m = newManager();
  await m.restore();
  await m.attach(`netns:${C2}`, ['10.32.1.2/12']);
  t.equal((await ns(HOST, ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])).stdout.trim(), '1', 'bridged frames traverse the inet hooks');
  // Start from a clean firewall, then add what other software might.
  await removeBridgeForwarding({ bridge: BRIDGE }, hostRunner);
  const foreign = [
    'table inet filter {',
    '  chain forward { type filter hook forward priority 0; policy drop; }',
    '}',
    // An accept in a table of our own, at an earlier priority: not enough.
    'table inet wvown {',
    `  chain forward { type filter hook forward priority -10; iifname "${BRIDGE}" oifname "${BRIDGE}" accept; }`,
    '}',
  ].join('\n');
  const load = await run(['ip', 'netns', 'exec', HOST, 'nft', '-f', '-'], { input: foreign + '\n' });
  t.equal(load.code, 0, `foreign ruleset loaded ${load.stderr}`);
  t.not((await ping(C1, '10.32.1.2')).code, 0, 'dropped: an accept in another table does not overrule a drop');

  const res = await ensureBridgeForwarding({ bridge: BRIDGE, tap: TAP }, hostRunner);
  t.same(res.failed, []);
  t.ok(res.inserted.some((c) => c.family === 'inet' && c.table === 'filter' && c.chain === 'forward'), 'rule put into the foreign chain');
  t.equal((await ping(C1, '10.32.1.2')).code, 0, 'bridge-local traffic flows with the foreign drop policy');
  t.equal((await ping(C2, '10.32.1.1')).code, 0, 'both ways');
  const again = await ensureBridgeForwarding({ bridge: BRIDGE, tap: TAP }, hostRunner);
  t.same(again.inserted, [], 'idempotent');

  // A bridge-family drop chain sees the ports, not the bridge.
  const bridgeDrop = 'table bridge wvbf {\n  chain forward { type filter hook forward priority 0; policy drop; }\n}\n';
  t.equal((await run(['ip', 'netns', 'exec', HOST, 'nft', '-f', '-'], { input: bridgeDrop })).code, 0);
  t.not((await ping(C1, '10.32.1.2')).code, 0, 'bridge-family drop bites');
  const res2 = await ensureBridgeForwarding({ bridge: BRIDGE, tap: TAP }, hostRunner);
  t.same(res2.inserted.map((c) => `${c.family} ${c.table}`), ['bridge wvbf']);
  t.equal((await ping(C1, '10.32.1.2')).code, 0, 'flows through the bridge-family chain too');

  // Traffic that is not bridge-local is still dropped: we opened only our bridge.
  await ns(HOST, ['ip', 'link', 'add', 'wvother', 'type', 'bridge']);
  const rules = (await ns(HOST, ['nft', 'list', 'chain', 'inet', 'filter', 'forward'])).stdout;
  t.match(rules, /iifname "weave" oifname "weave" accept comment "weave:weave"/);
  t.match(rules, /policy drop/, 'foreign policy untouched');

  // Removal deletes exactly our rules.
  t.equal(await removeBridgeForwarding({ bridge: BRIDGE }, hostRunner), 3);
  const left = (await ns(HOST, ['nft', 'list', 'ruleset'])).stdout;
  t.notMatch(left, /weave:weave/, 'our rules gone');
  t.match(left, /table inet filter/, 'foreign tables stay');
  t.match(left, /table bridge wvbf/);
  await ns(HOST, ['nft', 'delete', 'table', 'inet', 'wvown']);
  await ns(HOST, ['ip', 'link', 'del', 'wvother']);
  await ensureBridgeForwarding({ bridge: BRIDGE, tap: TAP }, hostRunner);
  t.equal((await ping(C1, '10.32.1.2')).code, 0, 'open again');

  await t.test('removeBridge deletes the bridge and our rules, keeps the TAP', async (t) => {
    await m.detach(`netns:${C1}`);
    await m.detach(`netns:${C2}`);
    await removeBridge({ bridge: BRIDGE }, hostRunner);
    const l = await links(HOST);
    t.notOk(l.includes(BRIDGE), 'bridge gone');
    t.ok(l.includes(TAP), 'TAP kept (the data path owns it)');
    t.notMatch((await ns(HOST, ['nft', 'list', 'ruleset'])).stdout, /weave:weave/);
    t.same(l.filter((x) => x.startsWith('vethwe')), [], 'no veth left');
    await removeBridge({ bridge: BRIDGE }, hostRunner);
    t.pass('second removeBridge is a no-op');
  });
});
