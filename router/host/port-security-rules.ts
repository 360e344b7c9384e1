// Port security's nftables table, as pure functions from the attachments to
// nft JSON transactions (addresses never meet nft's parser). The guard that
// applies them, and why the table exists, is port-security.ts.
//
// The table `bridge weave-ports`:
//   chain prerouting (hook prerouting, priority -300, policy accept)
//     iifname vmap @ports              one element per container port: jump
//                                      to its chain, or accept when unguarded
//     iifname "vethwepl*" drop, ...    a container port without an element
//                                      (one rule per prefix, see below)
//   chain port-<ifname>, one per guarded port:
//     Ethernet source: its MAC; ethertypes IPv4, ARP and IPv6 only (no VLAN
//     tags to hide another header); IPv4 source: its addresses; ARP sender:
//     its MAC, its addresses or 0.0.0.0 (RFC 5227 probes); IPv6 source: its
//     addresses, link-local or :: (DAD); neighbour adverts only for its own
//     or link-local targets; no router adverts or redirects; then accept.
//   Every drop counts in the named counter `spoofed`.
//
// Two scripts: the whole table (replacing any of that name in the same
// transaction), and the change from one set of ports to another (only the
// ports that differ: an attach costs the same with 1 or 1000 neighbours).

import { errorMessage } from '../../common/errors';
import { parseIpWithPrefix } from '../../common/ip-cidr';
import { formatIp, parseIp } from '../../common/ip';
import { CONTAINER_VETH_PREFIXES, validateIfName } from './host-link';

export const PORT_SECURITY_FAMILY = 'bridge';
export const PORT_SECURITY_TABLE = 'weave-ports';
export const PORT_SECURITY_COUNTER = 'spoofed';
/** The map from a container port to its verdict. */
export const PORT_SECURITY_MAP = 'ports';
/** Ahead of every other bridge prerouting chain (NF_BR_PRI_FIRST is INT_MIN; -300 is the usual "early"). */
const PRIORITY = -300;
const BASE_CHAIN = 'prerouting';
/** The ports we make for containers; our other ports (the router's TAP, the fast path's) are not judged here. */
const CONTAINER_PREFIXES: readonly string[] = Object.values(CONTAINER_VETH_PREFIXES);

/** What a port may say: the host end of a container's veth, the container's MAC and its addresses (CIDRs or plain). */
export interface GuardedPort {
  hostIfname: string;
  mac: string;
  addresses: readonly string[];
  /** false: `weave attach --no-port-security` (or CNI's `"portSecurity": false`), the port is accepted whatever it sends. */
  portSecurity?: boolean;
}

/** A port as checked: what its chain is built from. Plain data, so two plans compare by their JSON. */
export interface PortPlan {
  hostIfname: string;
  mac: string;
  v4: string[];
  /** IPv6 addresses as 32 hex digits. */
  v6: string[];
  guarded: boolean;
}

export interface PortPlans {
  plans: Map<string, PortPlan>;
  /** Ports left without an element, and why (their frames are dropped). */
  refused: { hostIfname: string; reason: string }[];
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const T = { family: PORT_SECURITY_FAMILY, table: PORT_SECURITY_TABLE };

function planOf(p: GuardedPort): PortPlan {
  const hostIfname = validateIfName(p.hostIfname, 'port');
  if (!CONTAINER_PREFIXES.some((prefix) => hostIfname.startsWith(prefix))) throw new Error('not a container port of ours');
  const mac = typeof p.mac === 'string' ? p.mac.toLowerCase() : '';
  // A multicast source MAC is never a container's own (and would let it pose as a group).
  if (!MAC_RE.test(mac) || (parseInt(mac.slice(0, 2), 16) & 1) === 1) throw new Error(`not a unicast MAC: ${JSON.stringify(p.mac)}`);
  const v4: string[] = [];
  const v6: string[] = [];
  for (const a of p.addresses) {
    const address = a.includes('/') ? parseIpWithPrefix(a).address : parseIp(a);
    if (address.family === 4) v4.push(formatIp(address));
    else v6.push(address.value.toString(16).padStart(32, '0'));
  }
  return { hostIfname, mac, v4, v6, guarded: p.portSecurity !== false };
}

/**
 * Checks every port. One whose record is malformed, or that two records name
 * (neither can be believed), gets no plan and is reported: its frames are
 * dropped, the others' still flow.
 */
export function planPorts(ports: readonly GuardedPort[]): PortPlans {
  const refused: PortPlans['refused'] = [];
  const plans = new Map<string, PortPlan>();
  for (const p of ports) {
    try {
      const plan = planOf(p);
      if (plans.has(plan.hostIfname)) throw new Error('two attachments name this port');
      plans.set(plan.hostIfname, plan);
    } catch (err) {
      refused.push({ hostIfname: String(p.hostIfname), reason: errorMessage(err) });
    }
  }
  for (const r of refused) plans.delete(r.hostIfname);
  return { plans, refused };
}

function match(op: '==' | '!=', left: unknown, right: unknown): unknown {
  return { match: { op, left, right } };
}

const payload = (protocol: string, field: string): unknown => ({ payload: { protocol, field } });
/** Bits [offset, offset+len) of the transport header: the neighbour advert's target (RFC 4861 4.4) starts at bit 64. */
const transportBits = (offset: number, len: number): unknown => ({ payload: { base: 'th', offset, len } });
const DROP: unknown[] = [{ counter: PORT_SECURITY_COUNTER }, { drop: null }];
/** fe80::/10's first ten bits. */
const LINK_LOCAL_TOP10 = 0x3fa;

function rule(chain: string, ...expr: unknown[]): unknown {
  return { add: { rule: { ...T, chain, expr } } };
}

export function portChainName(hostIfname: string): string {
  return `port-${hostIfname}`;
}

/** The rules of a guarded port's chain (the chain itself must exist and be empty). */
function portRules(p: PortPlan): unknown[] {
  const chain = portChainName(p.hostIfname);
  const v6Text = p.v6.map((hex) => formatIp({ family: 6, value: BigInt(`0x${hex}`) }));
  return [
    rule(chain, match('!=', payload('ether', 'saddr'), p.mac), ...DROP),
    rule(chain, match('!=', payload('ether', 'type'), { set: ['ip', 'arp', 'ip6'] }), ...DROP),
    p.v4.length > 0
      ? rule(chain, match('!=', payload('ip', 'saddr'), { set: p.v4 }), ...DROP)
      : rule(chain, match('==', payload('ether', 'type'), 'ip'), ...DROP),
    rule(chain, match('!=', payload('arp', 'saddr ether'), p.mac), ...DROP),
    rule(chain, match('!=', payload('arp', 'saddr ip'), { set: ['0.0.0.0', ...p.v4] }), ...DROP),
    rule(chain, match('!=', payload('ip6', 'saddr'), { set: ['::', { prefix: { addr: 'fe80::', len: 10 } }, ...v6Text] }), ...DROP),
    rule(chain, match('==', payload('icmpv6', 'type'), { set: ['nd-router-advert', 'nd-redirect'] }), ...DROP),
    rule(
      chain,
      match('==', payload('icmpv6', 'type'), 'nd-neighbor-advert'),
      match('!=', transportBits(64, 10), LINK_LOCAL_TOP10),
      ...(p.v6.length > 0 ? [match('!=', transportBits(64, 128), { set: p.v6.map((hex) => `0x${hex}`) })] : []),
      ...DROP,
    ),
    rule(chain, { accept: null }),
  ];
}

function element(p: PortPlan): unknown {
  return [p.hostIfname, p.guarded ? { jump: { target: portChainName(p.hostIfname) } } : { accept: null }];
}

const mapRef = { ...T, name: PORT_SECURITY_MAP };

/** Adds a port: its chain and rules when guarded, then its map element. */
function addPort(p: PortPlan): unknown[] {
  const chain = p.guarded ? [{ add: { chain: { ...T, name: portChainName(p.hostIfname) } } }, ...portRules(p)] : [];
  return [...chain, { add: { element: { ...mapRef, elem: [element(p)] } } }];
}

/** Removes a port: its map element first (it references the chain), then its chain. */
function removePort(p: PortPlan): unknown[] {
  const name = portChainName(p.hostIfname);
  return [
    { delete: { element: { ...mapRef, elem: [p.hostIfname] } } },
    ...(p.guarded ? [{ flush: { chain: { ...T, name } } }, { delete: { chain: { ...T, name } } }] : []),
  ];
}

/** The whole table for `plans`, replacing any table of that name in the same transaction (`add` first, so `delete` cannot fail). */
export function tableScript(plans: ReadonlyMap<string, PortPlan>): string {
  const ops: unknown[] = [
    { add: { table: { ...T, name: T.table } } },
    { delete: { table: { ...T, name: T.table } } },
    { add: { table: { ...T, name: T.table } } },
    { add: { counter: { ...T, name: PORT_SECURITY_COUNTER } } },
    { add: { map: { ...mapRef, type: 'ifname', map: 'verdict' } } },
    { add: { chain: { ...T, name: BASE_CHAIN, type: 'filter', hook: 'prerouting', prio: PRIORITY, policy: 'accept' } } },
    rule(BASE_CHAIN, { vmap: { key: { meta: { key: 'iifname' } }, data: `@${PORT_SECURITY_MAP}` } }),
  ];
  // A container port without an element (a jump's chain ends in accept, so only these get here). One rule
  // per prefix, not a set: nft 1.0.6 merges adjacent wildcards in a set into a range that its own
  // `nft -j list ruleset` then aborts on, and the other firewall code here reads the ruleset that way.
  for (const prefix of CONTAINER_PREFIXES) ops.push(rule(BASE_CHAIN, match('==', { meta: { key: 'iifname' } }, `${prefix}*`), ...DROP));
  for (const p of plans.values()) ops.push(...addPort(p));
  return JSON.stringify({ nftables: ops });
}

/**
 * The transaction that turns the table for `before` into the table for
 * `after`, touching only ports that differ; null when nothing differs.
 */
export function changeScript(before: ReadonlyMap<string, PortPlan>, after: ReadonlyMap<string, PortPlan>): string | null {
  const ops: unknown[] = [];
  const same = (a: PortPlan, b: PortPlan): boolean => JSON.stringify(a) === JSON.stringify(b);
  for (const [name, old] of before) {
    const now = after.get(name);
    if (now === undefined) {
      ops.push(...removePort(old));
    } else if (!same(old, now)) {
      // Still guarded: new rules in the same chain, its element untouched; otherwise out and in again.
      if (old.guarded && now.guarded) ops.push({ flush: { chain: { ...T, name: portChainName(name) } } }, ...portRules(now));
      else ops.push(...removePort(old), ...addPort(now));
    }
  }
  for (const [name, now] of after) if (!before.has(name)) ops.push(...addPort(now));
  return ops.length === 0 ? null : JSON.stringify({ nftables: ops });
}
