// The link that puts one container on the weave bridge, inside and out: the
// veth pair (host end `vethwe...` on the bridge, the other end born inside the
// container's namespace as `ethwe`), its MTU, GSO limit, ARP/NDP tuning and
// MAC, the addresses on ethwe and the overlay and multicast routes via it.
//
// It only carries out commands for the ContainerManager and ContainerAttacher,
// which decide what should exist and keep the record; it must never remove
// anything it was not asked to (a link or address it did not make) nor keep
// state beyond its configuration. A failed create() deletes the veth it made,
// so it never leaves a half-made link. The attach itself, exists and remove
// go over rtnetlink (netlink-socket.ts, issue 14); the rest through CommandRunner.

import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import type { AttachSteps } from './attach-steps';
import { parseRouteCidr } from './attach-address';
import { familyOfCanonical } from '../../common/ip';
import type { RunResult, CommandRunner } from './command-runner';
import type { ContainerKind, ResolvedContainer } from './container-ref';
import { runIpBatch } from './ip-batch';
import type { RtRequest } from './netlink-codec';
import { describeRequest } from './netlink-codec';
import type { Netlink, NetlinkSocket } from './netlink-socket';
import { replyText } from './netlink-socket';
import { CONTAINER_VETH_PREFIXES, MAX_IFNAME_CHARS, validateIfName, validateMtu } from './host-link';

/** The interface name inside every attached container, as in Weave Net. */
export const CONTAINER_IFNAME = 'ethwe';
/** Always routed via ethwe so multicast (mDNS, service discovery) crosses the overlay. */
export const MULTICAST_ROUTE = '224.0.0.0/4';
/**
 * Largest GSO super-frame (IP packet) a container's TCP may build. Not the
 * kernel's 65536: TCP then fills 48 segments at MTU 1403 (64.9 KB of IP
 * packet), about 350 bytes more than one version 3 sleeve message carries
 * (64.4-64.6 KB of IP packet at underlay MTUs 1280-1500: 65,507 bytes of
 * GSO payload less a 20-byte header per segment, our headers and the tag),
 * so every full super-frame was split in two (router/overlay/gso-split.ts):
 * a copy, two seals, two sends and two TAP writes per frame. At 64,000 TCP
 * builds 47 segments, which fit whenever the sleeve's segment stride is at
 * least ~1,000 bytes (overlay MTU 952 up; test/unit/container-gso checks it).
 * Measured (bench.js --rounds 1 --seconds 10, alternating with 65536): direct
 * 5,071 / 4,198 against 3,237 / 3,785 Mbit/s, relayed 3,210 / 2,782 against
 * 2,232 / 1,326; the kernel fast path, which needs big super-frames (32768
 * held it to 0.7x of VXLAN), unchanged: 0.95 / 0.99 of kernel VXLAN against
 * 1.02 / 0.93.
 */
export const CONTAINER_GSO_MAX_BYTES = 64_000;
/** A new bridge port starts forwarding within a millisecond or two here; 2 s allows for a loaded machine. */
const PORT_FORWARDING_POLLS = 400;
const PORT_FORWARDING_POLL_MS = 5;
/** BR_STATE_FORWARDING in /sys/class/net/IF/brport/state. */
const BR_STATE_FORWARDING = '3';
const EEXIST = 17;
const ENODEV = 19;
/**
 * Weave Net's ARP settings for ethwe (net/arp.go, net/veth.go), as the
 * interface's own ARP parameters: base_reachable_time_ms 5000,
 * delay_first_probe_time 2 s, ucast_solicit 1.
 */
const ARP_PARMS = { baseReachableMs: 5000, delayProbeMs: 2000, ucastProbes: 1 } as const;

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
      ? `${CONTAINER_VETH_PREFIXES.netns}${createHash('sha256').update(String(pidOrName)).digest('hex').slice(0, MAX_IFNAME_CHARS - CONTAINER_VETH_PREFIXES.netns.length)}`
      : `${CONTAINER_VETH_PREFIXES.pid}${String(pidOrName)}`;
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
  /** rtnetlink: the attach itself (the veth, ethwe's addresses and routes), exists, remove. */
  netlink: Netlink;
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
  /** The namespace of the bridge (a path); default ours. Tests acting as a host in another namespace pass its path. */
  hostNetns?: string;
}

export class ContainerLinks {
  private readonly runner: CommandRunner;
  private readonly netlink: Netlink;
  private hostSocket: NetlinkSocket | null = null;
  private readonly logger: Logger;
  private readonly newMac: () => string;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly bridge: string;
  private readonly mtu: number;
  private readonly routes: string[];
  private readonly ifname: string;
  private readonly hostNetns: string | null;

  constructor(deps: ContainerLinkDeps, opts: ContainerLinkOptions) {
    this.runner = deps.runner;
    this.netlink = deps.netlink;
    this.logger = deps.logger;
    this.newMac = deps.newMac;
    this.sleep = deps.sleep;
    this.bridge = validateIfName(opts.bridge, 'bridge name');
    this.mtu = validateMtu(opts.mtu);
    const routes = opts.overlayRoutes.map((r) => parseRouteCidr(r));
    this.routes = [...new Set([...routes, MULTICAST_ROUTE])];
    this.ifname = validateIfName(opts.ifname ?? CONTAINER_IFNAME, 'container interface name');
    this.hostNetns = opts.hostNetns ?? null;
  }

  /**
   * Creates the veth pair for `target` with `cidrs` on ethwe, its routes, and
   * returns ethwe's MAC. On a failure midway the veth (and with it everything
   * on ethwe) is deleted again before the error goes on. Over rtnetlink, no
   * process (issue 14; only dual stack runs one, for IPv6's sysctls): the pair
   * in one request on our socket, the container side in one batch on a socket
   * opened in its namespace, then the announcement.
   */
  async create(target: Pick<ResolvedContainer, 'name' | 'netnsPath'>, hostIf: string, cidrs: readonly AttachCidr[], steps?: AttachSteps, mac = this.newMac()): Promise<string> {
    const inner = this.netlink.open(target.netnsPath);
    try {
      await this.createPair(inner, target.name, hostIf);
      steps?.mark('veth');
      try {
        const withV6 = cidrs.some((w) => w.family === 6);
        if (withV6) await this.enableIpv6(target.netnsPath);
        const index = await this.linkIndex(inner, target.name);
        const reqs: RtRequest[] = [
          // As Weave Net does for ethwe: announce addresses when the link comes up (arp_notify), and notice
          // a neighbour's changed MAC within seconds rather than the default ~30 s (net/arp.go, net/veth.go).
          { op: 'setLink', index, arpNotify: true },
          { op: 'setArpParms', index, ...ARP_PARMS },
          ...cidrs.map((w): RtRequest => ({ op: 'addAddress', index, cidr: w.cidr })),
          { op: 'setLink', index, up: true },
          ...this.routesFor(withV6).map((cidr): RtRequest => ({ op: 'addRoute', index, cidr })),
        ];
        const replies = await inner.request(reqs);
        for (const [i, r] of replies.entries()) {
          const req = reqs[i] as RtRequest;
          // A route already there (an address's connected route) is fine.
          if (r.errno === 0 || (req.op === 'addRoute' && r.errno === EEXIST)) continue;
          const what = `${describeRequest(req, { dev: () => this.ifname })} in ${target.name}`;
          // The ARP tuning is best effort: without it traffic still flows, it just recovers more slowly.
          if (req.op === 'setArpParms' || (req.op === 'setLink' && req.arpNotify !== undefined)) {
            this.logger.warn('cannot tune ARP on ethwe', { container: target.name, error: `${what}: ${replyText(this.netlink, r)}` });
          } else {
            throw new RouterError('io', `ip ${what} failed: ${replyText(this.netlink, r)}`);
          }
        }
        steps?.mark('inside');
        return await this.announce(inner, index, hostIf, target.name, mac, steps);
      } catch (err) {
        await this.discard(hostIf).catch((undo: unknown) => {
          this.logger.error('rollback step failed; something may be left behind', { error: errorMessage(undo), cause: errorMessage(err) });
        });
        throw err;
      }
    } finally {
      inner.close();
    }
  }

  /**
   * The MAC create() will give ethwe, chosen before it runs: port security
   * must know it before the announcement leaves, or drops it (port-security.ts).
   */
  chooseMac(): string {
    return this.newMac();
  }

  /** Our own namespace's socket, opened on first use and kept. */
  private host(): NetlinkSocket {
    this.hostSocket ??= this.netlink.open(this.hostNetns);
    return this.hostSocket;
  }

  /** ethwe's index in the container (requests there name it by number). */
  private async linkIndex(inner: NetlinkSocket, name: string): Promise<number> {
    const [r] = await inner.request([{ op: 'getLink', name: this.ifname }]);
    if (r === undefined || r.errno !== 0 || r.link === null) {
      throw new RouterError('io', `cannot find ${this.ifname} in ${name}: ${r === undefined ? 'no reply' : replyText(this.netlink, r)}`);
    }
    return r.link.index;
  }

  /** The veth pair, the host end on the bridge and up, ethwe born in the container; nothing is left behind when it fails. */
  private async createPair(inner: NetlinkSocket, name: string, hostIf: string): Promise<void> {
    const host = this.host();
    const [bridge] = await host.request([{ op: 'getLink', name: this.bridge }]);
    if (bridge === undefined || bridge.errno !== 0 || bridge.link === null) {
      throw new RouterError('io', `cannot create the veth pair for ${name}: bridge ${this.bridge}: ${bridge === undefined ? 'no reply' : replyText(this.netlink, bridge)}`);
    }
    const [r] = await host.request([{ op: 'newVeth', name: hostIf, mtu: this.mtu, master: bridge.link.index,
      peer: { name: this.ifname, mtu: this.mtu, nsFd: inner.nsFd, gsoMaxBytes: CONTAINER_GSO_MAX_BYTES } }]);
    if (r === undefined || r.errno === 0) return;
    if (r.errno === EEXIST) {
      if ((await this.exists(hostIf)) !== false) {
        throw RouterError.config(`host interface ${hostIf} for ${name} already exists (left over from an earlier attach?); delete it with: ip link del ${hostIf}`);
      }
      throw RouterError.config(`${name} already has an interface named ${this.ifname} (attached by another weave router?)`);
    }
    throw new RouterError('io', `cannot create the veth pair for ${name}: ${replyText(this.netlink, r)}`);
  }

  /**
   * Deletes a veth this attach just made, as an undo step: deleting one end of
   * a veth pair deletes both, and the peer's addresses and routes with it.
   * Best effort; the result is not checked.
   */
  async discard(hostIf: string): Promise<void> {
    await this.host().request([{ op: 'delLink', name: hostIf }]);
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

  /** True, false, or null when the kernel refused for another reason. */
  async exists(name: string): Promise<boolean | null> {
    const [r] = await this.host().request([{ op: 'getLink', name }]);
    if (r?.errno === 0) return true;
    return r?.errno === ENODEV ? false : null;
  }

  async remove(name: string): Promise<void> {
    const [r] = await this.host().request([{ op: 'delLink', name }]);
    if (r !== undefined && r.errno !== 0 && r.errno !== ENODEV) {
      throw new RouterError('io', `cannot delete ${name}: ${replyText(this.netlink, r)}`);
    }
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
  private async announce(inner: NetlinkSocket, index: number, hostIf: string, name: string, mac: string, steps?: AttachSteps): Promise<string> {
    let forwarding = false;
    for (let i = 0; i < PORT_FORWARDING_POLLS && !forwarding; i++) {
      forwarding = await this.portForwarding(hostIf);
      if (!forwarding) await this.sleep(PORT_FORWARDING_POLL_MS);
    }
    if (!forwarding) this.logger.warn('bridge port did not reach forwarding state in time', { container: name, veth: hostIf });
    steps?.mark('forwarding');
    const [r] = await inner.request([{ op: 'setLink', index, mac }]);
    steps?.mark('mac');
    if (r?.errno === 0) return mac;
    this.logger.warn('cannot announce the new MAC of ethwe', { container: name, error: r === undefined ? 'no reply' : replyText(this.netlink, r) });
    const [link] = await inner.request([{ op: 'getLink', name: this.ifname }]);
    if (link?.errno === 0 && link.link?.mac != null) return link.link.mac;
    throw new RouterError('io', `cannot read the MAC address of ${this.ifname}`);
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

  /** The overlay routes via ethwe, IPv6 ones only `withV6`. */
  private routesFor(withV6: boolean): string[] {
    return this.routes.filter((route) => withV6 || familyOfCanonical(route) !== 6);
  }

  /** `ip -batch` lines for the overlay routes via ethwe, IPv6 ones only `withV6`. */
  private routeLines(op: 'add', withV6: boolean): string[] {
    return this.routesFor(withV6).map((route) => `route ${op} ${route} dev ${this.ifname}`);
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
}
