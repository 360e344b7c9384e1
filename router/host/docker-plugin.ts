// The Docker network plugin as one thing: answers each protocol call
// (`handle`: call name and parsed JSON in, reply object out, a PluginError
// for a refusal), keeps the record (docker-plugin-state.ts) on disk, and ties
// endpoints to containers. Docker's driver calls never name a container, so a
// container's start event does: the namespace of its process is the one an
// endpoint was joined to. From then on the container is "attached" for the
// listeners (DNS: its name, its resolv.conf pointed at weave DNS), until its
// endpoint is deleted (it stopped) or it is removed.
//
// Calls run one at a time, events too, so the record never changes across an
// await inside another call. It never touches a container's files itself
// and never frees an address it did not hand out.

import path from 'node:path';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';
import { stateFiles } from '../../common/state-files';
import type { DockerApi, DockerEvent } from './docker-client';
import type { PluginAddressSource } from './docker-plugin-ipam';
import { PluginIpam } from './docker-plugin-ipam';
import type { PluginLinks } from './docker-plugin-network';
import { PluginNetwork } from './docker-plugin-network';
import type { PluginEndpoint, PluginState } from './docker-plugin-state';
import { formatPluginState, MAX_PLUGIN_STATE_BYTES, parsePluginState, PLUGIN_STATE_FILE } from './docker-plugin-state';
import type { PluginCall } from './docker-plugin-wire';
import * as wire from './docker-plugin-wire';
import { PluginError } from './docker-plugin-wire';

/** A container on a weave plugin network, as listeners (DNS) see it. */
export interface PluginContainer {
  id: string;
  name: string;
  pid: number;
  /** Its addresses on weave plugin networks. */
  addresses: string[];
}

export type PluginGoneReason = 'died' | 'destroyed' | 'gone';

export interface PluginListener {
  onAttached(c: PluginContainer): void;
  onDetached(c: PluginContainer, reason: PluginGoneReason): void;
}

/** One endpoint for `weave ps` and status. */
export interface PluginEndpointView {
  endpoint: string;
  network: string;
  container: string | null;
  name: string | null;
  address: string;
  mac: string;
  veth: string;
  /** false: made in a network created with `-o port-security=false`. */
  portSecurity: boolean;
}

export interface DockerPluginDeps {
  logger: Logger;
  links: PluginLinks;
  addresses: PluginAddressSource;
  /** dev:inode of a namespace file; null when it does not exist. */
  namespaceId: (path: string) => string | null;
  now: () => number;
  /** Null when the daemon runs without an engine. */
  docker: Pick<DockerApi, 'inspect'> | null;
}

export interface DockerPluginOptions {
  datadir: string;
  overlayRoutes: readonly string[];
  /** How long the address of a stopped container is kept for its restart. */
  graceMs: number;
}

export class DockerPlugin {
  private readonly state: PluginState = { addresses: [], endpoints: [], networks: [] };
  private readonly ipam: PluginIpam;
  private readonly network: PluginNetwork;
  private readonly listeners: PluginListener[] = [];
  /** Endpoints whose container the listeners were told about, by endpoint id. */
  private readonly live = new Map<string, PluginContainer>();
  private readonly file: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: DockerPluginDeps, opts: DockerPluginOptions) {
    this.file = path.join(opts.datadir, PLUGIN_STATE_FILE);
    const save = (): void => { stateFiles.save(this.file, formatPluginState(this.state)); };
    this.ipam = new PluginIpam(this.state, deps.addresses, save, deps.now, { graceMs: opts.graceMs });
    this.network = new PluginNetwork(this.state, deps.links, save, { overlayRoutes: opts.overlayRoutes });
  }

  addListener(l: PluginListener): void {
    this.listeners.push(l);
  }

  /** Answers one protocol call; throws PluginError (or another error) to refuse it. */
  handle(call: PluginCall, body: unknown): Promise<unknown> {
    return this.serialize(() => this.dispatch(call, body));
  }

  /** Follows a container event from the engine (start, die, destroy). */
  onDockerEvent(ev: DockerEvent): Promise<void> {
    return this.handleEvent(ev).catch((err: unknown) => {
      this.deps.logger.warn('docker event not handled by the plugin', { action: ev.action, container: ev.id.slice(0, 12), error: errorMessage(err) });
    });
  }

  /**
   * Reads the record a previous daemon left. Endpoints whose container still
   * runs in the namespace they were joined to are attached again (listeners
   * re-register the name); the rest wait for Docker, which deletes them.
   */
  async restore(): Promise<PluginContainer[]> {
    const loaded = stateFiles.load(this.file, MAX_PLUGIN_STATE_BYTES, parsePluginState);
    if (loaded === null) return [];
    for (const p of loaded.problems) this.deps.logger.warn('dropping a bad entry of the plugin record', { file: PLUGIN_STATE_FILE, error: p });
    await this.serialize(async () => {
      this.state.addresses.push(...loaded.state.addresses);
      this.state.endpoints.push(...loaded.state.endpoints);
      this.state.networks.push(...loaded.state.networks);
    });
    const ids = new Set(loaded.state.endpoints.flatMap((e) => (e.container === null ? [] : [e.container.id])));
    for (const id of ids) {
      if (!(await this.attachContainer(id))) await this.vanished(id);
    }
    return this.containers();
  }

  /**
   * A container that stopped or was removed while we were away: Docker's
   * DeleteEndpoint and ReleaseAddress found no plugin then, and it does not
   * ask again. So its endpoints go now, and its address is parked (stopped)
   * or freed (removed). An engine we cannot ask leaves everything as it is.
   */
  private async vanished(id: string): Promise<void> {
    const docker = this.deps.docker;
    if (docker === null) return;
    let info: Awaited<ReturnType<typeof docker.inspect>>;
    try {
      info = await docker.inspect(id);
    } catch {
      return;
    }
    if (info !== null && info.running) return;
    await this.serialize(async () => {
      for (const ep of this.state.endpoints.filter((e) => e.container?.id === id)) {
        await this.network.deleteEndpoint({ networkId: ep.networkId, endpointId: ep.id });
        const a = this.state.addresses.find((x) => x.cidr === ep.cidr && x.parkedAtMs === null);
        if (a !== undefined) this.ipam.releaseAddress(a.poolId, ep.cidr.slice(0, ep.cidr.indexOf('/')));
      }
      if (info === null) this.ipam.containerRemoved(id);
    });
    this.deps.logger.info(info === null ? 'plugin container removed while the router was away; its address is free' : 'plugin container stopped while the router was away; its address is kept for its restart', { container: id.slice(0, 12) });
  }

  /** Every endpoint, for `weave ps` and status. */
  list(): PluginEndpointView[] {
    return this.network.endpoints().map((e) => ({
      endpoint: e.id, network: e.networkId, container: e.container?.id ?? null, name: e.container?.name ?? null,
      address: e.cidr, mac: e.mac, veth: e.hostIfname, portSecurity: e.portSecurity,
    }));
  }

  /** Containers attached through the plugin now. */
  containers(): PluginContainer[] {
    return [...this.live.values()];
  }

  // -------------------------------------------------------------------------

  private async dispatch(call: PluginCall, body: unknown): Promise<unknown> {
    switch (call) {
      case 'Plugin.Activate':
        return { Implements: ['NetworkDriver', 'IpamDriver'] };
      case 'NetworkDriver.GetCapabilities':
        return this.network.capabilities();
      case 'NetworkDriver.CreateNetwork':
        return this.network.createNetwork(wire.parseCreateNetwork(body));
      case 'NetworkDriver.DeleteNetwork':
        return this.network.deleteNetwork(wire.parseNetworkRef(body, 'DeleteNetwork').networkId);
      case 'NetworkDriver.CreateEndpoint':
        return this.network.createEndpoint(wire.parseCreateEndpoint(body));
      case 'NetworkDriver.DeleteEndpoint': {
        const ep = await this.network.deleteEndpoint(wire.parseEndpointRef(body, 'DeleteEndpoint'));
        if (ep !== null) this.detach(ep, 'died');
        return {};
      }
      case 'NetworkDriver.EndpointOperInfo':
        return this.network.endpointInfo(wire.parseEndpointRef(body, 'EndpointOperInfo'));
      case 'NetworkDriver.Join':
        return this.network.join(wire.parseJoin(body));
      case 'NetworkDriver.Leave':
        return this.network.leave(wire.parseEndpointRef(body, 'Leave'));
      case 'NetworkDriver.DiscoverNew':
      case 'NetworkDriver.DiscoverDelete':
      case 'NetworkDriver.ProgramExternalConnectivity':
      case 'NetworkDriver.RevokeExternalConnectivity':
        // Nothing to learn from discovery, and no ports to publish: the overlay has no gateway of ours.
        return {};
      case 'IpamDriver.GetCapabilities':
        return this.ipam.capabilities();
      case 'IpamDriver.GetDefaultAddressSpaces':
        return this.ipam.addressSpaces();
      case 'IpamDriver.RequestPool':
        return this.ipam.requestPool(wire.parseRequestPool(body));
      case 'IpamDriver.ReleasePool':
        return this.ipam.releasePool(wire.parsePoolRef(body, 'ReleasePool').poolId);
      case 'IpamDriver.RequestAddress':
        return this.ipam.requestAddress(wire.parseRequestAddress(body));
      case 'IpamDriver.ReleaseAddress': {
        const r = wire.parseReleaseAddress(body);
        return this.ipam.releaseAddress(r.poolId, r.address);
      }
    }
  }

  private async handleEvent(ev: DockerEvent): Promise<void> {
    switch (ev.action) {
      case 'start':
        await this.attachContainer(ev.id);
        return;
      case 'die':
        // The endpoint is deleted around now too; whichever comes first detaches.
        await this.serialize(async () => {
          for (const ep of this.state.endpoints.filter((e) => e.container?.id === ev.id)) this.detach(ep, 'died');
        });
        return;
      case 'destroy': {
        const freed = await this.serialize(async () => this.ipam.containerRemoved(ev.id));
        if (freed.length > 0) this.deps.logger.info('container removed; its plugin address is free', { container: ev.id.slice(0, 12), addresses: freed.join(',') });
        return;
      }
    }
  }

  /**
   * Finds the endpoints joined to the namespace of container `id`'s process,
   * and attaches them. The engine is asked outside the queue: a container
   * that is starting holds its lock in the engine while it waits for our
   * driver, so asking about it from inside the queue could wait on ourselves.
   */
  private async attachContainer(id: string): Promise<boolean> {
    const docker = this.deps.docker;
    if (docker === null) return false;
    const info = await docker.inspect(id).catch(() => null);
    if (info === null || !info.running || info.pid <= 0) return false;
    const nsId = this.namespaceIdOf(`/proc/${info.pid}/ns/net`);
    if (nsId === null) return false;
    const view = await this.serialize(async () => {
      // The namespace file Docker named at Join exists now that the container runs.
      for (const e of this.state.endpoints) if (e.nsId === null && e.sandboxKey !== null) e.nsId = this.namespaceIdOf(e.sandboxKey);
      const mine = this.state.endpoints.filter((e) => e.nsId === nsId);
      if (mine.length === 0) return null;
      const container = { id: info.id, name: info.name };
      const v: PluginContainer = { id: info.id, name: info.name, pid: info.pid, addresses: mine.map((e) => e.cidr) };
      for (const ep of mine) {
        ep.container = container;
        this.ipam.bindContainer(ep.cidr, container);
        this.live.set(ep.id, v);
      }
      stateFiles.save(this.file, formatPluginState(this.state));
      return v;
    });
    if (view === null) return false;
    this.deps.logger.info('container on a weave plugin network', { container: info.name, addresses: view.addresses.join(',') });
    for (const l of this.listeners) this.call(() => l.onAttached(view));
    return true;
  }

  private detach(ep: PluginEndpoint, reason: PluginGoneReason): void {
    const view = this.live.get(ep.id);
    if (view === undefined) return;
    this.live.delete(ep.id);
    // Other endpoints of the same container stay; listeners hear of the container once all are gone.
    if ([...this.live.values()].includes(view)) return;
    for (const l of this.listeners) this.call(() => l.onDetached(view, reason));
  }

  private namespaceIdOf(p: string): string | null {
    try {
      return this.deps.namespaceId(p);
    } catch {
      return null;
    }
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.deps.logger.error('plugin listener failed', { error: errorMessage(err) });
    }
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

export { PluginError };
