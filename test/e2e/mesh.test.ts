// End-to-end mesh tests: real `weave` routers in network namespaces
// (scripts/sim-network.ts), driven only through the CLI as a user would: launch,
// status --json, connect, forget, stop. Covers discovery, --no-discovery,
// connect/forget, password refusal on both sides, and launch argument errors.
// Routers run with WEAVE_TEST_FAST=1 (short heartbeats and retries).
// Needs root; each subtest builds and removes its own network.

import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { SimHost, WeaveOptions } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { sleep, waitFor } from '../../scripts/wait';
import type { ConnectionStatus, RouterStatus } from '../../router/mesh/status';

// Real routers, several settle periods and `weave stop`s: well past tap's default
// 30 s per file, even when run alone (`npx tap dist/test/e2e/mesh.test.js`).
t.setTimeout(540_000); // 108 s in CI; 310 s on a machine loaded to 13

// The subtest type, as t.test hands it to its callback.
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** Each host's peer name, as its router reports it after launch: names derive from each data directory's key and cannot be chosen. */
const PEER_NAME = new WeakMap<SimHost, string>();
const PASSWORD = 'e2e mesh password';
const MESH_PORT = 6783;
/** Generous for WEAVE_TEST_FAST timings (retries every 200 ms to 2 s, gossip every 1 s). */
const FORM_TIMEOUT_MS = 30_000;
/** How long "never happens" is watched: several connector checks, gossip rounds and retries. */
const SETTLE_MS = 5_000;

function peerName(h: SimHost): string {
  const name = PEER_NAME.get(h);
  if (name === undefined) throw new Error(`${h.name} has not been launched, so its peer name is not known yet`);
  return name;
}

/** "10.0.0.1:6783" -> "10.0.0.1"; "[fd00::1]:6783" -> "fd00::1". */
function hostPart(address: string): string {
  const m = /^\[(.*)\](?::\d+)?$/.exec(address);
  if (m?.[1] !== undefined) return m[1];
  const idx = address.lastIndexOf(':');
  return idx < 0 ? address : address.slice(0, idx);
}

function reachablePeers(s: RouterStatus): string[] {
  return s.peers.filter((p) => p.reachable).map((p) => p.name).sort();
}

function establishedPeers(s: RouterStatus): string[] {
  return s.connections.filter((c) => c.state === 'established').map((c) => c.peer ?? `?${c.address}`).sort();
}

/** Connections (any state) that lead to host `to`, by peer name or by address. */
function connectionsTo(s: RouterStatus, to: SimHost): ConnectionStatus[] {
  return s.connections.filter((c) => c.peer === peerName(to) || hostPart(c.address) === to.address);
}

function brief(s: RouterStatus): string {
  const conns = s.connections.map((c) => `${c.outbound ? '->' : '<-'}${c.address} ${c.state}${c.peer ? ` ${c.peer}` : ''}${c.info ? ` (${c.info})` : ''}`);
  return `${s.nickname}: reachable [${reachablePeers(s).join(' ')}]; connections [${conns.join('; ')}]; targets [${s.targets.map((x) => `${x.address} ${x.state}`).join('; ')}]`;
}

async function describe(hosts: SimHost[]): Promise<string> {
  const lines: string[] = [];
  for (const h of hosts) {
    try {
      lines.push(brief(await h.weaveStatus()));
    } catch (e) {
      lines.push(`${h.name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return lines.join('\n');
}

/**
 * A fresh network of `count` hosts for one subtest. On failure the end of each
 * router's log goes into the TAP output; teardown stops routers and removes
 * everything.
 */
async function meshNetwork(t: Tap, count: number): Promise<{ net: SimNetwork; hosts: SimHost[] }> {
  const net = await SimNetwork.create({ hosts: count, password: PASSWORD, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    if (!t.passing()) {
      for (const h of net.hosts) {
        t.comment(`--- ${h.name} ${h.address} weave.log (last lines) ---\n${h.readLog('weave.log', 40)}`);
      }
    }
    await Promise.all(net.hosts.map((h) => h.weave(['stop'], { timeoutMs: 20_000 }).catch(() => undefined)));
    await net.destroy();
  });
  return { net, hosts: net.hosts };
}

async function launch(t: Tap, h: SimHost, peers: SimHost[], extra: string[] = [], opts: WeaveOptions = {}): Promise<void> {
  const r = await h.weave(['launch', '--nickname', h.name, ...extra, ...peers.map((p) => p.address)], { timeoutMs: 30_000, ...opts });
  t.equal(r.code, 0, `weave launch on ${h.name}${peers.length ? ` with ${peers.map((p) => p.name).join(' ')}` : ''}`, { stderr: r.stderr, stdout: r.stdout });
  if (r.code !== 0) throw new Error(`weave launch on ${h.name} failed: ${r.stderr.trim()}`);
  PEER_NAME.set(h, (await h.weaveStatus()).name);
}

/** Waits until every host reaches all hosts and holds established connections to exactly `expectConns(h)`. */
async function waitForMesh(hosts: SimHost[], expectConns: (h: SimHost) => SimHost[], what: string): Promise<void> {
  const all = hosts.map(peerName).sort();
  await waitFor(async () => {
    for (const h of hosts) {
      const s = await h.weaveStatus();
      if (reachablePeers(s).join() !== all.join()) return false;
      if (establishedPeers(s).join() !== expectConns(h).map(peerName).sort().join()) return false;
    }
    return true;
  }, { what, timeoutMs: FORM_TIMEOUT_MS, intervalMs: 300, detail: () => describe(hosts) });
}

t.test('discovery: h1 and h3, given only h2, connect to each other', async (t) => {
  const { hosts } = await meshNetwork(t, 3);
  const [h1, h2, h3] = hosts as [SimHost, SimHost, SimHost];
  await launch(t, h2, []);
  await launch(t, h1, [h2]);
  await launch(t, h3, [h2]);

  await waitForMesh(hosts, (h) => hosts.filter((x) => x !== h), 'a full mesh: 3 reachable peers and 2 established connections on every host');
  for (const h of hosts) {
    const s = await h.weaveStatus();
    t.match(s.name, /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, `${h.name} runs under a derived, locally administered name`);
    t.equal(s.nickname, h.name, `${h.name} nickname`);
    t.equal(s.encryption, true, `${h.name} encrypted (WEAVE_PASSWORD)`);
    t.equal(s.discovery, true, `${h.name} discovery on`);
    t.same(reachablePeers(s), hosts.map(peerName).sort(), `${h.name} reaches 3 peers`);
    t.equal(s.connections.filter((c) => c.state === 'established').length, 2, `${h.name} has 2 established connections`);
    t.ok(s.connections.filter((c) => c.state === 'established').every((c) => c.encrypted), `${h.name}: established connections are encrypted`);
    t.ok(s.connections.filter((c) => c.state === 'established').every((c) => c.cipher === 'aes-256-gcm'), `${h.name}: with AES-256-GCM on the sleeve`);
  }
  // Only what the user gave counts as direct; h1's link to h3 came from discovery.
  const s1 = await h1.weaveStatus();
  t.ok(s1.targets.some((x) => x.direct && hostPart(x.address) === h2.address), 'h1 targets h2 directly');
  t.notOk(s1.targets.some((x) => x.direct && hostPart(x.address) === h3.address), 'h1 was not given h3');

  await t.test('weave stop ends every router', async (t) => {
    for (const h of hosts) {
      const r = await h.weave(['stop'], { timeoutMs: 20_000 });
      t.equal(r.code, 0, `weave stop on ${h.name}`, { stderr: r.stderr });
      await waitFor(() => h.pids().length === 0, { what: `no process left in ${h.ns} after weave stop`, timeoutMs: 10_000, detail: () => `pids: ${h.pids().join(' ')}` });
      const after = await h.weave(['status']);
      t.not(after.code, 0, `weave status on ${h.name} fails once the router is stopped`);
    }
  });
});

t.test('--no-discovery: h1 and h3 reach each other only through h2', async (t) => {
  const { hosts } = await meshNetwork(t, 3);
  const [h1, h2, h3] = hosts as [SimHost, SimHost, SimHost];
  await launch(t, h2, [], ['--no-discovery']);
  await launch(t, h1, [h2], ['--no-discovery']);
  await launch(t, h3, [h2], ['--no-discovery']);

  await waitForMesh(hosts, (h) => (h === h2 ? [h1, h3] : [h2]), 'all peers reachable, with h1 and h3 connected to h2 only');
  // Discovery would act within a connector check or two; watch well past that.
  await sleep(SETTLE_MS);
  for (const h of [h1, h3]) {
    const s = await h.weaveStatus();
    const other = h === h1 ? h3 : h1;
    t.equal(s.discovery, false, `${h.name} reports discovery off`);
    t.same(establishedPeers(s), [peerName(h2)], `${h.name} has exactly 1 established connection, to h2`);
    t.same(connectionsTo(s, other), [], `${h.name} has no connection to ${other.name}`);
    t.notOk(s.targets.some((x) => hostPart(x.address) === other.address), `${h.name} has no target for ${other.name}`);
    t.ok(reachablePeers(s).includes(peerName(other)), `${h.name} still sees ${other.name} as a reachable peer, through h2`);
  }
});

t.test('connect adds a target and a connection; forget removes both', async (t) => {
  const { hosts } = await meshNetwork(t, 3);
  const [h1, h2, h3] = hosts as [SimHost, SimHost, SimHost];
  // No discovery, so the only way h1 and h3 meet is the explicit connect.
  await launch(t, h2, [], ['--no-discovery']);
  await launch(t, h1, [h2], ['--no-discovery']);
  await launch(t, h3, [h2], ['--no-discovery']);
  await waitForMesh(hosts, (h) => (h === h2 ? [h1, h3] : [h2]), 'h1 and h3 connected to h2');

  const c = await h1.weave(['connect', h3.address]);
  t.equal(c.code, 0, `weave connect ${h3.address}`, { stderr: c.stderr });
  const withTarget = await waitFor(async () => {
    const s = await h1.weaveStatus();
    return s.targets.find((x) => x.address === `${h3.address}:${MESH_PORT}`) ? s : null;
  }, { what: `h1 to list target ${h3.address}:${MESH_PORT}`, timeoutMs: 5_000, detail: () => describe([h1]) });
  t.ok(withTarget.targets.find((x) => x.address === `${h3.address}:${MESH_PORT}`)?.direct, 'the new target is direct');
  await waitForMesh(hosts, (h) => hosts.filter((x) => x !== h), 'h1 and h3 connected directly after weave connect');
  t.pass('h1 and h3 have an established connection');

  const f = await h1.weave(['forget', h3.address]);
  t.equal(f.code, 0, `weave forget ${h3.address}`, { stderr: f.stderr });
  const live = (s: RouterStatus, to: SimHost): ConnectionStatus[] => connectionsTo(s, to).filter((x) => x.state !== 'failed');
  await waitFor(async () => {
    const s1 = await h1.weaveStatus();
    const s3 = await h3.weaveStatus();
    return !s1.targets.some((x) => hostPart(x.address) === h3.address) && live(s1, h3).length === 0 && live(s3, h1).length === 0;
  }, { what: 'the h3 target and the h1-h3 connection to disappear after weave forget', timeoutMs: 10_000, detail: () => describe(hosts) });
  t.pass('target and connection removed');
  await sleep(SETTLE_MS);
  const s1 = await h1.weaveStatus();
  t.same(live(s1, h3), [], 'h1 did not reconnect to h3');
  t.notOk(s1.targets.some((x) => hostPart(x.address) === h3.address), 'no h3 target came back');
  t.same(establishedPeers(s1), [peerName(h2)], 'h1 keeps its connection to h2');
  t.ok(reachablePeers(s1).includes(peerName(h3)), 'h3 still reachable through h2');
});

t.test('a wrong or missing password is refused, and both sides say so', async (t) => {
  const { hosts } = await meshNetwork(t, 3);
  const [h1, h2, h3] = hosts as [SimHost, SimHost, SimHost];
  await launch(t, h1, []);
  await launch(t, h2, [h1], [], { password: 'not the mesh password' });
  await launch(t, h3, [h1], [], { password: null });

  const refused = (s: RouterStatus, to: SimHost): ConnectionStatus | undefined =>
    connectionsTo(s, to).find((c) => c.state === 'failed' && /password/i.test(c.info));
  let sawEstablished = '';
  await waitFor(async () => {
    const [s1, s2, s3] = await Promise.all([h1.weaveStatus(), h2.weaveStatus(), h3.weaveStatus()]);
    for (const s of [s1, s2, s3]) {
      if (s.connections.some((c) => c.state === 'established')) sawEstablished ||= brief(s);
    }
    return refused(s1, h2) && refused(s1, h3) && refused(s2, h1) && refused(s3, h1);
  }, { what: 'failed connections mentioning the password on h1 (for h2 and h3), on h2 and on h3', timeoutMs: FORM_TIMEOUT_MS, intervalMs: 300, detail: () => describe(hosts) });
  t.pass('every side lists a failed connection that names the password');

  // Retries keep failing; nothing may get through in the meantime either.
  const deadline = Date.now() + SETTLE_MS;
  while (Date.now() < deadline) {
    for (const h of hosts) {
      const s = await h.weaveStatus();
      if (s.connections.some((c) => c.state === 'established')) sawEstablished ||= brief(s);
    }
    await sleep(300);
  }
  t.equal(sawEstablished, '', 'no connection ever became established');
  for (const h of hosts) {
    const s = await h.weaveStatus();
    t.same(reachablePeers(s), [peerName(h)], `${h.name} reaches only itself`);
    const text = await h.weave(['status', 'connections']);
    t.equal(text.code, 0, `weave status connections on ${h.name}`);
    t.match(text.stdout, /password/i, `${h.name}: weave status connections names the password`);
  }
  t.equal((await h3.weaveStatus()).encryption, false, 'h3 runs unencrypted');
});

t.test('weave launch with bad arguments exits non-zero, explains, and starts nothing', async (t) => {
  const { hosts } = await meshNetwork(t, 1);
  const [h1] = hosts as [SimHost];
  const cases: { args: string[]; why: RegExp; label: string }[] = [
    { args: ['--no-such-option'], why: /no-such-option/, label: 'unknown option' },
    { args: ['10.250.0.2:99999'], why: /10\.250\.0\.2:99999/, label: 'port out of range' },
    { args: ['10.250.0.2:notaport'], why: /notaport/, label: 'port not a number' },
    { args: ['a:b:c'], why: /a:b:c/, label: 'too many colons' },
    { args: ['bad_host!'], why: /bad_host!/, label: 'not a host name' },
    { args: ['--name', 'not-a-mac'], why: /--name/, label: 'bad --name' },
    { args: ['--port', '0'], why: /--port/, label: 'bad --port' },
  ];
  for (const c of cases) {
    const r = await h1.weave(['launch', ...c.args], { timeoutMs: 15_000 });
    t.not(r.code, 0, `${c.label}: exit code non-zero`);
    t.match(r.stderr, c.why, `${c.label}: stderr says what is wrong`, { stderr: r.stderr });
    t.notMatch(r.stderr, /^\s+at /m, `${c.label}: a message, not a stack trace`);
    t.same(h1.pids(), [], `${c.label}: no process left running`);
  }
  const status = await h1.weave(['status']);
  t.not(status.code, 0, 'no router answers afterwards');
  t.notOk(existsSync(join(h1.datadir, 'weave.pid')), 'no pid file written');
});
