// End-to-end test of the simulated-network harness itself (scripts/sim-network.ts
// and the files it uses): the underlay connects every host, the firewall blocks exactly what it is
// asked to, and teardown (explicit, or on a signal) leaves nothing behind.
// Needs root; touches only namespaces it creates.

import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ExecResult, run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

// Each blocked probe waits out its 1 s timeout; a loaded machine can push the
// file past tap's default 30 s.
t.setTimeout(120_000);

const PROBE_PORT = '9999';

// Echoes on UDP and TCP; prints "ready" once both sockets listen. Passed to
// `node -e` as a fixed string; the port arrives through argv.
const ECHO_SERVER = `
const dgram = require('node:dgram'); const net = require('node:net');
const port = Number(process.argv[1]);
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send(m, r.port, r.address));
u.bind(port, () => {
  net.createServer((s) => s.pipe(s)).listen(port, () => console.log('ready'));
});`;

// Sends "probe" over UDP or TCP; exit 0 when it comes back within a second.
const PROBE_CLIENT = `
const [proto, host, port] = process.argv.slice(1);
const fail = setTimeout(() => process.exit(1), 1000);
const done = () => { clearTimeout(fail); process.exit(0); };
if (proto === 'udp') {
  const s = require('node:dgram').createSocket('udp4');
  s.on('message', (m) => { if (String(m) === 'probe') done(); });
  s.send('probe', Number(port), host);
} else {
  const s = require('node:net').connect(Number(port), host, () => s.write('probe'));
  s.on('data', (m) => { if (String(m) === 'probe') done(); });
  s.on('error', () => process.exit(1));
}`;

function ping(from: SimHost, to: SimHost): Promise<ExecResult> {
  return from.exec(['ping', '-c', '1', '-W', '1', to.address], { timeoutMs: 5_000 });
}

function probe(from: SimHost, to: SimHost, proto: 'udp' | 'tcp'): Promise<ExecResult> {
  return from.exec(['node', '-e', PROBE_CLIENT, proto, to.address, PROBE_PORT], { timeoutMs: 5_000 });
}

// Gone, or a zombie whose parent has not reaped it yet: either way it no longer runs.
function processGone(pid: number | string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^\d+ \(.*\) Z/.test(stat);
  } catch {
    return true;
  }
}

async function startEchoServer(h: SimHost): Promise<void> {
  const server = h.spawn(['node', '-e', ECHO_SERVER, PROBE_PORT]);
  await waitFor(() => server.stdout.includes('ready'), {
    what: `echo server in ${h.ns}`, timeoutMs: 10_000, intervalMs: 50, detail: () => server.stderr,
  });
}

t.test('rejects bad options before creating anything', async (t) => {
  await t.rejects(SimNetwork.create({ hosts: ['h1', 'Bad Name'] }), /host name/);
  await t.rejects(SimNetwork.create({ hosts: ['h1', 'h1'] }), /distinct/);
  await t.rejects(SimNetwork.create({ hosts: 3, subnet: '10.250.0.0/30' }), /room for 2 hosts/);
});

t.test('three hosts: underlay, firewall blocks, teardown', async (t) => {
  const net = await SimNetwork.create({ hosts: 3, password: 'sekrit', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  let destroyed = false;
  t.teardown(async () => { if (!destroyed) await net.destroy(); });
  const [h1, h2, h3] = net.hosts as [SimHost, SimHost, SimHost];

  t.match(net.prefix, /^wvt[0-9a-f]{4}-$/);
  t.same(net.namespaces().sort(), [`${net.prefix}h1`, `${net.prefix}h2`, `${net.prefix}h3`, `${net.prefix}sw`]);
  t.same(net.hosts.map((h) => h.address), ['10.250.0.1', '10.250.0.2', '10.250.0.3']);
  t.equal(net.host('h2'), h2);
  t.throws(() => net.host('h9'), /no host "h9"/);

  const addr = await h1.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { check: true });
  t.match(addr.stdout, /inet 10\.250\.0\.1\/24/);
  // The root namespace must not have gained any of our links.
  const rootLinks = await run(['ip', '-o', 'link'], { check: true });
  t.notMatch(rootLinks.stdout, /v-h[123]/, 'no veth ends in the root namespace');

  await t.test('every host pings every other', async (t) => {
    for (const [a, b] of [[h1, h2], [h1, h3], [h2, h3], [h3, h1]] as const) {
      t.equal((await ping(a, b)).code, 0, `${a.name} -> ${b.name}`);
    }
  });

  await t.test('weave environment: datadir, password, extra env', async (t) => {
    const env = await h2.exec(['env'], { env: h2.weaveEnv(), check: true });
    t.match(env.stdout, new RegExp(`^WEAVE_DATADIR=${h2.datadir}$`, 'm'));
    t.match(env.stdout, /^WEAVE_PASSWORD=sekrit$/m);
    t.match(env.stdout, /^WEAVE_TEST_FAST=1$/m);
    const none = await h2.exec(['env'], { env: h2.weaveEnv({ password: null }), check: true });
    t.notMatch(none.stdout, /^WEAVE_PASSWORD=/m);
    t.ok(existsSync(h2.datadir), 'datadir exists');
    t.equal(net.weaveCli, join(__dirname, '..', '..', 'cli', 'weave.js'));
  });

  await t.test('block all between h1 and h2, then unblock', async (t) => {
    await net.blockBetween('h1', 'h2', 'all');
    t.not((await ping(h1, h2)).code, 0, 'h1 -> h2 blocked');
    t.not((await ping(h2, h1)).code, 0, 'h2 -> h1 blocked');
    t.equal((await ping(h1, h3)).code, 0, 'h1 -> h3 still works');
    t.equal((await ping(h3, h2)).code, 0, 'h3 -> h2 still works');
    await net.unblock('h1', 'h2');
    t.equal((await ping(h1, h2)).code, 0, 'h1 -> h2 works again');
    t.equal((await ping(h2, h1)).code, 0, 'h2 -> h1 works again');
    const rules = await h1.exec(['nft', 'list', 'ruleset'], { check: true });
    t.notMatch(rules.stdout, /wvsim/, 'no table left once nothing is blocked');
  });

  await t.test('block udp only: ping and tcp work, udp does not', async (t) => {
    await startEchoServer(h2);
    t.equal((await probe(h1, h2, 'udp')).code, 0, 'udp probe works before the block');
    await net.blockBetween('h1', 'h2', 'udp');
    t.not((await probe(h1, h2, 'udp')).code, 0, 'udp h1 -> h2 blocked');
    t.equal((await probe(h3, h2, 'udp')).code, 0, 'udp h3 -> h2 still works');
    t.equal((await probe(h1, h2, 'tcp')).code, 0, 'tcp h1 -> h2 still works');
    t.equal((await ping(h1, h2)).code, 0, 'ping h1 -> h2 still works');

    await net.blockBetween('h1', 'h2', 'tcp');
    t.not((await probe(h1, h2, 'tcp')).code, 0, 'tcp blocked too once added');
    await net.unblock('h1', 'h2', 'udp');
    t.equal((await probe(h1, h2, 'udp')).code, 0, 'udp back after removing only the udp block');
    t.not((await probe(h1, h2, 'tcp')).code, 0, 'tcp block kept');
    await net.unblock('h1', 'h2');
    t.equal((await probe(h1, h2, 'tcp')).code, 0, 'tcp back');
  });

  await t.test('destroy leaves no namespaces, processes or files', async (t) => {
    t.ok(h2.pids().length > 0, 'the echo server runs in h2');
    const pids = net.hosts.flatMap((h) => h.pids());
    await net.destroy();
    destroyed = true;
    t.same(net.namespaces(), [], 'no namespaces with the prefix');
    const list = await run(['ip', 'netns', 'list'], { check: true });
    t.notMatch(list.stdout, net.prefix);
    for (const pid of pids) t.ok(processGone(pid), `process ${pid} is gone`);
    t.notOk(existsSync(net.rootDir), 'data directories removed');
    await net.destroy(); // idempotent
  });
});

t.test('waitFor reports what it waited for', async (t) => {
  const value = await waitFor(() => 42, { what: 'the answer' });
  t.equal(value, 42);
  await t.rejects(
    waitFor(() => false, { what: 'the impossible', timeoutMs: 200, intervalMs: 20, detail: () => 'state: nope' }),
    /timed out after 200 ms waiting for the impossible\nstate: nope/,
  );
  await t.rejects(
    waitFor(() => { throw new Error('boom'); }, { what: 'a throwing check', timeoutMs: 100, intervalMs: 20 }),
    /waiting for a throwing check\nlast error: boom/,
  );
});

// A process that dies from a signal, or exits without destroying, must still
// take its namespaces and their processes with it.
for (const ending of ['SIGTERM', 'SIGINT', 'exit'] as const) {
  t.test(`a network is cleaned up when its process ends by ${ending}`, async (t) => {
    const lib = join(__dirname, '..', '..', 'scripts', 'sim-network.js');
    const script = `
      const { SimNetwork } = require(process.argv[1]);
      SimNetwork.create({ hosts: 2 }).then((net) => {
        net.hosts[0].spawn(['sleep', '1000']);
        console.log(net.prefix + ' ' + net.rootDir);
        if (process.argv[2] === 'exit') setTimeout(() => process.exit(3), 300);
        else setInterval(() => undefined, 1000);
      });`;
    const child = spawn(process.execPath, ['-e', script, lib, ending], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    t.teardown(() => { child.kill('SIGKILL'); });
    const line = await waitFor(() => (out.includes('\n') ? out.trim() : null), {
      what: 'the child to create its network', timeoutMs: 15_000, detail: () => err,
    });
    const [prefix, rootDir] = line.split(' ') as [string, string];
    const sleeper = await waitFor(async () => {
      const r = await run(['ip', 'netns', 'pids', `${prefix}h1`]);
      return r.stdout.trim().split(/\s+/)[0] || null;
    }, { what: 'the sleep process in h1' });
    if (ending !== 'exit') child.kill(ending);
    const code = await exited;
    t.equal(code, ending === 'SIGTERM' ? 143 : ending === 'SIGINT' ? 130 : 3, 'exit code');
    t.match(err, ending === 'exit' ? /was not destroyed; cleaning up at exit/ : new RegExp(`${ending}: destroying`));
    const list = await run(['ip', 'netns', 'list'], { check: true });
    t.notMatch(list.stdout, prefix, 'namespaces removed');
    t.ok(processGone(sleeper), 'process in the namespace killed');
    t.notOk(existsSync(rootDir), 'data directories removed');
  });
}
