// Port security: a container speaks only for itself. Without it any attached
// container could send with a neighbour's source MAC or IP, or answer ARP or
// IPv6 neighbour discovery for the neighbour's address: its own host's bridge
// would believe it, and every router's MAC table would move the victim's MAC
// to the spoofer's peer, so the victim's traffic from the whole mesh would go
// to the spoofer until the victim spoke again. Weave Net, Docker's bridge and
// flannel allow that; OpenStack's port security and Calico do not, nor do we.
//
// One nftables table of ours, `bridge weave-ports`, hooked at bridge
// prerouting ahead of everything else. Each container's host end of the veth
// (the one port where its frames enter the bridge) jumps to a chain of its
// own, built from what the attachment holds:
//   - Ethernet source: its MAC only; ethertypes IPv4, ARP and IPv6 only (no
//     VLAN tags to smuggle another header past these checks);
//   - IPv4 source: its addresses; ARP sender: its MAC, and its addresses or
//     0.0.0.0 (RFC 5227 probes);
//   - IPv6 source: its addresses, link-local (fe80::/10) or :: (DAD);
//     neighbour adverts only for its own addresses or link-local targets;
//     router adverts and redirects never (a container is not the router).
// A frame from a container port that has no chain (a veth that appeared
// without an attachment we know) is dropped too: fail closed. Other ports (the
// router's TAP, the fast path's, anything not ours) pass untouched. Every drop
// counts in the named counter `spoofed`.
//
// The table is rebuilt whole from the attachments in one nft transaction on
// every change: no moment without it, no drift between the record and the
// kernel, and a few milliseconds for a hundred ports. The script is nft JSON
// built by pure functions (addresses never meet nft's parser); the I/O takes
// a CommandRunner and time an injected Clock. Off with `--no-port-security`
// (containers that route for others: VPNs, nested bridges), or for one
// container with `weave attach --no-port-security`: its port is accepted
// whatever it sends.

import type { Clock, Timer } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import { parseIpWithPrefix } from '../../common/ip-cidr';
import { formatIp } from '../../common/ip';
import type { CommandRunner } from './command-runner';
import { CONTAINER_VETH_PREFIXES, validateIfName } from './host-link';

export const PORT_SECURITY_FAMILY = 'bridge';
export const PORT_SECURITY_TABLE = 'weave-ports';
export const PORT_SECURITY_COUNTER = 'spoofed';
/** Ahead of every other bridge prerouting chain (NF_BR_PRI_FIRST is INT_MIN; -300 is the usual "early"). */
const PRIORITY = -300;
/** The ports we make for containers; our other ports (the router's TAP, the fast path's) are not judged here. */
const CONTAINER_PREFIXES: readonly string[] = Object.values(CONTAINER_VETH_PREFIXES);
/** How often the table's existence is checked: `nft flush ruleset` (a firewall reload) would silently remove it. */
export const PORT_SECURITY_RECHECK_MS = 30_000;

/** What a port may say: the host end of a container's veth, the container's MAC and its addresses (CIDRs or plain). */
export interface GuardedPort {
  hostIfname: string;
  mac: string;
  addresses: readonly string[];
  /** false: `weave attach --no-port-security`, the port is accepted whatever it sends. */
  portSecurity?: boolean;
}

export interface PortSecurityScript {
  /** One nft JSON transaction that replaces the table. */
  script: string;
  /** Ports that got a chain. */
  ports: number;
  /** Ports let through unchecked (`portSecurity: false`). */
  unguarded: number;
  /** Ports left without a chain, and why (their frames are dropped). */
  refused: { hostIfname: string; reason: string }[];
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const T = { family: PORT_SECURITY_FAMILY, table: PORT_SECURITY_TABLE };

interface CheckedPort {
  hostIfname: string;
  mac: string;
  v4: string[];
  v6: bigint[];
  guarded: boolean;
}

function checkPort(p: GuardedPort): CheckedPort {
  const hostIfname = validateIfName(p.hostIfname, 'port');
  if (!CONTAINER_PREFIXES.some((prefix) => hostIfname.startsWith(prefix))) throw new Error(`not a container port of ours`);
  const mac = typeof p.mac === 'string' ? p.mac.toLowerCase() : '';
  // A multicast source MAC is never a container's own (and would let it pose as a group).
  if (!MAC_RE.test(mac) || (parseInt(mac.slice(0, 2), 16) & 1) === 1) throw new Error(`not a unicast MAC: ${JSON.stringify(p.mac)}`);
  const v4: string[] = [];
  const v6: bigint[] = [];
  for (const a of p.addresses) {
    const { address } = a.includes('/') ? parseIpWithPrefix(a) : parseIpWithPrefix(`${a}/${a.includes(':') ? 128 : 32}`);
    if (address.family === 4) v4.push(formatIp(address));
    else v6.push(address.value);
  }
  return { hostIfname, mac, v4, v6, guarded: p.portSecurity !== false };
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

function portRules(p: CheckedPort): unknown[] {
  const chain = portChainName(p.hostIfname);
  const hex128 = (v: bigint): string => `0x${v.toString(16).padStart(32, '0')}`;
  const ndTargets = p.v6.map(hex128);
  return [
    { add: { chain: { ...T, name: chain } } },
    rule(chain, match('!=', payload('ether', 'saddr'), p.mac), ...DROP),
    rule(chain, match('!=', payload('ether', 'type'), { set: ['ip', 'arp', 'ip6'] }), ...DROP),
    p.v4.length > 0
      ? rule(chain, match('!=', payload('ip', 'saddr'), { set: p.v4 }), ...DROP)
      : rule(chain, match('==', payload('ether', 'type'), 'ip'), ...DROP),
    rule(chain, match('!=', payload('arp', 'saddr ether'), p.mac), ...DROP),
    rule(chain, match('!=', payload('arp', 'saddr ip'), { set: ['0.0.0.0', ...p.v4] }), ...DROP),
    rule(chain, match('!=', payload('ip6', 'saddr'), { set: ['::', { prefix: { addr: 'fe80::', len: 10 } }, ...p.v6.map((v) => formatIp({ family: 6, value: v }))] }), ...DROP),
    rule(chain, match('==', payload('icmpv6', 'type'), { set: ['nd-router-advert', 'nd-redirect'] }), ...DROP),
    rule(
      chain,
      match('==', payload('icmpv6', 'type'), 'nd-neighbor-advert'),
      match('!=', transportBits(64, 10), LINK_LOCAL_TOP10),
      ...(ndTargets.length > 0 ? [match('!=', transportBits(64, 128), { set: ndTargets })] : []),
      ...DROP,
    ),
    rule(chain, { accept: null }),
  ];
}

/**
 * The table for `ports`, replacing any table of that name in the same
 * transaction (`add` first so that `delete` cannot fail on a fresh host). A
 * port whose record is malformed, or that two records name (neither can be
 * believed), gets no chain and is reported: its frames are dropped, the
 * others' still flow.
 */
export function portSecurityScript(ports: readonly GuardedPort[]): PortSecurityScript {
  const refused: PortSecurityScript['refused'] = [];
  const checked = new Map<string, CheckedPort>();
  for (const p of ports) {
    try {
      const c = checkPort(p);
      if (checked.has(c.hostIfname)) throw new Error('two attachments name this port');
      checked.set(c.hostIfname, c);
    } catch (err) {
      refused.push({ hostIfname: String(p.hostIfname), reason: errorMessage(err) });
    }
  }
  for (const r of refused) checked.delete(r.hostIfname);
  const base = 'prerouting';
  const ops: unknown[] = [
    { add: { table: { ...T, name: T.table } } },
    { delete: { table: { ...T, name: T.table } } },
    { add: { table: { ...T, name: T.table } } },
    { add: { counter: { ...T, name: PORT_SECURITY_COUNTER } } },
    { add: { chain: { ...T, name: base, type: 'filter', hook: 'prerouting', prio: PRIORITY, policy: 'accept' } } },
  ];
  const known = [...checked.values()];
  for (const p of known) if (p.guarded) ops.push(...portRules(p));
  if (checked.size > 0) {
    ops.push(rule(base, {
      vmap: {
        key: { meta: { key: 'iifname' } },
        data: { set: known.map((p) => [p.hostIfname, p.guarded ? { jump: { target: portChainName(p.hostIfname) } } : { accept: null }]) },
      },
    }));
  }
  // A container port without a chain (a jump's chain ends in accept, so only these get here). One rule
  // per prefix, not a set: nft 1.0.6 merges adjacent wildcards in a set into a range that its own
  // `nft -j list ruleset` then aborts on, and the other firewall code here reads the ruleset that way.
  for (const prefix of CONTAINER_PREFIXES) ops.push(rule(base, match('==', { meta: { key: 'iifname' } }, `${prefix}*`), ...DROP));
  const guarded = known.filter((p) => p.guarded).length;
  return { script: JSON.stringify({ nftables: ops }), ports: guarded, unguarded: known.length - guarded, refused };
}

export interface PortGuardStatus {
  /** Ports with a chain after the last rebuild. */
  ports: number;
  /** Ports attached with --no-port-security. */
  unguarded: number;
  /** Why the last rebuild failed, or which ports it had to refuse; null when all is well. */
  problem: string | null;
}

export interface PortGuardDeps {
  runner: CommandRunner;
  /** Every container port on this host now (weave attach, CNI, the Docker plugin). */
  ports: () => GuardedPort[];
  clock: Clock;
  logger?: Logger;
}

/**
 * Keeps the table equal to `ports()`: sync() after every attach and detach
 * (awaited before the attach is reported done, so a container never runs
 * unguarded for long), and a check every PORT_SECURITY_RECHECK_MS that puts
 * the table back if a firewall reload removed it. Rebuilds never overlap: one
 * asked for during another runs once after it, with the state of then.
 */
export class PortGuard {
  private running: Promise<void> | null = null;
  private again: Promise<void> | null = null;
  private timer: Timer | null = null;
  private closed = false;
  private last: PortGuardStatus = { ports: 0, unguarded: 0, problem: null };
  private readonly logger: Logger;

  constructor(private readonly deps: PortGuardDeps, private readonly recheckMs: number = PORT_SECURITY_RECHECK_MS) {
    this.logger = deps.logger ?? silentLogger;
  }

  /** Builds the table now and starts the periodic check. */
  async start(): Promise<void> {
    await this.sync();
    this.schedule();
  }

  /** Rebuilds the table from ports(); never throws (a failure is logged and shown in status()). */
  sync(): Promise<void> {
    if (this.running === null) {
      this.running = this.rebuild().finally(() => { this.running = null; });
      return this.running;
    }
    if (this.again === null) {
      this.again = this.running.then(() => {
        this.again = null;
        return this.sync();
      });
    }
    return this.again;
  }

  status(): PortGuardStatus {
    return { ...this.last };
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private async rebuild(): Promise<void> {
    let built: PortSecurityScript;
    try {
      built = portSecurityScript(this.deps.ports());
    } catch (err) {
      this.last = { ...this.last, problem: `cannot list the container ports: ${errorMessage(err)}` };
      this.logger.error('port security: cannot list the container ports', { error: errorMessage(err) });
      return;
    }
    for (const r of built.refused) this.logger.warn('port security: port left without a chain; its frames are dropped', r);
    // One argv element, not `-f -` (bridge-firewall.ts says why).
    const r = await this.deps.runner.run('nft', ['-j', built.script], { allowFail: true }).catch((err: unknown) => ({ code: -1, stdout: '', stderr: errorMessage(err) }));
    if (r.code !== 0) {
      const error = r.stderr.trim().split('\n')[0] ?? `exit ${r.code}`;
      this.last = { ...this.last, problem: `port security not applied (containers may spoof each other's addresses): ${error}` };
      this.logger.error('port security: cannot apply the table', { error });
      return;
    }
    const refusedText = built.refused.map((x) => `${x.hostIfname} (${x.reason})`).join(', ');
    this.last = { ports: built.ports, unguarded: built.unguarded, problem: built.refused.length > 0 ? `ports without a chain, their frames dropped: ${refusedText}` : null };
    if (this.logger.enabled('debug')) this.logger.debug('port security: table rebuilt', { ports: built.ports });
  }

  private schedule(): void {
    this.timer = this.deps.clock.setTimer(this.recheckMs, () => {
      if (this.closed) return;
      this.schedule();
      this.recheck().catch((err: unknown) => this.logger.warn('port security: re-check failed', { error: errorMessage(err) }));
    });
  }

  private async recheck(): Promise<void> {
    const r = await this.deps.runner.run('nft', ['list', 'table', PORT_SECURITY_FAMILY, PORT_SECURITY_TABLE], { allowFail: true });
    if (r.code === 0) return;
    this.logger.warn('port security: the table was gone (a firewall reload?); putting it back');
    await this.sync();
  }
}

/** Removes the table if there is one (`weave reset`, `--no-port-security`); never throws. */
export async function removePortSecurity(runner: CommandRunner): Promise<void> {
  try {
    await runner.run('nft', ['delete', 'table', PORT_SECURITY_FAMILY, PORT_SECURITY_TABLE], { allowFail: true });
  } catch { /* no nft: nothing of ours can be there */ }
}
