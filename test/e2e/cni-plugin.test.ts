// End-to-end test of the weave-net CNI plugin driven the way libcni drives
// it (scripts/cni-driver.ts: CNI_* variables in an environment of their own,
// the config on stdin), installed by `weave setup-cni` into a temporary
// directory, against routers in simulated hosts. h1 runs a normal router; h2
// runs one launched alone with --ipalloc-init consensus=2, so its IPAM waits
// forever. Containers are plain namespaces. Covers ADD/CHECK/DEL, DEL twice,
// DEL after the namespace is gone, a router restart in between, version
// negotiation and result shapes, delegated IPAM (host-local), GC and STATUS,
// and that every error path answers with the spec's error object.
// Needs root; removes its namespaces, hosts and files even on failure.

import t from 'tap';
import type { Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../cli/api-client';
import { aptInstall } from '../../scripts/apt';
import { run } from '../../scripts/command';
import { type CniInvocation, type CniOutcome, runCniPlugin } from '../../scripts/cni-driver';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(600_000);

type Inv = Omit<CniInvocation, 'config'> & { config?: unknown };

/** The spec's error object: cniVersion, a numeric code, a message; and a non-zero exit. */
function assertSpecError(t: Test, r: CniOutcome, code: number, msg: RegExp, what: string): void {
  t.not(r.code, 0, `${what}: non-zero exit`);
  t.ok(r.json !== null, `${what}: JSON on stdout (${r.stdout.slice(0, 200)})`);
  t.type(r.json?.['cniVersion'], 'string', `${what}: cniVersion`);
  t.equal(r.json?.['code'], code, `${what}: code ${code} (${String(r.json?.['msg'])})`);
  t.match(String(r.json?.['msg']), msg, `${what}: message`);
}

t.test('the weave-net plugin, driven as libcni drives it', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const dir = mkdtempSync(join(tmpdir(), 'weave-cni-plugin-'));
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
    await net.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  const launch1 = await h1.weave(['launch', '--nickname', 'h1']);
  t.equal(launch1.code, 0, `launch h1: ${launch1.stderr.trim()}`);
  // Alone with a quorum of 2: its IPAM waits for a peer that never comes.
  const launch2 = await h2.weave(['launch', '--nickname', 'h2', '--ipalloc-init', 'consensus=2']);
  t.equal(launch2.code, 0, `launch h2: ${launch2.stderr.trim()}`);

  const setup = await h1.weave(['setup-cni', '--bin-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'conf')]);
  t.equal(setup.code, 0, `setup-cni: ${setup.stderr.trim()}`);
  const plugin = join(dir, 'bin', 'weave-net');
  const conflist = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(join(dir, 'conf', '10-weave.conflist'), 'utf8'))) as {
    cniVersion: string; name: string; plugins: Record<string, unknown>[];
  };
  t.equal(conflist.name, 'weave');
  t.equal(conflist.plugins[0]?.['type'], 'weave-net');
  t.equal(conflist.plugins[0]?.['socket'], h1.apiSocket, 'the conflist names h1\'s socket, resolved at install time');
  const conf = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ cniVersion: '1.0.0', name: 'weave', ...conflist.plugins[0], ...extra });
  const api1 = new ApiClient(h1.apiSocket);

  const cni = (inv: Inv): Promise<CniOutcome> => runCniPlugin(plugin, { config: conf(), ...inv });
  const newNs = async (key: string): Promise<string> => {
    const ns = `${net.prefix}${key}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    return `/var/run/netns/${ns}`;
  };
  const inNs = (nsPath: string, cmd: string[]) => run(['nsenter', `--net=${nsPath}`, ...cmd], { timeoutMs: 20_000 });
  const ipamOf = async (id: string): Promise<string[]> => (await api1.get<{ addresses: string[] }>(`/ipam/containers/${id}`)).addresses;
  const hostLinks = async (): Promise<string> => (await h1.exec(['ip', '-o', 'link', 'show'])).stdout;

  // The first ADD settles IPAM's ring (h1 alone, quorum 1); later ones are quick.
  const nsA = await newNs('a');
  const addA = await waitFor(async () => {
    const r = await cni({ command: 'ADD', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', args: 'IgnoreUnknown=1;K8S_POD_NAME=pod-a' });
    return r.code === 0 ? r : null;
  }, { what: 'the first ADD on h1', timeoutMs: 60_000, intervalMs: 500, detail: () => h1.readLog() });

  await t.test('ADD: a 1.0.0 result, the interface, routes and DNS name in place', async (t) => {
    const res = addA.json as { cniVersion: string; interfaces: { name: string; mac: string; sandbox: string }[]; ips: Record<string, unknown>[]; routes: { dst: string }[]; dns: { nameservers: string[]; search: string[] } };
    t.equal(res.cniVersion, '1.0.0');
    t.same(res.interfaces.map((i) => [i.name, i.sandbox]), [['eth0', nsA]]);
    t.match(res.interfaces[0]?.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    t.equal(res.ips.length, 1);
    t.match(res.ips[0]?.['address'], /^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/, 'an address from weave IPAM');
    t.equal(res.ips[0]?.['interface'], 0);
    t.notOk('version' in (res.ips[0] ?? {}), '1.0.0 ips carry no version');
    t.ok(res.routes.some((r) => r.dst === '10.32.0.0/12') && res.routes.some((r) => r.dst === '224.0.0.0/4'), `routes ${JSON.stringify(res.routes)}`);
    t.match(res.dns.nameservers[0], /^169\.254\.\d+\.\d+$/);
    t.same(res.dns.search, ['weave.local']);
    const addr = String(res.ips[0]?.['address']);
    t.match((await inNs(nsA, ['ip', 'addr', 'show', 'dev', 'eth0'])).stdout, new RegExp(`inet ${addr.replace(/\./g, '\\.')} `));
    t.match((await inNs(nsA, ['ip', 'link', 'show', 'dev', 'eth0'])).stdout, new RegExp(`link/ether ${res.interfaces[0]?.mac ?? 'x'}`));
    t.same(await ipamOf('ctr-a'), [addr], 'IPAM holds it under the container id');
    const dig = await waitFor(async () => {
      const r = await inNs(nsA, ['dig', '+short', '+time=1', '+tries=1', `@${res.dns.nameservers[0] ?? ''}`, 'pod-a.weave.local']);
      return r.stdout.trim() === addr.split('/')[0] ? r : null;
    }, { what: 'pod-a.weave.local to resolve', timeoutMs: 15_000, intervalMs: 300 });
    t.ok(dig, 'K8S_POD_NAME is registered in weave DNS');
    const check = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    t.equal(check.code, 0, `CHECK passes: ${check.stdout}`);
    t.equal(check.stdout, '', 'CHECK prints nothing on success');
    const ps = await h1.weave(['ps']);
    const mac = res.interfaces[0]?.mac ?? 'x';
    t.match(ps.stdout, new RegExp(`^cni:ctr-a/eth0 pod-a cni ${mac} ${addr.replace(/\./g, '\\.')}$`, 'm'), `weave ps lists it: ${ps.stdout}`);
  });

  await t.test('two containers on one host reach each other over the bridge', async (t) => {
    const nsB = await newNs('b');
    const b = await cni({ command: 'ADD', containerId: 'ctr-b', netns: nsB, ifName: 'eth0' });
    t.equal(b.code, 0, b.stdout);
    const addrA = String((addA.json?.['ips'] as { address: string }[])[0]?.address).split('/')[0] ?? '';
    t.equal((await inNs(nsB, ['ping', '-c', '1', '-W', '2', addrA])).code, 0, 'b pings a');
    const del = await cni({ command: 'DEL', containerId: 'ctr-b', netns: nsB, ifName: 'eth0' });
    t.equal(del.code, 0, del.stdout);
  });

  await t.test('CHECK finds drift, and a missing attachment', async (t) => {
    const addr = String((addA.json?.['ips'] as { address: string }[])[0]?.address);
    // Another address holds the routes while ours is away: the kernel flushes a device's routes with its last IPv4 address.
    await inNs(nsA, ['ip', 'addr', 'add', '192.0.2.99/32', 'dev', 'eth0']);
    await inNs(nsA, ['ip', 'addr', 'del', addr, 'dev', 'eth0']);
    const drift = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    assertSpecError(t, drift, 100, /lacks address/, 'CHECK after the address was removed');
    await inNs(nsA, ['ip', 'addr', 'add', addr, 'dev', 'eth0']);
    await inNs(nsA, ['ip', 'addr', 'del', '192.0.2.99/32', 'dev', 'eth0']);
    const healed = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    t.equal(healed.code, 0, `CHECK passes again once the address is back: ${healed.stdout}`);
    await inNs(nsA, ['ip', 'route', 'del', '224.0.0.0/4', 'dev', 'eth0']);
    const noRoute = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    assertSpecError(t, noRoute, 100, /route 224\.0\.0\.0\/4 via eth0 is missing/, 'CHECK after a route was removed');
    await inNs(nsA, ['ip', 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    const none = await cni({ command: 'CHECK', containerId: 'ctr-none', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    assertSpecError(t, none, 3, /no weave-net attachment/, 'CHECK of a container never added');
    const noPrev = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0' });
    assertSpecError(t, noPrev, 7, /prevResult/, 'CHECK without prevResult');
    const old = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ cniVersion: '0.3.1', prevResult: addA.json }) });
    assertSpecError(t, old, 1, /CHECK is not part of CNI 0\.3\.1/, 'CHECK with a 0.3.1 config');
  });

  await t.test('a router restart loses nothing: CHECK passes after, DEL frees', async (t) => {
    const stop = await h1.weave(['stop'], { timeoutMs: 20_000 });
    t.equal(stop.code, 0, stop.stderr);
    const down = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    assertSpecError(t, down, 11, /weave router is not running/, 'CHECK while the router is down');
    const relaunch = await h1.weave(['launch', '--nickname', 'h1']);
    t.equal(relaunch.code, 0, relaunch.stderr);
    const check = await cni({ command: 'CHECK', containerId: 'ctr-a', netns: nsA, ifName: 'eth0', config: conf({ prevResult: addA.json }) });
    t.equal(check.code, 0, `CHECK after the restart: ${check.stdout}`);
    const addr = String((addA.json?.['ips'] as { address: string }[])[0]?.address);
    t.match((await h1.weave(['ps'])).stdout, /^cni:ctr-a\/eth0 pod-a cni /m, 'weave ps lists it after the restart');
    t.same(await ipamOf('ctr-a'), [addr], 'IPAM still holds the address');
    const lookup = await h1.weave(['dns-lookup', 'pod-a']);
    t.match(lookup.stdout, addr.split('/')[0] ?? 'x', 'the name is back in DNS');
    const del = await cni({ command: 'DEL', containerId: 'ctr-a', netns: nsA, ifName: 'eth0' });
    t.equal(del.code, 0, del.stdout);
    t.equal(del.stdout, '');
    t.same(await ipamOf('ctr-a'), [], 'address released');
    t.notMatch((await inNs(nsA, ['ip', 'link'])).stdout, /eth0/, 'interface gone');
    t.notMatch(await hostLinks(), /vethwec/, 'host end gone');
    t.notMatch((await h1.weave(['dns-lookup', 'pod-a'])).stdout, /\d+\.\d+\.\d+\.\d+/, 'name gone');
    t.notMatch((await h1.weave(['ps'])).stdout, /cni:ctr-a/, 'gone from weave ps');
    const again = await cni({ command: 'DEL', containerId: 'ctr-a', netns: nsA, ifName: 'eth0' });
    t.equal(again.code, 0, 'DEL twice succeeds');
    const never = await cni({ command: 'DEL', containerId: 'ctr-never', ifName: 'eth0', env: { CNI_NETNS: undefined } });
    t.equal(never.code, 0, 'DEL of something never added, without CNI_NETNS, succeeds');
  });

  await t.test('DEL after the namespace is gone, before and across a restart', async (t) => {
    const nsC = await newNs('c');
    const c = await cni({ command: 'ADD', containerId: 'ctr-c', netns: nsC, ifName: 'eth0' });
    t.equal(c.code, 0, c.stdout);
    await run(['ip', 'netns', 'del', `${net.prefix}c`], { check: true });
    const del = await cni({ command: 'DEL', containerId: 'ctr-c', netns: nsC, ifName: 'eth0' });
    t.equal(del.code, 0, del.stdout);
    t.same(await ipamOf('ctr-c'), [], 'address released');

    const nsD = await newNs('d');
    const d = await cni({ command: 'ADD', containerId: 'ctr-d', netns: nsD, ifName: 'eth0' });
    t.equal(d.code, 0, d.stdout);
    t.equal((await h1.weave(['stop'], { timeoutMs: 20_000 })).code, 0);
    await run(['ip', 'netns', 'del', `${net.prefix}d`], { check: true });
    t.equal((await h1.weave(['launch', '--nickname', 'h1'])).code, 0);
    t.same(await ipamOf('ctr-d'), [], 'the restarted router freed the address of the vanished namespace');
    const delD = await cni({ command: 'DEL', containerId: 'ctr-d', netns: nsD, ifName: 'eth0' });
    t.equal(delD.code, 0, `DEL afterwards still succeeds: ${delD.stdout}`);
    t.notMatch(await hostLinks(), /vethwec/, 'no host end left');
  });

  await t.test('version negotiation: VERSION, and results shaped per cniVersion', async (t) => {
    for (const v of ['1.1.0', '1.0.0', '0.4.0', '0.3.1', '0.3.0']) {
      const r = await cni({ command: 'VERSION', config: { cniVersion: v } });
      t.equal(r.code, 0);
      t.equal(r.json?.['cniVersion'], v, `VERSION answers in ${v}`);
      t.same([...(r.json?.['supportedVersions'] as string[])].sort(), ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    }
    const unknown = await cni({ command: 'VERSION', config: 'not json' });
    t.equal(unknown.code, 0, 'VERSION answers whatever it is sent');
    const nsE = await newNs('e');
    for (const v of ['0.3.0', '0.3.1', '0.4.0']) {
      const r = await cni({ command: 'ADD', containerId: `ctr-e${v.replace(/\./g, '')}`, netns: nsE, ifName: `e${v.replace(/\./g, '')}`, config: conf({ cniVersion: v }) });
      // One weave-net interface per container: each version gets its own container id, and is deleted before the next.
      t.equal(r.code, 0, `ADD ${v}: ${r.stdout}`);
      t.equal(r.json?.['cniVersion'], v);
      t.equal((r.json?.['ips'] as Record<string, unknown>[])[0]?.['version'], '4', `${v} ips say their IP version`);
      const del = await cni({ command: 'DEL', containerId: `ctr-e${v.replace(/\./g, '')}`, netns: nsE, ifName: `e${v.replace(/\./g, '')}`, config: conf({ cniVersion: v }) });
      t.equal(del.code, 0);
    }
    const bad = await cni({ command: 'ADD', containerId: 'ctr-x', netns: nsE, ifName: 'eth0', config: conf({ cniVersion: '9.9.9' }) });
    assertSpecError(t, bad, 1, /9\.9\.9.*not supported/, 'an unknown cniVersion');
    t.equal(bad.json?.['cniVersion'], '1.0.0', 'the error is in a version we speak');
  });

  await t.test('delegated IPAM (host-local), GC and STATUS', async (t) => {
    // Debian's containernetworking-plugins has host-local; a fresh machine lacks it
    // unless the podman test ran first, so this test installs it itself.
    if (!existsSync('/usr/lib/cni/host-local')) await aptInstall(['containernetworking-plugins']);
    const nsF = await newNs('f');
    const dataDir = join(dir, 'host-local');
    const ipam = { type: 'host-local', subnet: '10.44.0.0/24', dataDir };
    const path = `${join(dir, 'bin')}:/usr/lib/cni`;
    const add = await cni({ command: 'ADD', containerId: 'ctr-f', netns: nsF, ifName: 'eth0', path, config: conf({ ipam }) });
    t.equal(add.code, 0, add.stdout);
    const ip = String((add.json?.['ips'] as { address: string }[])[0]?.address);
    t.match(ip, /^10\.44\.0\.\d+\/24$/, 'the address host-local gave');
    t.match((await inNs(nsF, ['ip', 'addr', 'show', 'dev', 'eth0'])).stdout, new RegExp(`inet ${ip.replace(/\./g, '\\.')}`));
    t.same(await ipamOf('ctr-f'), [], 'weave IPAM holds nothing for it');
    const del = await cni({ command: 'DEL', containerId: 'ctr-f', netns: nsF, ifName: 'eth0', path, config: conf({ ipam }) });
    t.equal(del.code, 0, del.stdout);
    t.notOk(readdirSync(join(dataDir, 'weave')).some((f) => f.startsWith('10.44.')), 'host-local released its address');

    const nsG = await newNs('g');
    for (const id of ['ctr-g1', 'ctr-g2']) t.equal((await cni({ command: 'ADD', containerId: id, netns: nsG, ifName: id.slice(-2) })).code, 0);
    const gc = await cni({ command: 'GC', config: conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'ctr-g1', ifname: 'g1' }] }) });
    t.equal(gc.code, 0, gc.stdout);
    t.same((await api1.get<{ attachments: { containerId: string }[] }>('/cni')).attachments.map((a) => a.containerId), ['ctr-g1'], 'GC removed the one not listed');
    t.same(await ipamOf('ctr-g2'), [], 'and freed its address');
    const gcAll = await cni({ command: 'GC', config: conf({ cniVersion: '1.1.0' }) });
    assertSpecError(t, gcAll, 7, /valid-attachments/, 'GC without the list of valid attachments');
    t.equal((await cni({ command: 'DEL', containerId: 'ctr-g1', netns: nsG, ifName: 'g1' })).code, 0);
    const status = await cni({ command: 'STATUS', config: conf({ cniVersion: '1.1.0' }) });
    t.equal(status.code, 0, status.stdout);
    const statusDown = await cni({ command: 'STATUS', config: conf({ cniVersion: '1.1.0', socket: '/run/weave/no-such-router.sock' }) });
    assertSpecError(t, statusDown, 50, /not running/, 'STATUS without a router');
  });

  await t.test('every error path answers with a spec-shaped error', async (t) => {
    const ns = await newNs('err');
    const ok = { command: 'ADD' as const, containerId: 'ctr-err', netns: ns, ifName: 'eth0' };
    const cases: [string, Inv, number, RegExp][] = [
      ['unknown CNI_COMMAND', { ...ok, command: 'FROB' as 'ADD' }, 4, /CNI_COMMAND/],
      ['no CNI_CONTAINERID', { ...ok, containerId: undefined }, 4, /container id/],
      ['container id with a slash', { ...ok, containerId: '../etc' }, 4, /container id/],
      ['interface name too long', { ...ok, ifName: 'a-very-long-interface' }, 4, /interface name/],
      ['relative CNI_NETNS', { ...ok, netns: 'var/run/netns/x' }, 4, /absolute path/],
      ['CNI_NETNS with ..', { ...ok, netns: '/var/run/netns/../../etc/passwd' }, 4, /must be plain/],
      ['malformed CNI_ARGS', { ...ok, args: 'K8S_POD_NAME' }, 4, /CNI_ARGS/],
      ['stdin not JSON', { ...ok, config: '{"cniVersion": ' }, 6, /not JSON/],
      ['stdin a JSON array', { ...ok, config: '[]' }, 6, /JSON object/],
      ['stdin over 1 MiB', { ...ok, config: Buffer.alloc(1024 * 1024 + 10, 0x20) }, 6, /over the limit/],
      ['no cniVersion', { ...ok, config: { name: 'weave', type: 'weave-net' } }, 1, /cniVersion null is not supported/],
      ['another plugin type', { ...ok, config: conf({ type: 'bridge' }) }, 7, /"type" must be "weave-net"/],
      ['network name with a space', { ...ok, config: conf({ name: 'we ave' }) }, 7, /network name/],
      ['relative socket', { ...ok, config: conf({ socket: 'weave.sock' }) }, 7, /"socket"/],
      ['ipam type with a slash', { ...ok, config: conf({ ipam: { type: '../../bin/sh' } }) }, 7, /ipam\.type/],
      ['ipam plugin not in CNI_PATH', { ...ok, config: conf({ ipam: { type: 'no-such-ipam' } }) }, 7, /not found in CNI_PATH/],
      ['negative ipamWaitMs', { ...ok, config: conf({ ipamWaitMs: -1 }) }, 7, /ipamWaitMs/],
      ['prevResult not an object', { ...ok, config: conf({ prevResult: 'x' }) }, 7, /prevResult/],
      ['namespace missing', { ...ok, netns: `/var/run/netns/${net.prefix}nosuch` }, 3, /does not exist/],
      ['namespace path to a file', { ...ok, netns: '/etc/hostname' }, 7, /not a network namespace/],
      ['router not running', { ...ok, config: conf({ socket: '/run/weave/no-such-router.sock' }) }, 11, /weave router is not running/],
      ['IPAM waiting for consensus', { ...ok, config: conf({ socket: h2.apiSocket, ipamWaitMs: 1000 }) }, 11, /IPAM is not ready.*(consensus|peer)/i],
    ];
    for (const [what, inv, code, msg] of cases) assertSpecError(t, await cni(inv), code, msg, what);
    t.notMatch(await hostLinks(), /vethwec/, 'no refused ADD left a veth behind');
    t.same(await ipamOf('ctr-err'), [], 'nor an address');
  });
});
