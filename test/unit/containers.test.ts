// Unit tests of the ContainerManager without root: the commands an attach
// issues, detach, rollback when a step fails midway, refusals, dual stack,
// Docker events, restore after a restart, and its listeners (the IPAM hook
// among them). A scripted CommandRunner plays the kernel (host-fakes.ts).

import t from 'tap';
import { CONTAINER_GSO_MAX_BYTES, hostIfnameFor } from '../../router/host/container-link';
import type { DockerEvent } from '../../router/host/docker-client';
import { renderPs } from '../../cli/container-commands';
import { silentLogger } from '../../common/logger';
import { ipamContainerListener, withV6Twins } from '../../ipam/container-hook';
import { FakeDocker, setup, setupDual, veth } from './host-fakes';

t.test('dual stack: IPv6 addresses without DAD, IPv6 overlay routes only with an IPv6 address, exact detach', async (t) => {
  const { host, store, manager } = setupDual();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  host.namespaces.set('/var/run/netns/red', 'ns:red');
  const seen: string[] = [];
  manager.addListener({
    onAttached: (c, added) => { seen.push(`attached ${c.id} ${added.join(',')}`); },
    onDetached: (c, removed, reason) => { seen.push(`detached ${c.id} ${removed.join(',')} ${reason}`); },
  });
  const a = await manager.attach('netns:blue', ['10.32.1.1/12', 'fd00:77:1:0::101/48']);
  const v = hostIfnameFor('netns', 'blue');
  const ns = 'nsenter --net=/var/run/netns/blue';
  // Two ip batches (host side, container side) played line by line by the fake; the MAC is the one set.
  // rtnetlink requests, recorded as the ip commands they stand for (host-fakes.ts): the pair in one, the inside in one batch.
  t.same(host.runner.lines(), [
    'ip link show dev weave',
    `ip link add name ${v} mtu 1376 master weave up type veth peer name ethwe mtu 1376 gso_max_size ${CONTAINER_GSO_MAX_BYTES} netns /var/run/netns/blue`,
    `${ns} sysctl -q -w net.ipv6.conf.ethwe.disable_ipv6=0 net.ipv6.conf.ethwe.ndisc_notify=1`,
    `${ns} ip link show dev ethwe`,
    `${ns} ip link set dev ethwe arp_notify 1`,
    `${ns} ip ntable change name arp_cache dev ethwe base_reachable 5000 delay_probe 2000 ucast_probes 1`,
    `${ns} ip addr add 10.32.1.1/12 dev ethwe`,
    `${ns} ip addr add fd00:77:1::101/48 dev ethwe nodad`,
    `${ns} ip link set dev ethwe up`,
    `${ns} ip route add 10.32.0.0/12 dev ethwe`,
    `${ns} ip route add fd00:77:1::/48 dev ethwe`,
    `${ns} ip route add 224.0.0.0/4 dev ethwe`,
    `ip -j -d link show dev ${v}`,
    `${ns} ip link set dev ethwe address 02:aa:00:00:00:01`,
  ]);
  t.same(a.addresses, ['10.32.1.1/12', 'fd00:77:1::101/48'], 'both, IPv6 in canonical form');
  t.match(store.text ?? '', /fd00:77:1::101\/48/, 'persisted');
  t.same(seen, ['attached netns:blue 10.32.1.1/12,fd00:77:1::101/48']);
  t.equal(renderPs(manager.list()), `netns:blue blue manual 02:aa:00:00:00:01 10.32.1.1/12 fd00:77:1::101/48`, 'weave ps lists both');

  // The same IPv6 address, spelled differently, is still the same address.
  await t.rejects(manager.attach('netns:red', ['10.32.1.2/12', 'fd00:77:1:0:0:0:0:101/48']), /fd00:77:1::101 is already attached to netns:blue/);
  await t.rejects(manager.attach('netns:blue', ['fd00:77:1::101/64']), /already has fd00:77:1::101\/48/);

  // IPv4 only: no IPv6 sysctl, no IPv6 route (IPv6 may be disabled in there).
  host.runner.clear();
  await manager.attach('netns:red', ['10.32.1.2/12']);
  t.notOk(host.runner.lines().some((l) => /ipv6|-6/.test(l)), 'nothing IPv6 for an IPv4-only container');

  await t.test('adding an IPv6 address later enables IPv6 and routes the range', async (t) => {
    host.runner.clear();
    const r = await manager.attach('netns:red', ['fd00:77:1::102/48']);
    t.same(r.addresses, ['10.32.1.2/12', 'fd00:77:1::102/48']);
    const rns = 'nsenter --net=/var/run/netns/red';
    t.same(host.runner.lines().filter((l) => !l.startsWith('ip link show')), [
      `${rns} sysctl -q -w net.ipv6.conf.ethwe.disable_ipv6=0 net.ipv6.conf.ethwe.ndisc_notify=1`,
      `${rns} ip -6 addr add fd00:77:1::102/48 dev ethwe nodad`,
      `${rns} ip route add 10.32.0.0/12 dev ethwe`,
      `${rns} ip route add fd00:77:1::/48 dev ethwe`,
      `${rns} ip route add 224.0.0.0/4 dev ethwe`,
    ]);
  });

  await t.test('detaching the IPv6 address removes it and the IPv6 route; detaching all removes the veth', async (t) => {
    host.runner.clear();
    const r1 = await manager.detach('netns:blue', ['fd00:77:1::101/48']);
    t.same(r1.removed, ['fd00:77:1::101/48']);
    t.same(r1.container.addresses, ['10.32.1.1/12']);
    t.same(host.runner.lines(), [
      `${ns} ip -6 addr del fd00:77:1::101/48 dev ethwe`,
      `${ns} ip route del fd00:77:1::/48 dev ethwe`,
      `${ns} ip route add 10.32.0.0/12 dev ethwe`,
      `${ns} ip route add 224.0.0.0/4 dev ethwe`,
    ]);
    host.runner.clear();
    const r2 = await manager.detach('netns:red');
    t.same(r2.removed, ['10.32.1.2/12', 'fd00:77:1::102/48']);
    t.same(host.runner.lines(), [`ip link del dev ${hostIfnameFor('netns', 'red')}`], 'the veth takes both addresses along');
    t.same(seen.slice(-2), ['detached netns:blue fd00:77:1::101/48 detach', 'detached netns:red 10.32.1.2/12,fd00:77:1::102/48 detach']);
  });
});

t.test('dual stack: detaching an IPv4 address takes its IPv6 twin along', async (t) => {
  const { host, manager } = setupDual();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  const given: string[][] = [];
  manager.setAddressSource({
    obtain: async (_c, requests) => requests,
    giveBack: (_c, addresses) => { given.push(addresses); },
    twinsOf: (c) => (c === '10.32.1.1/12' ? ['FD00:77:1:0::101/48'] : c === '10.32.1.2/12' ? ['fd00:77:1::999/48'] : []),
  });
  await manager.attach('netns:blue', ['10.32.1.1/12', 'fd00:77:1::101/48', '10.32.1.2/12']);
  host.runner.clear();
  const r = await manager.detach('netns:blue', ['10.32.1.1/12']);
  t.same(r.removed, ['10.32.1.1/12', 'fd00:77:1::101/48'], 'the twin goes too');
  t.same(r.container.addresses, ['10.32.1.2/12'], 'a twin the container does not have is ignored');
  t.same(host.runner.lines().filter((l) => / del /.test(l)), [
    'nsenter --net=/var/run/netns/blue ip addr del 10.32.1.1/12 dev ethwe',
    'nsenter --net=/var/run/netns/blue ip -6 addr del fd00:77:1::101/48 dev ethwe',
    'nsenter --net=/var/run/netns/blue ip route del fd00:77:1::/48 dev ethwe',
  ]);
  t.same(given, [], 'nothing given back on success');
});

t.test('dual stack: a failure midway is rolled back', async (t) => {
  const steps: [RegExp, RegExp][] = [
    [/disable_ipv6=0/, /cannot enable IPv6 on ethwe/],
    [/addr add fd00/, /fd00:77:1::101/],
    [/route add fd00/, /fd00:77:1::\/48/],
  ];
  for (const [failOn, message] of steps) {
    const { host, store, manager } = setupDual();
    host.namespaces.set('/var/run/netns/blue', 'ns:blue');
    host.failOn = failOn;
    await t.rejects(manager.attach('netns:blue', ['10.32.1.1/12', 'fd00:77:1::101/48']), { message }, `fails at ${failOn}`);
    t.equal(host.runner.lines().at(-1), `ip link del dev ${hostIfnameFor('netns', 'blue')}`, `${failOn}: last command undoes the veth`);
    t.same(veth(host), []);
    t.equal(store.text, null, 'nothing recorded');
  }
  const { host, manager } = setupDual();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  await manager.attach('netns:blue', ['10.32.1.1/12']);
  host.runner.clear();
  host.failOn = /-6 addr add fd00:77:1::102/;
  await t.rejects(manager.attach('netns:blue', ['fd00:77:1::101/48', 'fd00:77:1::102/48']), /cannot add fd00:77:1::102\/48/);
  t.same(host.runner.lines().filter((l) => l.includes(' addr ')), [
    'nsenter --net=/var/run/netns/blue ip -6 addr add fd00:77:1::101/48 dev ethwe nodad',
    'nsenter --net=/var/run/netns/blue ip -6 addr add fd00:77:1::102/48 dev ethwe nodad',
    'nsenter --net=/var/run/netns/blue ip -6 addr del fd00:77:1::101/48 dev ethwe',
  ]);
  t.same(manager.list()[0]?.addresses, ['10.32.1.1/12'], 'record unchanged');
});

t.test('dual stack and IPAM: IPv6 twins are appended, never claimed or released', async (t) => {
  const twins: Record<string, string> = { '10.32.0.5/12': 'fd00:77:1::5/48', '10.32.0.6/12': 'fd00:77:1::6/48' };
  const ipam = { v6For: (c: string) => twins[c] ?? null };
  t.same(withV6Twins(ipam, ['10.32.0.5/12', '10.32.0.6/12']), ['10.32.0.5/12', '10.32.0.6/12', 'fd00:77:1::5/48', 'fd00:77:1::6/48']);
  t.same(withV6Twins(ipam, ['10.32.0.5/12', 'fd00:77:1::5/48']), ['10.32.0.5/12', 'fd00:77:1::5/48'], 'a twin given already is not doubled');
  t.same(withV6Twins(ipam, ['192.168.1.1/24']), ['192.168.1.1/24'], 'outside the range (or no IPv6 range): as is');
  const calls: string[] = [];
  const fake = {
    claim: async (id: string, c: string) => { calls.push(`claim ${id} ${c}`); return c; },
    release: (id: string, c?: string) => { calls.push(`release ${id} ${c ?? '*'}`); return []; },
    releaseContainer: (id: string) => { calls.push(`releaseContainer ${id}`); return []; },
  };
  const l = ipamContainerListener(fake, { graceMs: 1000, logger: silentLogger });
  await l.onAttached({ id: 'netns:x' }, ['10.32.0.5/12', 'fd00:77:1::5/48']);
  l.onDetached({ id: 'netns:x' }, ['10.32.0.5/12', 'fd00:77:1::5/48'], 'detach');
  t.same(calls, ['claim netns:x 10.32.0.5/12', 'release netns:x 10.32.0.5/12']);
});

t.test('attach issues the expected commands and records the container', async (t) => {
  const { host, store, manager } = setup();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  const seen: string[] = [];
  manager.addListener({
    onAttached: (c, added) => { seen.push(`attached ${c.id} ${added.join(',')}`); },
    onDetached: (c, removed, reason) => { seen.push(`detached ${c.id} ${removed.join(',')} ${reason}`); },
  });
  const a = await manager.attach('netns:blue', ['10.32.1.1/12']);
  const v = hostIfnameFor('netns', 'blue');
  const ns = 'nsenter --net=/var/run/netns/blue';
  t.same(host.runner.lines(), [
    'ip link show dev weave',
    `ip link add name ${v} mtu 1376 master weave up type veth peer name ethwe mtu 1376 gso_max_size ${CONTAINER_GSO_MAX_BYTES} netns /var/run/netns/blue`,
    `${ns} ip link show dev ethwe`,
    `${ns} ip link set dev ethwe arp_notify 1`,
    `${ns} ip ntable change name arp_cache dev ethwe base_reachable 5000 delay_probe 2000 ucast_probes 1`,
    `${ns} ip addr add 10.32.1.1/12 dev ethwe`,
    `${ns} ip link set dev ethwe up`,
    `${ns} ip route add 10.32.0.0/12 dev ethwe`,
    `${ns} ip route add 224.0.0.0/4 dev ethwe`,
    `ip -j -d link show dev ${v}`,
    `${ns} ip link set dev ethwe address 02:aa:00:00:00:01`,
  ]);
  t.same(a, {
    id: 'netns:blue', name: 'blue', kind: 'netns', ifname: 'ethwe', mac: '02:aa:00:00:00:01',
    addresses: ['10.32.1.1/12'], hostIfname: v, pid: null, joined: 'manual',
  });
  t.same(manager.list(), [a]);
  t.match(store.text ?? '', /"hostIfname": "vethwens/, 'persisted');
  t.same(seen, ['attached netns:blue 10.32.1.1/12']);

  await t.test('again: adds only the new addresses', async (t) => {
    host.runner.clear();
    const b = await manager.attach('netns:blue', ['10.32.1.1/12', '10.32.1.5/12']);
    t.same(b.addresses, ['10.32.1.1/12', '10.32.1.5/12']);
    t.same(host.runner.lines().filter((l) => l.includes('addr')), [`${ns} ip addr add 10.32.1.5/12 dev ethwe`]);
    t.same(seen.at(-1), 'attached netns:blue 10.32.1.5/12');
    host.runner.clear();
    await manager.attach('netns:blue', ['10.32.1.5/12']);
    t.same(host.runner.lines().filter((l) => !l.startsWith('ip link show')), [], 'nothing to do');
  });

  await t.test('detach of some addresses, then of all', async (t) => {
    host.runner.clear();
    const r1 = await manager.detach('netns:blue', ['10.32.1.5/12']);
    t.same(r1, { container: { ...a, addresses: ['10.32.1.1/12'] }, removed: ['10.32.1.5/12'], detached: false });
    t.same(host.runner.lines().slice(0, 1), [`${ns} ip addr del 10.32.1.5/12 dev ethwe`]);
    t.ok(host.runner.lines().includes(`${ns} ip route add 224.0.0.0/4 dev ethwe`), 'routes ensured again');
    host.runner.clear();
    const r2 = await manager.detach('netns:blue');
    t.equal(r2.detached, true);
    t.same(r2.removed, ['10.32.1.1/12']);
    t.same(host.runner.lines(), [`ip link del dev ${v}`]);
    t.same(manager.list(), []);
    t.same(veth(host), []);
    t.same(seen.slice(-2), ['detached netns:blue 10.32.1.5/12 detach', 'detached netns:blue 10.32.1.1/12 detach']);
    await t.rejects(manager.detach('netns:blue'), { code: 'config', message: /netns:blue is not attached/ });
  });
});

t.test('refusals change nothing', async (t) => {
  const { host, manager } = setup();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  host.namespaces.set('/var/run/netns/red', 'ns:red');
  host.namespaces.set('/proc/77/ns/net', 'ns:red');
  await manager.attach('netns:blue', ['10.32.1.1/12']);
  host.runner.clear();
  const cases: [string, string[], RegExp][] = [
    ['netns:red', ['10.32.1.1/12'], /10\.32\.1\.1 is already attached to netns:blue/],
    ['netns:red', ['10.32.1.2/12', '10.32.1.2/16'], /given twice with different prefixes/],
    ['netns:red', [], /an address is required/],
    ['netns:red', ['10.32.0.0/12'], /network address/],
    ['netns:blue', ['10.32.1.1/24'], /already has 10\.32\.1\.1\/12/],
    ['netns:green', ['10.32.1.3/12'], /no network namespace named green/],
    ['pid:99', ['10.32.1.3/12'], /no process with pid 99/],
    ['pid:1', ['10.32.1.3/12'], /no process with pid 1/],
    ['somecontainer', ['10.32.1.3/12'], /Docker is not available/],
  ];
  for (const [ref, cidrs, re] of cases) {
    await t.rejects(manager.attach(ref, cidrs), { code: 'config', message: re }, `${ref} ${cidrs.join(' ')}`);
  }
  t.same(host.runner.lines().filter((l) => !/^ip link show|^ip -j -d link show/.test(l)), [], 'no command changed anything');
  // The host's own namespace is not a container.
  host.namespaces.set('/proc/1/ns/net', 'ns:host');
  await t.rejects(manager.attach('pid:1', ['10.32.1.3/12']), /shares the host's network namespace/);
  // pid:77 is the same namespace as netns:red; attaching both ways is one container.
  await manager.attach('netns:red', ['10.32.1.2/12']);
  const again = await manager.attach('pid:77', ['10.32.1.3/12']);
  t.equal(again.id, 'netns:red');
  t.same(again.addresses, ['10.32.1.2/12', '10.32.1.3/12']);
  t.equal(manager.list().length, 2);
  // A leftover veth with our name is reported, not reused or deleted.
  host.namespaces.set('/var/run/netns/cyan', 'ns:cyan');
  host.links.add(hostIfnameFor('netns', 'cyan'));
  await t.rejects(manager.attach('netns:cyan', ['10.32.1.9/12']), /already exists \(left over/);
  t.ok(host.links.has(hostIfnameFor('netns', 'cyan')));
});

t.test('a failure midway is rolled back', async (t) => {
  const steps: [RegExp, RegExp][] = [
    [/nsenter .* link show dev ethwe/, /cannot find ethwe in blue: Invalid argument \(EINVAL\): scripted failure/],
    [/ip addr add 10\.32\.1\.2/, /ip addr add 10\.32\.1\.2\/12 dev ethwe in blue failed: Invalid argument \(EINVAL\)/],
    [/link set dev ethwe up/, /ethwe up/],
    [/route add 224/, /224\.0\.0\.0/],
  ];
  for (const [failOn, message] of steps) {
    const { host, store, manager } = setup();
    host.namespaces.set('/var/run/netns/blue', 'ns:blue');
    host.failOn = failOn;
    await t.rejects(manager.attach('netns:blue', ['10.32.1.1/12', '10.32.1.2/12']), { message }, `fails at ${failOn}`);
    const v = hostIfnameFor('netns', 'blue');
    t.equal(host.runner.lines().at(-1), `ip link del dev ${v}`, `${failOn}: last command undoes the veth`);
    t.same(veth(host), [], `${failOn}: no veth left`);
    t.same(manager.list(), []);
    t.equal(store.text, null, 'nothing recorded');
    // The address is free for the next try.
    host.failOn = null;
    t.same((await manager.attach('netns:blue', ['10.32.1.1/12'])).addresses, ['10.32.1.1/12']);
  }

  await t.test('adding addresses to an attached container undoes the ones it added', async (t) => {
    const { host, manager } = setup();
    host.namespaces.set('/var/run/netns/blue', 'ns:blue');
    await manager.attach('netns:blue', ['10.32.1.1/12']);
    host.runner.clear();
    host.failOn = /addr add 10\.32\.1\.3/;
    await t.rejects(manager.attach('netns:blue', ['10.32.1.2/12', '10.32.1.3/12']), /cannot add 10\.32\.1\.3\/12/);
    const ns = 'nsenter --net=/var/run/netns/blue ip';
    t.same(host.runner.lines().filter((l) => l.includes(' addr ')), [
      `${ns} addr add 10.32.1.2/12 dev ethwe`,
      `${ns} addr add 10.32.1.3/12 dev ethwe`,
      `${ns} addr del 10.32.1.2/12 dev ethwe`,
    ]);
    t.same(manager.list()[0]?.addresses, ['10.32.1.1/12'], 'record unchanged');
    t.equal(veth(host).length, 1, 'the veth stays: it existed before');
  });

  await t.test('the fresh MAC refused: ethwe keeps the MAC it has, and the attach stands', async (t) => {
    const { host, manager } = setup();
    host.namespaces.set('/var/run/netns/blue', 'ns:blue');
    host.failOn = /ethwe address 02:aa/;
    t.equal((await manager.attach('netns:blue', ['10.32.1.1/12'])).mac, '02:00:00:00:00:00', 'read back from the kernel');
    t.equal(veth(host).length, 1);
  });

  await t.test('ARP tuning refused: best effort, the attach stands', async (t) => {
    const { host, manager } = setup();
    host.namespaces.set('/var/run/netns/blue', 'ns:blue');
    host.failOn = /arp_notify|ntable/;
    t.same((await manager.attach('netns:blue', ['10.32.1.1/12'])).addresses, ['10.32.1.1/12']);
  });

  await t.test('veth creation refused: nothing to undo, a clear message', async (t) => {
    const { host, manager } = setup();
    host.namespaces.set('/var/run/netns/blue', 'ns:blue');
    host.failOn = /ip link add/;
    await t.rejects(manager.attach('netns:blue', ['10.32.1.1/12']), /cannot create the veth pair for blue/);
    t.notOk(host.runner.lines().some((l) => l.includes('link del')));
  });
});

t.test('Docker containers: inspect, restart, destroy', async (t) => {
  const docker = new FakeDocker();
  const { host, manager, newManager } = setup({ docker });
  const id = 'a'.repeat(64);
  docker.containers.set(id, { id, name: 'web', pid: 100, running: true });
  docker.containers.set('b'.repeat(64), { id: 'b'.repeat(64), name: 'stopped', pid: 0, running: false });
  host.namespaces.set('/proc/100/ns/net', 'ns:web1');
  await t.rejects(manager.attach('nosuch', ['10.32.1.1/12']), { code: 'config', message: /no such Docker container: nosuch/ });
  await t.rejects(manager.attach('stopped', ['10.32.1.1/12']), { code: 'config', message: /Docker container stopped is not running/ });
  const a = await manager.attach('web', ['10.32.2.1/12']);
  t.same([a.id, a.name, a.kind, a.pid, a.hostIfname], [id, 'web', 'docker', 100, 'vethwepl100']);
  t.ok(host.runner.lines().some((l) => l.endsWith('netns /proc/100/ns/net')), 'veth peer created in the pid namespace');
  t.same(renderPs(manager.list()).split(' ').slice(0, 2), ['aaaaaaaaaaaa', 'web']);

  const events: string[] = [];
  manager.addListener({ onDetached: (c, removed, reason) => { events.push(`${reason} ${c.name} ${removed.join(',')}`); } });
  manager.watch();
  const emit = async (action: DockerEvent['action']) => {
    docker.handler?.({ action, id, name: 'web', timeSec: 1 });
    await manager.close().then(() => manager.watch());
  };

  // docker restart: die (the namespace and veth vanish), start (new pid, new namespace).
  host.namespaces.delete('/proc/100/ns/net');
  host.links.delete('vethwepl100');
  await emit('die');
  t.same(manager.list(), [], 'a dead container is not listed');
  host.namespaces.set('/var/run/netns/x', 'ns:x');
  await t.rejects(manager.attach('netns:x', ['10.32.2.1/12']), /already attached to container web/, 'its address stays reserved');
  docker.containers.set(id, { id, name: 'web', pid: 200, running: true });
  host.namespaces.set('/proc/200/ns/net', 'ns:web2');
  await emit('start');
  t.same(manager.list().map((c) => [c.name, c.pid, c.hostIfname, c.addresses]), [['web', 200, 'vethwepl200', ['10.32.2.1/12']]], 're-attached');
  t.ok(host.links.has('vethwepl200'));

  // A restarted daemon finds it as it is.
  const m2 = newManager();
  t.same((await m2.restore()).map((c) => c.hostIfname), ['vethwepl200']);

  await emit('destroy');
  t.same(manager.list(), []);
  t.same(manager.addressesInUse(), [], 'addresses released');
  t.notOk(host.links.has('vethwepl200'), 'veth deleted');
  t.same(events, ['died web 10.32.2.1/12', 'destroyed web 10.32.2.1/12']);
  await manager.close();
});

t.test('restore drops entries whose namespace or veth is gone, and survives a bad file', async (t) => {
  const { host, store, manager, newManager } = setup();
  for (const n of ['a', 'b', 'c']) host.namespaces.set(`/var/run/netns/${n}`, `ns:${n}`);
  await manager.attach('netns:a', ['10.32.3.1/12']);
  await manager.attach('netns:b', ['10.32.3.2/12']);
  await manager.attach('netns:c', ['10.32.3.3/12']);
  host.namespaces.delete('/var/run/netns/b'); // namespace deleted: its veth went with it
  host.links.delete(hostIfnameFor('netns', 'b'));
  host.links.delete(hostIfnameFor('netns', 'c')); // someone deleted the veth
  const m2 = newManager();
  t.same((await m2.restore()).map((c) => c.id), ['netns:a']);
  t.same((JSON.parse(store.text ?? '{}') as { containers: { id: string }[] }).containers.map((c) => c.id), ['netns:a']);
  host.refused.add('/var/run/netns/a');
  t.same(await newManager().restore(), [], 'a namespace we may no longer read counts as gone; the restore carries on');
  await t.rejects(newManager().attach('netns:a', ['10.32.3.9/12']), /permission denied/, 'while a new attach says why');
  host.refused.clear();
  store.text = '{"version": 1, "containers": [{"kind": "netns"}]}';
  t.same(await newManager().restore(), [], 'unreadable record ignored');
  store.text = 'not json';
  t.same(await newManager().restore(), []);
});

t.test('detach takes addresses as attach printed them: bare, ip:CIDR or CIDR, matched on the address alone', async (t) => {
  const { host, manager } = setup();
  host.namespaces.set('/var/run/netns/bare', 'ns:bare');
  await manager.attach('netns:bare', ['10.32.4.1/12', '10.32.4.2/12', '10.32.4.3/12']);
  t.same((await manager.detach('netns:bare', ['10.32.4.1'])).removed, ['10.32.4.1/12'], 'a bare address');
  t.same((await manager.detach('netns:bare', ['ip:10.32.4.2/12'])).removed, ['10.32.4.2/12'], "attach's claim form");
  await t.rejects(manager.detach('netns:bare', ['net:10.32.4.0/24']), { code: 'config', message: /takes the container's addresses/ });
  await t.rejects(manager.detach('netns:bare', ['10.32.9.9']), { code: 'config', message: /^address 10\.32\.9\.9 is not attached/ });
  t.same(manager.list().map((c) => c.addresses), [['10.32.4.3/12']], 'refusals changed nothing');
  await manager.close();
});

t.test('weave ps shows a CNI attachment by its runtime id, shortened as Docker ids are', async (t) => {
  const id = `cni:${'c'.repeat(64)}/eth0`;
  const line = renderPs([{ id, name: 'pod-a', kind: 'cni', ifname: 'eth0', mac: '02:aa:00:00:00:09', addresses: ['10.32.0.9/12'], hostIfname: 'vethwec0', pid: null, joined: 'cni' }]);
  t.equal(line, `cni:${'c'.repeat(12)}/eth0 pod-a cni 02:aa:00:00:00:09 10.32.0.9/12`);
  t.equal(renderPs([{ id: 'cni:odd', name: 'x', kind: 'cni', ifname: 'eth0', mac: 'm', addresses: [], hostIfname: 'h', pid: null, joined: 'cni' }]), 'cni:odd x cni m',
    'an id not of that shape is shown whole');
});

t.test('weave attach --no-port-security: kept in the record, through a restart, and only when false', async (t) => {
  const { host, store, manager, newManager } = setup();
  for (const n of ['vpn', 'web']) host.namespaces.set(`/var/run/netns/${n}`, `ns:${n}`);
  const vpn = await manager.attach('netns:vpn', ['10.32.4.1/12'], { portSecurity: false });
  const web = await manager.attach('netns:web', ['10.32.4.2/12'], {});
  t.equal(vpn.portSecurity, false, 'the view says it is unguarded');
  t.notOk('portSecurity' in web, 'guarded: not spelled out');
  t.match(store.text ?? '', /"portSecurity": false/, 'persisted');
  t.same((await newManager().restore()).map((c) => [c.id, c.portSecurity]), [['netns:vpn', false], ['netns:web', undefined]], 'restored as it was');
  await t.rejects(manager.attach('netns:web', ['10.32.4.3/12'], { portSecurity: 'no' as unknown as false }), /portSecurity must be true or false/);
  const again = await manager.attach('netns:web', ['10.32.4.3/12'], { portSecurity: true as unknown as false });
  t.notOk('portSecurity' in again, 'true is the default, not a wish');

  // Attached already and guarded: the flag on a later attach turns it off, after the addresses are added.
  let told = 0;
  manager.addListener({ onPortsChanging: () => { told++; } });
  host.failOn = /ip addr add 10\.32\.4\.9/;
  await t.rejects(manager.attach('netns:web', ['10.32.4.9/12'], { portSecurity: false }), /scripted failure/);
  t.notOk('portSecurity' in manager.list().find((c) => c.id === 'netns:web')!, 'an attach that failed changed nothing');
  host.failOn = null;
  const off = await manager.attach('netns:web', ['10.32.4.4/12'], { portSecurity: false });
  t.equal(off.portSecurity, false, 'the flag on an attached container turns port security off');
  t.equal(told, 1, 'port security is told');
  t.same(manager.ports().find((p) => p.hostIfname === off.hostIfname)?.portSecurity, false, 'its port is listed unguarded');
  t.same((await newManager().restore()).find((c) => c.id === 'netns:web')?.portSecurity, false, 'and it is kept');
  await manager.attach('netns:web', ['10.32.4.5/12'], {});
  t.equal(told, 1, 'a later attach without the flag changes nothing');
});

t.test('port security learns an attach\'s port before ethwe announces its MAC, and forgets it when the attach fails', async (t) => {
  const { host, manager } = setup();
  for (const n of ['blue', 'red']) host.namespaces.set(`/var/run/netns/${n}`, `ns:${n}`);
  const seen: { ports: string[]; linesSoFar: number }[] = [];
  manager.addListener({
    onPortsChanging: () => { seen.push({ ports: manager.ports().map((p) => `${p.hostIfname} ${p.mac} ${p.addresses.join(',')}`), linesSoFar: host.runner.lines().length }); },
  });
  const a = await manager.attach('netns:blue', ['10.32.1.1/12'], {});
  const v = hostIfnameFor('netns', 'blue');
  t.same(seen.map((s) => s.ports), [[`${v} ${a.mac} 10.32.1.1/12`]], 'told once, with the MAC the attach then gave ethwe');
  t.notOk(host.runner.lines().slice(0, seen[0]!.linesSoFar).some((l) => l.includes(a.mac)), 'before the MAC was set (the announcement)');
  t.same(manager.ports().map((p) => p.hostIfname), [v], 'once attached, the port is listed as a container');

  seen.length = 0;
  host.failOn = /ip addr add 10\.32\.1\.2/;
  await t.rejects(manager.attach('netns:red', ['10.32.1.2/12'], {}), /scripted failure/);
  t.equal(seen.length, 2, 'told when the port is about to come up and when the attach failed');
  t.same(seen[0]?.ports.length, 2, 'the failing attach\'s port was listed at first');
  t.same(seen[1]?.ports, [`${v} ${a.mac} 10.32.1.1/12`], 'and is gone again');
  t.same(manager.ports().map((p) => p.hostIfname), [v], 'nothing pending is left');
  await manager.close();
});
