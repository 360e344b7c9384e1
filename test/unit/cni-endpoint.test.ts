// The daemon's CNI side on a fake host (test/unit/host-fakes.ts): ADD with
// weave IPAM and with delegated addresses, rollback of a failed ADD, IPAM
// not ready, refusals, DEL twice, GC, restore after a restart (kept, gone,
// cut short), the record file read as hostile, and the API's validation of
// hostile bodies with the HTTP status each failure gets.

import t from 'tap';
import { HttpError } from '../../common/api-route';
import { CodedError } from '../../common/errors';
import { silentLogger } from '../../common/logger';
import { cniHttpStatus, parseCniAddBody, parseCniDelBody, parseCniGcBody } from '../../router/api/cni-api';
import type { CniAddressSource } from '../../router/host/cni-endpoint';
import { CniEndpoint, CniError } from '../../router/host/cni-endpoint';
import { cniHostIfname, parseCniState } from '../../router/host/cni-state';
import type { RunResult } from '../../router/host/command-runner';
import { FakeHost } from './host-fakes';

class CniHost extends FakeHost {
  override respond(cmd: string, args: string[]): Partial<RunResult> | undefined {
    if (cmd === 'nsenter' && /^ip link show dev \S+$/.test(args.slice(1).join(' '))) return { stdout: `[{"address":"02:00:00:00:00:0${this.macCounter}"}]` };
    return super.respond(cmd, args);
  }
}

class FakeIpam implements CniAddressSource {
  held = new Map<string, string[]>();
  next = 1;
  fail: Error | null = null;
  async obtain(id: string): Promise<string[]> {
    if (this.fail !== null) throw this.fail;
    const a = [`10.32.0.${this.next++}/12`];
    this.held.set(id, a);
    return a;
  }
  release(id: string): string[] {
    const a = this.held.get(id) ?? [];
    this.held.delete(id);
    return a;
  }
}

function setup() {
  const host = new CniHost();
  host.namespaces.set('/run/netns/c1', 'ns:c1');
  host.namespaces.set('/run/netns/c2', 'ns:c2');
  const ipam = new FakeIpam();
  let text: string | null = null;
  const store = { load: () => text, save: (s: string) => { text = s; } };
  const events: string[] = [];
  const make = (): CniEndpoint => {
    const e = new CniEndpoint(
      { runner: host.runner, netlink: host.netlink, logger: silentLogger, store, addresses: ipam, hostFs: host.hostFs, sleep: async () => undefined, dns: () => ({ nameservers: ['169.254.1.1'], search: ['weave.local'] }) },
      { bridge: 'weave', mtu: 1376, overlayRoutes: ['10.32.0.0/12'] },
    );
    e.addListener({ onAttached: (a) => { events.push(`+${a.containerId}`); }, onDetached: (a, why) => { events.push(`-${a.containerId} ${why}`); } });
    return e;
  };
  return { host, ipam, make, events, text: () => text, setText: (s: string) => { text = s; } };
}

const req = (containerId: string, netns = '/run/netns/c1', ifName = 'eth0') => ({ version: 1 as const, containerId, ifName, netns, network: 'weave', dnsName: 'web' });

t.test('ADD, DEL, DEL twice', async (t) => {
  const { host, ipam, make, events, text } = setup();
  const e = make();
  const a = await e.add(req('ctr1'));
  t.same([a.ifName, a.netns, a.hostIfname, a.ipam, a.dnsName], ['eth0', '/run/netns/c1', cniHostIfname('ctr1', 'eth0'), 'weave', 'web']);
  t.match(a.hostIfname, /^vethwec[0-9a-f]{8}$/);
  t.same(a.addresses, [{ address: '10.32.0.1/12' }]);
  t.same(a.routes, [{ dst: '10.32.0.0/12' }, { dst: '224.0.0.0/4' }]);
  t.same(a.dns, { nameservers: ['169.254.1.1'], search: ['weave.local'] });
  t.ok(host.links.has(a.hostIfname));
  t.ok(host.runner.commands.some((c) => /peer name eth0 mtu 1376 .*netns \/run\/netns\/c1$/.test(c.args.join(' '))), 'the peer is born as eth0 in the given namespace');
  t.match(text(), /"state": "attached"/);
  t.same(e.attached(), [{
    id: 'cni:ctr1/eth0', name: 'web', kind: 'cni', ifname: 'eth0', mac: a.mac, addresses: ['10.32.0.1/12'], hostIfname: a.hostIfname, pid: null, joined: 'cni',
  }], 'listed for weave ps by its runtime id and DNS name');
  t.same(await e.add(req('ctr1')), a, 'ADD again answers with what is there');
  await t.rejects(e.add(req('ctr1', '/run/netns/c1', 'eth1')), { code: 'config', message: /already has weave-net interface eth0/ });
  t.same(await e.del({ version: 1, containerId: 'ctr1', ifName: 'eth0' }), { removed: true, released: ['10.32.0.1/12'] });
  t.notOk(host.links.has(a.hostIfname));
  t.same(await e.del({ version: 1, containerId: 'ctr1', ifName: 'eth0' }), { removed: false, released: [] }, 'DEL twice');
  t.same(events, ['+ctr1', '-ctr1 del']);
  t.same(ipam.held.size, 0);
  t.same(e.attached(), [], 'and no longer listed');
});

t.test('a failed ADD leaves nothing, and says why', async (t) => {
  const { host, ipam, make, events, text } = setup();
  const e = make();
  host.failOn = /master weave/;
  await t.rejects(e.add(req('ctr1')), { code: 'io', message: /scripted failure/ });
  t.notOk(host.links.has(cniHostIfname('ctr1', 'eth0')), 'veth deleted');
  t.same(ipam.held.size, 0, 'address given back');
  t.same(e.list(), []);
  t.same(e.attached(), [], 'a failed ADD is not listed');
  t.match(text(), /"attachments": \[\]/);
  host.failOn = null;
  ipam.fail = new CodedError('timeout', 'could not get an address within 1 s: waiting for consensus with 1 more peer');
  await t.rejects(e.add(req('ctr2')), { code: 'waiting', message: /IPAM is not ready.*consensus/ });
  ipam.fail = null;
  await t.rejects(e.add(req('ctr3', '/run/netns/gone')), { code: 'no-netns' });
  await t.rejects(e.add(req('ctr3', '/proc/self/ns/net')), { code: 'config', message: /host's own network namespace/ });
  host.namespaces.set('/etc/hostname', 'disk:42');
  await t.rejects(e.add(req('ctr3', '/etc/hostname')), { code: 'config', message: /not a network namespace/ });
  t.same(events, [], 'listeners heard of none of it');
  t.same([...host.links].filter((l) => l.startsWith('vethwec')), []);
});

t.test('delegated addresses are not weave IPAM\'s to free', async (t) => {
  const { ipam, make } = setup();
  const e = make();
  const a = await e.add({ ...req('ctr1'), delegated: { addresses: [{ address: '10.44.0.2/24', gateway: '10.44.0.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.44.0.1' }] } });
  t.same(a.addresses, [{ address: '10.44.0.2/24', gateway: '10.44.0.1' }]);
  t.same(a.routes.at(-1), { dst: '0.0.0.0/0', gw: '10.44.0.1' });
  ipam.held.set('ctr1', ['10.32.0.9/12']);
  t.same(await e.del({ version: 1, containerId: 'ctr1', ifName: 'eth0' }), { removed: true, released: [] });
  t.same(ipam.held.get('ctr1'), ['10.32.0.9/12'], 'weave IPAM untouched');
});

t.test('"portSecurity": false in the network config: kept in the record, through a restart, and listed for port security', async (t) => {
  const { make } = setup();
  const e1 = make();
  const a = await e1.add({ ...req('vpn'), portSecurity: false });
  t.equal(a.portSecurity, false, 'the reply says so');
  const b = await e1.add(req('web', '/run/netns/c2'));
  t.notOk('portSecurity' in b, 'guarded: not spelled out');
  const restored = await make().restore();
  t.same(restored.map((x) => [x.containerId, x.portSecurity]), [['vpn', false], ['web', undefined]], 'restored as it was');
  t.same(e1.attached().map((x) => [x.hostIfname, x.portSecurity]), [[a.hostIfname, false], [b.hostIfname, undefined]]);
  t.same(parseCniAddBody({ ...req('x'), portSecurity: false }).portSecurity, false, 'the API takes false');
  t.notOk('portSecurity' in parseCniAddBody({ ...req('x'), portSecurity: true }), 'true is the default');
});

t.test('port security learns an ADD\'s port before its MAC is announced, and forgets it when the ADD fails', async (t) => {
  const { host, make } = setup();
  const e = make();
  const seen: { ports: string[]; linesSoFar: number }[] = [];
  e.addListener({ onPortsChanging: () => { seen.push({ ports: e.ports().map((p) => `${p.hostIfname} ${p.mac} ${p.addresses.join(',')}`), linesSoFar: host.runner.lines().length }); } });
  const a = await e.add(req('ctr1'));
  t.same(seen.map((x) => x.ports), [[`${a.hostIfname} ${a.mac} 10.32.0.1/12`]], 'told once, with the MAC the ADD then gave the interface');
  t.notOk(host.runner.lines().slice(0, seen[0]!.linesSoFar).some((l) => l.includes(a.mac)), 'before the MAC was set (the announcement)');
  t.same(e.ports().map((p) => p.hostIfname), [a.hostIfname], 'once attached, listed as such');
  seen.length = 0;
  host.failOn = /ip route add 224\.0\.0\.0\/4/;
  await t.rejects(e.add(req('ctr2', '/run/netns/c2')), /scripted failure/);
  t.equal(seen.length, 2, 'told when the port is about to come up and when the ADD failed');
  t.equal(seen[0]?.ports.length, 2, 'the failing ADD\'s port was listed at first');
  t.same(seen[1]?.ports, [`${a.hostIfname} ${a.mac} 10.32.0.1/12`], 'and is gone again');
});

t.test('restore: kept, gone, and an ADD cut short; GC', async (t) => {
  const { host, ipam, make, events, text, setText } = setup();
  const e1 = make();
  await e1.add(req('keep'));
  await e1.add(req('lost', '/run/netns/c2'));
  host.namespaces.set('/run/netns/c3', 'ns:c3');
  await e1.add(req('short', '/run/netns/c3'));
  // A crash midway through the ADD of 'short': the veth and the address exist, the record says 'adding'.
  const record = JSON.parse(text() ?? '') as { attachments: { containerId: string; state: string }[] };
  for (const r of record.attachments) if (r.containerId === 'short') r.state = 'adding';
  setText(JSON.stringify(record));
  // The namespace of 'lost' vanished while the router was away.
  host.namespaces.delete('/run/netns/c2');
  const e2 = make();
  const restored = await e2.restore();
  t.same(restored.map((a) => a.containerId), ['keep']);
  t.same([...ipam.held.keys()], ['keep'], 'the addresses of the vanished namespace and of the cut ADD were freed');
  t.notOk(host.links.has(cniHostIfname('short', 'eth0')), 'the cut ADD\'s veth is gone');
  t.ok(events.includes('-lost gone'));
  t.notOk(events.includes('-short gone'), 'nobody heard of the cut ADD, so nobody hears it go');
  t.same(await e2.del({ version: 1, containerId: 'lost', ifName: 'eth0' }), { removed: false, released: [] }, 'its DEL later finds nothing to do');
  host.namespaces.set('/run/netns/c2', 'ns:c2');
  await e2.add(req('other', '/run/netns/c2', 'net1'));
  t.same(await e2.gc({ version: 1, network: 'weave', valid: [{ containerId: 'keep', ifName: 'eth0' }] }), { removed: [{ containerId: 'other', ifName: 'net1' }] });
  t.same(await e2.gc({ version: 1, network: 'other-net', valid: [] }), { removed: [] }, 'GC of another network touches nothing of ours');
});

t.test('the record file is read as hostile', async (t) => {
  const good = { containerId: 'a', ifName: 'eth0', hostIfname: cniHostIfname('a', 'eth0'), netns: '/run/netns/x', nsId: 'ns:x', network: 'weave', mac: '02:00:00:00:00:01', addresses: [{ address: '10.32.0.1/12' }], routes: [], dnsName: null, ipam: 'weave', state: 'attached' };
  const { records, problems } = parseCniState(JSON.stringify({ version: 1, attachments: [
    good,
    { ...good, containerId: 'b' },
    { ...good, containerId: 'c', hostIfname: 'eth0' },
    { ...good, containerId: 'd', hostIfname: cniHostIfname('d', 'eth0'), netns: '/run/../etc/passwd' },
    { ...good, containerId: 'e', hostIfname: cniHostIfname('e', 'eth0'), addresses: [{ address: '127.0.0.1/8' }] },
    { ...good, containerId: 'f', hostIfname: cniHostIfname('f', 'eth0'), ipam: 'mine' },
    { ...good, containerId: 'g', hostIfname: cniHostIfname('g', 'eth0'), state: 'gone' },
    { ...good, containerId: 'h', hostIfname: cniHostIfname('h', 'eth0'), routes: Array.from({ length: 65 }, () => ({ dst: '10.0.0.0/8' })) },
    good,
  ] }));
  t.same(records.map((r) => r.containerId), ['a']);
  t.equal(problems.length, 8);
  t.match(problems.join('\n'), /not the one of b\/eth0[\s\S]*not the one of c\/eth0[\s\S]*must be plain[\s\S]*loopback[\s\S]*ipam must be[\s\S]*state[\s\S]*routes[\s\S]*listed twice/);
  t.throws(() => parseCniState('{"version": 2, "attachments": []}'), /expected/);
});

function status(fn: () => unknown): number | string {
  try {
    fn();
    return 'accepted';
  } catch (err) {
    return err instanceof HttpError ? err.statusCode : String(err);
  }
}

t.test('the API refuses hostile bodies with 400', async (t) => {
  const ok = { version: 1, containerId: 'abc', ifName: 'eth0', netns: '/run/netns/x', network: 'weave', dnsName: 'web' };
  t.equal(status(() => parseCniAddBody(ok)), 'accepted');
  t.equal(status(() => parseCniAddBody({ ...ok, dnsName: null })), 'accepted');
  const table: [string, unknown][] = [
    ['not an object', []],
    ['null', null],
    ['wire version 2', { ...ok, version: 2 }],
    ['container id an object', { ...ok, containerId: {} }],
    ['netns relative', { ...ok, netns: 'x' }],
    ['ifname with a space', { ...ok, ifName: 'eth 0' }],
    ['network empty', { ...ok, network: '' }],
    ['dnsName with a newline', { ...ok, dnsName: 'a\nb' }],
    ['dnsName missing', { ...ok, dnsName: undefined }],
    ['delegated a list', { ...ok, delegated: [] }],
    ['delegated without addresses', { ...ok, delegated: { addresses: [] } }],
    ['delegated loopback', { ...ok, delegated: { addresses: [{ address: '127.0.0.2/8' }] } }],
    ['delegated 17 addresses', { ...ok, delegated: { addresses: Array(17).fill({ address: '10.1.0.1/16' }) } }],
    ['delegated bad gateway', { ...ok, delegated: { addresses: [{ address: '10.1.0.2/16', gateway: 'x' }] } }],
    ['delegated bad route', { ...ok, delegated: { addresses: [{ address: '10.1.0.2/16' }], routes: [{ dst: 'default' }] } }],
    ['ipamWaitMs negative', { ...ok, ipamWaitMs: -5 }],
    ['ipamWaitMs a string', { ...ok, ipamWaitMs: '100' }],
    ['portSecurity a string', { ...ok, portSecurity: 'off' }],
  ];
  for (const [what, body] of table) t.equal(status(() => parseCniAddBody(body)), 400, what);
  t.same(parseCniDelBody({ version: 1, containerId: 'abc', ifName: 'eth0' }), { version: 1, containerId: 'abc', ifName: 'eth0' });
  t.equal(status(() => parseCniDelBody({ version: 1, containerId: 'abc', ifName: 'eth0', netns: 'rel' })), 400);
  t.equal(status(() => parseCniGcBody({ version: 1, network: 'weave', valid: {} })), 400);
  t.equal(status(() => parseCniGcBody({ version: 1, network: 'weave', valid: [{ containerId: 'a' }] })), 400);
  t.same(['config', 'not-found', 'no-netns', 'drift', 'waiting', 'io'].map((c) => cniHttpStatus(c as CniError['code'])), [400, 404, 410, 409, 503, 500]);
  t.ok(new CniError('config', 'x') instanceof CodedError);
});
