// DNS in the daemon: builds the service, server, forwarder, mDNS responder,
// host address and container resolver handling from the daemon's config;
// follows this host's containers (DnsContainerListener, container-hook.ts)
// to register their names and point their resolvers at us; and carries out
// the API's operations (add, remove, lookup, status) that http-routes.ts
// exposes. cli/daemon.ts wires it to the container events and mounts its
// routes; nothing here knows router/host or router/api.
//
// Start-up never fails the router: a DNS part that cannot start (port 53
// taken, no bridge) is logged and shown in `weave status dns`, and the rest
// runs without it.

import path from 'node:path';
import type { Clock } from '../common/clock';
import type { GossipHub } from '../router/mesh/gossip';
import { canonicalIp } from '../common/ip';
import type { Logger } from '../common/logger';
import type { Rng } from '../common/rng';
import type {
  DnsAddRequest, DnsChangeReply, DnsCounters, DnsLookupReply, DnsRecordView, DnsRemoveRequest, DnsReverseReply, DnsStatusReport,
} from './api-types';
import { DNS_PORT } from './constants';
import type { ContainerGoneReason, DnsContainer, DnsContainerListener } from './container-hook';
import { ContainerResolvConf } from './container-resolv';
import { DnsError } from './errors';
import { Forwarder } from './forwarder';
import type { RunCommand } from './host-setup';
import { HostDnsAddress } from './host-setup';
import { linkLocalAddressFor } from './link-local';
import { MdnsResponder } from './mdns';
import { containerHostName, qualifyName } from './names';
import { formatUpstream } from './resolv-conf';
import type { Upstream } from './resolv-conf';
import type { OpenDatagramPort, OpenUpstreamSocket } from './datagram-port';
import { DnsServer, newCounters } from './server';
import type { ListenAddress } from './server';
import { DnsService } from './service';
import type { DnsEntry } from './store-entry';
import { FixedUpstreams, ResolvConfUpstreams } from './upstreams';
import type { UpstreamSource } from './upstreams';

/** Records added by hand (weave dns-add) without a container. */
export const MANUAL_CONTAINER_ID = 'weave:api';
export const RESOLV_BACKUP_FILE = 'dns-resolv.json';

/** What the command line decides (cli/launch-options.ts validates it). */
export interface DnsDaemonConfig {
  /** Normal form, e.g. "weave.local". */
  domain: string;
  ttlS: number;
  /** Fixed upstream servers; null: the nameservers of `resolvConf`. */
  upstreams: Upstream[] | null;
  /** The host's resolv.conf, re-read when it changes. */
  resolvConf: string;
}

export interface DnsDaemonDeps {
  hub: GossipHub;
  clock: Clock;
  rng: Rng;
  logger: Logger;
  run: RunCommand;
  /** Batched UDP for the server (cli/dns-datagrams.ts); node:dgram without. */
  openDatagrams?: OpenDatagramPort;
  /** The forwarder's upstream UDP sockets; node:dgram ones when absent. */
  openUpstreamSocket?: OpenUpstreamSocket;
}

export interface DnsDaemonOptions extends DnsDaemonConfig {
  bridge: string;
  datadir: string;
  /** 53 in the daemon; tests may pick another. */
  port?: number;
  /** Loopback address the server also listens on; null for none. */
  loopback?: string | null;
  /** Set up the bridge address, mDNS and resolv.conf writing (false in tests without a kernel). */
  hostIntegration?: boolean;
}

interface LocalContainer {
  view: DnsContainer;
  /** Normal-form name registered for it, or null. */
  name: string | null;
}

function ipOf(cidr: string): string {
  const i = cidr.indexOf('/');
  return i < 0 ? cidr : cidr.slice(0, i);
}

export class DnsDaemon implements DnsContainerListener {
  readonly service: DnsService;
  /** The link-local address containers on this host use as their nameserver. */
  readonly address: string;
  readonly counters: DnsCounters = newCounters();
  private readonly logger: Logger;
  private readonly local = new Map<string, LocalContainer>();
  private readonly server: DnsServer;
  private readonly forwarder: Forwarder;
  private readonly upstreams: UpstreamSource;
  private readonly mdns: MdnsResponder | null;
  private readonly host: HostDnsAddress | null;
  private readonly resolv: ContainerResolvConf | null;
  private readonly warnings: string[] = [];
  private hostReady = false;
  private mdnsRunning = false;

  constructor(deps: DnsDaemonDeps, private readonly opts: DnsDaemonOptions) {
    this.logger = deps.logger;
    this.service = new DnsService({ hub: deps.hub, clock: deps.clock, rng: deps.rng, logger: deps.logger }, { domain: opts.domain, ttlS: opts.ttlS });
    this.address = linkLocalAddressFor(deps.hub.localPeer);
    const integrate = opts.hostIntegration ?? true;
    const port = opts.port ?? DNS_PORT;
    const listen: ListenAddress[] = [];
    if (integrate) listen.push({ host: this.address, port, restricted: true });
    const loopback = opts.loopback === undefined ? '127.0.0.1' : opts.loopback;
    if (loopback !== null) listen.push({ host: loopback, port, restricted: false });

    this.upstreams = opts.upstreams !== null
      ? new FixedUpstreams(opts.upstreams)
      : new ResolvConfUpstreams(deps.logger, {
        path: opts.resolvConf,
        // Forwarding to ourselves would loop until the timeout.
        isSelf: (u) => this.server.addresses().includes(formatUpstream(u)),
      });
    this.forwarder = new Forwarder({
      logger: deps.logger, upstreams: this.upstreams,
      ...(deps.openUpstreamSocket === undefined ? {} : { openUpstreamSocket: deps.openUpstreamSocket }),
    });
    this.server = new DnsServer({
      resolve: (bytes, transport, cacheTried) => this.service.resolve(bytes, transport, cacheTried),
      answerUdpFromCache: (query, at, length, out, outAt, outCapacity, hit) => this.service.answerUdpFromCache(query, at, length, out, outAt, outCapacity, hit),
      forwarder: this.forwarder,
      logger: deps.logger,
      counters: this.counters,
      isAllowedClient: (a) => this.isLocalClient(a),
      ...(deps.openDatagrams === undefined ? {} : { openDatagrams: deps.openDatagrams }),
    }, { listen });
    this.host = integrate ? new HostDnsAddress(deps.run, deps.logger, { bridge: opts.bridge, address: this.address }) : null;
    this.mdns = integrate
      ? new MdnsResponder(
        { records: this.service, logger: deps.logger, counters: this.counters, isLocalClient: (a) => this.isLocalClient(a) },
        { domain: opts.domain, ttlS: opts.ttlS, interfaceAddress: this.address },
      )
      : null;
    this.resolv = integrate
      ? new ContainerResolvConf(deps.logger, { stateFile: path.join(opts.datadir, RESOLV_BACKUP_FILE), nameserver: this.address, domain: opts.domain })
      : null;
  }

  async start(): Promise<void> {
    this.service.start();
    if (this.host !== null) {
      try {
        await this.host.install();
        this.hostReady = true;
      } catch (err) {
        this.warn(`cannot put the DNS address ${this.address} on bridge ${this.opts.bridge}: ${(err as Error).message}`);
      }
    }
    for (const w of await this.server.start()) this.warnings.push(w);
    if (this.mdns !== null && this.hostReady) {
      try {
        await this.mdns.start();
        this.mdnsRunning = true;
      } catch (err) {
        this.mdns.close();
        this.warn(`cannot start the mDNS responder: ${(err as Error).message}`);
      }
    }
    this.logger.info('dns ready', {
      domain: this.opts.domain, address: this.hostReady ? this.address : null, listening: this.server.addresses().join(','),
      mdns: this.mdnsRunning,
    });
  }

  /**
   * Stops serving and puts every container's resolver back as it was: while no
   * router runs, nothing answers at our address, and the host's servers do
   * better than nothing. The next start points them at us again (sync).
   */
  async close(): Promise<void> {
    if (this.resolv !== null) for (const id of this.resolv.ids()) this.resolv.restore(id);
    this.service.stop();
    this.mdns?.close();
    this.mdnsRunning = false;
    this.forwarder.close();
    await this.server.close();
    await this.host?.remove();
    this.hostReady = false;
  }

  private warn(msg: string): void {
    this.logger.warn(msg);
    this.warnings.push(msg);
  }

  /** Containers on this host (and the host itself) may use the overlay address. */
  isLocalClient(address: string): boolean {
    const a = canonicalIp(address) ?? address;
    if (a === this.address || a.startsWith('127.')) return true;
    for (const c of this.local.values()) if (c.view.addresses.some((cidr) => ipOf(cidr) === a)) return true;
    return false;
  }

  // -------------------------------------------------------------------------
  // Containers

  /**
   * After the containers were restored at start-up: everything attached gets its
   * name and resolver again, and resolvers we pointed at us for containers that
   * are gone now (a crash, then a deleted namespace) are put back.
   */
  sync(list: readonly DnsContainer[]): void {
    for (const c of list) this.handleAttached(c, c.addresses);
    if (this.resolv === null) return;
    const attached = new Set(list.map((c) => c.id));
    for (const id of this.resolv.ids()) if (!attached.has(id)) this.resolv.restore(id);
  }

  onAttached(c: DnsContainer, added: readonly string[]): void {
    this.handleAttached(c, added);
  }

  onDetached(c: DnsContainer, removed: readonly string[], reason: ContainerGoneReason): void {
    const full = reason !== 'detach' || c.addresses.every((a) => removed.includes(a));
    for (const cidr of removed) this.service.unregister({ containerId: c.id, address: ipOf(cidr) });
    if (!full) {
      const known = this.local.get(c.id);
      if (known !== undefined) known.view = c;
      return;
    }
    this.service.unregister({ containerId: c.id });
    this.local.delete(c.id);
    if (this.resolv === null) return;
    // A detached or vanished namespace: put its resolver back. A Docker container
    // that died or was destroyed took its resolv.conf with it.
    if (reason === 'detach' || (reason === 'gone' && c.kind === 'netns')) this.resolv.restore(c.id);
    else this.resolv.forget(c.id);
  }

  private handleAttached(c: DnsContainer, added: readonly string[]): void {
    const wanted = c.withoutDns === true ? null : c.dnsName ?? (c.kind === 'pid' ? null : c.name);
    const name = wanted === null ? null : containerHostName(wanted, this.opts.domain);
    if (wanted !== null && name === null) this.logger.warn('container name is not a valid host name; not registered in DNS', { container: c.name, name: wanted });
    this.local.set(c.id, { view: c, name });
    if (name !== null && added.length > 0) {
      try {
        this.service.register(c.id, name, added.map(ipOf));
      } catch (err) {
        this.logger.warn('cannot register container in DNS', { container: c.name, error: (err as Error).message });
      }
    }
    if (c.withoutDns === true || c.kind === 'cni' || this.resolv === null) return;
    try {
      const r = this.resolv.point({ id: c.id, kind: c.kind, name: c.name, pid: c.pid });
      if (r.kind === 'skipped') this.logger.info('container resolver left alone', { container: c.name, reason: r.why });
      else if (r.kind === 'written') this.logger.debug('container resolver points at weave dns', { container: c.name, file: r.path });
    } catch (err) {
      this.logger.warn('cannot write the container resolv.conf', { container: c.name, error: (err as Error).message });
    }
  }

  private findLocal(ref: string): LocalContainer | null {
    for (const c of this.local.values()) {
      const v = c.view;
      // The id is also how netns:NAME and pid:PID are written.
      if (v.id === ref || v.name === ref) return c;
      if (v.kind === 'docker' && ref.length >= 12 && v.id.startsWith(ref)) return c;
      if (v.pid !== null && ref === `pid:${v.pid}`) return c;
    }
    return null;
  }

  // -------------------------------------------------------------------------
  // API operations

  add(req: DnsAddRequest): DnsChangeReply {
    const c = req.container === undefined ? null : this.findLocal(req.container);
    if (req.container !== undefined && c === null) throw DnsError.config(`${req.container} is not attached on this host`);
    const nameText = req.name ?? (c !== null ? c.name ?? c.view.name : undefined);
    if (nameText === undefined) throw DnsError.config('dns-add needs a name (-h NAME) or a container');
    const name = qualifyName(nameText, this.opts.domain, 'name');
    const addresses = req.addresses !== undefined && req.addresses.length > 0 ? req.addresses : (c?.view.addresses.map(ipOf) ?? []);
    if (addresses.length === 0) throw DnsError.config(`no address given, and ${req.container ?? 'no container'} has none`);
    const delta = this.service.register(c?.view.id ?? MANUAL_CONTAINER_ID, name, addresses);
    return { changed: delta.map((e) => ({ name: e.name, address: e.address })) };
  }

  remove(req: DnsRemoveRequest): DnsChangeReply {
    const c = req.container === undefined ? null : this.findLocal(req.container);
    if (req.container !== undefined && c === null) throw DnsError.config(`${req.container} is not attached on this host`);
    const name = req.name === undefined ? undefined : qualifyName(req.name, this.opts.domain, 'name');
    const addresses = req.addresses ?? [];
    if (c === null && name === undefined && addresses.length === 0) throw DnsError.config('dns-remove needs a name, addresses or a container');
    const base = {
      ...(c !== null ? { containerId: c.view.id } : {}),
      ...(name !== undefined ? { name } : {}),
    };
    const delta: DnsEntry[] = [];
    if (addresses.length === 0) {
      delta.push(...this.service.unregister(base));
    } else {
      for (const a of addresses) {
        const canon = canonicalIp(a);
        if (canon === null) throw DnsError.config(`${JSON.stringify(a)} is not an IP address`);
        delta.push(...this.service.unregister({ ...base, address: canon }));
      }
    }
    return { changed: delta.map((e) => ({ name: e.name, address: e.address })) };
  }

  lookup(nameText: string): DnsLookupReply {
    const name = qualifyName(nameText, this.opts.domain, 'name');
    return { name, addresses: this.service.lookup(name) };
  }

  reverse(addressText: string): DnsReverseReply {
    const address = canonicalIp(addressText);
    if (address === null) throw DnsError.config(`${JSON.stringify(addressText)} is not an IP address`);
    return { address, names: this.service.reverse(address) };
  }

  status(): DnsStatusReport {
    const peers = this.service.knownPeers();
    const nick = new Map(peers.map((p) => [p.name as string, p.nickname]));
    const records: DnsRecordView[] = this.service.store.snapshot().map((e) => ({
      name: e.name, address: e.address, container: e.containerId, origin: e.origin, originNickname: nick.get(e.origin) ?? null,
      version: e.version, tombstone: e.tombstone, visible: this.service.store.isVisible(e),
    }));
    const warnings = [...this.warnings];
    const clash = peers.filter((p) => p.name !== this.service.localPeer && linkLocalAddressFor(p.name) === this.address);
    for (const p of clash) {
      warnings.push(`peer ${p.name} (${p.nickname}) derives the same DNS address ${this.address}: containers may reach the wrong host's server`);
    }
    for (const [id, why] of this.resolv?.refusals() ?? []) warnings.push(`container ${id}: resolver not pointed at weave DNS: ${why}`);
    return {
      domain: this.opts.domain,
      ttlS: this.opts.ttlS,
      address: this.hostReady ? this.address : null,
      listening: this.server.addresses(),
      upstreams: this.upstreams.current().map(formatUpstream),
      upstreamSource: this.upstreams.describe(),
      mdns: this.mdnsRunning,
      warnings,
      records,
      counters: { ...this.counters },
    };
  }
}
