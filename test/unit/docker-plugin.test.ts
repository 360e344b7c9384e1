// The Docker network plugin's handlers with fakes for veths, weave IPAM and
// the engine: every protocol call Docker makes, a container's whole life
// (create, start, stop, restart with the same address and MAC, removal),
// refusals with their Err text, hostile bodies (wrong types, huge strings,
// path tricks, unknown pools) that must give a PluginError and change
// nothing, the record restored after a daemon restart, a network's
// `-o port-security=false` reaching its endpoints, and the socket server
// (HTTP status and {"Err"} for bad requests, oversized bodies).

import t from 'tap';
import type { Test as Tap } from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../common/logger';
import type { DockerContainer, DockerEvent } from '../../router/host/docker-client';
import type { PluginContainer } from '../../router/host/docker-plugin';
import { DockerPlugin, PluginError } from '../../router/host/docker-plugin';
import type { PluginAddressSource } from '../../router/host/docker-plugin-ipam';
import { parsePoolId, RESTART_WINDOW_MS } from '../../router/host/docker-plugin-ipam';
import type { PluginLinks } from '../../router/host/docker-plugin-network';
import { endpointIfnames, macForAddress } from '../../router/host/docker-plugin-network';
import { parsePluginState } from '../../router/host/docker-plugin-state';
import type { PluginCall } from '../../router/host/docker-plugin-wire';
import { PLUGIN_CALLS } from '../../router/host/docker-plugin-wire';
import { DockerPluginServer } from '../../router/api/docker-plugin-server';

const NET = 'a'.repeat(64);
const EP1 = '1'.repeat(64);
const EP2 = '2'.repeat(64);
const C1 = 'c1'.repeat(32);

class FakeLinks implements PluginLinks {
  made = new Set<string>();
  fail = false;
  async create(host: string, peer: string, mac: string): Promise<void> {
    if (this.fail) throw new Error('RTNETLINK answers: Operation not permitted');
    this.made.add(`${host}|${peer}|${mac}`);
  }
  async remove(host: string): Promise<void> {
    for (const m of this.made) if (m.startsWith(`${host}|`)) this.made.delete(m);
  }
}

class FakeIpam implements PluginAddressSource {
  held = new Map<string, string>();
  dying = new Map<string, number>();
  next = 1;
  defaultSubnet(): string { return '10.32.0.0/12'; }
  range(): string { return '10.32.0.0/12'; }
  async allocate(owner: string, subnet: string): Promise<string> {
    const base = subnet.startsWith('10.40.') ? '10.40.0' : '10.32.0';
    const cidr = `${base}.${this.next++}/${subnet.split('/')[1]}`;
    this.held.set(owner, cidr);
    return cidr;
  }
  async claim(owner: string, cidr: string): Promise<string> {
    for (const [o, c] of this.held) if (c === cidr && o !== owner) throw Object.assign(new Error(`${cidr} is held by ${o}`), { code: 'conflict' });
    this.held.set(owner, cidr);
    this.dying.delete(owner);
    return cidr;
  }
  release(owner: string, graceMs: number): void {
    if (graceMs > 0) this.dying.set(owner, graceMs);
    else { this.held.delete(owner); this.dying.delete(owner); }
  }
}

interface Rig {
  plugin: DockerPlugin;
  links: FakeLinks;
  ipam: FakeIpam;
  clock: { ms: number };
  ns: Map<string, string>;
  containers: Map<string, DockerContainer>;
  events: { attached: PluginContainer[]; detached: [PluginContainer, string][] };
  datadir: string;
}

function rig(t: Tap, datadir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-plugin-'))): Rig {
  t.teardown(() => fs.rmSync(datadir, { recursive: true, force: true }));
  const links = new FakeLinks();
  const ipam = new FakeIpam();
  const clock = { ms: 1_000_000 };
  const ns = new Map<string, string>();
  const containers = new Map<string, DockerContainer>();
  const plugin = new DockerPlugin({
    logger: silentLogger, links, addresses: ipam, now: () => clock.ms,
    namespaceId: (p) => ns.get(p) ?? null,
    docker: { inspect: async (id) => containers.get(id) ?? null },
  }, { datadir, overlayRoutes: ['10.32.0.0/12', '169.254.0.0/16'], graceMs: 30_000 });
  const events = { attached: [] as PluginContainer[], detached: [] as [PluginContainer, string][] };
  plugin.addListener({ onAttached: (c) => events.attached.push(c), onDetached: (c, r) => events.detached.push([c, r]) });
  return { plugin, links, ipam, clock, ns, containers, events, datadir };
}

const call = (r: Rig, c: PluginCall, body: unknown): Promise<Record<string, unknown>> => r.plugin.handle(c, body) as Promise<Record<string, unknown>>;

async function refused(t: Tap, p: Promise<unknown>, match: RegExp, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: accepted`);
  } catch (err) {
    t.ok(err instanceof PluginError, `${what}: a PluginError`);
    t.match((err as Error).message, match, what);
  }
}

/** Docker's calls for `docker run --network weave` up to Join, then the start event. */
async function runContainer(t: Tap, r: Rig, ep: string, id: string, pid: number, poolId: string): Promise<string> {
  const { Address } = await call(r, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} }) as { Address: string };
  const created = await call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: ep, Interface: { Address, MacAddress: '' }, Options: {} });
  t.same(created, { Interface: { MacAddress: macForAddress(Address) } }, 'CreateEndpoint answers only the MAC');
  const join = await call(r, 'NetworkDriver.Join', { NetworkID: NET, EndpointID: ep, SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`, Options: {} });
  // As with Docker: the namespace file appears only when the container starts.
  r.ns.set(`/var/run/docker/netns/${ep.slice(0, 12)}`, `4:${pid}`);
  t.equal((join['InterfaceName'] as { SrcName: string }).SrcName, endpointIfnames(ep).peerIfname, 'Join names the peer end');
  r.containers.set(id, { id, name: `box${pid}`, pid, running: true });
  r.ns.set(`/proc/${pid}/ns/net`, `4:${pid}`);
  await r.plugin.onDockerEvent({ action: 'start', id, name: `box${pid}`, timeSec: 0 } as DockerEvent);
  return Address;
}

async function stopContainer(r: Rig, ep: string, id: string, address: string, poolId: string): Promise<void> {
  await call(r, 'NetworkDriver.Leave', { NetworkID: NET, EndpointID: ep });
  await call(r, 'NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: ep });
  await call(r, 'IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address.split('/')[0] });
  const c = r.containers.get(id);
  if (c !== undefined) r.containers.set(id, { ...c, running: false, pid: 0 });
  await r.plugin.onDockerEvent({ action: 'die', id, name: null, timeSec: 0 });
}

t.test('activation, capabilities and the no-op calls', async (t) => {
  const r = rig(t);
  t.same(await call(r, 'Plugin.Activate', {}), { Implements: ['NetworkDriver', 'IpamDriver'] });
  t.same(await call(r, 'NetworkDriver.GetCapabilities', {}), { Scope: 'local', ConnectivityScope: 'global' });
  t.same(await call(r, 'IpamDriver.GetCapabilities', {}), { RequiresMACAddress: false, RequiresRequestReplay: false });
  t.same(await call(r, 'IpamDriver.GetDefaultAddressSpaces', {}), { LocalDefaultAddressSpace: 'weavelocal', GlobalDefaultAddressSpace: 'weaveglobal' });
  for (const c of ['NetworkDriver.DiscoverNew', 'NetworkDriver.DiscoverDelete', 'NetworkDriver.ProgramExternalConnectivity', 'NetworkDriver.RevokeExternalConnectivity'] as const) {
    t.same(await call(r, c, { NetworkID: NET, EndpointID: EP1 }), {}, c);
  }
  t.same(await call(r, 'NetworkDriver.DeleteNetwork', { NetworkID: NET }), {});
});

t.test('pools: default subnet, --subnet inside the range, --ip-range, refusals', async (t) => {
  const r = rig(t);
  const def = await call(r, 'IpamDriver.RequestPool', { AddressSpace: 'weavelocal', Pool: '', SubPool: '', Options: {}, V6: false });
  t.same(def, { PoolID: 'weave:10.32.0.0/12', Pool: '10.32.0.0/12', Data: { 'com.docker.network.gateway': '10.32.0.0/12' } }, 'default pool, gateway that nothing uses');
  const sub = await call(r, 'IpamDriver.RequestPool', { AddressSpace: 'weavelocal', Pool: '10.40.0.0/16', SubPool: '10.40.1.0/24' });
  t.equal(sub['PoolID'], 'weave:10.40.0.0/16:10.40.1.0/24');
  t.same(parsePoolId('weave:10.40.0.0/16:10.40.1.0/24').range.toString(), '10.40.1.0/24');
  await refused(t, call(r, 'IpamDriver.RequestPool', { Pool: '192.168.0.0/24' }), /outside weave's IPAM range 10\.32\.0\.0\/12/, 'subnet outside the range');
  await refused(t, call(r, 'IpamDriver.RequestPool', { Pool: '10.40.0.0/16', SubPool: '10.41.0.0/24' }), /outside --subnet/, 'ip-range outside the subnet');
  await refused(t, call(r, 'IpamDriver.RequestPool', { V6: true }), /IPv4 addresses only/, 'IPv6 pool');
  await refused(t, call(r, 'IpamDriver.RequestPool', { Pool: '10.32.0.5/12' }), /host bits/, 'pool with host bits');
  t.same(await call(r, 'IpamDriver.ReleasePool', { PoolID: 'weave:10.32.0.0/12' }), {});
  await refused(t, call(r, 'IpamDriver.ReleasePool', { PoolID: 'default:10.32.0.0/12' }), /unknown PoolID/, 'foreign pool id');
});

t.test('CreateNetwork wants our IPAM driver and IPv4 only', async (t) => {
  const r = rig(t);
  t.same(await call(r, 'NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: [{ AddressSpace: 'weavelocal', Pool: '10.32.0.0/12', Gateway: '10.32.0.0/12' }], Options: {} }), {});
  await refused(t, call(r, 'NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.18.0.0/16' }] }), /--ipam-driver weave/, 'default IPAM refused');
  await refused(t, call(r, 'NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: [], IPv6Data: [{ AddressSpace: 'weavelocal', Pool: 'fd00::/64' }] }), /IPv4 only/, 'IPv6 refused');
});

t.test('a container\'s life: run, restart with the same address and MAC, removal', async (t) => {
  const r = rig(t);
  const pool = 'weave:10.32.0.0/12';
  const a1 = await runContainer(t, r, EP1, C1, 101, pool);
  t.equal(a1, '10.32.0.1/12');
  t.equal(r.events.attached.length, 1, 'listeners hear of the container at its start');
  t.match(r.events.attached[0], { id: C1, name: 'box101', pid: 101, addresses: ['10.32.0.1/12'] });
  t.same(r.plugin.list().map((e) => e.container), [C1]);
  const join = await call(r, 'NetworkDriver.Join', { NetworkID: NET, EndpointID: EP1, SandboxKey: `/var/run/docker/netns/${EP1.slice(0, 12)}` });
  t.same(join['StaticRoutes'], [{ Destination: '169.254.0.0/16', RouteType: 1 }, { Destination: '224.0.0.0/4', RouteType: 1 }], 'overlay routes but the own subnet (the kernel has it)');
  t.equal(join['DisableGatewayService'], true);
  t.same(await call(r, 'NetworkDriver.EndpointOperInfo', { NetworkID: NET, EndpointID: EP1 }), { Value: { hostIfname: endpointIfnames(EP1).hostIfname, mac: macForAddress(a1) } });

  await stopContainer(r, EP1, C1, a1, pool);
  t.equal(r.events.detached.length, 1, 'detached once, though both DeleteEndpoint and die said so');
  t.equal(r.events.detached[0]?.[1], 'died');
  t.equal(r.links.made.size, 0, 'veth deleted');
  t.ok(r.ipam.dying.has([...r.ipam.held.keys()][0] ?? ''), 'the address is parked in IPAM with a grace period');

  r.clock.ms += 2_000;
  const a2 = await runContainer(t, r, EP2, C1, 102, pool);
  t.equal(a2, a1, 'the restarted container gets its address back');
  t.ok([...r.links.made][0]?.endsWith(macForAddress(a1)), 'and its MAC');
  t.equal(r.ipam.dying.size, 0, 'taken back from the grace period');

  await stopContainer(r, EP2, C1, a2, pool);
  await r.plugin.onDockerEvent({ action: 'destroy', id: C1, name: null, timeSec: 0 });
  t.equal(r.ipam.held.size, 0, 'docker rm frees the parked address at once');
  r.clock.ms += 1_000;
  t.equal(await runContainer(t, r, EP1, 'c2'.repeat(32), 103, pool), '10.32.0.2/12', 'a new container gets a fresh address');
});

t.test('a parked address is reused only within the restart window, and a static --ip is honoured', async (t) => {
  const r = rig(t);
  const pool = 'weave:10.32.0.0/12';
  const a1 = await runContainer(t, r, EP1, C1, 101, pool);
  await stopContainer(r, EP1, C1, a1, pool);
  r.clock.ms += RESTART_WINDOW_MS + 1;
  const fresh = await call(r, 'IpamDriver.RequestAddress', { PoolID: pool });
  t.not(fresh['Address'], a1, 'after the window (and the grace period) a request gets a fresh address');
  const fixed = await call(r, 'IpamDriver.RequestAddress', { PoolID: pool, Address: '10.32.5.5' });
  t.equal(fixed['Address'], '10.32.5.5/12');
  await refused(t, call(r, 'IpamDriver.RequestAddress', { PoolID: pool, Address: '10.32.5.5' }), /in use by another endpoint/, 'the same --ip twice');
  t.same(await call(r, 'IpamDriver.ReleaseAddress', { PoolID: pool, Address: '10.32.5.5' }), {});
  t.notOk([...r.ipam.held.values()].includes('10.32.5.5/12'), 'an address of no known container is freed at once');
  t.same(await call(r, 'IpamDriver.ReleaseAddress', { PoolID: pool, Address: '10.32.9.9' }), {}, 'an unknown address: nothing to do');
});

t.test('refusals: unknown endpoint, no address, veth failure', async (t) => {
  const r = rig(t);
  await refused(t, call(r, 'NetworkDriver.Join', { NetworkID: NET, EndpointID: EP1, SandboxKey: '/var/run/docker/netns/x' }), /no weave endpoint/, 'Join of an unknown endpoint');
  await refused(t, call(r, 'NetworkDriver.Leave', { NetworkID: NET, EndpointID: EP1 }), /no weave endpoint/, 'Leave of an unknown endpoint');
  t.same(await call(r, 'NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: EP1 }), {}, 'DeleteEndpoint of an unknown endpoint is no error');
  await refused(t, call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: {} }), /needs an IPv4 address/, 'no address');
  await refused(t, call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.1/12', AddressIPv6: 'fd00::1/64' } }), /IPv4 only/, 'IPv6');
  r.links.fail = true;
  await refused(t, call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.1/12' } }), /cannot create the veth.*not permitted/, 'veth failure');
  t.same(r.plugin.list(), [], 'nothing recorded');
  r.links.fail = false;
  const given = await call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.1/12', MacAddress: '02:42:AA:BB:CC:DD' } });
  t.same(given, { Interface: {} }, 'a MAC Docker chose is not answered back');
  t.same(await call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.1/12', MacAddress: '02:42:aa:bb:cc:dd' } }), { Interface: {} }, 'a repeated CreateEndpoint is answered alike');
  await refused(t, call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.2/12' } }), /exists already/, 'the same endpoint with another address');
});

t.test('hostile bodies are refused by name and change nothing', async (t) => {
  const r = rig(t);
  const bodies: [PluginCall, unknown, RegExp][] = [
    ['NetworkDriver.CreateEndpoint', null, /must be a JSON object/],
    ['NetworkDriver.CreateEndpoint', [], /must be a JSON object/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: '../../etc', Interface: { Address: '10.32.0.1/12' } }, /hex digits/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.1/12; rm -rf /' } }, /Interface\.Address/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: { Address: '10.32.0.1/12', MacAddress: 'aa:bb' } }, /MacAddress/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: 'x'.repeat(100_000), EndpointID: EP1 }, /over 128/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP1, Interface: 'eth0' }, /must be a JSON object/],
    ['NetworkDriver.Join', { NetworkID: NET, EndpointID: EP1, SandboxKey: 'relative/path' }, /plain absolute path/],
    ['NetworkDriver.Join', { NetworkID: NET, EndpointID: EP1, SandboxKey: '/var/run/../../proc/1/ns/net' }, /plain absolute path/],
    ['NetworkDriver.Join', { NetworkID: NET, EndpointID: EP1, SandboxKey: '/var/run/docker/netns/x\n' }, /plain absolute path/],
    ['NetworkDriver.Join', { NetworkID: NET, EndpointID: EP1, SandboxKey: 42 }, /SandboxKey must be a string/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: 'all' }, /must be a list/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: new Array(100).fill({}) }, /over 16/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: [{ AddressSpace: 'weavelocal', Pool: 'not-a-cidr' }] }, /IPv4Data\.Pool/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': { 'port-secruity': 'false' } } }, /unknown option "port-secruity".*port-security=true\|false/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': { 'port-security': 'no' } } }, /port-security takes true or false, got "no"/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': 'port-security=false' } }, /generic must be an object/],
    ['NetworkDriver.CreateNetwork', { NetworkID: NET, Options: [] }, /Options must be an object/],
    ['NetworkDriver.DeleteNetwork', { NetworkID: 7 }, /NetworkID must be a string/],
    ['NetworkDriver.EndpointOperInfo', {}, /NetworkID must be a string/],
    ['IpamDriver.RequestPool', { Pool: 12 }, /Pool must be a string/],
    ['IpamDriver.RequestAddress', { PoolID: 'weave:10.32.0.0/12', Address: '10.32.0.1/12' }, /without a prefix/],
    ['IpamDriver.RequestAddress', { PoolID: 'weave:10.32.0.0/12:1.2.3.0/24' }, /unknown PoolID/],
    ['IpamDriver.RequestAddress', { PoolID: 'weave:10.32.0.0/12:a:b' }, /unknown PoolID/],
    ['IpamDriver.RequestAddress', { PoolID: 'weave:' + '1'.repeat(200) }, /unknown PoolID/],
    ['IpamDriver.RequestAddress', { Address: '' }, /PoolID must be a string/],
    ['IpamDriver.RequestAddress', { PoolID: 'weave:10.32.0.0/12', Options: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, /65 options, over 64/],
    ['IpamDriver.ReleaseAddress', { PoolID: 'weave:10.32.0.0/12', Address: 'localhost' }, /IPv4 address/],
    ['IpamDriver.ReleasePool', { PoolID: { $ne: 1 } }, /PoolID must be a string/],
  ];
  for (const [c, body, match] of bodies) await refused(t, call(r, c, body), match, `${c} ${JSON.stringify(body).slice(0, 60)}`);
  t.same(r.plugin.list(), [], 'no endpoint recorded');
  t.equal(r.ipam.held.size, 0, 'no address taken');
  t.equal(r.links.made.size, 0, 'no veth made');
  t.equal(PLUGIN_CALLS.length, 19, 'every call of the protocol has a handler (the switch is exhaustive)');
});

t.test('-o port-security=false reaches the network\'s endpoints, outlives a restart and goes with the network', async (t) => {
  const r = rig(t);
  const OPEN = 'b'.repeat(64);
  const pool = [{ AddressSpace: 'weavelocal', Pool: '10.32.0.0/12' }];
  await call(r, 'NetworkDriver.CreateNetwork', { NetworkID: NET, IPv4Data: pool, Options: { 'com.docker.network.generic': {} } });
  await call(r, 'NetworkDriver.CreateNetwork', { NetworkID: OPEN, IPv4Data: pool, Options: { 'com.docker.network.generic': { 'port-security': 'false' } } });
  const endpoint = (net: string, ep: string, address: string): Promise<unknown> =>
    call(r, 'NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: ep, Interface: { Address: address } });
  await endpoint(NET, EP1, '10.32.0.1/12');
  await endpoint(OPEN, EP2, '10.32.0.2/12');
  const guard = (p: DockerPlugin): Record<string, boolean> => Object.fromEntries(p.list().map((e) => [e.address, e.portSecurity]));
  t.same(guard(r.plugin), { '10.32.0.1/12': true, '10.32.0.2/12': false }, 'only the endpoint of the network made with the option is let through');

  const again = rig(t, r.datadir);
  await again.plugin.restore();
  t.same(guard(again.plugin), { '10.32.0.1/12': true, '10.32.0.2/12': false }, 'both kept across a daemon restart');
  const EP3 = '3'.repeat(64);
  await call(again, 'NetworkDriver.CreateEndpoint', { NetworkID: OPEN, EndpointID: EP3, Interface: { Address: '10.32.0.3/12' } });
  t.equal(again.plugin.list().find((e) => e.endpoint === EP3)?.portSecurity, false, 'the network\'s option is known after the restart too');

  for (const ep of [EP2, EP3]) await call(again, 'NetworkDriver.DeleteEndpoint', { NetworkID: OPEN, EndpointID: ep });
  await call(again, 'NetworkDriver.DeleteNetwork', { NetworkID: OPEN });
  const file = JSON.parse(fs.readFileSync(path.join(r.datadir, 'docker-plugin.json'), 'utf8')) as { networks: { id: string }[] };
  t.same(file.networks.map((n) => n.id), [NET], 'the deleted network is forgotten');

  const older = JSON.parse(fs.readFileSync(path.join(r.datadir, 'docker-plugin.json'), 'utf8')) as Record<string, unknown>;
  delete older['networks'];
  for (const e of older['endpoints'] as Record<string, unknown>[]) delete e['portSecurity'];
  const parsed = parsePluginState(JSON.stringify(older));
  t.same(parsed.problems, [], 'a record from before network options is read whole');
  t.same(parsed.state.endpoints.map((e) => e.portSecurity), [true], 'and its endpoints are guarded');
  const bad = parsePluginState(JSON.stringify({ ...older, networks: [{ id: OPEN, portSecurity: 'no' }, { id: 'x' }] }));
  t.equal(bad.problems.length, 2, 'bad network entries are dropped with reasons');
});

t.test('a daemon restart finds running containers again; the record is read as hostile', async (t) => {
  const r = rig(t);
  const pool = 'weave:10.32.0.0/12';
  await runContainer(t, r, EP1, C1, 101, pool);
  const file = path.join(r.datadir, 'docker-plugin.json');
  const saved = fs.readFileSync(file, 'utf8');
  const again = rig(t, r.datadir);
  again.containers.set(C1, { id: C1, name: 'box101', pid: 101, running: true });
  again.ns.set('/proc/101/ns/net', '4:101');
  const restored = await again.plugin.restore();
  t.match(restored, [{ id: C1, name: 'box101', addresses: ['10.32.0.1/12'] }], 'the running container is attached again');
  t.equal(again.events.attached.length, 1, 'listeners hear of it (DNS registers the name again)');
  t.same(again.plugin.list().map((e) => e.container), [C1], 'its endpoint is kept');
  const parsed = JSON.parse(saved) as { endpoints: Record<string, unknown>[] };
  parsed.endpoints.push({ ...parsed.endpoints[0], id: 'zz', hostIfname: 'eth0; reboot' });
  const { state, problems } = parsePluginState(JSON.stringify(parsed));
  t.equal(state.endpoints.length, 1, 'the good endpoint is kept');
  t.equal(problems.length, 1, 'the bad one is dropped with a reason');
  t.throws(() => parsePluginState('{"version": 9}'), /expected/);
  t.throws(() => parsePluginState('not json'), /not JSON/);
});

t.test('containers that stopped or went while the router was away are cleaned up at restore', async (t) => {
  const r = rig(t);
  const pool = 'weave:10.32.0.0/12';
  const C2 = 'c2'.repeat(32);
  const a1 = await runContainer(t, r, EP1, C1, 101, pool);
  const a2 = await runContainer(t, r, EP2, C2, 102, pool);
  const again = rig(t, r.datadir);
  again.ipam.held = new Map(r.ipam.held);
  again.containers.set(C1, { id: C1, name: 'box101', pid: 0, running: false });
  const restored = await again.plugin.restore();
  t.same(restored, [], 'nothing is attached');
  t.same(again.plugin.list(), [], 'both endpoints are gone (Docker will not ask again)');
  const owner = (cidr: string): string => [...r.ipam.held].find(([, c]) => c === cidr)?.[0] ?? '';
  t.ok(again.ipam.dying.has(owner(a1)), 'the stopped container\'s address is parked for its restart');
  t.notOk(again.ipam.held.has(owner(a2)), 'the removed container\'s address is free');
});

t.test('the socket server: status and Err for bad requests, a reply for good ones', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-plugin-sock-'));
  const sock = path.join(dir, 'weave.sock');
  const r = rig(t);
  const server = new DockerPluginServer((c, body) => r.plugin.handle(c, body), silentLogger, sock);
  await server.listen();
  t.teardown(async () => { await server.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  t.equal(fs.statSync(sock).mode & 0o777, 0o660, 'socket mode 0660');
  const post = (p: string, body: string, method = 'POST'): Promise<{ status: number; body: string; type: string }> => new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, path: p, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), type: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.end(body);
  });
  const ok = await post('/Plugin.Activate', '');
  t.equal(ok.status, 200);
  t.same(JSON.parse(ok.body), { Implements: ['NetworkDriver', 'IpamDriver'] });
  t.equal(ok.type, 'application/vnd.docker.plugins.v1.2+json');
  const notJson = await post('/IpamDriver.RequestPool', '{"Pool":');
  t.equal(notJson.status, 400);
  t.match(JSON.parse(notJson.body), { Err: /not JSON/ });
  const unknown = await post('/VolumeDriver.Create', '{}');
  t.equal(unknown.status, 404);
  t.match(JSON.parse(unknown.body), { Err: /no POST \/VolumeDriver\.Create/ });
  t.equal((await post('/Plugin.Activate', '', 'GET')).status, 404, 'GET is not a call');
  const big = await post('/IpamDriver.RequestPool', JSON.stringify({ Pool: 'x'.repeat(100_000) })).catch(() => ({ status: 413, body: '', type: '' }));
  t.equal(big.status, 413, 'an oversized body is refused');
  const bad = await post('/NetworkDriver.Join', JSON.stringify({ NetworkID: NET, EndpointID: EP1, SandboxKey: 'x' }));
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body), { Err: /SandboxKey must be a plain absolute path/ });
  const taken = new DockerPluginServer((c, body) => r.plugin.handle(c, body), silentLogger, sock);
  await t.rejects(taken.listen(), /something already answers on .*--no-docker-plugin/, 'a socket in use is never taken over');
});
