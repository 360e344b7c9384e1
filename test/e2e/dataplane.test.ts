// End-to-end data plane: real routers in network namespaces, containers (plain
// namespaces attached with `weave attach ADDR netns:NAME`) pinging across
// hosts: encrypted with no plaintext on the underlay, relayed through a middle
// host when two hosts cannot reach each other, over TCP when UDP is dropped,
// and with 10,000-byte pings across a small-MTU underlay. Needs root.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import type { RouterStatus } from '../../router/mesh/status';

t.setTimeout(400_000);

const PASSWORD = 'e2e data plane';

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

interface Mesh {
  net: SimNetwork;
  containers: Map<string, { ns: string; ip: string; host: SimHost }>;
}

async function mesh(t: Tap, opts: { hosts: number; mtu?: number; line?: boolean; blockEnds?: boolean }): Promise<Mesh> {
  const net = await SimNetwork.create({
    hosts: opts.hosts, password: PASSWORD, weaveEnv: { WEAVE_TEST_FAST: '1' }, ...(opts.mtu ? { mtu: opts.mtu } : {}),
  });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  if (opts.blockEnds) await net.blockBetween('h1', `h${opts.hosts}`, 'all');
  for (let i = 0; i < net.hosts.length; i++) {
    const h = net.hosts[i]!;
    const peers = i === 0 ? [] : [net.hosts[i - 1]!.address];
    const r = await h.weave(['launch', '--nickname', h.name, ...(opts.line ? ['--no-discovery'] : []), ...peers]);
    t.equal(r.code, 0, `weave launch on ${h.name}: ${r.stderr.trim()}`);
  }
  const expected = net.hosts.length;
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === expected, {
      what: `${h.name} reaches ${expected} peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }
  return { net, containers: new Map() };
}

async function attach(m: Mesh, t: Tap, host: string, name: string, ip: string): Promise<void> {
  const h = m.net.host(host);
  const ns = `${m.net.prefix}${name}`;
  await run(['ip', 'netns', 'add', ns], { check: true });
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
  const r = await h.weave(['attach', `${ip}/24`, `netns:${ns}`]);
  t.equal(r.code, 0, `attach ${name} on ${host}: ${r.stdout.trim()} ${r.stderr.trim()}`);
  m.containers.set(name, { ns, ip, host: h });
}

async function ping(m: Mesh, from: string, to: string, extra: string[] = []): Promise<{ ok: boolean; out: string }> {
  const src = m.containers.get(from)!;
  const dst = m.containers.get(to)!;
  const r = await run(['ip', 'netns', 'exec', src.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', ...extra, dst.ip], { timeoutMs: 30_000 });
  return { ok: r.code === 0, out: r.stdout + r.stderr };
}

/** Pings until one round fully succeeds: the first packets also teach MAC tables. */
async function pingEventually(m: Mesh, from: string, to: string, extra: string[] = []): Promise<string> {
  let last = '';
  await waitFor(async () => {
    const r = await ping(m, from, to, extra);
    last = r.out;
    return r.ok;
  }, { what: `${from} pings ${to} ${extra.join(' ')}`, timeoutMs: 20_000, detail: () => last });
  return last;
}

function linkTo(s: RouterStatus, nickname: string) {
  return s.connections.find((c) => c.state === 'established' && c.nickname === nickname);
}

t.test('two hosts, encrypted: ping both ways, iperf3, and no plaintext on the underlay', async (t) => {
  const m = await mesh(t, { hosts: 2 });
  await attach(m, t, 'h1', 'c1', '10.32.1.1');
  await attach(m, t, 'h2', 'c2', '10.32.1.2');
  await pingEventually(m, 'c1', 'c2');
  await pingEventually(m, 'c2', 'c1');
  const s1 = await m.net.host('h1').weaveStatus();
  t.equal(linkTo(s1, 'h2')?.dataPath, 'udp', 'frames travel over the UDP sleeve');
  t.ok(linkTo(s1, 'h2')?.encrypted, 'encrypted');

  // A capture on h2's underlay while c1 pings with a recognisable pattern.
  const pcap = `/tmp/${m.net.prefix}underlay.pcap`;
  const dump = m.net.host('h2').spawn(['tcpdump', '-i', 'eth0', '-U', '-w', pcap, 'udp port 6783']);
  await new Promise((r) => setTimeout(r, 1000));
  const pattern = 'deadbeefcafef00d';
  const p = await ping(m, 'c1', 'c2', ['-p', pattern, '-s', '200']);
  t.ok(p.ok, 'patterned ping succeeds');
  await new Promise((r) => setTimeout(r, 500));
  await dump.stop('SIGINT');
  const raw = await run(['tcpdump', '-r', pcap, '-x'], { timeoutMs: 20_000 });
  await run(['rm', '-f', pcap]);
  const hex = raw.stdout.replace(/^.*?:\s/gm, '').replace(/[^0-9a-f]/g, '');
  t.ok(raw.stdout.split('\n').length > 6, 'the capture saw sleeve datagrams');
  t.notOk(hex.includes(pattern + pattern.slice(0, 8)), 'the ping payload pattern never appears on the underlay');

  const server = m.net.spawnIn(m.containers.get('c2')!.ns, ['iperf3', '-s', '-1'], {});
  await new Promise((r) => setTimeout(r, 800));
  const ip = await run(['ip', 'netns', 'exec', m.containers.get('c1')!.ns, 'iperf3', '-c', '10.32.1.2', '-t', '3', '-J'], { timeoutMs: 60_000 });
  await server.stop();
  t.equal(ip.code, 0, 'iperf3 TCP runs over the overlay');
  if (ip.code === 0) {
    const bps = (JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    t.comment(`iperf3 c1 -> c2: ${(bps / 1e6).toFixed(0)} Mbit/s (encrypted, two router processes on this machine)`);
    t.ok(bps > 0);
  }
});

t.test('three hosts in a line: h1 and h3 cannot reach each other, containers talk through h2', async (t) => {
  const m = await mesh(t, { hosts: 3, line: true, blockEnds: true });
  await attach(m, t, 'h1', 'c1', '10.32.2.1');
  await attach(m, t, 'h3', 'c3', '10.32.2.3');
  const underlay = await m.net.host('h1').exec(['ping', '-c', '1', '-W', '1', m.net.host('h3').address]);
  t.not(underlay.code, 0, 'h1 really cannot reach h3 on the underlay');
  await pingEventually(m, 'c1', 'c3');
  await pingEventually(m, 'c3', 'c1');
  const s2 = await m.net.host('h2').weaveStatus();
  t.ok((s2.counters['framesRelayed'] ?? 0) > 0, `h2 relayed frames (${s2.counters['framesRelayed']})`);
});

t.test('UDP dropped between two hosts: frames fall back to TCP, then return to UDP', async (t) => {
  const m = await mesh(t, { hosts: 2 });
  await attach(m, t, 'h1', 'c1', '10.32.3.1');
  await attach(m, t, 'h2', 'c2', '10.32.3.2');
  await pingEventually(m, 'c1', 'c2');
  await m.net.blockBetween('h1', 'h2', 'udp');
  await waitFor(async () => linkTo(await m.net.host('h1').weaveStatus(), 'h2')?.dataPath === 'tcp', { what: 'h1 switches to TCP', timeoutMs: 10_000 });
  const s = await m.net.host('h1').weaveStatus();
  t.match(linkTo(s, 'h2')?.dataPathInfo ?? '', /UDP/, `status says why: ${linkTo(s, 'h2')?.dataPathInfo}`);
  await pingEventually(m, 'c1', 'c2');
  await pingEventually(m, 'c2', 'c1');
  await m.net.unblock('h1', 'h2', 'udp');
  await waitFor(async () => linkTo(await m.net.host('h1').weaveStatus(), 'h2')?.dataPath === 'udp', { what: 'h1 back on UDP', timeoutMs: 10_000 });
  await pingEventually(m, 'c1', 'c2');
});

t.test('a 10,000-byte ping crosses a 1,400-byte underlay', async (t) => {
  const m = await mesh(t, { hosts: 2, mtu: 1400 });
  await attach(m, t, 'h1', 'c1', '10.32.4.1');
  await attach(m, t, 'h2', 'c2', '10.32.4.2');
  const s = await m.net.host('h1').weaveStatus();
  t.ok(s.dataPlane && s.dataPlane.mtu <= 1400 - 80, `overlay MTU ${s.dataPlane?.mtu} leaves room for the sleeve`);
  await pingEventually(m, 'c1', 'c2', ['-s', '10000']);
  // With DF set, the sender learns the overlay MTU instead of silently losing packets.
  const df = await run(['ip', 'netns', 'exec', m.containers.get('c1')!.ns, 'ping', '-c', '1', '-M', 'do', '-s', '2000', '10.32.4.2'], { timeoutMs: 10_000 });
  t.match(df.stdout + df.stderr, /mtu|too long/i, 'DF ping reports the MTU');
});
