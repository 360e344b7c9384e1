// What containers need from IPAM, shaped for router/host's ContainerManager
// without importing it (ipam/ may only import common/ and the mesh's gossip
// seam; docs/architecture.md): turning `weave attach` address arguments into
// addresses (allocate for net:..., claim for explicit CIDRs), and a listener
// that releases addresses when a container is detached, dies (after a grace
// period) or is removed. cli/daemon.ts wires both to the manager, as it wires
// dns/container-hook.ts for DNS.

import type { Ipam } from './ipam';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/logger';

/** One `weave attach` address argument. */
export type AddressRequest = { kind: 'allocate'; subnet: string | null } | { kind: 'claim'; cidr: string };

/**
 * Parses Weave-style address arguments: `net:default`, `net:CIDR`,
 * `ip:CIDR` or a bare CIDR. No arguments means one address in the default subnet.
 */
export function parseAddressRequests(args: readonly string[]): AddressRequest[] {
  if (args.length === 0) return [{ kind: 'allocate', subnet: null }];
  return args.map((a) => {
    const s = a.trim();
    if (s === 'net:default') return { kind: 'allocate', subnet: null };
    if (s.startsWith('net:')) return { kind: 'allocate', subnet: s.slice(4) };
    const cidr = s.startsWith('ip:') ? s.slice(3) : s;
    if (!cidr.includes('/')) throw IpamError.config(`address ${JSON.stringify(a)} needs a prefix length (10.32.0.5/12), or use net:CIDR to allocate in a subnet`);
    return { kind: 'claim', cidr };
  });
}

export interface ResolveOptions {
  timeoutMs?: number;
  onWaiting?: (why: string) => void;
}

/**
 * The CIDRs for a container's attach, in request order. On a failure midway,
 * what this call allocated is released again, so a failed attach leaks nothing.
 */
export async function resolveAddresses(ipam: Pick<Ipam, 'allocate' | 'claim' | 'release' | 'addressesOf'>, containerId: string, requests: readonly AddressRequest[], opts: ResolveOptions = {}): Promise<string[]> {
  const before = new Set(ipam.addressesOf(containerId));
  const out: string[] = [];
  try {
    for (const r of requests) {
      const common = { ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}), ...(opts.onWaiting ? { onWaiting: opts.onWaiting } : {}) };
      out.push(r.kind === 'allocate'
        ? await ipam.allocate(containerId, { ...common, ...(r.subnet !== null ? { subnet: r.subnet } : {}) })
        : await ipam.claim(containerId, r.cidr, common));
    }
  } catch (err) {
    for (const c of out) if (!before.has(c)) ipam.release(containerId, c);
    throw err;
  }
  return out;
}

/**
 * IPAM holds IPv4 addresses only: a container's IPv6 address (dual stack) is
 * derived from its IPv4 one (Ipam.v6For), so it is never claimed or released
 * on its own; releasing the IPv4 address frees both.
 */
export function isIpv4Cidr(cidr: string): boolean {
  return !cidr.includes(':');
}

/**
 * Dual stack: `cidrs` followed by the IPv6 twin (same offset in
 * --ipalloc-range-v6) of each IPv4 address in the IPAM range, unless already
 * there. Without an IPv6 range, `cidrs` as they are.
 */
export function withV6Twins(ipam: Pick<Ipam, 'v6For'>, cidrs: readonly string[]): string[] {
  const out = [...cidrs];
  const have = new Set(cidrs.map((c) => c.slice(0, c.indexOf('/')).toLowerCase()));
  for (const c of cidrs) {
    if (!isIpv4Cidr(c)) continue;
    const twin = ipam.v6For(c);
    if (twin !== null && !have.has(twin.slice(0, twin.indexOf('/')))) {
      out.push(twin);
      have.add(twin.slice(0, twin.indexOf('/')));
    }
  }
  return out;
}

export type ContainerGoneReason = 'detach' | 'died' | 'destroyed' | 'gone';

export interface IpamContainerListener {
  onAttached(container: { id: string }, added: string[]): Promise<void>;
  onDetached(container: { id: string }, removed: string[], reason: ContainerGoneReason): void;
}

/**
 * Keeps IPAM in step with attachments: detach frees the removed addresses at
 * once, a container that died keeps them for `graceMs` (a restart gets them
 * back), a destroyed or vanished one frees them at once.
 */
export function ipamContainerListener(ipam: Pick<Ipam, 'claim' | 'release' | 'releaseContainer'>, opts: { graceMs: number; logger: Logger; claimTimeoutMs?: number }): IpamContainerListener {
  return {
    /**
     * Records addresses attached without going through resolveAddresses (a
     * Docker container restarted and re-attached with its old addresses):
     * claiming them revives addresses kept through a grace period. Idempotent.
     */
    async onAttached(container, added): Promise<void> {
      for (const c of added.filter(isIpv4Cidr)) {
        try {
          // Short: the attach queue waits for listeners, and these addresses are normally ours already.
          await ipam.claim(container.id, c, { timeoutMs: opts.claimTimeoutMs ?? 5_000 });
        } catch (err) {
          opts.logger.warn('attached address not recorded by IPAM', { container: container.id, address: c, error: errorMessage(err) });
        }
      }
    },
    onDetached(container, removed, reason): void {
      try {
        switch (reason) {
          case 'detach':
            for (const c of removed.filter(isIpv4Cidr)) ipam.release(container.id, c);
            return;
          case 'died':
            ipam.releaseContainer(container.id, { graceMs: opts.graceMs });
            return;
          case 'destroyed':
          case 'gone':
            ipam.releaseContainer(container.id);
            return;
        }
      } catch (err) {
        opts.logger.warn('could not release container addresses', { container: container.id, reason, error: errorMessage(err) });
      }
    },
  };
}
