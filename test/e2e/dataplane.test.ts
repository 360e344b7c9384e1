// End-to-end data plane: real routers in network namespaces, containers (plain
// namespaces attached with `weave attach ADDR netns:NAME`) pinging across
// hosts: encrypted with no plaintext on the underlay, relayed through a middle
// host when two hosts cannot reach each other, over TCP when UDP is dropped,
// and with 10,000-byte pings across a small-MTU underlay. Needs root.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { pollUntil, waitFor } from '../../scripts/wait';
import { tcpPortListening } from '../../scripts/netns';
import type { RouterStatus } from '../../router/mesh/status';
import { AEAD_TAG_BYTES } from '../../router/overlay/frame-aead';
import { ETHERNET_HEADER_BYTES, INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES, VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';

t.setTimeout(400_000);

const PASSWORD = 'e2e data plane';
const SLEEVE_PORT = 6783;
const IPERF_PORT = 5201;
/** IPv4 and UDP headers in front of a sleeve datagram's payload. */
const IP_UDP_HEADER_BYTES = 20 + 8;

// The no-plaintext check: an 8-byte pattern filling a ping payload of an unusual size.
const PATTERN = 'deadbeefcafef00d';
const PINGS = 5;
const PING_PAYLOAD_BYTES = 213;
/** UDP payload of the sleeve datagram carrying one sealed echo of that size: header, inner header, vnet header, the Ethernet frame (IPv4 + ICMP + payload), tag. */
const PING_DATAGRAM_BYTES = SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES + VNET_HDR_BYTES + ETHERNET_HEADER_BYTES +
  20 + 8 + PING_PAYLOAD_BYTES + AEAD_TAG_BYTES;

interface CapturedDatagram {
  from: string;
  to: string;
  /** The UDP payload length tcpdump reports. */
  udpLength: number;
  /** The whole IP packet, as lowercase hex. */
  hex: string;
}

/** Datagrams printed by `tcpdump -nn -x`: a header line per packet, then its IP packet in hex lines. */
function parseTcpdump(text: string): CapturedDatagram[] {
  const out: CapturedDatagram[] = [];
  let current: CapturedDatagram | null = null;
  for (const line of text.split('\n')) {
    const bytes = /^\s+0x[0-9a-f]+:\s+(.*)$/.exec(line);
    if (bytes) {
      if (current) current.hex += (bytes[1] ?? '').replace(/[^0-9a-f]/g, '');
      continue;
    }
    const head = /IP ([\d.]+)\.\d+ > ([\d.]+)\.\d+: UDP, length (\d+)/.exec(line);
    current = head ? { from: head[1]!, to: head[2]!, udpLength: Number(head[3]), hex: '' } : null;
    if (current) out.push(current);
  }
  return out;
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

interface Mesh {
  net: SimNetwork;
  containers: Map<string, { ns: string; ip: string; host: SimHost }>;
}

async function mesh(t: Tap, opts: { hosts: number; mtu?: number; line?: boolean; blockEnds?: boolean; launchArgs?: string[] }): Promise<Mesh> {
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
    const r = await h.weave(['launch', '--nickname', h.name, ...(opts.line ? ['--no-discovery'] : []), ...(opts.launchArgs ?? []), ...peers]);
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
  t.equal(linkTo(s1, 'h2')?.cipher, 'aes-256-gcm', 'both peers offer AES-256-GCM (this CPU has it): the sleeve uses it');
  t.equal(linkTo(await m.net.host('h2').weaveStatus(), 'h1')?.cipher, 'aes-256-gcm', 'and h2 agrees');

  // A capture on h2's underlay while c1 pings with a recognisable payload of a
  // recognisable size: each ping must show up as a sleeve datagram of exactly
  // the size one sealed frame of it takes, and none may carry the payload.
  const h1 = m.net.host('h1');
  const h2 = m.net.host('h2');
  const dump = h2.spawn(['tcpdump', '-i', 'eth0', '-nn', '-l', '--immediate-mode', '-x', `udp port ${SLEEVE_PORT}`]);
  // tcpdump says "listening on" once the capture and its filter are active.
  await waitFor(() => {
    if (!dump.running) throw new Error('tcpdump exited');
    return dump.stderr.includes('listening on');
  }, { what: 'tcpdump capturing on h2', timeoutMs: 10_000, intervalMs: 50, detail: () => dump.stderr });
  const p = await run(['ip', 'netns', 'exec', m.containers.get('c1')!.ns, 'ping', '-c', String(PINGS), '-i', '0.2', '-W', '2',
    '-p', PATTERN, '-s', String(PING_PAYLOAD_BYTES), '10.32.1.2'], { timeoutMs: 30_000 });
  t.equal(p.code, 0, `patterned ping succeeds (${/\d+ packets transmitted.*/.exec(p.stdout)?.[0] ?? p.stderr.trim()})`);
  const sent = Number(/(\d+) packets transmitted/.exec(p.stdout)?.[1] ?? 0);
  const received = Number(/(\d+) received/.exec(p.stdout)?.[1] ?? 0);
  t.equal(sent, PINGS, `${PINGS} pings sent`);
  const pingSized = (from: SimHost, to: SimHost): CapturedDatagram[] => parseTcpdump(dump.stdout)
    .filter((d) => d.from === from.address && d.to === to.address && d.udpLength === PING_DATAGRAM_BYTES);
  // Wait until tcpdump has printed them all (it runs behind the kernel), then stop it.
  await pollUntil(() => pingSized(h1, h2).length >= sent && pingSized(h2, h1).length >= received, { timeoutMs: 10_000 });
  await dump.stop('SIGINT');
  const captured = parseTcpdump(dump.stdout);
  const requests = pingSized(h1, h2);
  const replies = pingSized(h2, h1);
  t.ok(requests.length >= sent, `the capture holds a ${PING_DATAGRAM_BYTES}-byte sleeve datagram for every echo request ` +
    `(${requests.length} for ${sent} sent; sizes seen: ${[...new Set(captured.map((d) => d.udpLength))].join(' ')})`);
  t.ok(replies.length >= received, `and for every echo reply (${replies.length} for ${received} received)`);
  const pingDatagrams = [...requests, ...replies];
  t.ok(pingDatagrams.length > 0 && pingDatagrams.every((d) => d.hex.length === 2 * (IP_UDP_HEADER_BYTES + d.udpLength)),
    'tcpdump printed every byte of those datagrams');
  const leaking = captured.filter((d) => d.hex.includes(PATTERN));
  t.equal(leaking.length, 0, `the ping payload pattern appears in none of the ${captured.length} captured datagrams`);

  const c2ns = m.containers.get('c2')!.ns;
  const server = m.net.spawnIn(c2ns, ['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], {});
  await waitFor(async () => {
    if (!server.running) throw new Error('iperf3 -s exited');
    return tcpPortListening(c2ns, IPERF_PORT);
  }, { what: 'iperf3 server listening in c2', timeoutMs: 10_000, intervalMs: 100, detail: () => server.stderr });
  const ip = await run(['ip', 'netns', 'exec', m.containers.get('c1')!.ns, 'iperf3', '-c', '10.32.1.2', '-p', String(IPERF_PORT), '-t', '3', '-J'], { timeoutMs: 60_000 });
  await server.stop();
  t.equal(ip.code, 0, 'iperf3 TCP runs over the overlay');
  if (ip.code === 0) {
    const bps = (JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    t.comment(`iperf3 c1 -> c2: ${(bps / 1e6).toFixed(0)} Mbit/s (encrypted, two router processes on this machine)`);
    t.ok(bps > 0, 'iperf3 measured a non-zero rate');
  }
});

t.test('three hosts in a line: h1 and h3 cannot reach each other, containers talk through h2', async (t) => {
  // h2's router relays them (test/e2e/kernel-relay.test.ts has h2's kernel do it).
  const m = await mesh(t, { hosts: 3, line: true, blockEnds: true, launchArgs: ['--no-kernel-relay'] });
  await attach(m, t, 'h1', 'c1', '10.32.2.1');
  await attach(m, t, 'h3', 'c3', '10.32.2.3');
  const underlay = await m.net.host('h1').exec(['ping', '-c', '1', '-W', '1', m.net.host('h3').address]);
  t.not(underlay.code, 0, 'h1 really cannot reach h3 on the underlay');
  await pingEventually(m, 'c1', 'c3');
  await pingEventually(m, 'c3', 'c1');
  const s2 = await m.net.host('h2').weaveStatus();
  t.ok((s2.counters['framesRelayed'] ?? 0) > 0, `h2 relayed frames (${s2.counters['framesRelayed']})`);
  // Once h2 sends to h3 over UDP, it relays where the datagrams arrived (no copy into a send slot).
  let inPlace = 0;
  await waitFor(async () => {
    await pingEventually(m, 'c1', 'c3');
    inPlace = (await m.net.host('h2').weaveStatus()).counters['framesRelayedInPlace'] ?? 0;
    return inPlace > 0;
  }, { what: 'h2 relaying in place', timeoutMs: 20_000, intervalMs: 200 });
  t.ok(inPlace > 0, `h2 relayed ${inPlace} frames in place`);
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
