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
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import { hasV6, parseRouteCidr } from './attach-address';
import { familyOfCanonical } from '../../common/ip';
import type { RunResult, CommandRunner } from './command-runner';
import type { ContainerKind, ResolvedContainer } from './container-ref';
import { MAX_IFNAME_CHARS, VETH_PREFIX, validateIfName, validateMtu } from './host-link';

/** The interface name inside every attached container, as in Weave Net. */
export const CONTAINER_IFNAME = 'ethwe';
/** Always routed via ethwe so multicast (mDNS, service discovery) crosses the overlay. */
export const MULTICAST_ROUTE = '224.0.0.0/4';
/** Largest GSO super-frame a container's TCP may build (see the data plane's sleeve limit). */
export const CONTAINER_GSO_MAX_BYTES = 32_768;
/** A new bridge port starts forwarding within a few ms here; 2 s allows for a loaded machine. */
const PORT_FORWARDING_POLLS = 80;
const PORT_FORWARDING_POLL_MS = 25;
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
   * on ethwe) is deleted again before the error goes on.
   */
  async create(target: Pick<ResolvedContainer, 'name' | 'netnsPath' | 'ipNetnsArg'>, hostIf: string, cidrs: readonly AttachCidr[]): Promise<string> {
    // The peer is born inside the container under its final name, so there is
    // never an `ethwe` in the host namespace and no rename step to undo.
    const add = await this.runner.run(
      'ip',
      ['link', 'add', 'name', hostIf, 'mtu', String(this.mtu), 'type', 'veth',
        'peer', 'name', this.ifname, 'mtu', String(this.mtu), 'netns', target.ipNetnsArg],
      { allowFail: true },
    );
    if (add.code !== 0) {
      if (/File exists/i.test(add.stderr)) {
        throw RouterError.config(`${target.name} already has an interface named ${this.ifname} (attached by another weave router?)`);
      }
      throw new RouterError('io', `cannot create the veth pair for ${target.name}: ${add.stderr.trim()}`);
    }
    try {
      await this.runner.run('ip', ['link', 'set', 'dev', hostIf, 'master', this.bridge]);
      await this.runner.run('ip', ['link', 'set', 'dev', hostIf, 'up']);
      // The data plane carries TCP super-frames (GSO) whole, sealed in one UDP datagram:
      // keep them well under the 64 KiB datagram limit. Older kernels cannot set it: harmless.
      await this.inNs(target.netnsPath, ['link', 'set', 'dev', this.ifname, 'gso_max_size', String(CONTAINER_GSO_MAX_BYTES)], true);
      await this.tuneArp(target.netnsPath, target.name);
      if (cidrs.some((w) => w.family === 6)) await this.enableIpv6(target.netnsPath);
      for (const w of cidrs) await this.inNs(target.netnsPath, addrArgs('add', w.cidr, this.ifname));
      await this.inNs(target.netnsPath, ['link', 'set', 'dev', this.ifname, 'up']);
      await this.announce(target.netnsPath, hostIf, target.name);
      await this.ensureRoutes(target.netnsPath, hasV6(cidrs.map((w) => w.cidr)));
      return await this.readMac(target.netnsPath);
    } catch (err) {
      await this.discard(hostIf).catch((undo: unknown) => {
        this.logger.error('rollback step failed; something may be left behind', { error: errorMessage(undo), cause: errorMessage(err) });
      });
      throw err;
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
  private async announce(netnsPath: string, hostIf: string, name: string): Promise<void> {
    let forwarding = false;
    for (let i = 0; i < PORT_FORWARDING_POLLS && !forwarding; i++) {
      const r = await this.runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', hostIf], { allowFail: true });
      try {
        const info = (JSON.parse(r.stdout) as { linkinfo?: { info_slave_data?: { state?: unknown } } }[])[0];
        forwarding = info?.linkinfo?.info_slave_data?.state === 'forwarding';
      } catch {
        forwarding = false;
      }
      if (!forwarding) await this.sleep(PORT_FORWARDING_POLL_MS);
    }
    if (!forwarding) this.logger.warn('bridge port did not reach forwarding state in time', { container: name, veth: hostIf });
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', 'link', 'set', 'dev', this.ifname, 'address', this.newMac()], { allowFail: true });
    if (r.code !== 0) this.logger.warn('cannot announce the new MAC of ethwe', { container: name, error: r.stderr.trim() });
  }

  /**
   * Adds the overlay and multicast routes via ethwe; one that exists already is
   * fine. IPv6 overlay routes only with `withV6` (the container has an IPv6
   * address on ethwe; without one, IPv6 may well be disabled there).
   */
  async ensureRoutes(netnsPath: string, withV6: boolean): Promise<void> {
    for (const route of this.routes) {
      const v6 = familyOfCanonical(route) === 6;
      if (v6 && !withV6) continue;
      const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', ...(v6 ? ['-6'] : []), 'route', 'add', route, 'dev', this.ifname], { allowFail: true });
      if (r.code !== 0 && !/File exists/i.test(r.stderr)) {
        throw new RouterError('io', `cannot add route ${route} via ${this.ifname}: ${r.stderr.trim()}`);
      }
    }
  }

  /** Best effort: a route already gone (with its connected twin, say) is fine. */
  async removeV6Routes(netnsPath: string): Promise<void> {
    for (const route of this.routes.filter((r) => familyOfCanonical(r) === 6)) {
      await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', '-6', 'route', 'del', route, 'dev', this.ifname], { allowFail: true });
    }
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
