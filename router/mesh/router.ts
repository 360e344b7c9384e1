// The mesh router: owns the connections, the topology and the routes, and
// wires them to the gossip core and the connector. Transport, clock, rng and
// logger are injected, so the same class runs in the daemon (TCP) and in
// simulations of hundreds of peers (in-memory pipes, manual clock).
//
// Which connections are kept, and which gossiped addresses are dialed, is
// decided in one place (connection-policy.ts) and carried out here: a connection to ourselves, to
// a peer using our name, or a second connection to the same peer is refused,
// deterministically on both ends. The status snapshot is built by
// router-status.ts from the parts this class holds.

import type { Timer } from '../../common/clock';
import { Connection, ConnectionEvents } from './connection';
import { discoveredAddresses, judgeEstablished } from './connection-policy';
import { Connector } from './connector';
import { TOPOLOGY_CHANNEL } from './constants';
import { assertNever, errorMessage } from '../../common/errors';
import { RouterError, RouterErrorCode } from './errors';
import { FailedConnections, failureVisibility } from './failed-connections';
import { MeshGossipHub } from './gossip-hub';
import { GossipAuthority } from './signed-gossip';
import { HandshakeLimits } from './handshake-limits';
import type { MeshLinks } from './mesh-links';
import type { HelloInfo } from './handshake-messages';
import type { Logger } from '../../common/logger';
import type { PeerConnection } from './peer';
import { normalisePeerAddress, parsePeerAddress } from './peer-address';
import { comparePeerNames, PeerName } from './peer-name';
import { Peers } from './peers';
import type { ControlMessage } from './protocol';
import { Routes } from './routes';
import { RouteScheduler } from './route-scheduler';
import { buildRouterStatus } from './router-status';
import type { RouterStatus } from './status';
import { TopologyGossiper, TopologyUpdate } from './topology-gossiper';
import type { RouterDeps, RouterOptions } from './router-options';
import type { ByteStream } from './transport';

export class Router implements MeshLinks {
  readonly localPeer: PeerName;
  readonly peers: Peers;
  readonly gossip: MeshGossipHub;
  private routes: Routes;
  private readonly connections = new Set<Connection>();
  /** The one kept, established connection per neighbour. */
  private readonly byPeer = new Map<PeerName, Connection>();
  private readonly failed: FailedConnections;
  /** Inbound handshakes in progress: capped apart from connLimit, which counts established peers only. */
  private readonly handshakes = new HandshakeLimits<Connection>();
  /** Addresses that turned out to be ourselves: never dialed again through discovery. */
  private readonly selfAddresses = new Set<string>();
  private readonly connector: Connector;
  private readonly log: Logger;
  private readonly hello: HelloInfo;
  private readonly routeScheduler: RouteScheduler;
  private gossipTimer: Timer | null = null;
  private readonly startedMs: number;
  private stopped = false;
  private stopRequested: (() => void) | null = null;
  readonly counters = {
    connectionsAccepted: 0,
    connectionsDialed: 0,
    connectionsEstablished: 0,
    connectionsFailed: 0,
    connectionsRefusedLimit: 0,
    /** Handshakes we refused because the peer did not prove the key its name derives from. */
    connectionsRefusedPeerKey: 0,
    routeComputations: 0,
  };
  private readonly connectionEvents: ConnectionEvents = {
    onEstablished: (conn) => this.handleEstablished(conn),
    onMessage: (conn, msg) => this.handleMessage(conn, msg),
    onClosed: (conn, error) => this.handleClosed(conn, error),
  };

  constructor(private readonly deps: RouterDeps, private readonly opts: RouterOptions) {
    if (opts.key.name !== opts.name) throw RouterError.config(`peer name ${opts.name} is not the one our key derives (${opts.key.name})`);
    this.localPeer = opts.name;
    this.log = deps.logger;
    this.startedMs = deps.clock.now();
    this.failed = new FailedConnections(opts.timings.failedConnectionRetentionMs);
    this.hello = { name: opts.name, nickname: opts.nickname, incarnation: opts.incarnation, listenPort: opts.port };
    const signing = new GossipAuthority(opts.key, { verified: deps.verifiedSignatures ?? null });
    this.peers = new Peers({ name: opts.name, nickname: opts.nickname, incarnation: opts.incarnation }, signing);
    this.routes = Routes.compute(this.peers.entries(), this.localPeer);
    this.routeScheduler = new RouteScheduler(deps.clock, opts.timings.routeDebounceMs, () => this.recomputeRoutes());
    this.gossip = new MeshGossipHub({
      clock: deps.clock,
      rng: deps.rng,
      logger: deps.logger,
      links: this,
      signing,
      knownPeers: () => this.peers.entries().map((e) => ({ name: e.name, nickname: e.nickname })),
    });
    this.gossip.addChannel(TOPOLOGY_CHANNEL, new TopologyGossiper(this.peers, () => this.markTopologyDirty()), true);
    this.connector = new Connector({ clock: deps.clock, rng: deps.rng, logger: deps.logger }, opts.timings, {
      dial: (address) => this.dial(address),
      isConnected: (address) => this.isConnectedTo(address),
      canConnect: () => this.byPeer.size < this.opts.connLimit,
    });
  }

  async start(initialTargets: readonly string[] = []): Promise<void> {
    await this.deps.transport.listen(this.opts.port, (stream) => this.accept(stream));
    this.connector.addDirect(initialTargets, false);
    this.connector.start();
    this.scheduleGossip();
    this.log.info('router started', {
      peer: this.localPeer, nickname: this.opts.nickname, port: this.opts.port, encryption: this.opts.passwordKey !== null,
    });
  }

  /** Resolves when an API client asked the router to stop. */
  whenStopRequested(): Promise<void> {
    return new Promise((resolve) => { this.stopRequested = resolve; });
  }

  stop(): void {
    if (this.stopRequested) {
      const resolve = this.stopRequested;
      this.stopRequested = null;
      resolve();
      return;
    }
    this.shutdown();
  }

  shutdown(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.connector.stop();
    this.routeScheduler.cancel();
    this.gossipTimer?.cancel();
    this.gossip.close();
    for (const conn of [...this.connections]) conn.close(null);
    this.deps.transport.close();
  }

  // ---- what the local API may ask (router/api/control.ts) ----

  connect(addresses: string[], replace: boolean): void {
    const normalised = addresses.map((a) => normalisePeerAddress(a));
    this.connector.addDirect(normalised, replace);
    this.opts.onDirectTargetsChanged?.(this.connector.directTargets());
  }

  forget(addresses: string[]): void {
    const normalised = addresses.map((a) => normalisePeerAddress(a));
    this.connector.forget(normalised);
    const gone = new Set(normalised);
    for (const conn of [...this.connections]) {
      if (conn.opts.outbound && gone.has(conn.remoteListenAddress)) conn.close(null);
    }
    this.opts.onDirectTargetsChanged?.(this.connector.directTargets());
  }

  status(): RouterStatus {
    const o = this.opts;
    return buildRouterStatus({
      version: o.version, name: this.localPeer, nickname: o.nickname, incarnation: o.incarnation, port: o.port,
      encryption: o.passwordKey !== null, passwordRoll: (o.oldPasswordKey ?? null) !== null, discovery: o.discovery, connLimit: o.connLimit, startedMs: this.startedMs,
      handshakes: this.handshakes.pressure(this.deps.clock.now()),
    }, {
      peers: this.peers,
      routes: this.routes,
      connections: this.connections,
      isKept: (c) => c.remote !== null && this.byPeer.get(c.remote.name) === c,
      failed: this.failed.list(),
      targets: this.connector.status(),
      channels: this.gossip.channelNames(),
      counters: { ...this.counters, ...this.handshakes.counters, ...this.gossip.counters, ...this.gossip.signing.counters, ...this.peers.counters, ...this.deps.dataPlane?.counters },
      dataPlane: this.deps.dataPlane,
    }, this.deps.clock.now());
  }

  // ---- MeshLinks (for the gossip core) ----

  neighbours(): PeerName[] {
    return [...this.byPeer.keys()].sort(comparePeerNames);
  }

  sendTo(neighbour: PeerName, message: Uint8Array): boolean {
    const conn = this.byPeer.get(neighbour);
    if (!conn) return false;
    conn.send(message);
    return true;
  }

  nextHop(dst: PeerName): PeerName | null {
    return this.routes.nextHop(dst);
  }

  broadcastChildren(origin: PeerName): PeerName[] {
    return this.routes.broadcastChildren(origin);
  }

  /** Current routes (recomputed after topology changes settle). */
  currentRoutes(): Routes {
    return this.routes;
  }

  // ---- connections ----

  private accept(stream: ByteStream): void {
    if (this.stopped) { stream.close(); return; }
    if (this.byPeer.size >= this.opts.connLimit) {
      this.counters.connectionsRefusedLimit++;
      this.recordFailed(stream.remoteAddress, false, null, null, false, `refused: connection limit of ${this.opts.connLimit} reached`, 'conn-limit');
      stream.close();
      return;
    }
    this.counters.connectionsAccepted++;
    const conn = this.newConnection(stream, false, null);
    if (conn === null) return;
    for (const old of this.handshakes.admit(conn, stream.remoteHost, this.deps.clock.now())) {
      old.close(new RouterError('conn-limit', 'dropped to make room: too many handshakes in progress'));
    }
    this.logHandshakeDrops();
  }

  private dial(address: string): void {
    let host: string;
    let port: number;
    try {
      ({ host, port } = parsePeerAddress(address));
    } catch (err) {
      this.connector.onDisconnected(address, err instanceof RouterError ? err : RouterError.config(errorMessage(err)));
      return;
    }
    this.counters.connectionsDialed++;
    this.deps.transport.dial(host, port, (error, stream) => {
      if (this.stopped) { stream?.close(); return; }
      if (error || !stream) {
        const err = new RouterError('io', `cannot connect to ${address}: ${error ? errorMessage(error) : 'no stream'}`);
        this.counters.connectionsFailed++;
        this.connector.onDisconnected(address, err);
        return;
      }
      this.newConnection(stream, true, address);
    });
  }

  private newConnection(stream: ByteStream, outbound: boolean, targetAddress: string | null): Connection | null {
    try {
      const conn = new Connection({ clock: this.deps.clock, logger: this.log }, stream, {
        local: this.hello, key: this.opts.key, pins: this.gossip.signing,
        passwordKey: this.opts.passwordKey, oldPasswordKey: this.opts.oldPasswordKey ?? null,
        ...(this.opts.rekey ? { rekey: this.opts.rekey } : {}), offerAesGcm: this.deps.dataPlane?.aesGcm === true,
        timings: this.opts.timings, outbound, targetAddress,
      }, this.connectionEvents);
      if (conn.phase === 'closed') return null;
      this.connections.add(conn);
      return conn;
    } catch (err) {
      stream.close();
      const error = new RouterError('io', `cannot start connection: ${errorMessage(err)}`);
      if (targetAddress !== null) this.connector.onDisconnected(targetAddress, error);
      this.log.error('cannot start connection', { addr: stream.remoteAddress, error: error.message });
      return null;
    }
  }

  private handleEstablished(conn: Connection): void {
    this.handshakes.completed(conn);
    const remote = conn.remote!;
    // Proven in the handshake (key-proof.ts): the same trust on first use as gossip.
    this.gossip.signing.pin(remote.name, conn.remoteKey!);
    const verdict = judgeEstablished({ name: this.localPeer, incarnation: this.opts.incarnation }, conn, this.byPeer.get(remote.name));
    switch (verdict.action) {
      case 'self':
        if (conn.opts.targetAddress) this.selfAddresses.add(conn.opts.targetAddress);
        conn.close(new RouterError('self-connection', 'this address is ourselves'));
        return;
      case 'name-collision':
        conn.refuse(new RouterError('name-collision', `peer at ${conn.stream.remoteAddress} uses our name ${this.localPeer}: names derive from each data directory's peer key, so two hosts share one data directory (or its peer-key file)`));
        return;
      case 'refuse-duplicate':
        conn.refuse(new RouterError('duplicate-connection', `already connected to ${remote.name}(${remote.nickname})`));
        return;
      case 'keep':
        if (verdict.replaced === null && this.byPeer.size >= this.opts.connLimit) {
          this.counters.connectionsRefusedLimit++;
          conn.refuse(new RouterError('conn-limit', `connection limit of ${this.opts.connLimit} established peers reached`));
          return;
        }
        verdict.replaced?.refuse(new RouterError('duplicate-connection', `replaced by a newer connection to ${remote.name}(${remote.nickname})`));
        break;
      default:
        assertNever(verdict);
    }
    this.byPeer.set(remote.name, conn);
    this.counters.connectionsEstablished++;
    this.log.info('connection established', {
      peer: remote.name, nickname: remote.nickname, addr: conn.stream.remoteAddress, dir: conn.opts.outbound ? 'out' : 'in', encrypted: conn.encrypted,
    });
    if (conn.opts.targetAddress !== null) this.connector.onConnected(conn.opts.targetAddress);
    this.deps.dataPlane?.addNeighbour({
      name: remote.name,
      host: conn.stream.remoteHost,
      udpPort: remote.listenPort,
      keys: conn.sleeveKeys,
      sendControl: (msg) => conn.send(msg),
    });
    this.updateLocalConnections();
    this.gossip.gossipFullStateTo(remote.name);
  }

  private handleMessage(conn: Connection, msg: ControlMessage): void {
    const remote = conn.remote;
    if (!remote || this.byPeer.get(remote.name) !== conn) return;
    switch (msg.type) {
      case 'gossip':
        this.gossip.handleGossip(remote.name, msg.kind, msg.channel, msg.src, msg.dst, msg.payload);
        return;
      case 'frame':
        this.deps.dataPlane?.handleTcpFrame(remote.name, msg.inner);
        return;
      case 'far-frame':
        this.deps.dataPlane?.handleTcpFar?.(remote.name, msg.message);
        return;
      case 'udp-status':
        this.deps.dataPlane?.handleUdpStatus(remote.name, msg);
        return;
      case 'kernel-relay':
        this.deps.dataPlane?.handleKernelRelay?.(remote.name, msg.relay);
        return;
    }
  }

  private handleClosed(conn: Connection, error: RouterError | null): void {
    this.connections.delete(conn);
    this.handshakes.failed(conn, this.deps.clock.now());
    const remote = conn.remote;
    const wasKept = remote !== null && this.byPeer.get(remote.name) === conn;
    if (wasKept) {
      this.byPeer.delete(remote.name);
      this.gossip.forgetNeighbour(remote.name);
      this.deps.dataPlane?.removeNeighbour(remote.name);
      this.updateLocalConnections();
      if (!this.stopped) this.log.info('connection lost', { peer: remote.name, nickname: remote.nickname, reason: error?.message ?? 'closed' });
    }
    if (conn.opts.targetAddress !== null) this.connector.onDisconnected(conn.opts.targetAddress, error);
    if (error === null || wasKept) return;
    if (error.code === 'peer-key' && remote === null) this.counters.connectionsRefusedPeerKey++;
    const visibility = failureVisibility(error.code, conn.opts.outbound, remote !== null);
    if (visibility === 'none') return;
    this.counters.connectionsFailed++;
    if (visibility === 'stranger') { this.logHandshakeDrops(); return; }
    this.recordFailed(conn.stream.remoteAddress, conn.opts.outbound, remote?.name ?? null, remote?.nickname ?? null, conn.encrypted, error.message, error.code);
    (visibility === 'loud' ? this.log.warn : this.log.debug).call(this.log, 'connection failed', { addr: conn.stream.remoteAddress, code: error.code, reason: error.message });
  }

  private recordFailed(
    address: string, outbound: boolean, peer: PeerName | null, nickname: string | null, encrypted: boolean, info: string, failure: RouterErrorCode,
  ): void {
    this.failed.record({ address, outbound, peer, nickname, encrypted, info, failure }, this.deps.clock.now());
  }

  /** At most one summary line per interval, however many strangers (handshake-limits.ts). */
  private logHandshakeDrops(): void {
    const s = this.handshakes.summaryDue(this.deps.clock.now());
    if (s === null) return;
    (s.evicted > 0 ? this.log.warn : this.log.info).call(this.log, 'inbound handshakes dropped before authentication', {
      dropped: s.dropped, atCap: s.evicted, inProgress: s.inProgress,
    });
  }

  private isConnectedTo(address: string): boolean {
    for (const conn of this.byPeer.values()) if (conn.remoteListenAddress === address) return true;
    return false;
  }

  // ---- topology and routes ----

  private updateLocalConnections(): void {
    const conns: PeerConnection[] = [...this.byPeer.values()].map((c) => ({
      name: c.remote!.name, address: c.remoteListenAddress, outbound: c.opts.outbound, established: true,
    }));
    if (!this.peers.setLocalConnections(conns)) return;
    // Our own entry changed: to every neighbour (paced and coalesced by the hub) so routes see the new edge quickly.
    this.gossip.gossipToAllNeighbours(TOPOLOGY_CHANNEL, new TopologyUpdate(this.peers, new Set([this.localPeer])));
    this.markTopologyDirty();
  }

  /** Debounced and spaced (route-scheduler.ts): a flapping mesh cannot keep us computing routes. */
  private markTopologyDirty(): void {
    if (!this.stopped) this.routeScheduler.markDirty();
  }

  private recomputeRoutes(): void {
    this.routes = Routes.compute(this.peers.entries(), this.localPeer);
    const removed = this.peers.garbageCollect();
    if (removed.length > 0) {
      this.log.debug('forgot unreachable peers', { count: removed.length });
      this.routes = Routes.compute(this.peers.entries(), this.localPeer);
    }
    this.counters.routeComputations++;
    this.deps.dataPlane?.setRoutes(this.routes);
    if (this.opts.discovery) this.connector.setDiscovered(discoveredAddresses(this.peers.entries(), this.localPeer, this.selfAddresses));
    this.gossip.notifyReachable(this.routes.reachable());
  }

  private scheduleGossip(): void {
    if (this.stopped) return;
    this.gossipTimer = this.deps.clock.setTimer(this.opts.timings.gossipIntervalMs, () => {
      this.gossip.gossipPeriodically();
      this.scheduleGossip();
    });
  }
}
