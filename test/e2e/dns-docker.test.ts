// Weave DNS with a real Docker engine: two simulated hosts (namespaces), one
// `--network none` busybox container attached on each by its Docker name; the
// containers find each other by Docker name with busybox nslookup, survive a
// `docker restart`, lose the name when the other container is removed, and get
// their resolv.conf back on detach. Starts dockerd if needed
// (scripts/docker.ts); skips only when Docker cannot be installed at all.
// Forwarding points at a port on loopback where nothing listens, so no query
// ever leaves the test's namespaces.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import { docker, ensureBusyboxImage, stopDockerdIfWeStartedIt } from '../../scripts/docker';
import { dockerSkipReason } from './docker-available';
import type { DnsStatusReport } from '../../dns/api-types';

t.setTimeout(400_000);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

async function main(t: Tap): Promise<void> {
  const net = await SimNetwork.create({ hosts: 2, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const A = `${net.prefix}a`;
  const B = `${net.prefix}b`;
  t.teardown(async () => {
    await docker(['rm', '-f', A, B], { allowFail: true });
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
    await stopDockerdIfWeStartedIt();
  });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  const image = await ensureBusyboxImage();
  for (const name of [A, B]) await docker(['run', '-d', '--network', 'none', '--name', name, image, 'sleep', '3600']);
  const resolvBefore = (await docker(['exec', A, 'cat', '/etc/resolv.conf'])).stdout;

  for (const [h, peers] of [[h1, []], [h2, [h1.address]]] as const) {
    const r = await h.weave(['launch', '--nickname', h.name, '--dns-upstream', '127.0.0.1:9', ...peers]);
    t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
  }
  for (const h of [h1, h2]) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
      what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }
  t.equal((await h1.weave(['attach', '10.32.8.1/24', A])).code, 0, 'attach a on h1');
  t.equal((await h2.weave(['attach', '10.32.8.2/24', B])).code, 0, 'attach b on h2');

  const lookup = async (from: string, name: string): Promise<string> => {
    const r = await docker(['exec', from, 'nslookup', name], { allowFail: true, timeoutMs: 30_000 });
    return r.stdout + r.stderr;
  };
  const resolves = (out: string, ip: string): boolean => new RegExp(`Address(?: \\d+)?:\\s*${ip.replace(/\./g, '\\.')}\\b`).test(out);

  await t.test('the resolver inside each container points at its host', async (t) => {
    const s1 = JSON.parse((await h1.weave(['status', 'dns', '--json'])).stdout) as DnsStatusReport;
    const conf = (await docker(['exec', A, 'cat', '/etc/resolv.conf'])).stdout;
    t.match(conf, `nameserver ${s1.address}`);
    t.match(conf, /search weave\.local/);
    t.ok(s1.records.some((r) => r.name === `${A}.weave.local` && r.address === '10.32.8.1' && !r.tombstone), 'a registered by its Docker name');
  });

  await t.test('busybox nslookup finds the other host\'s container by its Docker name', async (t) => {
    let out = '';
    await waitFor(async () => resolves(out = await lookup(A, B), '10.32.8.2'), { what: `nslookup ${B} in ${A}`, timeoutMs: 20_000, detail: () => out });
    t.pass(`a resolves b: ${out.split('\n').filter((l) => /Address/.test(l)).join('; ')}`);
    t.ok(resolves(await lookup(B, `${A}.weave.local`), '10.32.8.1'), 'b resolves a, fully qualified');
    t.equal((await docker(['exec', A, 'ping', '-c', '1', '-W', '3', B], { allowFail: true })).code, 0, 'and can ping it by name');
  });

  await t.test('docker restart: attached again, name and resolver back', async (t) => {
    await docker(['restart', '-t', '1', B]);
    let out = '';
    await waitFor(async () => resolves(out = await lookup(A, B), '10.32.8.2'), { what: `${B} resolvable after its restart`, timeoutMs: 30_000, detail: () => out });
    const conf = (await docker(['exec', B, 'cat', '/etc/resolv.conf'])).stdout;
    t.match(conf, /nameserver 169\.254\./, 'the regenerated resolv.conf is pointed at us again');
    t.ok(resolves(await lookup(B, A), '10.32.8.1'), 'and b resolves a');
  });

  await t.test('a removed container\'s name goes away on both hosts', async (t) => {
    await docker(['rm', '-f', B]);
    await waitFor(async () => {
      const a = (await h1.weave(['dns-lookup', B])).stdout.trim();
      const b = (await h2.weave(['dns-lookup', B])).stdout.trim();
      return a === '' && b === '';
    }, { what: `${B} gone from DNS`, timeoutMs: 15_000 });
    t.notOk(resolves(await lookup(A, B), '10.32.8.2'), 'nslookup no longer finds it');
  });

  await t.test('detach restores the resolv.conf Docker wrote', async (t) => {
    t.equal((await h1.weave(['detach', A])).code, 0);
    t.equal((await docker(['exec', A, 'cat', '/etc/resolv.conf'])).stdout, resolvBefore);
    t.notOk(fs.existsSync(path.join(h1.datadir, 'dns-resolv.json')) &&
      (JSON.parse(fs.readFileSync(path.join(h1.datadir, 'dns-resolv.json'), 'utf8')) as { backups: Record<string, unknown> }).backups[A] !== undefined,
    'no backup left behind');
  });
}

// Decided before the test is declared, so that a machine without Docker
// reports it as skipped with the reason rather than as an empty pass.
void dockerSkipReason().then((skip) => t.test('two hosts, two Docker containers, names by Docker name', { skip }, async (t) => {
  await main(t);
}));
