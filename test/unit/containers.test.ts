// Unit tests of container attachment logic without root: reference and
// address parsing, the commands an attach issues, rollback when a step fails
// midway, detach, restore, Docker events, listeners, the API body checks and
// the CLI argument split. A scripted CommandRunner plays the kernel.

import t from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeCommandRunner, NetnsCommandRunner } from '../../router/host/command-runner';
import type { RunResult } from '../../router/host/command-runner';
import { parseAttachAddress, parseAttachCidr, parseRouteCidr } from '../../router/host/attach-address';
import type { AttachedContainer } from '../../router/host/attached-container';
import { hostIfnameFor, randomMac } from '../../router/host/container-link';
import { ContainerManager } from '../../router/host/container-manager';
import { formatContainerRef, parseContainerRef } from '../../router/host/container-ref';
import type { HostFs } from '../../router/host/container-ref';
import { MemoryStateStore } from '../../router/host/container-state';
import type { DockerApi, DockerContainer, DockerEvent, EventWatch } from '../../router/host/docker-client';
import { DockerClient, parseEvent, parseInspect } from '../../router/host/docker-client';
import { containerApi, parseAttachBody, parseDetachBody } from '../../router/api/container-api';
import { HttpApi } from '../../router/api/http-api';
import type { RouterControl } from '../../router/api/control';
import { ApiClient, ApiError } from '../../cli/api-client';
import { renderPs, splitAddressesAndContainer } from '../../cli/container-commands';
import { acceptRule, ensureBridgeForwarding, keepBridgeForwarding, removeBridgeForwarding } from '../../router/host/bridge-firewall';
import { ensureBridge } from '../../router/host/host-bridge';
import { detectUnderlayMtu } from '../../router/host/host-link';
import { ManualClock } from '../../common/clock';
import { RouterError } from '../../router/mesh/errors';
import { silentLogger } from '../../common/logger';
import { sampleStatus } from './sample-status';
import { ipamContainerListener, withV6Twins } from '../../ipam/container-hook';

// ---------------------------------------------------------------------------
// A fake host: links that exist, namespaces by path, scripted failures.

class FakeHost {
  readonly links = new Set<string>(['lo', 'weave']);
  readonly namespaces = new Map<string, string>([['/proc/self/ns/net', 'ns:host']]);
  /** Namespace paths whose stat is refused (EACCES), as for another user's process without root. */
  readonly refused = new Set<string>();
  /** A command line matching this fails. */
  failOn: RegExp | null = null;
  macCounter = 0;
  readonly runner = new FakeCommandRunner((cmd, args) => this.respond(cmd, args));
  readonly hostFs: HostFs = {
    namespaceId: (p) => {
      if (this.refused.has(p)) throw new RouterError('io', `permission denied reading ${p} (EACCES)`);
      return this.namespaces.get(p) ?? null;
    },
    processName: (pid) => (this.namespaces.has(`/proc/${pid}/ns/net`) ? `proc${pid}` : null),
  };

  respond(cmd: string, args: string[]): Partial<RunResult> | undefined {
    const line = [cmd, ...args].join(' ');
    if (this.failOn !== null && this.failOn.test(line)) return { code: 2, stderr: `scripted failure of ${line}` };
    if (cmd === 'ip' && args[0] === 'link' && args[1] === 'add') {
      const name = args[3] as string;
      if (this.links.has(name)) return { code: 2, stderr: 'RTNETLINK answers: File exists' };
      this.links.add(name);
      return undefined;
    }
    if (cmd === 'ip' && args[0] === 'link' && args[1] === 'del') {
      const name = args[3] as string;
      if (!this.links.delete(name)) return { code: 1, stderr: `Cannot find device "${name}"` };
      return undefined;
    }
    if (cmd === 'ip' && args[0] === 'link' && args[1] === 'show') {
      const name = args[3] as string;
      return this.links.has(name) ? { stdout: `1: ${name}: <UP>` } : { code: 1, stderr: `Device "${name}" does not exist.` };
    }
    if (cmd === 'ip' && args.join(' ').startsWith('-j -d link show dev')) {
      return { stdout: '[{"linkinfo":{"info_kind":"veth","info_slave_data":{"state":"forwarding"}}}]' };
    }
    if (cmd === 'nsenter' && args.slice(1).join(' ') === 'ip -j link show dev ethwe') {
      return { stdout: `[{"ifname":"ethwe","address":"02:00:00:00:00:0${this.macCounter}"}]` };
    }
    return undefined;
  }
}

class FakeDocker implements DockerApi {
  readonly containers = new Map<string, DockerContainer>();
  handler: ((ev: DockerEvent) => void) | null = null;

  async inspect(ref: string): Promise<DockerContainer | null> {
    for (const c of this.containers.values()) if (c.name === ref || c.id.startsWith(ref)) return { ...c };
    return null;
  }

  watchEvents(onEvent: (ev: DockerEvent) => void): EventWatch {
    this.handler = onEvent;
    return { close: () => { this.handler = null; } };
  }
}

function setup(opts: { docker?: FakeDocker | null } = {}) {
  const host = new FakeHost();
  const store = new MemoryStateStore();
  let macs = 0;
  const mk = () => new ContainerManager(
    {
      runner: host.runner, docker: opts.docker ?? null, logger: silentLogger, hostFs: host.hostFs, store,
      newMac: () => `02:aa:00:00:00:0${++macs}`, sleep: async () => undefined,
    },
    { bridge: 'weave', mtu: 1376, overlayRoutes: ['10.32.0.0/12'], datadir: '/nonexistent' },
  );
  return { host, store, manager: mk(), newManager: mk };
}

function setupDual() {
  const host = new FakeHost();
  const store = new MemoryStateStore();
  let macs = 0;
  const manager = new ContainerManager(
    {
      runner: host.runner, docker: null, logger: silentLogger, hostFs: host.hostFs, store,
      newMac: () => `02:aa:00:00:00:0${++macs}`, sleep: async () => undefined,
    },
    { bridge: 'weave', mtu: 1376, overlayRoutes: ['10.32.0.0/12', 'fd00:77:1::/48'], datadir: '/nonexistent' },
  );
  return { host, store, manager };
}

function veth(host: FakeHost): string[] {
  return [...host.links].filter((l) => l.startsWith('vethwe')).sort();
}

// ---------------------------------------------------------------------------

t.test('parseContainerRef', async (t) => {
  t.same(parseContainerRef('netns:blue'), { kind: 'netns', name: 'blue' });
  t.same(parseContainerRef('pid:1234'), { kind: 'pid', pid: 1234 });
  t.same(parseContainerRef('my_app.1'), { kind: 'docker', ref: 'my_app.1' });
  t.same(parseContainerRef(' 3f2a9c81b7d0 '), { kind: 'docker', ref: '3f2a9c81b7d0' });
  t.equal(formatContainerRef(parseContainerRef('pid:7')), 'pid:7');
  const bad: [string, RegExp][] = [
    ['', /a container is required/],
    ['netns:', /netns:NAME needs/],
    ['netns:a/b', /netns:NAME needs/],
    ['netns:..', /netns:NAME needs/],
    ['pid:0', /pid:PID needs/],
    ['pid:-1', /pid:PID needs/],
    ['pid:12x', /pid:PID needs/],
    ['pid:99999999', /pid:PID needs/],
    ['docker:foo', /unknown container reference/],
    ['-rf', /not a Docker container name/],
    ['a b', /not a Docker container name/],
    ['x'.repeat(300), /not a Docker container name/],
  ];
  for (const [text, re] of bad) t.throws(() => parseContainerRef(text), { code: 'config', message: re }, JSON.stringify(text));
});

t.test('parseAttachCidr and route CIDRs', async (t) => {
  t.same(parseAttachCidr('10.32.1.1/12'), { address: '10.32.1.1', prefixLen: 12, cidr: '10.32.1.1/12' });
  t.equal(parseAttachCidr('192.168.0.1/31').cidr, '192.168.0.1/31', '/31 has no network or broadcast address');
  t.equal(parseAttachCidr('192.168.0.0/31').cidr, '192.168.0.0/31');
  t.equal(parseAttachCidr('10.0.0.0/32').cidr, '10.0.0.0/32');
  t.equal(parseAttachCidr('10.32.0.1/12').address, '10.32.0.1');
  const bad: [string, RegExp][] = [
    ['10.32.0.0/12', /network address of 10\.32\.0\.0\/12/],
    ['10.47.255.255/12', /broadcast address of 10\.32\.0\.0\/12/],
    ['10.32.1.1', /needs a prefix length/],
    ['10.32.1.1/33', /IPv4 CIDR/],
    ['10.32.1.256/12', /IPv4 CIDR/],
    ['10.032.1.1/12', /IPv4 CIDR/],
    ['10.32.1/12', /IPv4 CIDR/],
    ['fd00::1/64', /IPv6 is not supported here/],
    ['127.0.0.2/8', /loopback/],
    ['224.0.0.1/4', /multicast/],
    ['0.1.2.3/8', /not a host address/],
    ['250.1.1.1/8', /reserved/],
    ['10.1.1.1/0', /prefix length 0/],
    ['banana', /IPv4 CIDR/],
    // Leading zeros: inet_aton reads 010 as 8, iproute2 reads /010 as /8.
    ['010.0.0.1/8', /IPv4 CIDR such as .*leading zeros are refused/],
    ['10.32.0.01/12', /IPv4 CIDR such as .*leading zeros are refused/],
    ['10.32.0.1/08', /IPv4 CIDR such as .*leading zeros are refused/],
    ['10.32.0.1/012', /IPv4 CIDR such as .*leading zeros are refused/],
  ];
  for (const [text, re] of bad) t.throws(() => parseAttachCidr(text), { code: 'config', message: re }, text);
  t.equal(parseRouteCidr('10.32.1.7/12'), '10.32.0.0/12');
  t.throws(() => parseRouteCidr('10.32.0.0'), /prefix length/);
  t.throws(() => parseRouteCidr('10.32.0.0/012'), /leading zeros are refused/);
  t.throws(() => parseRouteCidr('10.032.0.0/12'), /leading zeros are refused/);
});

t.test('parseAttachAddress: IPv4 and IPv6 (dual stack)', async (t) => {
  t.same(parseAttachAddress('10.32.1.1/12'), { family: 4, address: '10.32.1.1', prefixLen: 12, cidr: '10.32.1.1/12' });
  t.same(parseAttachAddress('FD00:77:1:0:0:0:0:5/48'), { family: 6, address: 'fd00:77:1::5', prefixLen: 48, cidr: 'fd00:77:1::5/48' }, 'canonical text');
  t.equal(parseAttachAddress(' fd00:0:0:1::5/64 ').cidr, 'fd00:0:0:1::5/64');
  t.equal(parseAttachAddress('fd00::10.0.0.1/64').cidr, 'fd00::a00:1/64', 'a trailing dotted quad');
  t.equal(parseAttachAddress('2001:db8:0:0:1:0:0:1/128').cidr, '2001:db8::1:0:0:1/128', 'the first of equal zero runs is compressed');
  t.equal(parseAttachAddress('fd00::/127').cidr, 'fd00::/127', '/127 has no anycast address');
  const bad: [string, RegExp][] = [
    ['fd00::1', /needs a prefix length/],
    ['fd00::1/129', /IPv6 CIDR/],
    ['fd00::1::2/64', /IPv6 CIDR/],
    ['fd00:12345::1/64', /IPv6 CIDR/],
    ['1:2:3:4:5:6:7/64', /IPv6 CIDR/],
    ['fe80::1%eth0/64', /IPv6 CIDR/],
    ['fd00::1/0', /prefix length 0/],
    ['::/64', /unspecified/],
    ['::1/128', /loopback/],
    ['::ffff:10.0.0.1/96', /IPv4-mapped/],
    ['fe80::5/64', /link-local/],
    ['febf::5/64', /link-local/],
    ['ff02::1/64', /multicast/],
    ['fd00:77:1::/48', /subnet-router anycast address of fd00:77:1::\/48/],
    ['banana', /CIDR/],
    ['010.0.0.1/8', /leading zeros are refused/],
    ['fd00::1/064', /IPv6 CIDR such as .*leading zeros are refused/],
    ['fd00::010.0.0.1/64', /IPv6 CIDR such as .*leading zeros are refused/],
  ];
  for (const [text, re] of bad) t.throws(() => parseAttachAddress(text), { code: 'config', message: re }, text);
  t.equal(parseRouteCidr('fd00:77:1::5/48'), 'fd00:77:1::/48');
  t.equal(parseRouteCidr('FD00:77:1:ffff::/64'), 'fd00:77:1:ffff::/64');
  t.throws(() => parseRouteCidr('fd00::'), /prefix length/);
  t.throws(() => parseRouteCidr('fd00::/048'), /leading zeros are refused/);
});

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
  t.same(host.runner.lines(), [
    `ip link show dev ${v}`,
    `ip link add name ${v} mtu 1376 type veth peer name ethwe mtu 1376 netns blue`,
    `ip link set dev ${v} master weave`,
    `ip link set dev ${v} up`,
    `${ns} ip link set dev ethwe gso_max_size 32768`,
    `${ns} sysctl -q -w net.ipv4.conf.ethwe.arp_notify=1 net.ipv4.neigh.ethwe.base_reachable_time_ms=5000 ` +
      'net.ipv4.neigh.ethwe.delay_first_probe_time=2 net.ipv4.neigh.ethwe.ucast_solicit=1',
    `${ns} sysctl -q -w net.ipv6.conf.ethwe.disable_ipv6=0 net.ipv6.conf.ethwe.ndisc_notify=1`,
    `${ns} ip addr add 10.32.1.1/12 dev ethwe`,
    `${ns} ip -6 addr add fd00:77:1::101/48 dev ethwe nodad`,
    `${ns} ip link set dev ethwe up`,
    `ip -j -d link show dev ${v}`,
    `${ns} ip link set dev ethwe address 02:aa:00:00:00:01`,
    `${ns} ip route add 10.32.0.0/12 dev ethwe`,
    `${ns} ip -6 route add fd00:77:1::/48 dev ethwe`,
    `${ns} ip route add 224.0.0.0/4 dev ethwe`,
    `${ns} ip -j link show dev ethwe`,
  ]);
  t.same(a.addresses, ['10.32.1.1/12', 'fd00:77:1::101/48'], 'both, IPv6 in canonical form');
  t.match(store.text ?? '', /fd00:77:1::101\/48/, 'persisted');
  t.same(seen, ['attached netns:blue 10.32.1.1/12,fd00:77:1::101/48']);
  t.equal(renderPs(manager.list()), `netns:blue blue 02:00:00:00:00:00 10.32.1.1/12 fd00:77:1::101/48`, 'weave ps lists both');

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
      `${rns} ip -6 route add fd00:77:1::/48 dev ethwe`,
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
      `${ns} ip -6 route del fd00:77:1::/48 dev ethwe`,
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
    'nsenter --net=/var/run/netns/blue ip -6 route del fd00:77:1::/48 dev ethwe',
  ]);
  t.same(given, [], 'nothing given back on success');
});

t.test('dual stack: a failure midway is rolled back', async (t) => {
  const steps: [RegExp, RegExp][] = [
    [/disable_ipv6=0/, /cannot enable IPv6 on ethwe/],
    [/-6 addr add/, /fd00:77:1::101/],
    [/-6 route add/, /fd00:77:1::\/48/],
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

t.test('veth names are stable and fit IFNAMSIZ', async (t) => {
  t.equal(hostIfnameFor('pid', 4194304), 'vethwepl4194304');
  t.equal(hostIfnameFor('docker', 42), 'vethwepl42');
  const a = hostIfnameFor('netns', 'some-very-long-namespace-name');
  t.equal(a, hostIfnameFor('netns', 'some-very-long-namespace-name'), 'same name, same veth');
  t.not(a, hostIfnameFor('netns', 'other'));
  t.ok(a.length <= 15);
  t.match(randomMac(), /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, 'locally administered unicast');
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
    `ip link show dev ${v}`,
    `ip link add name ${v} mtu 1376 type veth peer name ethwe mtu 1376 netns blue`,
    `ip link set dev ${v} master weave`,
    `ip link set dev ${v} up`,
    `${ns} ip link set dev ethwe gso_max_size 32768`,
    `${ns} sysctl -q -w net.ipv4.conf.ethwe.arp_notify=1 net.ipv4.neigh.ethwe.base_reachable_time_ms=5000 ` +
      'net.ipv4.neigh.ethwe.delay_first_probe_time=2 net.ipv4.neigh.ethwe.ucast_solicit=1',
    `${ns} ip addr add 10.32.1.1/12 dev ethwe`,
    `${ns} ip link set dev ethwe up`,
    `ip -j -d link show dev ${v}`,
    `${ns} ip link set dev ethwe address 02:aa:00:00:00:01`,
    `${ns} ip route add 10.32.0.0/12 dev ethwe`,
    `${ns} ip route add 224.0.0.0/4 dev ethwe`,
    `${ns} ip -j link show dev ethwe`,
  ]);
  t.same(a, {
    id: 'netns:blue', name: 'blue', kind: 'netns', ifname: 'ethwe', mac: '02:00:00:00:00:00',
    addresses: ['10.32.1.1/12'], hostIfname: v, pid: null,
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
    [/master weave/, /master weave/],
    [/ip addr add 10\.32\.1\.2/, /10\.32\.1\.2/],
    [/link set dev ethwe up/, /ethwe up/],
    [/route add 224/, /224\.0\.0\.0/],
    [/ip -j link show dev ethwe/, /exit 2/],
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
  t.ok(host.runner.lines().some((l) => l.endsWith('netns 100')), 'veth peer created in the pid namespace');
  t.same(renderPs(manager.list()).split(' ').slice(0, 2), ['aaaaaaaaaaaa', 'web']);

  const events: string[] = [];
  manager.addListener({ onDetached: (c, removed, reason) => { events.push(`${reason} ${c.name} ${removed.join(',')}`); } });
  manager.watchDocker();
  const emit = async (action: DockerEvent['action']) => {
    docker.handler?.({ action, id, name: 'web', timeSec: 1 });
    await manager.close().then(() => manager.watchDocker());
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

t.test('host bridge logic with a fake runner', async (t) => {
  await t.test('ensureBridge creates, enslaves, opens the firewall; rolls back a bridge it made', async (t) => {
    const ruleset = {
      nftables: [
        { metainfo: {} },
        { chain: { family: 'ip', table: 'filter', name: 'FORWARD', hook: 'forward', prio: 0, policy: 'drop' } },
        { chain: { family: 'inet', table: 'fw', name: 'in', hook: 'input', prio: 0, policy: 'drop' } },
        { chain: { family: 'inet', table: 'x y', name: 'fwd', hook: 'forward', prio: 0, policy: 'accept' } },
        { rule: { family: 'inet', table: 'x y', chain: 'fwd', handle: 7, comment: 'weave:weave', expr: [] } },
      ],
    };
    const runner = new FakeCommandRunner((cmd, args) => {
      const line = [cmd, ...args].join(' ');
      if (line === 'ip -j -d link show dev weave') return { code: 1, stderr: 'Device "weave" does not exist.' };
      if (line === 'ip -j -d link show dev tap0') return { stdout: '[{"ifname":"tap0","mtu":1500,"linkinfo":{"info_kind":"tun"},"flags":[]}]' };
      if (line === 'nft -j list ruleset') return { stdout: JSON.stringify(ruleset) };
      return undefined;
    });
    const r = await ensureBridge({ bridge: 'weave', tap: 'tap0', mtu: 1376 }, runner);
    t.equal(r.created, true);
    t.same(r.firewall.inserted, [{ family: 'ip', table: 'filter', chain: 'FORWARD' }]);
    t.same(r.firewall.present, [{ family: 'inet', table: 'x y', chain: 'fwd' }]);
    const lines = runner.lines();
    t.same(lines.slice(2, 8), [
      'ip link add name weave type bridge',
      'ip link set dev tap0 mtu 1376',
      'ip link set dev tap0 master weave',
      'ip link set dev weave mtu 1376',
      'ip link set dev weave up',
      'ip link set dev tap0 up',
    ]);
    const insert = runner.commands.at(-1);
    t.same(insert?.args[0], '-j');
    t.same(JSON.parse(insert?.args[1] ?? '{}'), { nftables: [{ insert: { rule: acceptRule({ family: 'ip', table: 'filter', chain: 'FORWARD' }, 'weave', 'tap0') } }] });

    runner.setResponder((cmd, args) => {
      const line = [cmd, ...args].join(' ');
      if (line === 'ip -j -d link show dev weave') return { code: 1, stderr: 'Device "weave" does not exist.' };
      if (line === 'ip -j -d link show dev tap0') return { stdout: '[{"ifname":"tap0","mtu":1500,"flags":[]}]' };
      if (line.includes('master weave')) return { code: 2, stderr: 'RTNETLINK answers: Operation not permitted' };
      return undefined;
    });
    runner.clear();
    await t.rejects(ensureBridge({ bridge: 'weave', tap: 'tap0', mtu: 1376 }, runner), /master weave failed.*Operation not permitted/);
    t.equal(runner.lines().at(-1), 'ip link del dev weave', 'the bridge made by this call is deleted again');
  });

  await t.test('firewall: missing nft, a chain that refuses, removal by comment', async (t) => {
    const missing = new FakeCommandRunner((cmd) => (cmd === 'nft' ? { code: 127, stderr: 'nft: not found' } : undefined));
    const r = await ensureBridgeForwarding({ bridge: 'weave', tap: 'tap0' }, missing);
    t.match(r.unavailable, /nft -j list ruleset failed/);
    const ruleset = {
      nftables: [
        { chain: { family: 'inet', table: 'owned', name: 'f', hook: 'forward' } },
        { chain: { family: 'bridge', table: 'b', name: 'f', hook: 'forward' } },
        { rule: { family: 'bridge', table: 'b', chain: 'f', handle: 3, comment: 'weave:weave' } },
        { rule: { family: 'inet', table: 'owned', chain: 'f', handle: 4, comment: 'someone else' } },
      ],
    };
    const runner = new FakeCommandRunner((cmd, args) => {
      if (args[0] === '-j' && args[1] === 'list') return { stdout: JSON.stringify(ruleset) };
      if (cmd === 'nft') return { code: 1, stderr: 'Error: Could not process rule: Operation not permitted' };
      return undefined;
    });
    const r2 = await ensureBridgeForwarding({ bridge: 'weave', tap: 'tap0' }, runner);
    t.same(r2.failed, [{ family: 'inet', table: 'owned', chain: 'f', error: 'Error: Could not process rule: Operation not permitted' }]);
    runner.setResponder((_cmd, args) => (args[1] === 'list' ? { stdout: JSON.stringify(ruleset) } : undefined));
    t.equal(await removeBridgeForwarding({ bridge: 'weave' }, runner), 1);
    t.same(JSON.parse(runner.commands.at(-1)?.args[1] ?? '{}'), { nftables: [{ delete: { rule: { family: 'bridge', table: 'b', chain: 'f', handle: 3 } } }] });
  });

  await t.test('detectUnderlayMtu', async (t) => {
    const withRoute = new FakeCommandRunner((_cmd, args) => {
      const line = args.join(' ');
      if (line === '-j -4 route show default') return { stdout: '[{"dst":"default","dev":"eth9"}]' };
      if (line === '-j -d link show dev eth9') return { stdout: '[{"ifname":"eth9","mtu":9001}]' };
      return undefined;
    });
    t.equal(await detectUnderlayMtu(withRoute), 9001);
    const noRoute = new FakeCommandRunner((_cmd, args) => {
      const line = args.join(' ');
      if (line.includes('route show default')) return { stdout: '[]' };
      if (line === '-j link show up') {
        return { stdout: JSON.stringify([{ ifname: 'lo', mtu: 65536, link_type: 'loopback', flags: ['LOOPBACK', 'UP'] }, { ifname: 'a', mtu: 1400 }, { ifname: 'b', mtu: 1450 }]) };
      }
      return undefined;
    });
    t.equal(await detectUnderlayMtu(noRoute), 1450);
    t.equal(await detectUnderlayMtu(new FakeCommandRunner(() => ({ code: 1, stderr: 'nope' }))), 1500);
  });

  await t.test('keepBridgeForwarding re-checks on a timer and patches chains that appear later', async (t) => {
    const chains: unknown[] = [];
    const runner = new FakeCommandRunner((_cmd, args) => (args[1] === 'list' ? { stdout: JSON.stringify({ nftables: chains }) } : undefined));
    const clock = new ManualClock();
    const keeper = keepBridgeForwarding({ bridge: 'weave', tap: 'tap0' }, { runner, clock, logger: silentLogger }, 20);
    t.teardown(() => keeper.close());
    t.same((await keeper.check()).inserted, []);
    chains.push({ chain: { family: 'ip', table: 'filter', name: 'FORWARD', hook: 'forward' } });
    const inserted = () => runner.commands.some((c) => c.args[0] === '-j' && (c.args[1] ?? '').includes('"insert"'));
    clock.advance(19);
    await new Promise((r) => setImmediate(r));
    t.notOk(inserted(), 'nothing before the interval is up');
    clock.advance(1);
    // The fake runner answers at once, so the check the timer started has finished by the next turn of the event loop.
    await new Promise((r) => setImmediate(r));
    t.ok(inserted(), 'the new chain got our rule');
    keeper.close();
  });

  t.throws(() => new NetnsCommandRunner(new FakeCommandRunner(), 'a b'), /namespace name/);
  const wrapped = new NetnsCommandRunner(new FakeCommandRunner(), 'h1');
  await t.resolves(wrapped.run('ip', ['link']));
});

t.test('Docker reply parsing', async (t) => {
  const id = 'c'.repeat(64);
  t.same(parseInspect({ Id: id, Name: '/web', State: { Pid: 42, Running: true } }, 'web'), { id, name: 'web', pid: 42, running: true });
  t.same(parseInspect({ Id: id, Name: '/web', State: { Pid: 0, Running: false } }, 'web'), { id, name: 'web', pid: 0, running: false });
  t.throws(() => parseInspect({ Name: '/x' }, 'x'), /no container id/);
  t.same(parseEvent(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: id, Attributes: { name: 'web' } }, time: 5 })),
    { action: 'start', id, name: 'web', timeSec: 5 });
  t.equal(parseEvent(JSON.stringify({ Type: 'container', Action: 'exec_start', Actor: { ID: id } })), null);
  t.equal(parseEvent(JSON.stringify({ Type: 'network', Action: 'start' })), null);
  t.equal(parseEvent('{not json'), null);
});

t.test('API bodies and CLI arguments', async (t) => {
  t.same(parseAttachBody({ container: 'web', addresses: ['10.32.0.1/12'] }), { container: 'web', addresses: ['10.32.0.1/12'] });
  t.same(parseDetachBody({ container: 'web' }), { container: 'web' });
  const badAttach: [unknown, RegExp][] = [
    [null, /expects a JSON object/],
    [[], /expects a JSON object/],
    [{ addresses: ['10.32.0.1/12'] }, /"container" must be/],
    [{ container: 'web', addresses: 'x' }, /"addresses" must be an array/],
    [{ container: 'web', addresses: [5] }, /every address must be a string/],
    [{ container: 'web', addresses: new Array(65).fill('10.32.0.1/12') }, /over the limit/],
  ];
  for (const [body, re] of badAttach) t.throws(() => parseAttachBody(body), { code: 'config', message: re });
  t.same(parseAttachBody({ container: 'web' }).addresses, [], 'no addresses: IPAM allocates');
  t.throws(() => parseDetachBody({ container: 'web', addresses: 'x' }), /must be an array/);

  t.same(splitAddressesAndContainer(['10.32.0.1/12', '10.32.0.2/12', 'web'], 'attach'), { container: 'web', addresses: ['10.32.0.1/12', '10.32.0.2/12'] });
  t.same(splitAddressesAndContainer(['netns:x'], 'detach'), { container: 'netns:x', addresses: [] });
  t.same(splitAddressesAndContainer(['web'], 'attach'), { container: 'web', addresses: [] }, 'no address: IPAM allocates');
  t.same(splitAddressesAndContainer(['net:10.32.8.0/24', 'ip:10.32.0.9/12', 'web'], 'attach').addresses, ['net:10.32.8.0/24', 'ip:10.32.0.9/12']);
  t.throws(() => splitAddressesAndContainer(['ip:10.32.0.0/12', 'web'], 'attach'), /network address/);
  t.throws(() => splitAddressesAndContainer(['web', '10.32.0.1/12'], 'attach'), /the container comes last/);
  t.throws(() => splitAddressesAndContainer(['10.32.0.0/12', 'web'], 'attach'), /network address/);
  t.same(splitAddressesAndContainer(['10.32.0.1/12', 'fd00:77:1::1/48', 'web'], 'attach').addresses, ['10.32.0.1/12', 'fd00:77:1::1/48'], 'IPv6 too');
  t.same(splitAddressesAndContainer(['ip:fd00:77:1::1/48', 'web'], 'attach').addresses, ['ip:fd00:77:1::1/48']);
  t.throws(() => splitAddressesAndContainer(['web', 'fd00:77:1::1/48'], 'attach'), /the container comes last/);
  t.throws(() => splitAddressesAndContainer(['fe80::1/64', 'web'], 'attach'), /link-local/);
  const c: AttachedContainer = {
    id: 'netns:x', name: 'x', kind: 'netns', ifname: 'ethwe', mac: '02:00:00:00:00:01', addresses: ['10.32.0.1/12', '10.32.0.2/12'], hostIfname: 'vethwensabc', pid: null,
  };
  t.equal(renderPs([c]), 'netns:x x 02:00:00:00:00:01 10.32.0.1/12 10.32.0.2/12');
});

t.test('HTTP API: 400 for bad requests, JSON for good ones', async (t) => {
  const control: RouterControl = { status: () => sampleStatus(), connect: () => undefined, forget: () => undefined, stop: () => undefined };
  const api = new HttpApi({ control, logger: silentLogger }, { address: '127.0.0.1:0' });
  const { host, manager } = setup();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  api.mount(containerApi(manager));
  await api.listen();
  t.teardown(() => api.close());
  const client = new ApiClient(`127.0.0.1:${api.address().port}`);
  const reply = await client.post<{ container: AttachedContainer }>('/attach', { container: 'netns:blue', addresses: ['10.32.4.1/12'] });
  t.same(reply.container.addresses, ['10.32.4.1/12']);
  t.same((await client.get<{ containers: AttachedContainer[] }>('/ps')).containers.map((x) => x.id), ['netns:blue']);
  for (const [body, re] of [
    [{ container: 'netns:blue' }, /an address is required when no IPAM/],
    [{ container: 'netns:nosuch', addresses: ['10.32.4.2/12'] }, /no network namespace named nosuch/],
    [{ container: 'netns:blue', addresses: ['10.32.0.0/12'] }, /network address/],
  ] as [unknown, RegExp][]) {
    const err = await client.post('/attach', body).then(() => null, (e: unknown) => e);
    t.ok(err instanceof ApiError && err.statusCode === 400 && re.test(err.message), `400: ${String(err)}`);
  }
  const d = await client.post<{ detached: boolean }>('/detach', { container: 'netns:blue' });
  t.equal(d.detached, true);
  const report = await client.get<{ containers: unknown[] }>('/report');
  t.same(report.containers, []);
});

t.test('Docker client over a unix socket: inspect, errors, events with reconnect', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weave-fake-docker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'docker.sock');
  const id = 'd'.repeat(64);
  let eventConnections = 0;
  const queries: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker');
    if (url.pathname === '/containers/web/json') {
      res.end(JSON.stringify({ Id: id, Name: '/web', State: { Pid: 9, Running: true } }));
    } else if (url.pathname.startsWith('/containers/')) {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: 'No such container' }));
    } else if (url.pathname === '/events') {
      eventConnections++;
      queries.push(url.searchParams.get('filters') ?? '');
      res.write(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: id, Attributes: { name: 'web' } }, time: 100 }) + '\n');
      // The first stream breaks after one event; the client must come back.
      if (eventConnections === 1) res.end(JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: id }, time: 101 }) + '\n');
    } else {
      res.end('OK');
    }
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  t.teardown(() => { server.closeAllConnections(); server.close(); });

  const client = new DockerClient(silentLogger, { socketPath });
  t.equal(await client.ping(), true);
  t.same(await client.inspect('web'), { id, name: 'web', pid: 9, running: true });
  t.equal(await client.inspect('nosuch'), null);
  await t.rejects(client.inspect('../etc'), { code: 'config' });
  const absent = new DockerClient(silentLogger, { socketPath: join(dir, 'absent.sock') });
  await t.rejects(absent.inspect('web'), { message: `cannot reach Docker at ${join(dir, 'absent.sock')}: is dockerd running?` });
  t.equal(await absent.ping(), false);

  const seen: string[] = [];
  const watch = client.watchEvents((ev) => seen.push(`${ev.action} ${ev.timeSec}`));
  t.teardown(() => watch.close());
  const deadline = Date.now() + 5000;
  while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  watch.close();
  t.same(seen.slice(0, 3), ['start 100', 'die 101', 'start 100'], 'reconnected after the stream ended');
  t.same(JSON.parse(queries[0] ?? '{}'), { type: ['container'], event: ['start', 'die', 'destroy'] });
});
