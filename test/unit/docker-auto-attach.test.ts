// Unit tests of Docker auto-attach and the container lifecycle, without root
// or Docker: the label and WEAVE_CIDR as hostile input, the event and sweep
// decisions as tables, and a ContainerManager on a scripted host with a fake
// engine and a ManualClock: a labelled container attached on start (and
// kept how it joined across a restart), refusals and a container that
// exited before its attach shown in status, the engine appearing late, a
// stopped container released after the grace period, a deleted netns:
// namespace dropped by the sweep, a death whose event was missed, auto-attach
// turned off; and the CLI's renderings (dns-args, status docker, ps).

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import { ContainerManager } from '../../router/host/container-manager';
import { MemoryStateStore } from '../../router/host/container-state';
import { autoAttachRequest, parseAttachWords } from '../../router/host/docker-attach-spec';
import type { DockerApi, DockerContainer, DockerEngineState, DockerEvent, EventWatch } from '../../router/host/docker-client';
import { dockerSocketFromEnv, parseInspect } from '../../router/host/docker-client';
import { decideDockerEvent, decideSweep } from '../../router/host/docker-lifecycle';
import { FakeHost } from './host-fakes';
import { dnsArgs, dockerOverviewLine, renderDockerStatus } from '../../cli/docker-commands';
import { renderPs } from '../../cli/container-commands';

t.test('label and WEAVE_CIDR are read as hostile input', async (t) => {
  t.same(autoAttachRequest({}), { kind: 'none' }, 'neither: not ours');
  t.same(autoAttachRequest({ labels: { 'weave.attach': '' } }), { kind: 'attach', via: 'label', addresses: [] }, 'empty label: IPAM');
  t.same(autoAttachRequest({ labels: { 'weave.attach': ' net:10.2.0.0/24  10.32.1.5/12 ' } }),
    { kind: 'attach', via: 'label', addresses: ['net:10.2.0.0/24', '10.32.1.5/12'] });
  t.same(autoAttachRequest({ weaveCidr: 'ip:10.32.1.6/12 net:default' }), { kind: 'attach', via: 'env', addresses: ['ip:10.32.1.6/12', 'net:default'] });
  t.same(autoAttachRequest({ labels: { 'weave.attach': '' }, weaveCidr: '10.32.1.7/12' }), { kind: 'attach', via: 'label', addresses: [] }, 'the label wins');
  t.same(autoAttachRequest({ weaveCidr: 'none' }), { kind: 'none' }, 'WEAVE_CIDR=none opts out');
  t.same(autoAttachRequest({ labels: { other: 'x' }, networkMode: 'none' }), { kind: 'none' });
  const refused: [Parameters<typeof autoAttachRequest>[0], RegExp][] = [
    [{ labels: { 'weave.attach': '10.32.1.5' } }, /"10\.32\.1\.5".*prefix length.*expected nothing, or CIDRs/],
    [{ labels: { 'weave.attach': 'net:banana' } }, /"net:banana"/],
    [{ labels: { 'weave.attach': '10.32.0.0/12' } }, /network address/],
    [{ labels: { 'weave.attach': '10.32.1.5/12\u0000' } }, /control characters/],
    [{ labels: { 'weave.attach': 'x'.repeat(5000) } }, /over 4096/],
    [{ labels: { 'weave.attach': Array.from({ length: 65 }, (_, i) => `10.32.1.${i + 1}/12`).join(' ') } }, /over the limit of 64/],
    [{ weaveCidr: '$(reboot)' }, /^WEAVE_CIDR: /],
    [{ labels: { 'weave.attach': '' }, networkMode: 'host' }, /--network host/],
    [{ labels: { 'weave.attach': '' }, networkMode: 'container:abc' }, /put the label on that container/],
  ];
  for (const [c, re] of refused) {
    const r = autoAttachRequest(c);
    t.equal(r.kind, 'refused', JSON.stringify(c).slice(0, 60));
    if (r.kind === 'refused') t.match(r.error, re);
  }
  t.throws(() => parseAttachWords('fe80::1/64'), /link-local/);

  // The inspect reply: labels with string values only, the last WEAVE_CIDR, the network mode.
  const id = 'e'.repeat(64);
  const info = parseInspect({
    Id: id, Name: '/web', State: { Pid: 7, Running: true },
    Config: { Labels: { 'weave.attach': '', n: 5 }, Env: ['PATH=/bin', 'WEAVE_CIDR=10.32.0.9/12', 3, 'WEAVE_CIDR=net:default'] },
    HostConfig: { NetworkMode: 'none' },
  }, 'web');
  t.same(info, { id, name: 'web', pid: 7, running: true, labels: { 'weave.attach': '' }, weaveCidr: 'net:default', networkMode: 'none' });
  t.same(parseInspect({ Id: id, Config: { Labels: null, Env: 'x' }, HostConfig: null }, 'x').labels, undefined, 'odd shapes are ignored');

  // DOCKER_HOST: a local unix socket only.
  t.equal(dockerSocketFromEnv({}), '/var/run/docker.sock');
  t.equal(dockerSocketFromEnv({ DOCKER_HOST: '' }), '/var/run/docker.sock');
  t.equal(dockerSocketFromEnv({ DOCKER_HOST: 'unix:///run/h1-docker.sock' }), '/run/h1-docker.sock');
  t.throws(() => dockerSocketFromEnv({ DOCKER_HOST: 'tcp://10.0.0.1:2375' }), { code: 'config', message: /not supported.*unix socket/ });
  t.throws(() => dockerSocketFromEnv({ DOCKER_HOST: 'unix://relative.sock' }), { code: 'config' });
});

t.test('lifecycle decisions', async (t) => {
  const attach = { kind: 'attach' as const, via: 'label' as const, addresses: [] };
  const running = { kind: 'docker' as const, state: 'attached' as const };
  const stopped = { kind: 'docker' as const, state: 'stopped' as const, stoppedAtMs: 1_000 };
  t.same(decideDockerEvent(null, 'start', attach), { do: 'attach', via: 'label', addresses: [] });
  t.same(decideDockerEvent(null, 'start', null), { do: 'nothing' }, 'auto-attach off');
  t.same(decideDockerEvent(null, 'start', { kind: 'none' }), { do: 'nothing' });
  t.same(decideDockerEvent(null, 'start', { kind: 'refused', via: 'env', error: 'bad' }), { do: 'report', error: 'bad' });
  t.same(decideDockerEvent(null, 'die', attach), { do: 'nothing' }, 'not ours');
  t.same(decideDockerEvent(running, 'start', attach), { do: 'reattach' }, 'a record wins over the label');
  t.same(decideDockerEvent(stopped, 'start', null), { do: 'reattach' }, 'restart');
  t.same(decideDockerEvent(running, 'die', null), { do: 'stop' });
  t.same(decideDockerEvent(stopped, 'die', null), { do: 'nothing' }, 'a repeated die');
  t.same(decideDockerEvent(stopped, 'destroy', null), { do: 'forget' });
  t.same(decideDockerEvent(running, 'destroy', null), { do: 'forget' });

  const clock = new ManualClock(1_000);
  clock.advance(59_999);
  t.equal(decideSweep({ ...stopped, nsId: 'a' }, null, clock.now(), 60_000), 'keep', 'within the grace period');
  clock.advance(1);
  t.equal(decideSweep({ ...stopped, nsId: 'a' }, null, clock.now(), 60_000), 'expired');
  t.equal(decideSweep({ kind: 'docker', state: 'stopped', nsId: 'a' }, null, clock.now(), 0), 'keep', 'no stop time: kept');
  t.equal(decideSweep({ kind: 'netns', state: 'attached', nsId: 'a' }, 'a', clock.now(), 0), 'keep');
  t.equal(decideSweep({ kind: 'netns', state: 'attached', nsId: 'a' }, null, clock.now(), 0), 'gone');
  t.equal(decideSweep({ kind: 'pid', state: 'attached', nsId: 'a' }, 'b', clock.now(), 0), 'gone', 'another namespace at that path');
  t.equal(decideSweep({ kind: 'docker', state: 'attached', nsId: 'a' }, 'a', clock.now(), 0), 'keep');
  t.equal(decideSweep({ kind: 'docker', state: 'attached', nsId: 'a' }, null, clock.now(), 0), 'died', 'Docker: a death whose event was missed');
});

/** An engine that answers from a map, can be absent, and lists what runs. */
class FakeEngine implements DockerApi {
  readonly containers = new Map<string, DockerContainer>();
  onEvent: ((ev: DockerEvent) => void) | null = null;
  onState: ((s: DockerEngineState) => void) | null = null;
  async inspect(ref: string): Promise<DockerContainer | null> {
    for (const c of this.containers.values()) if (c.id === ref || c.name === ref) return { ...c };
    return null;
  }
  async listRunning(): Promise<string[]> {
    return [...this.containers.values()].filter((c) => c.running).map((c) => c.id);
  }
  watchEvents(onEvent: (ev: DockerEvent) => void, onState?: (s: DockerEngineState) => void): EventWatch {
    this.onEvent = onEvent;
    this.onState = onState ?? null;
    return { close: () => { this.onEvent = null; } };
  }
}

function world(opts: { autoAttach?: boolean } = {}) {
  const host = new FakeHost();
  const engine = new FakeEngine();
  const clock = new ManualClock(1_000_000);
  const store = new MemoryStateStore();
  let next = 0;
  const manager = new ContainerManager(
    { runner: host.runner, netlink: host.netlink, docker: engine, logger: silentLogger, hostFs: host.hostFs, store, clock, newMac: () => `02:aa:00:00:00:0${++next % 10}`, sleep: async () => undefined },
    { bridge: 'weave', mtu: 1376, overlayRoutes: ['10.32.0.0/12'], datadir: '/nonexistent', graceMs: 60_000, sweepMs: 2_000 },
  );
  let given = 0;
  const released: string[] = [];
  manager.setAddressSource({
    obtain: async (_c, requests) => (requests.length === 0 ? [`10.32.5.${++given}/12`] : requests.map((r) => r.replace(/^ip:/, ''))),
    giveBack: () => undefined,
  });
  manager.addListener({ onDetached: (c, removed, reason) => { released.push(`${reason} ${c.name} ${removed.join(',')}`); } });
  const run = (id: string, name: string, pid: number, extra: Partial<DockerContainer> = {}) => {
    engine.containers.set(id, { id, name, pid, running: true, ...extra });
    host.namespaces.set(`/proc/${pid}/ns/net`, `ns:${name}${pid}`);
  };
  /** Delivers an event and waits until it and everything it started are done. */
  const emit = async (action: DockerEvent['action'], id: string) => {
    engine.onEvent?.({ action, id, name: null, timeSec: 1 });
    await manager.idle();
  };
  manager.watch({ autoAttach: opts.autoAttach ?? true });
  return { host, engine, clock, manager, released, run, emit };
}

t.test('auto-attach on start, restart keeps address and origin, death and removal release', async (t) => {
  const { host, engine, clock, manager, released, run, emit } = world();
  t.teardown(() => manager.close());
  engine.onState?.({ reachable: true, socket: '/run/x.sock', error: null });
  const web = 'a'.repeat(64);
  run(web, 'web', 100, { labels: { 'weave.attach': '' } });
  await emit('start', web);
  t.same(manager.listAll().map((c) => [c.name, c.joined, c.addresses]), [['web', 'label', ['10.32.5.1/12']]], 'attached from its label');
  const env = 'b'.repeat(64);
  run(env, 'legacy', 101, { weaveCidr: '10.32.7.7/12' });
  await emit('start', env);
  t.same(manager.listAll().find((c) => c.name === 'legacy')?.joined, 'env');
  const plain = 'c'.repeat(64);
  run(plain, 'plain', 102);
  await emit('start', plain);
  t.equal(manager.listAll().length, 2, 'no label: left alone');

  // docker restart: die, then start in a new namespace.
  host.namespaces.delete('/proc/100/ns/net');
  host.links.delete('vethwepl100');
  await emit('die', web);
  t.same(released, ['died web 10.32.5.1/12']);
  run(web, 'web', 200, { labels: { 'weave.attach': '' } });
  await emit('start', web);
  const again = manager.listAll().find((c) => c.name === 'web');
  t.same([again?.pid, again?.joined, again?.addresses], [200, 'label', ['10.32.5.1/12']], 'same address, new namespace, still joined by label');

  // A death past the grace period: forgotten, addresses released as destroyed.
  host.namespaces.delete('/proc/200/ns/net');
  host.links.delete('vethwepl200');
  await emit('die', web);
  clock.advance(59_000);
  await manager.sweep();
  t.equal(manager.addressesInUse().includes('10.32.5.1/12'), true, 'kept within the grace period');
  clock.advance(1_000);
  await manager.sweep();
  t.equal(manager.addressesInUse().includes('10.32.5.1/12'), false, 'released after it');
  t.same(released.slice(-1), ['destroyed web 10.32.5.1/12']);

  // docker rm -f: die and destroy.
  host.namespaces.delete('/proc/101/ns/net');
  await emit('die', env);
  await emit('destroy', env);
  t.same(released.slice(-2), ['died legacy 10.32.7.7/12', 'destroyed legacy 10.32.7.7/12']);
  t.same(manager.listAll(), []);
});

t.test('problems go to status, never a crash; the engine appearing late is scanned', async (t) => {
  const { engine, manager, run, emit } = world();
  t.teardown(() => manager.close());
  t.equal(manager.dockerStatus()?.engine, null, 'nothing heard yet');
  engine.onState?.({ reachable: false, socket: '/run/x.sock', error: 'cannot reach Docker at /run/x.sock: is dockerd running?' });
  t.match(manager.dockerStatus(), { autoAttach: true, engine: { reachable: false, error: /is dockerd running/ } });

  const bad = 'd'.repeat(64);
  run(bad, 'bad', 300, { labels: { 'weave.attach': '10.32.1.5' } });
  const early = 'f'.repeat(64);
  run(early, 'early', 301, { labels: { 'weave.attach': '' } });
  // The engine appears: both were started while it was unreachable to us.
  engine.onState?.({ reachable: true, socket: '/run/x.sock', error: null });
  await manager.idle();
  t.same(manager.listAll().map((c) => c.name), ['early'], 'the scan attached the labelled one');
  const problems = manager.dockerStatus()?.problems ?? [];
  t.equal(problems.length, 1);
  t.match(problems[0], { container: 'bad', id: bad, error: /weave\.attach: "10\.32\.1\.5"/ });

  // Exited between its event and the attach: inspect says running, the namespace is gone.
  const quick = '9'.repeat(64);
  run(quick, 'quick', 302, { labels: { 'weave.attach': '' } });
  engine.containers.set(quick, { id: quick, name: 'quick', pid: 302, running: true, labels: { 'weave.attach': '' } });
  const attach = manager.attach.bind(manager);
  manager.attach = async (...args) => {
    engine.containers.set(quick, { id: quick, name: 'quick', pid: 0, running: false });
    return attach(...args);
  };
  await emit('start', quick);
  t.match(manager.dockerStatus()?.problems[0], { container: 'quick', error: /exited before it could be attached.*attached when it starts again/ });
  // A later destroy clears its problem.
  await emit('destroy', quick);
  t.notOk(manager.dockerStatus()?.problems.some((p) => p.id === quick));
});

t.test('auto-attach off: labels ignored, restarts of attached containers still followed', async (t) => {
  const { engine, manager, run, emit } = world({ autoAttach: false });
  t.teardown(() => manager.close());
  engine.onState?.({ reachable: true, socket: '/run/x.sock', error: null });
  const id = '8'.repeat(64);
  run(id, 'labelled', 400, { labels: { 'weave.attach': '' } });
  await emit('start', id);
  t.same(manager.listAll(), []);
  t.equal(manager.dockerStatus()?.autoAttach, false);
  await manager.attach('labelled', []);
  t.same(manager.listAll().map((c) => c.joined), ['manual']);
});

t.test('a netns: namespace deleted without weave detach loses its attachment at the next sweep', async (t) => {
  const { host, manager, released, clock } = world();
  t.teardown(() => manager.close());
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  await manager.attach('netns:blue', ['10.32.9.1/12']);
  await manager.sweep();
  t.equal(manager.listAll().length, 1, 'still there: kept');
  host.namespaces.delete('/var/run/netns/blue');
  clock.advance(2_000); // the sweep timer fires; its work runs in the manager's queue
  await manager.sweep();
  t.same(manager.listAll(), []);
  t.same(released, ['gone blue 10.32.9.1/12']);
});

t.test('endpoint sources are listed beside the manager\'s own', async (t) => {
  const { manager, run, emit } = world();
  t.teardown(() => manager.close());
  const remove = manager.addEndpointSource({
    list: () => [{ id: 'p'.repeat(64), name: 'viaplugin', kind: 'docker', ifname: 'ethwe', mac: '02:00:00:00:00:09', addresses: ['10.32.3.3/12'], hostIfname: 'vethwepx', pid: 5, joined: 'plugin' }],
  });
  t.same(manager.listAll().map((c) => c.joined), ['plugin']);
  // The plugin's container also carries the label: it is attached once, by the plugin.
  run('p'.repeat(64), 'viaplugin', 600, { labels: { 'weave.attach': '' } });
  await emit('start', 'p'.repeat(64));
  t.same(manager.listAll().map((c) => c.joined), ['plugin'], 'auto-attach leaves it alone');
  remove();
  t.same(manager.listAll(), []);
});

t.test('a death whose event was missed (the engine away) is found by the sweep', async (t) => {
  const { host, manager, released, run, emit } = world();
  t.teardown(() => manager.close());
  const id = '7'.repeat(64);
  run(id, 'lonely', 500, { labels: { 'weave.attach': '' } });
  await emit('start', id);
  host.namespaces.delete('/proc/500/ns/net');
  host.links.delete('vethwepl500');
  await manager.sweep();
  t.same(manager.listAll(), [], 'not listed');
  t.same(released, ['died lonely 10.32.5.1/12'], 'name removed, addresses kept for the grace period');
  t.same(manager.addressesInUse(), ['10.32.5.1/12']);
});

t.test('weave dns-args, weave status docker and weave ps render', async (t) => {
  t.same(dnsArgs({ address: '169.254.7.8', domain: 'weave.local.' }), ['--dns=169.254.7.8', '--dns-search=weave.local.']);
  t.throws(() => dnsArgs({ address: null, domain: 'weave.local.' }), /no address on this host/);
  const engine = { reachable: true, socket: '/run/x.sock', error: null };
  t.equal(dockerOverviewLine(null), 'not watched');
  t.equal(dockerOverviewLine({ autoAttach: true, engine: null, problems: [] }), 'connecting; auto-attach on');
  t.equal(dockerOverviewLine({ autoAttach: false, engine, problems: [] }), 'engine at /run/x.sock; auto-attach off (--no-auto-attach)');
  t.equal(dockerOverviewLine({ autoAttach: true, engine: { ...engine, reachable: false, error: 'cannot reach Docker at /run/x.sock: permission denied' }, problems: [] }),
    'not reachable (cannot reach Docker at /run/x.sock: permission denied); auto-attach waits for it');
  const text = renderDockerStatus({ autoAttach: true, engine, problems: [{ container: 'bad\u001b[31m', id: 'd'.repeat(64), error: 'weave.attach: "x"', atMs: 1_000 }] }, 4_000);
  t.match(text, /^Docker: engine at \/run\/x\.sock; auto-attach on, 1 not attached \(weave status docker\)\n {2}bad.*\(dddddddddddd\), 3s ago: weave\.attach: "x"$/);
  t.notMatch(text, /\u001b/, 'a container name cannot drive the terminal');
  t.equal(renderPs([{ id: 'a'.repeat(64), name: 'web', kind: 'docker', ifname: 'ethwe', mac: '02:00:00:00:00:01', addresses: ['10.32.0.1/12'], hostIfname: 'vethwepl1', pid: 1, joined: 'label' }]),
    'aaaaaaaaaaaa web label 02:00:00:00:00:01 10.32.0.1/12');
});
