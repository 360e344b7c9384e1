// The plugin's success output, shaped for the cniVersion the runtime asked
// for: 1.0.0 and 1.1.0 results, and the 0.3.x/0.4.0 ones whose `ips` entries
// also say their IP version. Also reading a delegated IPAM plugin's result
// (any of those versions) into addresses and routes for the daemon.
//
// Pure: typed values in, JSON-ready objects out.

import type { CniAddress, CniAttachment, CniRoute } from '../common/cni-wire';
import { MAX_CNI_ADDRESSES, MAX_CNI_ROUTES } from '../common/cni-wire';
import type { CniVersion } from './config';
import { CNI_ERR, PluginError } from './errors';

export interface CniResult {
  cniVersion: CniVersion;
  interfaces: { name: string; mac: string; sandbox: string }[];
  ips: { address: string; gateway?: string; interface: number; version?: '4' | '6' }[];
  routes: CniRoute[];
  dns: { nameservers?: string[]; domain?: string; search?: string[] };
}

/**
 * Only the container's interface is listed: runtimes (podman) parse the MAC
 * of every interface listed, and the host end's is of no use to them.
 */
export function buildResult(version: CniVersion, a: CniAttachment): CniResult {
  const legacy = version === '0.3.0' || version === '0.3.1' || version === '0.4.0';
  return {
    cniVersion: version,
    interfaces: [{ name: a.ifName, mac: a.mac, sandbox: a.netns }],
    ips: a.addresses.map((x) => ({
      address: x.address,
      ...(x.gateway !== undefined ? { gateway: x.gateway } : {}),
      interface: 0,
      ...(legacy ? { version: x.address.includes(':') ? '6' as const : '4' as const } : {}),
    })),
    routes: a.routes.map((r) => ({ ...r })),
    dns: a.dns === null ? {} : {
      nameservers: [...a.dns.nameservers],
      ...(a.dns.domain !== undefined ? { domain: a.dns.domain } : {}),
      ...(a.dns.search !== undefined ? { search: [...a.dns.search] } : {}),
    },
  };
}

function ipamError(type: string, msg: string): PluginError {
  return new PluginError(CNI_ERR.ioFailure, `IPAM plugin ${type} returned ${msg}`);
}

/** A delegated IPAM plugin's result: its addresses (with gateways) and routes. Checked properly by the daemon. */
export function readIpamResult(type: string, raw: Record<string, unknown>): { addresses: CniAddress[]; routes: CniRoute[] } {
  const ips = raw['ips'];
  if (!Array.isArray(ips) || ips.length === 0) throw ipamError(type, 'no "ips"');
  if (ips.length > MAX_CNI_ADDRESSES) throw ipamError(type, `${ips.length} addresses, over the limit of ${MAX_CNI_ADDRESSES}`);
  const addresses = ips.map((ip: unknown): CniAddress => {
    const o = (typeof ip === 'object' && ip !== null ? ip : {}) as Record<string, unknown>;
    if (typeof o['address'] !== 'string') throw ipamError(type, 'an "ips" entry without an "address"');
    const gw = o['gateway'];
    return typeof gw === 'string' && gw !== '' ? { address: o['address'], gateway: gw } : { address: o['address'] };
  });
  const rawRoutes = raw['routes'] ?? [];
  if (!Array.isArray(rawRoutes) || rawRoutes.length > MAX_CNI_ROUTES) throw ipamError(type, `"routes" that is not a list of at most ${MAX_CNI_ROUTES}`);
  const routes = rawRoutes.map((r: unknown): CniRoute => {
    const o = (typeof r === 'object' && r !== null ? r : {}) as Record<string, unknown>;
    if (typeof o['dst'] !== 'string') throw ipamError(type, 'a route without "dst"');
    const gw = o['gw'];
    return typeof gw === 'string' && gw !== '' ? { dst: o['dst'], gw } : { dst: o['dst'] };
  });
  return { addresses, routes };
}
