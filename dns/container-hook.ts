// What DNS needs to know about this host's containers, shaped without
// importing router/host (dns/ may only import common/ and the mesh's gossip
// seam; docs/architecture.md): a container appeared with these addresses and
// this name, lost some addresses, or left, and why. cli/daemon.ts feeds the
// ContainerManager's attach and detach events to a DnsContainerListener
// (dns/daemon.ts implements it), as it does for IPAM (ipam/container-hook.ts).

/** A container as DNS sees it; router/host's attachment record has at least these fields. */
export interface DnsContainer {
  /** Docker: full container id. netns: `netns:NAME`. pid: `pid:PID`. */
  id: string;
  /** Docker: the container's name. netns: the namespace name. pid: the process name. */
  name: string;
  /** 'cni': a CNI runtime's container, whose runtime writes its resolv.conf (from the plugin's result): never ours to touch. */
  kind: 'docker' | 'netns' | 'pid' | 'cni';
  /** CIDRs the container holds now, in the order they were attached. */
  addresses: readonly string[];
  /** The process whose namespace holds the container; null for netns:NAME. */
  pid: number | null;
  /** `weave attach --name`: the name to register instead of `name`. */
  dnsName?: string;
  /** `weave attach --without-dns`: no name, resolver left alone. */
  withoutDns?: boolean;
}

/**
 * Why addresses went: `detach` (weave detach, possibly of some addresses
 * only), `died` (a Docker container stopped), `destroyed` (removed), `gone`
 * (found missing, e.g. its namespace was deleted).
 */
export type ContainerGoneReason = 'detach' | 'died' | 'destroyed' | 'gone';

export interface DnsContainerListener {
  /** `added` are the CIDRs new in this event (all of them for a fresh attach). */
  onAttached(container: DnsContainer, added: readonly string[]): void;
  /** `removed` are the CIDRs gone in this event; `container.addresses` what is left. */
  onDetached(container: DnsContainer, removed: readonly string[], reason: ContainerGoneReason): void;
}
