// Docker auto-attach with real engines, one per simulated host, and no
// `weave attach` anywhere: `docker run --label weave.attach` on both hosts
// attaches each container on its start event; they resolve each other by
// name and ping across hosts; `docker restart` keeps the address and
// connectivity; `docker rm -f` removes the name on the other host within
// seconds; stopping and relaunching both routers keeps everything reachable;
// a `netns:` namespace deleted without `weave detach` loses its name within
// seconds; `weave reset` leaves no trace (links, nftables rules, resolv.conf).
//
// Each engine runs in its host's network namespace (nsenter --net, as
// ../../scripts/docker.ts notes) with its own socket, data and exec roots;
// the routers run with --no-docker-plugin, so nothing here touches the
// machine-wide /run/docker/plugins. DNS forwarding points at a loopback port
// where nothing listens. Everything made here is removed even on failure.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { SimNetwork } from '../../scripts/sim-network';
import { run } from '../../scripts/command';
import { waitFor } from '../../scripts/wait';
import { docker, ensureBusyboxImage, stopDockerdIfWeStartedIt } from '../../scripts/docker';
import { HostEngine } from '../../scripts/host-engine';
import { dockerSkipReason } from './docker-available';
import type { DnsStatusReport } from '../../dns/api-types';

t.setTimeout(240_000);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

async function main(t: Tap): Promise<void> {
  const net = await SimNetwork.create({ hosts: 2, password: 'auto attach', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  const e1 = new HostEngine(h1, net.rootDir, net.prefix);
  const e2 = new HostEngine(h2, net.rootDir, net.prefix);
  t.teardown(async () => {
    await Promise.all([e1.clear(), e2.clear()]);
    for (const h of [h1, h2]) await h.weave(['stop'], { timeoutMs: 15_000 });
    await e1.stop();
    await e2.stop();
    await net.destroy();
    await stopDockerdIfWeStartedIt();
  });
  const image = await ensureBusyboxImage();
  const tar = path.join(net.rootDir, 'busybox.tar');
  await docker(['save', '-o', tar, image]);
  await Promise.all([e1.start(), e2.start()]);
  await Promise.all([e1, e2].map((e) => e.docker(['load', '-i', tar])));

  const launch = async (e: HostEngine, peers: string[]): Promise<void> => {
    const r = await e.weave(['launch', '--nickname', e.host.name, '--no-docker-plugin', '--dns-upstream', '127.0.0.1:9', ...peers]);
    t.equal(r.code, 0, `launch ${e.host.name}: ${r.stderr.trim()}`);
  };
  const connected = async (): Promise<void> => {
    for (const h of [h1, h2]) {
      await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, { what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog() });
    }
  };
  await launch(e1, []);
  await launch(e2, [h1.address]);
  await connected();

  const A = `${net.prefix}a`;
  const B = `${net.prefix}b`;
  // busybox nslookup ignores search domains: ask for the full name.
  const fqdn = (n: string): string => `${n}.weave.local`;
  const resolves = async (e: HostEngine, from: string, name: string, ip: string): Promise<boolean> => {
    const r = await e.docker(['exec', from, 'nslookup', fqdn(name)], true);
    return new RegExp(`Address(?: \\d+)?:\\s*${ip.replace(/\./g, '\\.')}\\b`).test(r.stdout);
  };
  const pings = async (e: HostEngine, from: string, to: string): Promise<boolean> => (await e.docker(['exec', from, 'ping', '-c', '1', '-W', '2', to], true)).code === 0;
  /** The address `weave ps` on `e`'s host shows for `name` joined by its label, or ''. */
  const labelled = async (e: HostEngine, name: string): Promise<string> =>
    ((await e.weave(['ps'])).stdout.match(new RegExp(`^\\S+ ${name} label \\S+ (10\\.[0-9.]+)/`, 'm')) ?? [])[1] ?? '';
  const runLabelled = (e: HostEngine, name: string) => e.docker(['run', '-d', '--network', 'none', '--label', 'weave.attach', '--name', name, image, 'sleep', '3600']);

  let ipA = '';
  let ipB = '';
  await t.test('docker run --label weave.attach on both hosts: attached, resolvable, reachable', async (t) => {
    await Promise.all([runLabelled(e1, A), runLabelled(e2, B)]);
    await waitFor(async () => (ipA = await labelled(e1, A)) !== '', { what: `${A} attached by its label`, timeoutMs: 30_000, detail: () => h1.readLog() });
    await waitFor(async () => (ipB = await labelled(e2, B)) !== '', { what: `${B} attached by its label`, timeoutMs: 30_000, detail: () => h2.readLog() });
    t.match((await e1.docker(['exec', A, 'cat', '/etc/resolv.conf'])).stdout, /nameserver 169\.254\./, `${A}'s resolver points at weave DNS`);
    await waitFor(() => resolves(e1, A, B, ipB), { what: `${A} resolves ${B}`, timeoutMs: 20_000 });
    await waitFor(() => resolves(e2, B, A, ipA), { what: `${B} resolves ${A}`, timeoutMs: 20_000 });
    await waitFor(() => pings(e1, A, fqdn(B)), { what: `${A} pings ${B} by name across hosts`, timeoutMs: 20_000 });
    t.ok(await pings(e2, B, fqdn(A)), `${B} pings ${A} by name`);
    const args = await e1.weave(['dns-args']);
    t.match(args.stdout.trim(), /^--dns=169\.254\.\d+\.\d+ --dns-search=weave\.local\.?$/, `weave dns-args: ${args.stdout.trim()} ${args.stderr.trim()}`);
    t.equal((await e1.weave(['env'])).stdout.trim(), `export WEAVE_DNS_ARGS='${args.stdout.trim()}'`, 'weave env sets the same flags');
    const st = await e1.weave(['status', 'docker']);
    t.match(st.stdout, /Docker: engine at .*auto-attach on/, `weave status docker: ${st.stdout.trim()}`);
  });

  await t.test('docker restart keeps the address and connectivity', async (t) => {
    await e1.docker(['restart', '-t', '1', A]);
    await waitFor(async () => (await labelled(e1, A)) === ipA && (await pings(e1, A, ipB)), { what: `${A} attached again with ${ipA}`, timeoutMs: 20_000, detail: () => h1.readLog() });
    t.equal(await labelled(e1, A), ipA, 'same address');
    await waitFor(() => resolves(e2, B, A, ipA), { what: `${A} resolvable again`, timeoutMs: 20_000 });
  });

  await t.test('docker rm -f removes the name on the other host within seconds', async (t) => {
    await e2.docker(['rm', '-f', B]);
    const start = Date.now();
    await waitFor(async () => {
      const s = JSON.parse((await h1.weave(['status', 'dns', '--json'])).stdout) as DnsStatusReport;
      return !s.records.some((r) => r.name === fqdn(B) && !r.tombstone);
    }, { what: `${B}'s name gone on h1`, timeoutMs: 10_000 });
    t.pass(`gone on h1 after ${Date.now() - start} ms`);
    await runLabelled(e2, B);
    await waitFor(async () => (ipB = await labelled(e2, B)) !== '', { what: `a new ${B} attached`, timeoutMs: 20_000 });
  });

  await t.test('stopping and relaunching both routers keeps everything reachable', async (t) => {
    for (const h of [h1, h2]) t.equal((await h.weave(['stop'], { timeoutMs: 20_000 })).code, 0, `stop ${h.name}`);
    t.match((await e1.docker(['exec', A, 'ip', 'addr', 'show', 'ethwe'])).stdout, ipA, 'the container stays attached while the router is down');
    await launch(e1, []);
    await launch(e2, [h1.address]);
    await connected();
    await waitFor(() => pings(e1, A, ipB), { what: `${A} pings ${B} after the relaunch`, timeoutMs: 30_000, detail: () => h1.readLog() });
    await waitFor(() => resolves(e2, B, A, ipA), { what: `${A} resolvable after the relaunch`, timeoutMs: 20_000 });
    t.equal(await labelled(e1, A), ipA, `h1 knows ${A} again, joined by its label`);
  });

  await t.test('a netns: namespace deleted without weave detach loses its name promptly', async (t) => {
    const N = `${net.prefix}n`;
    t.teardown(() => run(['ip', 'netns', 'del', N]).then(() => undefined));
    await run(['ip', 'netns', 'add', N], { check: true });
    const r = await e1.weave(['attach', `netns:${N}`]);
    t.equal(r.code, 0, `weave attach netns:${N}: ${r.stderr.trim()}`);
    const named = async (): Promise<boolean> =>
      (JSON.parse((await h2.weave(['status', 'dns', '--json'])).stdout) as DnsStatusReport).records.some((x) => x.name === fqdn(N) && !x.tombstone);
    await waitFor(named, { what: `${N} named on h2`, timeoutMs: 10_000 });
    await run(['ip', 'netns', 'del', N], { check: true });
    const start = Date.now();
    await waitFor(async () => !(await named()), { what: `${N}'s name gone on h2`, timeoutMs: 10_000, detail: () => h1.readLog() });
    t.pass(`gone on h2 after ${Date.now() - start} ms`);
    t.notMatch((await e1.weave(['ps'])).stdout, N, 'and from weave ps');
  });

  await t.test('weave reset leaves no trace', async (t) => {
    for (const e of [e2, e1]) {
      const r = await e.weave(['reset', '--force']);
      t.equal(r.code, 0, `weave reset on ${e.host.name}: ${r.stdout.trim()} ${r.stderr.trim()}`);
    }
    for (const e of [e1, e2]) {
      const links = (await e.host.exec(['ip', '-o', 'link', 'show'])).stdout;
      t.notMatch(links, /\bweave\b|vethwe/, `no bridge, TAP or veth left on ${e.host.name}`);
      const rules = (await e.host.exec(['nft', 'list', 'ruleset'])).stdout;
      t.notMatch(rules, /weave/, `no nftables rule or table of ours on ${e.host.name}`);
      t.notOk(fs.existsSync(path.join(e.host.datadir, 'containers.json')), `no containers.json on ${e.host.name}`);
    }
    for (const [e, c] of [[e1, A], [e2, B]] as const) {
      const resolv = (await e.docker(['exec', c, 'cat', '/etc/resolv.conf'])).stdout;
      t.notMatch(resolv, /169\.254\.|weave\.local/, `${c}'s resolv.conf is Docker's again`);
      t.notMatch((await e.docker(['exec', c, 'ip', 'link'])).stdout, /ethwe/, `${c} has no ethwe`);
    }
  });
}

void dockerSkipReason().then((skip) => t.test('Docker auto-attach across two hosts with an engine each', { skip }, main));
