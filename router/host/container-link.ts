// The link that puts one container on the weave bridge, inside and out: the
// veth pair (host end `vethwe...` on the bridge, the other end born inside the
// container's namespace as `ethwe`), its MTU, GSO limit, ARP/NDP tuning and
// MAC, the addresses on ethwe and the overlay and multicast routes via it.
//
// It only carries out commands for the ContainerManager and ContainerAttacher,
// which decide what should exist and keep the record; it must never remove
// anything it was not asked to (a link or address it did not make) nor keep
// state beyond its configuration. A failed create() deletes the veth it made,
// so it never leaves a half-made link. All I/O goes through CommandRunner.

import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import { hasV6, parseRouteCidr } from './attach-address';
import { familyOfCanonical } from '../../common/ip';
import type { RunResult, CommandRunner } from './command-runner';
import type { ContainerKind, ResolvedContainer } from './container-ref';
import { runIpBatch } from './ip-batch';
import { MAX_IFNAME_CHARS, VETH_PREFIX, validateIfName, validateMtu } from './host-link';

/** The interface name inside every attached container, as in Weave Net. */
export const CONTAINER_IFNAME = 'ethwe';
/** Always routed via ethwe so multicast (mDNS, service discovery) crosses the overlay. */
export const MULTICAST_ROUTE = '224.0.0.0/4';
/** Largest GSO super-frame a container's TCP may build: the kernel's own 64 KiB, which the fast path needs; the sleeve splits what does not fit one datagram (router/overlay/gso-split.ts). */
export const CONTAINER_GSO_MAX_BYTES = 65_536;
/** A new bridge port starts forwarding within a few ms here; 2 s allows for a loaded machine. */
const PORT_FORWARDING_POLLS = 80;
const PORT_FORWARDING_POLL_MS = 25;
/** BR_STATE_FORWARDING in /sys/class/net/IF/brport/state. */
const BR_STATE_FORWARDING = '3';
/** What may stand in an `ip -batch` line unquoted (it splits on blanks, honours quotes and '#'). */
const BATCH_SAFE = /^[\w@%+=:,./-]+$/;
/** Weave Net's ARP settings for ethwe (net/arp.go, net/veth.go); IF stands for the interface. */
const ARP_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.ipv4.conf.IF.arp_notify', '1'],
  ['net.ipv4.neigh.IF.base_reachable_time_ms', '5000'],
  ['net.ipv4.neigh.IF.delay_first_probe_time', '2'],
  ['net.ipv4.neigh.IF.ucast_solicit', '1'],
];

/** A random locally administered unicast MAC (first octet xxxxxx10). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * The host end's name, stable for the container's lifetime and at most 15
 * characters: `vethwepl<pid>` like Weave Net for processes and Docker
 * containers, `vethwens<hash>` for named namespaces.
 */
export function hostIfnameFor(kind: ContainerKind, pidOrName: number | string): string {
  const name =
    kind === 'netns'
      ? `${VETH_PREFIX}ns${createHash('sha256').update(String(pidOrName)).digest('hex').slice(0, MAX_IFNAME_CHARS - VETH_PREFIX.length - 2)}`
      : `${VETH_PREFIX}pl${String(pidOrName)}`;
  return validateIfName(name, 'veth name');
}

/**
 * `ip` arguments adding or deleting an address on ethwe. IPv6 without DAD: on
 * a fresh veth it would keep the address tentative (unusable) for a second or
 * more, and IPAM already guarantees the address is unique on the overlay.
 */
function addrArgs(op: 'add' | 'del', cidr: string, ifname: string): string[] {
  return familyOfCanonical(cidr) === 6
    ? ['-6', 'addr', op, cidr, 'dev', ifname, ...(op === 'add' ? ['nodad'] : [])]
    : ['addr', op, cidr, 'dev', ifname];
}

export interface ContainerLinkDeps {
  runner: CommandRunner;
  logger: Logger;
  /** A fresh MAC for ethwe. */
  newMac: () => string;
  /** Waits between polls of the bridge port's state. */
  sleep: (ms: number) => Promise<void>;
}

export interface ContainerLinkOptions {
  bridge: string;
  mtu: number;
  /** CIDRs routed via ethwe; 224.0.0.0/4 is always added. */
  overlayRoutes: readonly string[];
  /** The interface inside the container; default ethwe. A CNI runtime names its own (CNI_IFNAME). */
  ifname?: string;
}

export class ContainerLinks {
  private readonly runner: CommandRunner;
  private readonly logger: Logger;
  private readonly newMac: () => string;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly bridge: string;
  private readonly mtu: number;
  private readonly routes: string[];
  private readonly ifname: string;

  constructor(deps: ContainerLinkDeps, opts: ContainerLinkOptions) {
    this.runner = deps.runner;
    this.logger = deps.logger;
    this.newMac = deps.newMac;
    this.sleep = deps.sleep;
    this.bridge = validateIfName(opts.bridge, 'bridge name');
    this.mtu = validateMtu(opts.mtu);
    const routes = opts.overlayRoutes.map((r) => parseRouteCidr(r));
    this.routes = [...new Set([...routes, MULTICAST_ROUTE])];
    this.ifname = validateIfName(opts.ifname ?? CONTAINER_IFNAME, 'container interface name');
  }

  /**
   * Creates the veth pair for `target` with `cidrs` on ethwe, its routes, and
   * returns ethwe's MAC. On a failure midway the veth (and with it everything
   * on ethwe) is deleted again before the error goes on. A handful of
   * processes, not one per step: the host side in one `ip -batch`, the
   * container side in another beside the ARP sysctls, then the announcement.
   */
  async create(target: Pick<ResolvedContainer, 'name' | 'netnsPath' | 'ipNetnsArg'>, hostIf: string, cidrs: readonly AttachCidr[]): Promise<string> {
    await this.createPair(target, hostIf);
    try {
      if (cidrs.some((w) => w.family === 6)) await this.enableIpv6(target.netnsPath);
      const lines = [
        `link set dev ${this.ifname} gso_max_size ${CONTAINER_GSO_MAX_BYTES}`,
        // No -6 in a batch line (ip takes options only before -batch); the address says its family.
        ...cidrs.map((w) => addrArgs('add', w.cidr, this.ifname).filter((a) => a !== '-6').join(' ')),
        `link set dev ${this.ifname} up`,
      ];
      const routes = this.routeLines('add', hasV6(cidrs.map((w) => w.cidr)));
      const [, ns] = await Promise.all([
        this.tuneArp(target.netnsPath, target.name),
        runIpBatch(this.runner, [...lines, ...routes], { netnsPath: target.netnsPath, force: true }),
      ]);
      for (const [line, said] of ns.failures) {
        // Line 1, gso_max_size, is best effort (kernels before 4.16 cannot set it); a route already there is fine.
        if (line === 1 || (line > lines.length && /File exists/i.test(said))) continue;
        const what = [...lines, ...routes][line - 1] ?? '-batch';
        throw new RouterError('io', `ip ${what} in ${target.name} failed: ${said}`);
      }
      return await this.announce(target.netnsPath, hostIf, target.name);
    } catch (err) {
      await this.discard(hostIf).catch((undo: unknown) => {
        this.logger.error('rollback step failed; something may be left behind', { error: errorMessage(undo), cause: errorMessage(err) });
      });
      throw err;
    }
  }

  /** The veth pair, the host end on the bridge and up; nothing is left behind when it fails. */
  private async createPair(target: Pick<ResolvedContainer, 'name' | 'ipNetnsArg'>, hostIf: string): Promise<void> {
    const addArgs = ['link', 'add', 'name', hostIf, 'mtu', String(this.mtu), 'type', 'veth',
      'peer', 'name', this.ifname, 'mtu', String(this.mtu), 'netns', target.ipNetnsArg];
    const rest = [`link set dev ${hostIf} master ${this.bridge}`, `link set dev ${hostIf} up`];
    // A namespace path ip's batch parser would split or cut short gets its own process.
    const inBatch = BATCH_SAFE.test(target.ipNetnsArg);
    let said: string | null = null;
    if (!inBatch) {
      const add = await this.runner.run('ip', addArgs, { allowFail: true });
      if (add.code !== 0) said = add.stderr.trim();
    }
    const batch = said === null ? await runIpBatch(this.runner, inBatch ? [addArgs.join(' '), ...rest] : rest) : null;
    if (batch !== null && inBatch) said = batch.failures.get(1) ?? null;
    if (said !== null) {
      if (/File exists/i.test(said)) {
        if ((await this.exists(hostIf)) !== false) {
          throw RouterError.config(`host interface ${hostIf} for ${target.name} already exists (left over from an earlier attach?); delete it with: ip link del ${hostIf}`);
        }
        throw RouterError.config(`${target.name} already has an interface named ${this.ifname} (attached by another weave router?)`);
      }
      throw new RouterError('io', `cannot create the veth pair for ${target.name}: ${said}`);
    }
    const failed = [...(batch?.failures ?? new Map<number, string>())][0];
    if (failed !== undefined) {
      await this.discard(hostIf);
      const lines = inBatch ? [addArgs.join(' '), ...rest] : rest;
      throw new RouterError('io', `ip ${lines[failed[0] - 1] ?? '-batch'} failed: ${failed[1]}`);
    }
  }

  /**
   * Deletes a veth this attach just made, as an undo step: deleting one end of
   * a veth pair deletes both, and the peer's addresses and routes with it.
   * Best effort; the result is not checked.
   */
  discard(hostIf: string): Promise<RunResult> {
    return this.runner.run('ip', ['link', 'del', 'dev', hostIf], { allowFail: true });
  }

  /** Adds `cidr` to ethwe; with `allowFail` the caller reads the result instead of catching. */
  addAddress(netnsPath: string, cidr: string, allowFail = false): Promise<RunResult> {
    return this.inNs(netnsPath, addrArgs('add', cidr, this.ifname), allowFail);
  }

  /** Removes `cidr` from ethwe; the caller reads the result (an address already gone may be fine). */
  removeAddress(netnsPath: string, cidr: string): Promise<RunResult> {
    return this.inNs(netnsPath, addrArgs('del', cidr, this.ifname), true);
  }

  private inNs(netnsPath: string, args: string[], allowFail = false): Promise<RunResult> {
    return this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', ...args], { allowFail });
  }

  /** True, false, or null when `ip` failed for another reason. */
  async exists(name: string): Promise<boolean | null> {
    const r = await this.runner.run('ip', ['link', 'show', 'dev', name], { allowFail: true });
    if (r.code === 0) return true;
    if (/does not exist|Cannot find device/i.test(r.stderr)) return false;
    return null;
  }

  async remove(name: string): Promise<void> {
    const r = await this.runner.run('ip', ['link', 'del', 'dev', name], { allowFail: true });
    if (r.code !== 0 && !/does not exist|Cannot find device/i.test(r.stderr)) {
      throw new RouterError('io', `cannot delete ${name}: ${r.stderr.trim()}`);
    }
  }

  /**
   * As Weave Net does for ethwe: announce addresses when the link comes up, and
   * notice a neighbour's changed MAC within seconds rather than the default
   * ~30 s (a detached and re-attached container gets a new MAC). Best effort:
   * without it traffic still flows, it just recovers more slowly.
   */
  private async tuneArp(netnsPath: string, name: string): Promise<void> {
    const settings = ARP_SYSCTLS.map(([k, v]) => `${k.replace('IF', this.ifname)}=${v}`);
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'sysctl', '-q', '-w', ...settings], { allowFail: true });
    if (r.code !== 0) this.logger.warn('cannot tune ARP on ethwe', { container: name, error: r.stderr.trim() });
  }

  /**
   * Makes peers that still hold the MAC of an earlier holder of these addresses
   * (a detached and re-attached container, a restarted one) learn the new MAC
   * now, not after their ARP entry times out. With arp_notify, a MAC change
   * sends a gratuitous ARP for every address. Bringing ethwe up would too, but
   * at that moment the bridge port is still disabled (it starts forwarding only
   * once the kernel's link watcher has seen the carrier), so that announcement
   * is lost. Hence: wait for `forwarding`, then give ethwe its own fresh MAC.
   * Best effort: failure only slows recovery down.
   */
  private async announce(netnsPath: string, hostIf: string, name: string): Promise<string> {
    let forwarding = false;
    for (let i = 0; i < PORT_FORWARDING_POLLS && !forwarding; i++) {
      forwarding = await this.portForwarding(hostIf);
      if (!forwarding) await this.sleep(PORT_FORWARDING_POLL_MS);
    }
    if (!forwarding) this.logger.warn('bridge port did not reach forwarding state in time', { container: name, veth: hostIf });
    const mac = this.newMac();
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', 'link', 'set', 'dev', this.ifname, 'address', mac], { allowFail: true });
    if (r.code === 0) return mac;
    this.logger.warn('cannot announce the new MAC of ethwe', { container: name, error: r.stderr.trim() });
    return this.readMac(netnsPath);
  }

  /**
   * Whether the bridge port is forwarding: sysfs when it shows this namespace's
   * interfaces (a file read, no process), else `ip -d link show`.
   */
  private async portForwarding(hostIf: string): Promise<boolean> {
    try {
      return (await readFile(`/sys/class/net/${hostIf}/brport/state`, 'utf8')).trim() === BR_STATE_FORWARDING;
    } catch {
      // Not in this sysfs (mounted for another namespace) or not a bridge port yet: ask ip.
    }
    const r = await this.runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', hostIf], { allowFail: true });
    try {
      const info = (JSON.parse(r.stdout) as { linkinfo?: { info_slave_data?: { state?: unknown } } }[])[0];
      return info?.linkinfo?.info_slave_data?.state === 'forwarding';
    } catch {
      return false;
    }
  }

  /**
   * Adds the overlay and multicast routes via ethwe; one that exists already is
   * fine. IPv6 overlay routes only with `withV6` (the container has an IPv6
   * address on ethwe; without one, IPv6 may well be disabled there).
   */
  async ensureRoutes(netnsPath: string, withV6: boolean): Promise<void> {
    const lines = this.routeLines('add', withV6);
    const r = await runIpBatch(this.runner, lines, { netnsPath, force: true });
    for (const [line, said] of r.failures) {
      if (/File exists/i.test(said)) continue;
      throw new RouterError('io', `cannot add route ${lines[line - 1] ?? ''} via ${this.ifname}: ${said}`);
    }
  }

  /** Best effort: a route already gone (with its connected twin, say) is fine. */
  async removeV6Routes(netnsPath: string): Promise<void> {
    const lines = this.routes.filter((r) => familyOfCanonical(r) === 6).map((route) => `route del ${route} dev ${this.ifname}`);
    if (lines.length > 0) await runIpBatch(this.runner, lines, { netnsPath, force: true });
  }

  /** `ip -batch` lines for the overlay routes via ethwe, IPv6 ones only `withV6`. */
  private routeLines(op: 'add', withV6: boolean): string[] {
    return this.routes
      .filter((route) => withV6 || familyOfCanonical(route) !== 6)
      .map((route) => `route ${op} ${route} dev ${this.ifname}`);
  }

  /**
   * Dual stack: IPv6 on ethwe, whatever the namespace's default (Docker turns
   * it off in containers of IPv4-only networks). ndisc_notify is arp_notify's
   * IPv6 twin: the MAC change in announce() sends unsolicited neighbour
   * advertisements. The interface is ours, so is the setting: it goes with it.
   */
  async enableIpv6(netnsPath: string): Promise<void> {
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'sysctl', '-q', '-w',
      `net.ipv6.conf.${this.ifname}.disable_ipv6=0`, `net.ipv6.conf.${this.ifname}.ndisc_notify=1`], { allowFail: true });
    if (r.code !== 0) throw new RouterError('io', `cannot enable IPv6 on ${this.ifname}: ${r.stderr.trim()}`);
  }

  private async readMac(netnsPath: string): Promise<string> {
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', '-j', 'link', 'show', 'dev', this.ifname]);
    try {
      const parsed = JSON.parse(r.stdout) as { address?: unknown }[];
      const mac = parsed[0]?.address;
      if (typeof mac === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return mac;
    } catch {
      // Reported below.
    }
    throw new RouterError('io', `cannot read the MAC address of ${this.ifname}`);
  }
}
