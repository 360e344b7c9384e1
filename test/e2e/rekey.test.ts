// End-to-end key rotation and password roll: real routers in network
// namespaces (scripts/sim-network.ts) with containers (plain namespaces
// attached with `weave attach ADDR netns:NAME`).
//  - Two hosts rekeying every 2 s (WEAVE_REKEY_INTERVAL_MS, a test-only
//    setting) under a continuous 10/s ping and an iperf3 transfer: no ping
//    lost, no datagram failing authentication or refused as a replay, key
//    epochs moving on, and the pings carried by the lone-frame lane between
//    rekeys (its entries go with each key).
//  - Three hosts rolling their password, one relaunch at a time, with
//    --password NEW --old-password OLD and then NEW alone: a continuous ping
//    between the two hosts not being relaunched never drops a packet, the
//    relaunched host talks to peers on either password, and status says which
//    peers still use the old one.
// Needs root, ping and iperf3.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { tcpPortListening } from '../../scripts/netns';
import { waitFor } from '../../scripts/wait';
import type { RouterStatus } from '../../router/mesh/status';

// Nine router launches and six relaunches on a shared machine: minutes, not seconds.
t.setTimeout(900_000);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const IPERF_PORT = 5201;
const OLD = 'e2e rekey old password';
const NEW = 'e2e rekey new password';

interface Mesh {
  net: SimNetwork;
  /** Container namespace and address by host name. */
  containers: Map<string, { ns: string; ip: string }>;
}

function established(s: RouterStatus): RouterStatus['connections'] {
  return s.connections.filter((c) => c.state === 'established');
}

/** noAes: the router offers no AES-256-GCM (WEAVE_NO_AES_GCM=1), as a peer without the hardware or an older one. */
async function launch(t: Tap, h: SimHost, peers: SimHost[], opts: { password: string; oldPassword?: string; viaFlags?: boolean; noAes?: boolean }): Promise<void> {
  const flags = opts.viaFlags ? ['--password', opts.password, ...(opts.oldPassword ? ['--old-password', opts.oldPassword] : [])] : [];
  const noAes = opts.noAes ? { WEAVE_NO_AES_GCM: '1' } : {};
  const r = await h.weave(['launch', '--nickname', h.name, ...flags, ...peers.map((p) => p.address)], {
    timeoutMs: 30_000,
    // Without flags: the environment, as a user following the advice in --help would.
    ...(opts.viaFlags ? { env: noAes } : { password: opts.password, env: { WEAVE_OLD_PASSWORD: opts.oldPassword, ...noAes } }),
  });
  t.equal(r.code, 0, `weave launch on ${h.name}${opts.oldPassword ? ' (rolling)' : ''}: ${r.stderr.trim()}`);
}

async function waitConnected(hosts: SimHost[], what: string): Promise<void> {
  for (const h of hosts) {
    await waitFor(async () => established(await h.weaveStatus()).length === hosts.length - 1, {
      what: `${h.name}: ${what}`, timeoutMs: 30_000, intervalMs: 300, detail: () => h.readLog('weave.log', 30),
    });
  }
}

async function mesh(t: Tap, count: number, env: Record<string, string>, password: string): Promise<Mesh> {
  const net = await SimNetwork.create({ hosts: count, password, weaveEnv: { WEAVE_TEST_FAST: '1', ...env } });
  t.teardown(async () => {
    if (!t.passing()) for (const h of net.hosts) t.comment(`--- ${h.name} weave.log ---\n${h.readLog('weave.log', 30)}`);
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 }).catch(() => undefined);
    await net.destroy();
  });
  for (let i = 0; i < net.hosts.length; i++) await launch(t, net.hosts[i]!, net.hosts.slice(0, i), { password });
  await waitConnected(net.hosts, 'connected to every other host');
  const m: Mesh = { net, containers: new Map() };
  for (let i = 0; i < net.hosts.length; i++) {
    const h = net.hosts[i]!;
    const ns = `${net.prefix}c${i + 1}`;
    const ip = `10.32.9.${i + 1}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await h.weave(['attach', `${ip}/24`, `netns:${ns}`]);
    t.equal(r.code, 0, `attach on ${h.name}: ${r.stderr.trim()}`);
    m.containers.set(h.name, { ns, ip });
  }
  return m;
}

/** One round of pings that fully succeeds (the first packets also teach MAC tables). */
async function pingWorks(m: Mesh, from: string, to: string): Promise<void> {
  const src = m.containers.get(from)!;
  const dst = m.containers.get(to)!;
  let last = '';
  await waitFor(async () => {
    const r = await run(['ip', 'netns', 'exec', src.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', dst.ip], { timeoutMs: 30_000 });
    last = r.stdout + r.stderr;
    return r.code === 0;
  }, { what: `${from} pings ${to}`, timeoutMs: 30_000, detail: () => last });
}

interface PingResult {
  sent: number;
  /** Sequence numbers that got no reply, leaving out the last one, which was still in flight when ping was stopped. */
  lost: number[];
  summary: string;
}

/** A ping every 100 ms until stopped. */
function continuousPing(m: Mesh, from: string, to: string): { stop: () => Promise<PingResult> } {
  const src = m.containers.get(from)!;
  const dst = m.containers.get(to)!;
  const proc = m.net.spawnIn(src.ns, ['ping', '-i', '0.1', '-W', '1', dst.ip], {});
  return {
    stop: async () => {
      // ping prints its summary on SIGINT.
      const r = await proc.stop('SIGINT');
      const sent = Number(/(\d+) packets transmitted/.exec(r.stdout)?.[1] ?? 0);
      const replied = new Set([...r.stdout.matchAll(/icmp_seq=(\d+) /g)].map((x) => Number(x[1])));
      const lost: number[] = [];
      for (let seq = 1; seq < sent; seq++) if (!replied.has(seq)) lost.push(seq);
      return { sent, lost, summary: r.stdout.split('\n').slice(-3).join(' ').trim() };
    },
  };
}

/** Drop counters other than zero, for the record when a ping goes missing. */
function drops(s: RouterStatus): string {
  return Object.entries(s.counters).filter(([k, v]) => k.startsWith('frames_dropped') && v > 0).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
}

t.test('two hosts rekeying every 2 s under a 10/s ping and iperf3: nothing lost, epochs move on', async (t) => {
  const m = await mesh(t, 2, { WEAVE_REKEY_INTERVAL_MS: '2000' }, NEW);
  const [h1, h2] = m.net.hosts as [SimHost, SimHost];
  await pingWorks(m, 'h1', 'h2');
  await pingWorks(m, 'h2', 'h1');
  const epochBefore = established(await h1.weaveStatus())[0]?.keyEpoch ?? -1;

  const c2 = m.containers.get('h2')!;
  const server = m.net.spawnIn(c2.ns, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], {});
  await waitFor(async () => {
    if (!server.running) throw new Error('iperf3 -s exited');
    return tcpPortListening(c2.ns, IPERF_PORT);
  }, { what: 'iperf3 server listening', timeoutMs: 10_000, intervalMs: 100, detail: () => server.stderr });

  const pinger = continuousPing(m, 'h1', 'h2');
  const iperf = run(['ip', 'netns', 'exec', m.containers.get('h1')!.ns, 'iperf3', '-c', c2.ip, '-p', String(IPERF_PORT), '-t', '10', '-J'],
    { timeoutMs: 60_000 });
  const ip = await iperf;
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const ping = await pinger.stop();
  await server.stop();

  t.equal(ip.code, 0, 'iperf3 ran over the overlay while keys rotated');
  if (ip.code === 0) {
    const result = JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
    t.comment(`iperf3 h1 -> h2: ${(result.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s with a 2 s rekey interval`);
    t.ok(result.end.sum_received.bytes > 0, 'iperf3 moved data');
  }
  t.ok(ping.sent >= 130, `about 15 s of pings at 10/s (${ping.summary})`);
  t.same(ping.lost, [], `no ping lost across the key changes (drops: h1 ${drops(await h1.weaveStatus())}, h2 ${drops(await h2.weaveStatus())})`);

  for (const h of [h1, h2]) {
    const s = await h.weaveStatus();
    const link = established(s)[0];
    t.ok(link !== undefined && (link.keyEpoch ?? 0) >= epochBefore + 5, `${h.name}: key epoch ${link?.keyEpoch} (was ${epochBefore} before the traffic)`);
    t.ok((link?.keyAgeMs ?? Infinity) < 4_000, `${h.name}: keys ${link?.keyAgeMs} ms old`);
    t.equal(link?.dataPath, 'udp', `${h.name}: frames stayed on the UDP sleeve`);
    t.equal(link?.cipher, 'aes-256-gcm', `${h.name}: sealed with AES-256-GCM across every rekey`);
    t.equal(s.counters['frames_dropped{reason="auth"}'] ?? 0, 0, `${h.name}: no datagram failed authentication`);
    t.equal(s.counters['frames_dropped{reason="replay"}'] ?? 0, 0, `${h.name}: none refused as a replay`);
    // Pings between rekeys leave through the lone-frame lane (native/lane.c), on the counters JS seals with.
    t.ok((s.counters['framesSentLane'] ?? 0) >= 20, `${h.name}: ${s.counters['framesSentLane']} frames sent by the lone-frame lane`);
  }
  const text = await h1.weave(['status', 'connections']);
  t.match(text.stdout, /encrypted \(aes-256-gcm\), key epoch \d+ \(\d+s old\)/, '`weave status connections` shows the cipher, the key epoch and age');
});

t.test('a password roll across three hosts, one relaunch at a time, never drops a ping', async (t) => {
  const m = await mesh(t, 3, {}, OLD);
  const hosts = m.net.hosts as [SimHost, SimHost, SimHost];
  for (const [a, b] of [['h1', 'h2'], ['h2', 'h3'], ['h1', 'h3']] as const) await pingWorks(m, a, b);

  /** Relaunches `i` while the other two ping each other; returns the ping result. */
  async function relaunch(i: number, opts: { password: string; oldPassword?: string; viaFlags?: boolean; noAes?: boolean }): Promise<void> {
    const h = hosts[i]!;
    const others = hosts.filter((x) => x !== h);
    const pinger = continuousPing(m, others[0]!.name, others[1]!.name);
    const started = Date.now();
    const r = await h.weave(['stop'], { timeoutMs: 20_000 });
    t.equal(r.code, 0, `weave stop on ${h.name}`);
    const stopped = Date.now();
    await launch(t, h, others, opts);
    const launched = Date.now();
    await waitConnected(hosts, `${h.name} back ${opts.oldPassword ? 'with NEW + OLD' : `with ${opts.password === NEW ? 'NEW' : 'OLD'} alone`}`);
    t.comment(`${h.name}: stop ${stopped - started} ms, launch ${launched - stopped} ms, reconnected ${Date.now() - launched} ms later`);
    const ping = await pinger.stop();
    t.ok(ping.sent > 10, `${others[0]!.name} pinged ${others[1]!.name} while ${h.name} relaunched (${ping.summary})`);
    t.same(ping.lost, [], `...and lost none (drops: ${drops(await others[0]!.weaveStatus())}; ${drops(await others[1]!.weaveStatus())})`);
    for (const o of others) await pingWorks(m, h.name, o.name);
  }

  const onOld = async (h: SimHost): Promise<string[]> => established(await h.weaveStatus()).filter((c) => c.oldPassword).map((c) => c.nickname ?? '?').sort();

  await relaunch(0, { password: NEW, oldPassword: OLD, viaFlags: true });
  t.same(await onOld(hosts[0]), ['h2', 'h3'], 'h1 rolled: h2 and h3 still use the old password');
  t.match((await hosts[0].weave(['status'])).stdout, /password roll: 2 peers still on the old password/, '`weave status` says so');
  await relaunch(1, { password: NEW, oldPassword: OLD });
  t.same(await onOld(hosts[1]), ['h3'], 'h2 rolled: only h3 left on the old password');
  await relaunch(2, { password: NEW, oldPassword: OLD });
  for (const h of hosts) t.same(await onOld(h), [], `${h.name}: every peer on the new password`);

  // h3 comes back as a peer without AES-256-GCM: its links fall back to ChaCha20-Poly1305, h1-h2 keeps AES.
  for (let i = 0; i < 3; i++) await relaunch(i, { password: NEW, noAes: i === 2 });
  for (const h of hosts) t.notOk((await h.weaveStatus()).passwordRoll, `${h.name}: no longer accepts the old password`);
  const ciphers = async (h: SimHost): Promise<string[]> => established(await h.weaveStatus()).map((c) => `${c.nickname}: ${c.cipher}`).sort();
  t.same(await ciphers(hosts[0]), ['h2: aes-256-gcm', 'h3: chacha20-poly1305'], 'h1: AES with h2, ChaCha20-Poly1305 with h3 (no AES)');
  t.same(await ciphers(hosts[1]), ['h1: aes-256-gcm', 'h3: chacha20-poly1305'], 'h2 likewise');
  t.same(await ciphers(hosts[2]), ['h1: chacha20-poly1305', 'h2: chacha20-poly1305'], 'h3: ChaCha20-Poly1305 with both');
});
