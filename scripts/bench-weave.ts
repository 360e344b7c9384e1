// Our overlay, set up for scripts/bench on the hosts of its SimNetwork:
//
// - an encrypted mesh h1 - h2: containers c1 on h1 and c2 on h2 (direct);
//   then h3 joins through h2 with c3, which h1 cannot reach (the network
//   drops everything between h1 and h3), so c1 -> c3 is relayed by h2: by
//   its kernel (a kernel relay, router/overlay/kernel-relay.ts: h1 and h3
//   send their far messages, sealed end to end, to ports h2's nftables
//   ingress rules forward); checked from the routers' own status and
//   counters before it is measured;
// - an encrypted mesh g1 - g3 whose underlay packets h2's kernel forwards
//   (IP forwarding in h2's namespace, a route through h2 on each end):
//   what one more host on the way costs when the kernel carries it, the
//   ceiling of the relayed row; checked from h2's forwarding counter;
// - a plaintext mesh f1 - f2 with containers fc1 and fc2, on the kernel fast
//   path (VXLAN, router/overlay/fastdp.ts), checked in status as 'fastdp'.
//
// It owns the container namespaces it creates (named with the network's
// prefix, so SimNetwork.destroy() deletes them) and the routers it launches
// (stopped by scripts/bench.ts, killed by destroy() if they do not stop).

import { join, resolve } from 'node:path';
import { ROUTER_BUNDLE_FILE } from '../cli/launch';
import type { RouterStatus } from '../router/mesh/status';
import { type Overlay, ping } from './bench-measure';
import { run } from './command';
import type { SimHost } from './sim-host';
import type { SimNetwork } from './sim-network';
import { waitFor } from './wait';

const REPO_ROOT = resolve(__dirname, '..', '..');
const SLEEVE_WAIT_MS = 30_000;
const ENCRYPTED_IPS = ['10.32.1.1', '10.32.1.2', '10.32.1.3'] as const;
const HOST_IPS = ['10.32.1.201', '10.32.1.202'] as const;
const FORWARDED_IPS = ['10.32.3.1', '10.32.3.2'] as const;

/** The router itself: its supervisor (cli/supervisor.js, whose argv also names weave.js and 'router') is a separate idle process. */
const isRouter = (cmd: string[]): boolean =>
  cmd.some((a) => a.endsWith(join('cli', 'weave.js')) || a.endsWith(join('cli', ROUTER_BUNDLE_FILE))) && cmd.includes('router') && !cmd.some((a) => a.endsWith('supervisor.js'));

function linkTo(s: RouterStatus, nickname: string) {
  return s.connections.find((c) => c.state === 'established' && c.nickname === nickname);
}

async function revision(): Promise<string> {
  const rev = await run(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
  return rev.code === 0 ? ` at ${rev.stdout.trim()}` : '';
}

/** Launches routers on `hosts`, each given the one before it as its peer, and waits until every one reaches all. */
async function launchLine(hosts: SimHost[], password: string | null | undefined): Promise<void> {
  for (let i = 0; i < hosts.length; i++) {
    const h = hosts[i]!;
    const peers = i === 0 ? [] : [hosts[i - 1]!.address];
    const r = await h.weave(['launch', '--nickname', h.name, '--no-discovery', ...peers],
      { timeoutMs: 60_000, ...(password !== undefined ? { password } : {}) });
    if (r.code !== 0) throw new Error(`weave launch on ${h.name} exited ${r.code}: ${r.stderr.trim()}\n${h.readLog()}`);
  }
  for (const h of hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === hosts.length, {
      what: `${h.name} reaches ${hosts.length} peers`, timeoutMs: 60_000, detail: () => h.readLog(),
    });
  }
}

/** A fresh netns `<prefix><name>` attached to weave on `h` with `ip`/24; returns the namespace. */
export async function attach(net: SimNetwork, h: SimHost, name: string, ip: string): Promise<string> {
  const ns = `${net.prefix}${name}`;
  await run(['ip', 'netns', 'add', ns], { check: true });
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
  const r = await h.weave(['attach', `${ip}/24`, `netns:${ns}`], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`weave attach ${ip}/24 netns:${ns} on ${h.name} exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
  return ns;
}

/** Waits for `from`'s connection to `to` to use `path`; on timeout says so and returns what there is. */
async function waitForPath(from: SimHost, to: SimHost, path: 'udp' | 'fastdp', say: (line: string) => void): Promise<RouterStatus> {
  try {
    return await waitFor(async () => {
      const st = await from.weaveStatus();
      return linkTo(st, to.name)?.dataPath === path ? st : null;
    }, { what: `${from.name} -> ${to.name} on ${path}`, timeoutMs: SLEEVE_WAIT_MS, intervalMs: 500 });
  } catch {
    const st = await from.weaveStatus();
    const link = linkTo(st, to.name);
    say(`    warning: after ${SLEEVE_WAIT_MS / 1000} s ${from.name} -> ${to.name} is on ${link?.dataPath ?? 'nothing'}, not ${path} ` +
      `(${link?.dataPathInfo ?? 'no connection'}); measuring what there is`);
    return st;
  }
}

function describe(s: RouterStatus, to: string): string {
  const link = linkTo(s, to);
  const kind = link?.dataPath === 'udp' ? 'UDP sleeve' : link?.dataPath === 'fastdp' ? 'kernel VXLAN fast path' : `${(link?.dataPath ?? '?').toUpperCase()} fallback`;
  return `${link?.encrypted ? 'encrypted' : 'UNENCRYPTED'} ${kind}${link?.encrypted && s.dataPlane?.aead ? ` (${s.dataPlane.aead})` : ''}`;
}

/** The encrypted mesh on h1 and h2: container c1 -> c2, direct. */
export async function setupWeaveEncrypted(net: SimNetwork, h1: SimHost, h2: SimHost, say: (line: string) => void): Promise<Overlay> {
  await launchLine([h1, h2], undefined);
  const client = await attach(net, h1, 'c1', ENCRYPTED_IPS[0]);
  const server = await attach(net, h2, 'c2', ENCRYPTED_IPS[1]);
  const o: Overlay = {
    name: 'weave', label: 'weave (ours)', clientNs: client, serverNs: server, serverAddress: ENCRYPTED_IPS[1], path: '', mtu: 0, version: '',
    hosts: [h1, h2], isDaemon: isRouter,
  };
  // The first pings also teach the routers' MAC tables.
  await waitFor(async () => (await ping(o, 1)).ok, { what: `c1 pings ${ENCRYPTED_IPS[1]} over weave`, timeoutMs: 30_000, detail: () => h1.readLog() });
  // Frames travel over TCP until the first UDP heartbeat is confirmed (one heartbeat interval, 5 s by default).
  const s = await waitForPath(h1, h2, 'udp', say);
  Object.assign(o, {
    mtu: s.dataPlane?.mtu ?? 0,
    version: `weave (this repo${await revision()}, router ${s.version})`,
    path: `container c1 (on ${h1.name}) -> container c2 (on ${h2.name}), ${ENCRYPTED_IPS[0]} -> ${ENCRYPTED_IPS[1]}: veth, bridge, TAP, router, ` +
      `${describe(s, h2.name)}, router, TAP, bridge, veth`,
  });
  return o;
}

/**
 * The encrypted mesh of `direct`, host to host: h1 and h2 given addresses on
 * it with `weave expose`, so the path has the same ends as the references'
 * rows (each host's own stack; no container veth), which the container rows
 * add on both ends, twice per round trip.
 */
export async function setupWeaveHosts(direct: Overlay): Promise<Overlay> {
  const [h1, h2] = direct.hosts as [SimHost, SimHost];
  for (const [h, ip] of [[h1, HOST_IPS[0]], [h2, HOST_IPS[1]]] as const) {
    const r = await h.weave(['expose', `${ip}/24`], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`weave expose ${ip}/24 on ${h.name} exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
  }
  const o: Overlay = {
    name: 'weave-hosts', label: 'weave host-host', clientNs: h1.ns, serverNs: h2.ns, serverAddress: HOST_IPS[1], mtu: direct.mtu,
    version: direct.version, hosts: [h1, h2], isDaemon: isRouter,
    path: `host ${h1.name} -> host ${h2.name} (weave expose), ${HOST_IPS[0]} -> ${HOST_IPS[1]}: bridge, TAP, router, the same encrypted sleeve, router, TAP, bridge`,
  };
  await waitFor(async () => (await ping(o, 1)).ok, { what: `${h1.name} pings ${HOST_IPS[1]} over weave`, timeoutMs: 30_000, detail: () => h1.readLog() });
  return o;
}

/**
 * h3 joins the encrypted mesh through h2, with container c3: c1 -> c3 is
 * relayed by h2's kernel. The network must already drop traffic between h1
 * and h3; the route through h2 is checked in h1's status, the kernel path in
 * both ends' status and h1's counter.
 */
export async function setupWeaveRelayed(net: SimNetwork, direct: Overlay, h3: SimHost, say: (line: string) => void): Promise<Overlay> {
  const [h1, h2] = direct.hosts as [SimHost, SimHost];
  const r = await h3.weave(['launch', '--nickname', h3.name, '--no-discovery', h2.address], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`weave launch on ${h3.name} exited ${r.code}: ${r.stderr.trim()}\n${h3.readLog()}`);
  for (const h of [h1, h2, h3]) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 3, {
      what: `${h.name} reaches 3 peers`, timeoutMs: 60_000, detail: () => h.readLog(),
    });
  }
  const server = await attach(net, h3, 'c3', ENCRYPTED_IPS[2]);
  const o: Overlay = {
    name: 'weave-relayed', label: 'weave relayed', clientNs: direct.clientNs, serverNs: server, serverAddress: ENCRYPTED_IPS[2], mtu: direct.mtu,
    version: direct.version, path: '', hosts: [h1, h2, h3], isDaemon: isRouter,
  };
  await waitFor(async () => (await ping(o, 1)).ok, { what: `c1 pings ${ENCRYPTED_IPS[2]} over weave through h2`, timeoutMs: 30_000, detail: () => h2.readLog() });
  const s2 = await waitForPath(h2, h3, 'udp', say);
  // The route: h1 has no connection to h3 but reaches it, and h2 (h1's only neighbour) is connected to it.
  const s1 = await h1.weaveStatus();
  const p3 = s1.peers.find((p) => p.nickname === h3.name);
  const p2 = s1.peers.find((p) => p.nickname === h2.name);
  if (linkTo(s1, h3.name) !== undefined) throw new Error(`${h1.name} has a connection to ${h3.name}: the row would not be relayed`);
  if (!p3?.reachable || !p2?.connections.some((c) => c.name === p3.name && c.established)) {
    throw new Error(`${h1.name}'s status does not show ${h3.name} reachable through ${h2.name}: ${JSON.stringify(s1.peers)}`);
  }
  // The kernel path comes into use once far keys are exchanged and probes passed both ways.
  await waitFor(async () => {
    await ping(o, 3);
    const inUse = async (h: SimHost, far: SimHost): Promise<boolean> => {
      const s = await h.weaveStatus();
      const name = s.peers.find((p) => p.nickname === far.name)?.name;
      return (s.dataPlane?.kernelRelay?.paths ?? []).some((p) => p.peer === name && p.inUse);
    };
    return (await inUse(h1, h3)) && (await inUse(h3, h1));
  }, { what: `a kernel relay path through ${h2.name}, in use both ways`, timeoutMs: 60_000, intervalMs: 500, detail: () => `${h1.readLog()}\n${h2.readLog()}` });
  const kernelBefore = (await h1.weaveStatus()).counters['framesSentKernelRelay'] ?? 0;
  await ping(o, 10);
  const sentByKernel = ((await h1.weaveStatus()).counters['framesSentKernelRelay'] ?? 0) - kernelBefore;
  if (sentByKernel < 10) throw new Error(`10 pings c1 -> c3 moved ${h1.name}'s framesSentKernelRelay by only ${sentByKernel}`);
  say(`    weave relayed: ${h1.name} has no connection to ${h3.name}, reaches it through ${h2.name} (status: ${h2.name} connected to ${h3.name}); ` +
    `10 pings went through ${h2.name}'s kernel (${sentByKernel} frames on ${h1.name}'s kernel relay path)`);
  o.path = `container c1 (on ${h1.name}) -> container c3 (on ${h3.name}), ${ENCRYPTED_IPS[0]} -> ${ENCRYPTED_IPS[2]}: ${h1.name} and ${h3.name} ` +
    `cannot reach each other; router on ${h1.name} (seals end to end), ${describe(s1, h2.name)}, ${h2.name}'s kernel (nftables ingress rules of ` +
    `a kernel relay), ${describe(s2, h3.name)}, router on ${h3.name}`;
  return o;
}

/** IPv4 datagrams h's kernel has forwarded (Ip: ForwDatagrams of its namespace). */
async function forwardedDatagrams(h: SimHost): Promise<number> {
  const lines = (await h.exec(['cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Ip:'));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/));
  const at = names?.indexOf('ForwDatagrams') ?? -1;
  return at < 0 ? NaN : Number(values?.[at]);
}

/**
 * The encrypted mesh on g1 and g3 (containers gc1 -> gc3), direct as far as
 * the routers know, while every underlay packet between them goes through
 * `via`'s kernel: IP forwarding on in its namespace (redirects off, so the
 * ends keep the route) and a /32 route through it on each end. The relayed
 * row's hop, done by the kernel instead of a router.
 */
export async function setupWeaveForwarded(net: SimNetwork, hosts: [SimHost, SimHost], via: SimHost, say: (line: string) => void): Promise<Overlay> {
  const [g1, g3] = hosts;
  const sysctl = await via.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0']);
  if (sysctl.code !== 0) throw new Error(`forwarding on ${via.name}: ${sysctl.stderr.trim()}`);
  for (const [from, to] of [[g1, g3], [g3, g1]] as const) {
    const r = await from.exec(['ip', 'route', 'add', `${to.address}/32`, 'via', via.address]);
    if (r.code !== 0) throw new Error(`route ${from.name} -> ${to.name} via ${via.name}: ${r.stderr.trim()}`);
  }
  await launchLine(hosts, undefined);
  const client = await attach(net, g1, 'gc1', FORWARDED_IPS[0]);
  const server = await attach(net, g3, 'gc3', FORWARDED_IPS[1]);
  const o: Overlay = {
    name: 'weave-forwarded', label: `weave fwd by ${via.name}`, clientNs: client, serverNs: server, serverAddress: FORWARDED_IPS[1], path: '', mtu: 0,
    version: '', hosts: [g1, g3], isDaemon: isRouter,
  };
  await waitFor(async () => (await ping(o, 1)).ok, { what: `gc1 pings ${FORWARDED_IPS[1]} over weave`, timeoutMs: 30_000, detail: () => g1.readLog() });
  const s = await waitForPath(g1, g3, 'udp', say);
  const before = await forwardedDatagrams(via);
  await ping(o, 10);
  const forwarded = (await forwardedDatagrams(via)) - before;
  if (!(forwarded >= 20)) throw new Error(`10 pings gc1 -> gc3 moved ${via.name}'s forwarded datagrams by ${forwarded}: the row would not be forwarded`);
  say(`    weave forwarded: 10 pings gc1 -> gc3 made ${via.name}'s kernel forward ${forwarded} datagrams`);
  Object.assign(o, {
    mtu: s.dataPlane?.mtu ?? 0,
    version: `weave (this repo${await revision()}, router ${s.version})`,
    path: `container gc1 (on ${g1.name}) -> container gc3 (on ${g3.name}), ${FORWARDED_IPS[0]} -> ${FORWARDED_IPS[1]}: router on ${g1.name}, ` +
      `${describe(s, g3.name)}, every underlay packet forwarded by ${via.name}'s kernel (no router in the way), router on ${g3.name}`,
  });
  return o;
}

/** Sent packets of the fast path's vxlan device on h, or NaN when there is none. */
export async function vxlanTxPackets(h: SimHost): Promise<number> {
  const r = await h.exec(['ip', '-s', '-j', 'link', 'show', 'vxlan-6784']);
  if (r.code !== 0) return NaN;
  return (JSON.parse(r.stdout) as { stats64: { tx: { packets: number } } }[])[0]?.stats64.tx.packets ?? NaN;
}

/** A plaintext mesh on f1 and f2, container to container on the kernel fast path. */
export async function setupWeaveFastdp(net: SimNetwork, hosts: [SimHost, SimHost], say: (line: string) => void): Promise<Overlay> {
  const [f1, f2] = hosts;
  await launchLine(hosts, null);
  const ips = ['10.32.2.1', '10.32.2.2'];
  const client = await attach(net, f1, 'fc1', ips[0]!);
  const server = await attach(net, f2, 'fc2', ips[1]!);
  const o: Overlay = {
    name: 'weave-fastdp', label: 'weave fast path', clientNs: client, serverNs: server, serverAddress: ips[1]!, path: '', mtu: 0, version: '',
    hosts: [f1, f2], isDaemon: isRouter,
  };
  await waitFor(async () => (await ping(o, 1)).ok, { what: `fc1 pings ${ips[1]} over weave`, timeoutMs: 30_000, detail: () => f1.readLog() });
  const s = await waitForPath(f1, f2, 'fastdp', say);
  const back = await waitForPath(f2, f1, 'fastdp', say);
  // Measured on the sleeve, the row would say nothing about the fast path.
  if (linkTo(s, f2.name)?.dataPath !== 'fastdp' || linkTo(back, f1.name)?.dataPath !== 'fastdp') throw new Error('f1 and f2 are not on the fast path');
  const shown = (await f1.weave(['status', 'connections'])).stdout.split('\n').find((l) => l.includes(f2.name)) ?? '';
  say(`    weave fast path: \`weave status connections\` on ${f1.name}: ${shown.trim()}`);
  const tx0 = await vxlanTxPackets(f1);
  await ping(o, 10);
  const vx = (await vxlanTxPackets(f1)) - tx0;
  if (!(vx >= 10)) say(`    warning: 10 pings fc1 -> fc2 left ${f1.name}'s vxlan-6784 with ${Number.isNaN(vx) ? 'no device' : `+${vx} packets`}`);
  Object.assign(o, {
    mtu: s.dataPlane?.mtu ?? 0,
    version: `weave (this repo${await revision()}, router ${s.version})`,
    path: `container fc1 (on ${f1.name}) -> container fc2 (on ${f2.name}), ${ips[0]} -> ${ips[1]}, no password: veth, bridge, ${describe(s, f2.name)} ` +
      '(vxlan-6784, FDB written by the router), bridge, veth',
  });
  return o;
}
