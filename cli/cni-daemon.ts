// The composition root's CNI part, kept out of cli/daemon.ts so that file
// does not grow with it: builds the CniEndpoint (router/host/cni-endpoint.ts)
// on the daemon's runner and bridge, gives it weave IPAM keyed on the CNI
// container id and weave DNS as the runtime should configure it, and feeds
// its attachments to DNS as containers of kind 'cni' (names registered,
// resolv.conf left to the runtime, which writes it from the plugin's result).

import path from 'node:path';
import type { Logger } from '../common/logger';
import type { CniAttachment } from '../common/cni-wire';
import type { DnsContainer } from '../dns/container-hook';
import type { DnsDaemon } from '../dns/daemon';
import { resolveAddresses, withV6Twins } from '../ipam/container-hook';
import type { Ipam } from '../ipam/ipam';
import type { CommandRunner } from '../router/host/command-runner';
import { CNI_STATE_FILE, CniEndpoint } from '../router/host/cni-endpoint';
import { FileCniStateStore } from '../router/host/cni-state';

export interface CniWiring {
  runner: CommandRunner;
  logger: Logger;
  ipam: Ipam;
  dns: DnsDaemon;
  datadir: string;
  bridge: string;
  mtu: number;
  overlayRoutes: string[];
  domain: string;
}

/** How DNS sees a CNI attachment: its container id, and the name the plugin asked for (none: no name). */
export function cniDnsView(a: CniAttachment): DnsContainer {
  return {
    id: a.containerId,
    name: a.dnsName ?? a.containerId.slice(0, 12),
    kind: 'cni',
    addresses: a.addresses.map((x) => x.address),
    pid: null,
    ...(a.dnsName === null ? { withoutDns: true } : { dnsName: a.dnsName }),
  };
}

export function buildCniEndpoint(w: CniWiring): CniEndpoint {
  const logger = w.logger.child({ component: 'cni' });
  const endpoint = new CniEndpoint({
    runner: w.runner,
    logger,
    store: new FileCniStateStore(path.join(w.datadir, CNI_STATE_FILE)),
    addresses: {
      // Dual stack: the IPv4 address brings its IPv6 twin, freed with it.
      obtain: async (id, waitMs) => withV6Twins(w.ipam, await resolveAddresses(w.ipam, id, [{ kind: 'allocate', subnet: null }], {
        timeoutMs: waitMs,
        onWaiting: (why) => logger.info('CNI ADD waits for IPAM', { container: id.slice(0, 12), why }),
      })),
      release: (id) => w.ipam.release(id),
    },
    dns: () => ({ nameservers: [w.dns.address], domain: w.domain, search: [w.domain] }),
  }, { bridge: w.bridge, mtu: w.mtu, overlayRoutes: w.overlayRoutes });
  endpoint.addListener({
    onAttached: (a) => w.dns.onAttached(cniDnsView(a), a.addresses.map((x) => x.address)),
    onDetached: (a, reason) => w.dns.onDetached(cniDnsView(a), a.addresses.map((x) => x.address), reason === 'gone' ? 'gone' : 'destroyed'),
  });
  return endpoint;
}
