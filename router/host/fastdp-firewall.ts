// The fast path's own nftables table: only peers may feed the VXLAN port.
// The kernel's vxlan socket takes any datagram to UDP 6784 from anywhere, so
// without this anyone who can reach the port could put frames on the bridge
// or fake heartbeats (the sleeve, by contrast, takes datagrams only from
// addresses a peer's TCP connection vouches for). The table `inet
// weave-fastdp` has an input chain that accepts UDP 6784 from the addresses
// in its set `peers` (the neighbours the vxlan FDB points at, which the router
// keeps current: router/overlay/fastdp.ts) and drops the rest, counted by the
// named counter `dropped`.
//
// Why a table of our own here, unlike bridge-firewall.ts: that one must
// accept, and an accept cannot overrule another table's drop; this one only
// drops, and a drop anywhere is final. A table of ours is removed whole.
// The scripts are nft JSON (never nft's parser for addresses), built by pure
// functions; the I/O takes a CommandRunner.
//
// Also here, so that `weave reset` without a router (after a crash) needs
// neither the native addon nor cli/fastdp-device.ts: the fast path's device
// names, and removing everything the fast path leaves on a host.

import type { CommandRunner } from './command-runner';
import { runQuietly } from './command-runner';

export const FASTDP_DEVICE = 'vxlan-6784';
export const FASTDP_HEARTBEAT_TAP = 'vethwe-hb';
export const FASTDP_NFT_FAMILY = 'inet';
export const FASTDP_NFT_TABLE = 'weave-fastdp';
export const FASTDP_NFT_SET = 'peers';
export const FASTDP_NFT_COUNTER = 'dropped';

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const T = { family: FASTDP_NFT_FAMILY, table: FASTDP_NFT_TABLE };

function isIpv4(a: string): boolean {
  const m = IPV4_RE.exec(a);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255 && String(Number(o)) === o);
}

function dport(port: number): unknown {
  return { match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: port } };
}

/** The whole table, as one nft JSON transaction: its set starts empty, so nothing is accepted until the router says whom. */
export function fastdpTableScript(port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`not a UDP port: ${port}`);
  return JSON.stringify({
    nftables: [
      { add: { table: { family: T.family, name: T.table } } },
      { add: { set: { ...T, name: FASTDP_NFT_SET, type: 'ipv4_addr' } } },
      { add: { counter: { ...T, name: FASTDP_NFT_COUNTER } } },
      { add: { chain: { ...T, name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' } } },
      { add: { rule: { ...T, chain: 'input', expr: [
        dport(port),
        { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: `@${FASTDP_NFT_SET}` } },
        { accept: null },
      ] } } },
      { add: { rule: { ...T, chain: 'input', expr: [dport(port), { counter: FASTDP_NFT_COUNTER }, { drop: null }] } } },
    ],
  });
}

/**
 * Replaces the set's elements with `addresses` in one transaction (no moment
 * with an empty set). Anything not a dotted IPv4 address is refused, not
 * passed on: the fast path is IPv4 only.
 */
export function fastdpPeersScript(addresses: readonly string[]): string {
  const bad = addresses.find((a) => !isIpv4(a));
  if (bad !== undefined) throw new RangeError(`not an IPv4 address for the fast path's firewall: ${JSON.stringify(bad)}`);
  const ops: unknown[] = [{ flush: { set: { ...T, name: FASTDP_NFT_SET } } }];
  if (addresses.length > 0) ops.push({ add: { element: { ...T, name: FASTDP_NFT_SET, elem: [...new Set(addresses)] } } });
  return JSON.stringify({ nftables: ops });
}

/** Removes the table if there is one (a crash leaves it behind); never throws. */
export async function removeFastdpFirewall(runner: CommandRunner): Promise<void> {
  await runQuietly(runner, 'nft', ['delete', 'table', FASTDP_NFT_FAMILY, FASTDP_NFT_TABLE]);
}

/** Removes the vxlan device, the heartbeat TAP and the firewall table, whichever exist; never throws. */
export async function removeFastdpLeftovers(runner: CommandRunner): Promise<void> {
  await runQuietly(runner, 'ip', ['link', 'del', FASTDP_DEVICE]);
  await runQuietly(runner, 'ip', ['link', 'del', FASTDP_HEARTBEAT_TAP]);
  await removeFastdpFirewall(runner);
}

/** Replaces any leftover table with a fresh one that drops every datagram to `port`. Throws when nft fails. */
export async function installFastdpFirewall(runner: CommandRunner, port: number): Promise<void> {
  await removeFastdpFirewall(runner);
  // One argv element, not `-f -` (bridge-firewall.ts says why).
  await runner.run('nft', ['-j', fastdpTableScript(port)]);
}

export async function setFastdpPeers(runner: CommandRunner, addresses: readonly string[]): Promise<void> {
  await runner.run('nft', ['-j', fastdpPeersScript(addresses)]);
}
