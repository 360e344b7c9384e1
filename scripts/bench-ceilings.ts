// The ceilings of scripts/bench: what the kernel does with no overlay daemon
// at all, between hosts of the same SimNetwork.
//
// - kernel VXLAN: the same shape as weave's fast path, container to container:
//   a container namespace's veth -> a bridge -> a vxlan device (UDP 4789,
//   point to point to the other host) -> the underlay -> the same on the other
//   side. The fast path's target (issue 14: at least 0.9x) is against this.
// - veth: host to host over the underlay itself (veth -> the switch's bridge
//   -> veth), the most any of the overlays could carry here.
//
// It owns the container namespaces it creates (named with the network's
// prefix, so SimNetwork.destroy() deletes them) and the links it makes inside
// its hosts' namespaces (gone with them). Nothing is created in the root
// namespace: every link is made inside a namespace of ours.

import type { Overlay } from './bench-measure';
import { run } from './command';
import type { SimHost } from './sim-host';
import type { SimNetwork } from './sim-network';

const VXLAN_SUBNET = '10.95.0';
const VXLAN_PORT = 4789;
const VXLAN_ID = 4242;
const VXLAN_DEV = 'kvx0';
const VXLAN_BRIDGE = 'kvxbr';

async function ip(args: string[]): Promise<void> {
  await run(['ip', ...args], { check: true, timeoutMs: 10_000 });
}

async function linkMtu(ns: string, ifname: string): Promise<number> {
  const r = await run(['ip', '-n', ns, '-j', 'link', 'show', ifname], { check: true });
  return (JSON.parse(r.stdout) as { mtu: number }[])[0]?.mtu ?? 0;
}

/** Kernel VXLAN between a and b, container namespace to container namespace through a bridge on each host. */
export async function setupKernelVxlan(net: SimNetwork, a: SimHost, b: SimHost): Promise<Overlay> {
  const pair = [a, b];
  const containers: string[] = [];
  for (let i = 0; i < pair.length; i++) {
    const h = pair[i]!;
    const peer = pair[1 - i]!;
    // The device's MTU follows eth0 less VXLAN's 50 bytes; the bridge and veth take it.
    await ip(['-n', h.ns, 'link', 'add', VXLAN_DEV, 'type', 'vxlan', 'id', String(VXLAN_ID), 'dstport', String(VXLAN_PORT),
      'local', h.address, 'remote', peer.address, 'dev', 'eth0']);
    const mtu = String(await linkMtu(h.ns, VXLAN_DEV));
    await ip(['-n', h.ns, 'link', 'add', VXLAN_BRIDGE, 'mtu', mtu, 'type', 'bridge']);
    await ip(['-n', h.ns, 'link', 'set', VXLAN_DEV, 'master', VXLAN_BRIDGE, 'up']);
    await ip(['-n', h.ns, 'link', 'set', VXLAN_BRIDGE, 'up']);
    const cns = `${net.prefix}kx${i + 1}`;
    containers.push(cns);
    await ip(['netns', 'add', cns]);
    await ip(['-n', cns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', h.ns, 'link', 'add', `kvx-c${i + 1}`, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu, 'netns', cns]);
    await ip(['-n', h.ns, 'link', 'set', `kvx-c${i + 1}`, 'master', VXLAN_BRIDGE, 'up']);
    await ip(['-n', cns, 'addr', 'add', `${VXLAN_SUBNET}.${i + 1}/24`, 'dev', 'eth0']);
    await ip(['-n', cns, 'link', 'set', 'eth0', 'up']);
  }
  const version = (await run(['uname', '-r'])).stdout.trim();
  return {
    name: 'vxlan',
    label: 'kernel VXLAN',
    clientNs: containers[0]!,
    serverNs: containers[1]!,
    serverAddress: `${VXLAN_SUBNET}.2`,
    mtu: await linkMtu(containers[0]!, 'eth0'),
    version: `Linux ${version}`,
    path: `container namespace on ${a.name} -> container namespace on ${b.name}, ${VXLAN_SUBNET}.1 -> ${VXLAN_SUBNET}.2: veth, bridge, ` +
      `kernel vxlan (UDP ${VXLAN_PORT}, plaintext), underlay, vxlan, bridge, veth; no daemon`,
    hosts: [a, b],
    isDaemon: null,
  };
}

/** The underlay itself: host a to host b over their eth0 veths and the switch's bridge. */
export async function setupVeth(a: SimHost, b: SimHost): Promise<Overlay> {
  const version = (await run(['uname', '-r'])).stdout.trim();
  return {
    name: 'veth',
    label: 'veth (underlay)',
    clientNs: a.ns,
    serverNs: b.ns,
    serverAddress: b.address,
    mtu: await linkMtu(a.ns, 'eth0'),
    version: `Linux ${version}`,
    path: `host ${a.name} -> host ${b.name} on the underlay, ${a.address} -> ${b.address}: veth, bridge, veth; no overlay`,
    hosts: [a, b],
    isDaemon: null,
  };
}
