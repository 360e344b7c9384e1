// The Docker network plugin with real engines, one per simulated host: h1's
// container joins by `docker run --network weave` (the plugin), h2's by the
// weave.attach label (auto-attach); nobody runs `weave attach`. They resolve
// each other by name and ping across hosts; `docker restart` keeps the
// plugin container's address and connectivity; a second network made with
// `docker network create -d weave --ipam-driver weave --subnet` works, and
// one made with `-o port-security=false` leaves its containers unguarded (a
// misspelt option is refused by name); a
// relaunch of both routers keeps everything reachable; `docker rm -f`
// removes the name on the other host within seconds; `weave reset` removes
// the Docker network and the plugin socket.
//
// /run/docker/plugins is one directory for every engine on the machine, so
// each host gets a mount namespace of its own (a holder process from
// `unshare -m --propagation slave`) with a private tmpfs there; its dockerd
// and its router run inside it (nsenter -t HOLDER -m --net=...). Forwarding
// points at a port on loopback where nothing listens, so no query leaves the
// test's namespaces. Everything made here is removed even on failure.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { docker, ensureBusyboxImage, stopDockerdIfWeStartedIt } from '../../scripts/docker';
import { HostEngine } from '../../scripts/host-engine';
import { dockerSkipReason } from './docker-available';
import type { DnsStatusReport } from '../../dns/api-types';

t.setTimeout(300_000);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

async function main(t: Tap): Promise<void> {
  const began = Date.now();
  const net = await SimNetwork.create({ hosts: 2, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  const e1 = new HostEngine(h1, net.rootDir, net.prefix, { privatePluginDir: true });
  const e2 = new HostEngine(h2, net.rootDir, net.prefix, { privatePluginDir: true });
  t.teardown(async () => {
    t.comment(`teardown from ${((Date.now() - began) / 1000).toFixed(1)} s`);
    await Promise.all([e1.clear(), e2.clear()]);
    await Promise.all([h1, h2].map((h) => h.weave(['stop'], { timeoutMs: 15_000 })));
    await Promise.all([e1.stop(), e2.stop()]);
    await net.destroy();
    await stopDockerdIfWeStartedIt();
  });
  const mark = (what: string): void => { t.comment(`${what} at ${((Date.now() - began) / 1000).toFixed(1)} s`); };
  const image = await ensureBusyboxImage();
  const tar = path.join(net.rootDir, 'busybox.tar');
  await docker(['save', '-o', tar, image]);
  await Promise.all([e1.start(), e2.start()]);
  await Promise.all([e1, e2].map((e) => e.docker(['load', '-i', tar])));
  mark('engines ready');

  const A = `${net.prefix}a`;
  const B = `${net.prefix}b`;
  const launch = async (e: HostEngine, peers: string[]): Promise<void> => {
    const r = await e.weave(['launch', '--nickname', e.host.name, '--dns-upstream', '127.0.0.1:9', ...peers]);
    t.equal(r.code, 0, `launch ${e.host.name}: ${r.stderr.trim()}`);
  };
  await Promise.all([launch(e1, []), launch(e2, [h1.address])]);
  mark('routers launched');
  for (const h of [h1, h2]) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, { what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog() });
  }
  const lookup = async (e: HostEngine, from: string, name: string): Promise<string> => {
    const r = await e.docker(['exec', from, 'nslookup', name], true);
    return r.stdout + r.stderr;
  };
  const resolves = (out: string, ip: string): boolean => new RegExp(`Address(?: \\d+)?:\\s*${ip.replace(/\./g, '\\.')}\\b`).test(out);
  const ipOn = async (e: HostEngine, c: string, network: string): Promise<string> =>
    (await e.docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, c])).stdout.trim();
  const pings = async (e: HostEngine, from: string, to: string): Promise<boolean> => (await e.docker(['exec', from, 'ping', '-c', '1', '-W', '2', to], true)).code === 0;

  let ipA = '';
  let ipB = '';
  await t.test('weave launch made the network weave in each engine', async (t) => {
    for (const e of [e1, e2]) {
      await waitFor(async () => (await e.docker(['network', 'inspect', '-f', '{{.Driver}} {{.IPAM.Driver}}', 'weave'], true)).stdout.trim() === 'weave weave', {
        what: `network weave on ${e.host.name}`, timeoutMs: 20_000, detail: () => e.host.readLog(),
      });
    }
    t.equal(fs.statSync(e1.pluginSocketPath()).mode & 0o777, 0o660, 'the plugin socket is 0660');
    const id = (e: HostEngine): string => { const st = fs.statSync(e.pluginSocketPath()); return `${st.dev}:${st.ino}`; };
    t.not(id(e1), id(e2), 'each host has its own');
  });

  await t.test('docker run --network weave on h1, the weave.attach label on h2, no weave attach', async (t) => {
    await e1.docker(['run', '-d', '--network', 'weave', '--name', A, image, 'sleep', '3600']);
    await e2.docker(['run', '-d', '--network', 'none', '--label', 'weave.attach', '--name', B, image, 'sleep', '3600']);
    ipA = await ipOn(e1, A, 'weave');
    t.match(ipA, /^10\.(3[2-9]|4[0-7])\./, `A has an overlay address from weave IPAM (${ipA})`);
    await waitFor(async () => (ipB = ((await h2.weave(['ps'])).stdout.match(new RegExp(`${B} label \\S+ (10\\.[0-9.]+)/`)) ?? [])[1] ?? '') !== '', { what: `${B} attached by its label`, timeoutMs: 20_000, detail: () => h2.readLog() });
    await waitFor(async () => /nameserver 169\.254\./.test((await e1.docker(['exec', A, 'cat', '/etc/resolv.conf'])).stdout), { what: `${A}'s resolver pointed at weave DNS`, timeoutMs: 15_000, detail: () => h1.readLog() });
    const ps = (await h1.weave(['ps'])).stdout;
    t.match(ps, new RegExp(`${A} plugin \\S+ ${ipA.replace(/\./g, '\\.')}/`), 'weave ps on h1 lists A as joined by the plugin');
    let out = '';
    await waitFor(async () => resolves(out = await lookup(e1, A, B), ipB), { what: `${A} resolves ${B}`, timeoutMs: 20_000, detail: () => out });
    await waitFor(async () => resolves(out = await lookup(e2, B, A), ipA), { what: `${B} resolves ${A}`, timeoutMs: 20_000, detail: () => out });
    await waitFor(() => pings(e1, A, B), { what: `${A} pings ${B} by name across hosts`, timeoutMs: 20_000 });
    t.ok(await pings(e2, B, A), `${B} pings ${A} by name`);
  });

  await t.test('docker restart keeps the address and connectivity', async (t) => {
    await e1.docker(['restart', '-t', '1', A]);
    t.equal(await ipOn(e1, A, 'weave'), ipA, 'same address after the restart');
    await waitFor(() => pings(e2, B, ipA), { what: `${B} pings ${A} after its restart`, timeoutMs: 20_000 });
    let out = '';
    await waitFor(async () => resolves(out = await lookup(e2, B, A), ipA), { what: `${A} resolvable again`, timeoutMs: 20_000, detail: () => out });
    await waitFor(async () => resolves(out = await lookup(e1, A, B), ipB), { what: `the restarted ${A} resolves ${B}`, timeoutMs: 20_000, detail: () => out });
  });

  await t.test('a second network: docker network create -d weave --ipam-driver weave --subnet', async (t) => {
    const N2 = `${net.prefix}n2`;
    await e1.docker(['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', '10.40.0.0/16', N2]);
    const C = `${net.prefix}c`;
    await e1.docker(['run', '-d', '--network', N2, '--name', C, image, 'sleep', '3600']);
    const ipC = await ipOn(e1, C, N2);
    t.match(ipC, /^10\.40\./, `C has an address in the subnet (${ipC})`);
    await waitFor(() => pings(e1, C, ipB), { what: `${C} pings ${B} across hosts`, timeoutMs: 20_000 });
    await e1.docker(['rm', '-f', C]);
    t.equal((await e1.docker(['network', 'rm', N2], true)).code, 0, 'and the network goes again');
  });

  await t.test('a network made with -o port-security=false: its containers are let through, the others still guarded', async (t) => {
    const portSecurity = async (): Promise<{ ports: number; unguarded: number; problem: string | null }> =>
      (await h1.weaveStatus() as unknown as { portSecurity: { ports: number; unguarded: number; problem: string | null } }).portSecurity;
    const before = await portSecurity();
    t.equal(before.unguarded, 0, `every port guarded so far (${before.ports})`);
    const typo = await e1.docker(['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '-o', 'port-secruity=false', `${net.prefix}typo`], true);
    t.not(typo.code, 0, 'a misspelt option is refused');
    t.match(typo.stderr, /unknown option "port-secruity"/, 'by name');
    const N3 = `${net.prefix}n3`;
    // Labels, --internal and --attachable do not reach the driver's -o options: they must not be refused as unknown ones.
    await e1.docker(['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '-o', 'port-security=false', '--label', 'team=edge', '--internal', '--attachable', N3]);
    const D = `${net.prefix}d`;
    await e1.docker(['run', '-d', '--network', N3, '--name', D, image, 'sleep', '3600']);
    const during = await portSecurity();
    t.same({ ports: during.ports, unguarded: during.unguarded, problem: during.problem }, { ports: before.ports, unguarded: 1, problem: null },
      'its container\'s port is let through (no chain of its own), the others keep theirs');
    await waitFor(() => pings(e1, D, ipB), { what: `${D} pings ${B} across hosts`, timeoutMs: 20_000 });
    await e1.docker(['rm', '-f', D]);
    t.equal((await e1.docker(['network', 'rm', N3], true)).code, 0, 'the network goes again');
    t.same(await portSecurity(), before, 'and its port with it');
  });

  await t.test('stopping and relaunching both routers keeps everything reachable', async (t) => {
    await Promise.all([h1, h2].map(async (h) => t.equal((await h.weave(['stop'], { timeoutMs: 20_000 })).code, 0, `stop ${h.name}`)));
    mark('routers stopped');
    await Promise.all([launch(e1, []), launch(e2, [h1.address])]);
    mark('routers relaunched');
    await waitFor(() => pings(e2, B, ipA), { what: `${B} pings ${A} after the relaunch`, timeoutMs: 30_000, detail: () => h1.readLog() });
    mark('pings after the relaunch');
    let out = '';
    await waitFor(async () => resolves(out = await lookup(e2, B, A), ipA), { what: `${A} resolvable after the relaunch`, timeoutMs: 20_000, detail: () => out });
    t.match((await h1.weave(['ps'])).stdout, new RegExp(`${A} plugin`), 'h1 knows its plugin container again');
  });

  await t.test('docker rm -f removes the name on the other host within seconds', async (t) => {
    await e1.docker(['rm', '-f', A]);
    const start = Date.now();
    await waitFor(async () => {
      const s = JSON.parse((await h2.weave(['status', 'dns', '--json'])).stdout) as DnsStatusReport;
      return !s.records.some((r) => r.name === `${A}.weave.local` && !r.tombstone);
    }, { what: `${A}'s name gone on h2`, timeoutMs: 15_000 });
    t.ok(Date.now() - start < 15_000, `gone on h2 after ${Date.now() - start} ms`);
  });

  await t.test('weave reset removes the Docker network and the plugin socket', async (t) => {
    const r = await e1.weave(['reset']);
    t.equal(r.code, 0, `weave reset: ${r.stdout.trim()} ${r.stderr.trim()}`);
    t.not((await e1.docker(['network', 'inspect', 'weave'], true)).code, 0, 'no network weave in h1\'s engine');
    t.notOk(fs.existsSync(e1.pluginSocketPath()), 'no plugin socket');
    t.notOk(fs.existsSync(path.join(h1.datadir, 'docker-plugin.json')), 'no plugin record');
  });
}

void dockerSkipReason().then((skip) => t.test('the Docker network plugin across two hosts with an engine each', { skip }, main));
