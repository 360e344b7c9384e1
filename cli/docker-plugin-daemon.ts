// The composition root's Docker plugin part, kept out of cli/daemon.ts so
// that file does not grow with it: builds the DockerPlugin
// (router/host/docker-plugin.ts) on the daemon's runner and bridge, gives it
// weave IPAM (one owner per address, released with the daemon's grace period)
// and weave DNS (a plugin container is a Docker container to DNS: its name is
// registered and its resolv.conf pointed at us, as for `weave attach`),
// serves it on /run/docker/plugins/weave.sock, follows the engine's container
// events for it, and keeps the `weave` network in the engine. What goes
// wrong (socket taken, no engine) becomes health warnings; nothing stops the
// daemon.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/logger';
import { stateFiles } from '../common/state-files';
import { errorMessage } from '../common/errors';
import type { DnsContainer } from '../dns/container-hook';
import type { DnsDaemon } from '../dns/daemon';
import type { Ipam } from '../ipam/ipam';
import type { IpamConfig } from '../ipam/config';
import type { DockerPluginServer } from '../router/api/docker-plugin-server';
import type { AttachedContainer } from '../router/host/attached-container';
import type { CommandRunner } from '../router/host/command-runner';
import type { DockerApi, EventWatch } from '../router/host/docker-client';
import { procHostFs } from '../router/host/container-ref';
import type { PluginContainer } from '../router/host/docker-plugin';
import type { DockerPlugin } from '../router/host/docker-plugin';
import type { PluginNetworkKeeper } from '../router/host/docker-plugin-engine';
import type { GuardedPort } from '../router/host/port-security-rules';
import type { HealthWarning, RouterStatus } from '../router/mesh/status';
import type { RouterControl } from '../router/api/control';

export interface DockerPluginWiring {
  runner: CommandRunner;
  logger: Logger;
  ipam: Ipam;
  ipamConfig: IpamConfig;
  dns: DnsDaemon;
  /** Null: no engine client (the plugin still answers, but learns no container names). */
  docker: DockerApi | null;
  /** The engine's socket, for making the `weave` network. */
  dockerSocket: string;
  datadir: string;
  bridge: string;
  mtu: number;
  overlayRoutes: string[];
  graceMs: number;
  socketPath?: string;
  /** Called after an endpoint (and its veth) was made or deleted, and awaited before Docker hears back: port security's rebuild. */
  onEndpointsChanged?: () => Promise<void>;
}

/** How DNS sees a container on a plugin network: a Docker container like any other. */
export function pluginDnsView(c: PluginContainer): DnsContainer {
  return { id: c.id, name: c.name, kind: 'docker', addresses: c.addresses, pid: c.pid };
}

export class DockerPluginRuntime {
  readonly plugin: DockerPlugin;
  private readonly server: DockerPluginServer;
  private readonly keeper: PluginNetworkKeeper;
  private readonly logger: Logger;
  private socketProblem: string | null = null;
  private watch: EventWatch | null = null;

  constructor(private readonly w: DockerPluginWiring) {
    // Required here, not at the top: a router run with --no-docker-plugin never loads the plugin (issue 14: RSS).
    const { DockerPlugin } = require('../router/host/docker-plugin') as typeof import('../router/host/docker-plugin');
    const { PluginVethLinks } = require('../router/host/docker-plugin-links') as typeof import('../router/host/docker-plugin-links');
    const { DockerPluginServer, DEFAULT_PLUGIN_SOCKET } = require('../router/api/docker-plugin-server') as typeof import('../router/api/docker-plugin-server');
    const { PluginNetworkKeeper } = require('../router/host/docker-plugin-engine') as typeof import('../router/host/docker-plugin-engine');
    this.logger = w.logger.child({ component: 'docker-plugin' });
    const ipam = w.ipam;
    this.plugin = new DockerPlugin({
      logger: this.logger,
      links: new PluginVethLinks(w.runner, { bridge: w.bridge, mtu: w.mtu }),
      addresses: {
        defaultSubnet: () => w.ipamConfig.defaultSubnet.toString(),
        range: () => w.ipamConfig.range.toString(),
        allocate: (owner, subnet) => ipam.allocate(owner, { subnet }),
        claim: (owner, cidr) => ipam.claim(owner, cidr),
        release: (owner, graceMs) => { ipam.releaseContainer(owner, { graceMs }); },
      },
      namespaceId: (p) => procHostFs.namespaceId(p),
      now: () => Date.now(),
      docker: w.docker,
    }, { datadir: w.datadir, overlayRoutes: w.overlayRoutes, graceMs: w.graceMs });
    this.plugin.addListener({
      onAttached: (c) => w.dns.onAttached(pluginDnsView(c), c.addresses),
      onDetached: (c, reason) => w.dns.onDetached(pluginDnsView(c), c.addresses, reason),
    });
    const changesEndpoints = new Set(['NetworkDriver.CreateEndpoint', 'NetworkDriver.DeleteEndpoint']);
    this.server = new DockerPluginServer(async (call, body) => {
      const reply = await this.plugin.handle(call, body);
      // The veth exists from CreateEndpoint on: guarded before Docker moves it into the container.
      if (changesEndpoints.has(call)) await w.onEndpointsChanged?.();
      return reply;
    }, this.logger, w.socketPath ?? DEFAULT_PLUGIN_SOCKET);
    this.keeper = new PluginNetworkKeeper(w.dockerSocket, this.logger);
  }

  /** Restores the record, serves the socket, follows the engine and makes the network; never throws. */
  async start(): Promise<PluginContainer[]> {
    let restored: PluginContainer[] = [];
    try {
      restored = await this.plugin.restore();
    } catch (err) {
      this.logger.error('cannot restore the plugin record', { error: errorMessage(err) });
    }
    try {
      await this.server.listen();
    } catch (err) {
      this.socketProblem = errorMessage(err);
      this.logger.error('docker plugin not serving', { socket: this.server.socketPath, error: this.socketProblem });
      return restored;
    }
    if (this.w.docker !== null) this.watch = this.w.docker.watchEvents((ev) => { void this.plugin.onDockerEvent(ev); });
    this.keeper.start();
    return restored;
  }

  /** For status: the socket and the network, when something is wrong. */
  health(): HealthWarning[] {
    const out: HealthWarning[] = [];
    if (this.socketProblem !== null) out.push({ code: 'docker-plugin', severity: 'error', text: this.socketProblem });
    const n = this.keeper.status();
    if (this.socketProblem === null && n.problem !== null && n.state !== 'stopped') out.push({ code: 'docker-plugin-network', severity: 'warning', text: n.problem });
    return out;
  }

  /** Every endpoint's veth, MAC and address, joined to a container yet or not (port security). */
  ports(): GuardedPort[] {
    return this.plugin.list().map((e) => ({ hostIfname: e.veth, mac: e.mac, addresses: [e.address], portSecurity: e.portSecurity }));
  }

  /** Containers on plugin networks as `weave ps` lists them (ContainerManager.addEndpointSource). */
  attached(): AttachedContainer[] {
    return this.plugin.list().filter((e) => e.container !== null).map((e) => {
      const live = this.plugin.containers().find((c) => c.id === e.container);
      return {
        id: e.container as string, name: e.name ?? '', kind: 'docker' as const, ifname: 'ethwe' as const, mac: e.mac,
        addresses: [e.address], hostIfname: e.veth, pid: live?.pid ?? null, joined: 'plugin' as const,
      };
    });
  }

  /** `weave reset`: the network goes (while the socket still answers Docker's calls), then the socket and the record. */
  async reset(): Promise<void> {
    try {
      await this.keeper.remove();
    } finally {
      await this.close();
      const { PLUGIN_STATE_FILE } = require('../router/host/docker-plugin-state') as typeof import('../router/host/docker-plugin-state');
      const file = path.join(this.w.datadir, PLUGIN_STATE_FILE);
      stateFiles.forget(file);
      fs.rmSync(file, { force: true });
    }
  }

  async close(): Promise<void> {
    this.watch?.close();
    this.watch = null;
    this.keeper.stop();
    await this.server.close();
  }
}

/** The control with the plugin's warnings (socket taken, no engine) added to every status. */
export function withPluginHealth<C extends RouterControl & { status(): RouterStatus }>(control: C, plugin: DockerPluginRuntime | null): C {
  if (plugin === null) return control;
  return { ...control, status: () => {
    const s = control.status();
    return { ...s, health: [...s.health, ...plugin.health()] };
  } };
}
