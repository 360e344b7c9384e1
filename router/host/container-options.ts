// What a ContainerManager is built from (its dependencies and options), what
// it asks of an address source (IPAM, wired by cli/daemon.ts), and what a
// detach returns. Types only: the manager itself is container-manager.ts.

import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import type { AttachedContainer } from './attached-container';
import type { CommandRunner } from './command-runner';
import type { HostFs } from './container-ref';
import type { StateStore } from './container-state';
import type { Netlink } from './netlink-socket';
import type { DockerApi } from './docker-client';

export interface ContainerDeps {
  runner: CommandRunner;
  /** Null when Docker is not available: Docker references then get a clear error. */
  docker?: DockerApi | null;
  logger: Logger;
  /** Defaults to the real /proc and /var/run/netns. */
  hostFs?: HostFs;
  /** Defaults to <datadir>/containers.json. */
  store?: StateStore;
  /** A fresh MAC for ethwe; default: random, locally administered, unicast. */
  newMac?: () => string;
  /** Default setTimeout; tests pass one that returns at once. */
  sleep?: (ms: number) => Promise<void>;
  /** rtnetlink for the links; default the native addon's (netlink-socket.ts), tests pass a fake. */
  netlink?: Netlink;
  /** Default SystemClock: stop times and the sweep's timer. */
  clock?: Clock;
}

export interface ContainerOptions {
  bridge: string;
  mtu: number;
  /** CIDRs routed via ethwe (e.g. the IPAM range 10.32.0.0/12); 224.0.0.0/4 is always added. */
  overlayRoutes: string[];
  datadir: string;
  /**
   * The namespace the bridge lives in, to refuse attaching the host to itself.
   * Default /proc/self/ns/net; tests that act as a host in another namespace pass its path.
   */
  hostNetns?: string;
  /** How long a stopped Docker container keeps its addresses (default 60 s, IPAM's release grace). */
  graceMs?: number;
  /** Between sweeps for vanished namespaces and expired stopped containers (default 2 s). */
  sweepMs?: number;
}

export interface WatchOptions {
  /** Attach containers started with the label weave.attach or WEAVE_CIDR (weave launch --no-auto-attach: false). */
  autoAttach?: boolean;
}

/**
 * Turns attach arguments (CIDRs, `net:CIDR`, `ip:CIDR`, or nothing) into the
 * addresses to give a container; IPAM implements it. Keyed on the resolved
 * container id, so a restarted Docker container keeps its addresses.
 */
export interface AddressSource {
  obtain(container: { id: string; name: string }, requests: string[]): Promise<string[]>;
  /** Addresses obtained for an attach that then failed. */
  giveBack(container: { id: string; name: string }, addresses: string[]): void;
  /**
   * Addresses that come and go with `cidr` (dual stack: the IPv6 twin of an
   * IPv4 address): detaching `cidr` removes those the container has too, since
   * the source frees them as one.
   */
  twinsOf?(cidr: string): string[];
}

export interface DetachResult {
  container: AttachedContainer;
  /** CIDRs removed in this call. */
  removed: string[];
  /** True when the veth was deleted (nothing of ours is left in the container). */
  detached: boolean;
}
