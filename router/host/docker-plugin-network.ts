// The network-driver half of the Docker plugin (`docker network create -d
// weave`). CreateEndpoint makes a veth pair: our end on the weave bridge, the
// other end left in the host namespace under a temporary name for Docker to
// move into the container at Join and rename `ethwe0`, with the address
// Docker got from our IPAM driver. Join tells Docker that name, the overlay's
// routes (as for `weave attach`: the IPAM range, weave DNS's link-local
// route, multicast) and that the network offers no gateway, so Docker adds no
// gateway bridge of its own. Join also records the path where Docker will
// bind the container's namespace (SandboxKey): the file exists once the
// container starts, which is how its start event finds its endpoints.
//
// The MAC is derived from the IPv4 address, so a restarted container (same
// address, docker-plugin-ipam.ts) keeps its MAC too and peers' ARP caches
// stay right. It must never delete a link it did not make: only the names
// derived from an endpoint id it created.
//
// A network's one option, `-o port-security=false`, is recorded at
// CreateNetwork and copied to each endpoint made in it: its container's port
// is then let through whatever it sends (port-security.ts), as `weave attach
// --no-port-security` does for one container.

import { createHash } from 'node:crypto';
import { familyOfCanonical, parseIpv4 } from '../../common/ip';
import { Cidr, parseIpWithPrefix } from '../../common/ip-cidr';
import { CONTAINER_VETH_PREFIXES, MAX_IFNAME_CHARS } from './host-link';
import type { PluginEndpoint, PluginState } from './docker-plugin-state';
import type { CreateEndpointRequest, CreateNetworkRequest, EndpointRef, JoinReply, JoinRequest, StaticRoute } from './docker-plugin-wire';
import { GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, PluginError, ROUTE_CONNECTED } from './docker-plugin-wire';

/** Our ends: inside the bridge firewall's `vethwe*` accept rule, apart from attach's `vethwepl`/`vethwens` and CNI's `vethwec`. */
export const PLUGIN_VETH_PREFIX = CONTAINER_VETH_PREFIXES.dockerPlugin;
/** The container's end until Docker moves it: not `vethwe*`, so nothing of ours takes it for a bridge port. */
export const PLUGIN_PEER_PREFIX = 'vethwgd';
/** Docker names the interface in the container this plus a number: ethwe0. */
export const PLUGIN_IFNAME_PREFIX = 'ethwe';
/** Locally administered, unicast; the last four bytes are the IPv4 address. */
const MAC_PREFIX = '02:77';

/** The veth plumbing the driver needs; docker-plugin-links.ts runs it. */
export interface PluginLinks {
  /** Creates the pair, our end on the bridge and up; on failure nothing is left. */
  create(hostIfname: string, peerIfname: string, mac: string): Promise<void>;
  /** Deletes our end (and so the pair); one already gone is fine. */
  remove(hostIfname: string): Promise<void>;
}

export function endpointIfnames(endpointId: string): { hostIfname: string; peerIfname: string } {
  const hash = createHash('sha256').update(endpointId).digest('hex');
  return {
    hostIfname: `${PLUGIN_VETH_PREFIX}${hash.slice(0, MAX_IFNAME_CHARS - PLUGIN_VETH_PREFIX.length)}`,
    peerIfname: `${PLUGIN_PEER_PREFIX}${hash.slice(0, MAX_IFNAME_CHARS - PLUGIN_PEER_PREFIX.length)}`,
  };
}

export function macForAddress(cidr: string): string {
  const ip = parseIpv4(cidr.slice(0, cidr.indexOf('/')));
  const bytes = [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff];
  return `${MAC_PREFIX}:${bytes.map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

export interface PluginNetworkOptions {
  /** Routed via the container's interface (IPAM range, DNS link-local); 224.0.0.0/4 is always added. */
  overlayRoutes: readonly string[];
}

export class PluginNetwork {
  private readonly routes: string[];

  constructor(
    private readonly state: PluginState,
    private readonly links: PluginLinks,
    private readonly save: () => void,
    opts: PluginNetworkOptions,
  ) {
    this.routes = [...new Set([...opts.overlayRoutes.filter((r) => familyOfCanonical(r.slice(0, r.indexOf('/'))) === 4), '224.0.0.0/4'])];
  }

  capabilities(): { Scope: string; ConnectivityScope: string } {
    return { Scope: 'local', ConnectivityScope: 'global' };
  }

  /** Only with our IPAM driver: its addresses are the overlay's, Docker's own would not route. */
  createNetwork(req: CreateNetworkRequest): Record<string, never> {
    if (req.ipv6Count > 0) throw new PluginError('refused', 'the weave network driver is IPv4 only: create the network without --ipv6');
    for (const d of req.ipv4) {
      if (d.addressSpace !== LOCAL_ADDRESS_SPACE && d.addressSpace !== GLOBAL_ADDRESS_SPACE) {
        throw new PluginError('refused', `the weave network driver needs addresses from weave IPAM: add --ipam-driver weave (pool ${d.pool} is from address space ${JSON.stringify(d.addressSpace)})`);
      }
    }
    const known = this.state.networks.find((n) => n.id === req.networkId);
    if (known === undefined) this.state.networks.push({ id: req.networkId, portSecurity: req.portSecurity });
    else known.portSecurity = req.portSecurity;
    this.save();
    return {};
  }

  /** Forgets the network's options; its endpoints are gone already (Docker deletes a network only without them). */
  deleteNetwork(networkId: string): Record<string, never> {
    const at = this.state.networks.findIndex((n) => n.id === networkId);
    if (at >= 0) {
      this.state.networks.splice(at, 1);
      this.save();
    }
    return {};
  }

  async createEndpoint(req: CreateEndpointRequest): Promise<{ Interface: { MacAddress?: string } }> {
    if (req.addressV6 !== null) throw new PluginError('refused', 'the weave network driver is IPv4 only');
    if (req.address === null) throw new PluginError('refused', 'the weave network driver needs an IPv4 address for the endpoint: use --ipam-driver weave');
    const existing = this.find(req.endpointId);
    // Docker retries a call whose reply it lost: the same endpoint again is no error.
    if (existing !== undefined) {
      if (existing.cidr !== req.address) throw new PluginError('refused', `endpoint ${req.endpointId.slice(0, 12)} exists already with ${existing.cidr}`);
      return { Interface: req.mac === null ? { MacAddress: existing.mac } : {} };
    }
    const { hostIfname, peerIfname } = endpointIfnames(req.endpointId);
    const mac = req.mac ?? macForAddress(req.address);
    try {
      await this.links.create(hostIfname, peerIfname, mac);
    } catch (err) {
      throw new PluginError('refused', `cannot create the veth for endpoint ${req.endpointId.slice(0, 12)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    // A network we have no record of (made before networks had options) is guarded: fail closed.
    const portSecurity = this.state.networks.find((n) => n.id === req.networkId)?.portSecurity ?? true;
    this.state.endpoints.push({ id: req.endpointId, networkId: req.networkId, cidr: req.address, mac, hostIfname, peerIfname, sandboxKey: null, nsId: null, container: null, portSecurity });
    this.save();
    // Docker wants only what it did not give: a MAC of ours, never the address.
    return { Interface: req.mac === null ? { MacAddress: mac } : {} };
  }

  join(req: JoinRequest): JoinReply {
    const ep = this.need(req);
    if (ep.sandboxKey !== req.sandboxKey) {
      ep.sandboxKey = req.sandboxKey;
      ep.nsId = null;
      this.save();
    }
    const own = ep.cidr;
    return {
      InterfaceName: { SrcName: ep.peerIfname, DstPrefix: PLUGIN_IFNAME_PREFIX },
      StaticRoutes: this.routes.filter((r) => !sameNetwork(r, own)).map((r): StaticRoute => ({ Destination: r, RouteType: ROUTE_CONNECTED })),
      DisableGatewayService: true,
    };
  }

  leave(req: EndpointRef): Record<string, never> {
    this.need(req);
    return {};
  }

  /** Deletes the endpoint and its veth; returns it (the caller tells listeners), or null when unknown. */
  async deleteEndpoint(req: EndpointRef): Promise<PluginEndpoint | null> {
    const ep = this.find(req.endpointId);
    if (ep === undefined) return null;
    await this.links.remove(ep.hostIfname);
    this.state.endpoints.splice(this.state.endpoints.indexOf(ep), 1);
    this.save();
    return ep;
  }

  endpointInfo(req: EndpointRef): { Value: Record<string, string> } {
    const ep = this.need(req);
    return { Value: { hostIfname: ep.hostIfname, mac: ep.mac } };
  }

  endpoints(): readonly PluginEndpoint[] {
    return this.state.endpoints;
  }

  private find(endpointId: string): PluginEndpoint | undefined {
    return this.state.endpoints.find((e) => e.id === endpointId);
  }

  private need(req: EndpointRef): PluginEndpoint {
    const ep = this.find(req.endpointId);
    if (ep === undefined || ep.networkId !== req.networkId) throw new PluginError('not-found', `no weave endpoint ${req.endpointId.slice(0, 12)} in network ${req.networkId.slice(0, 12)}`);
    return ep;
  }
}

/** True when route `r` is the network of interface address `own`: the kernel has that route already. */
function sameNetwork(r: string, own: string): boolean {
  const a = parseIpWithPrefix(r, 4);
  const b = parseIpWithPrefix(own, 4);
  return Cidr.containing(a.address, a.prefixLen).equals(Cidr.containing(b.address, b.prefixLen));
}
