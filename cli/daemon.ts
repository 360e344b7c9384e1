// The daemon's composition root (`weave router`): reads identity and state
// from the data directory, builds the router on real sockets and clocks,
// starts the HTTP API and the status server, and shuts all of it down on
// SIGTERM/SIGINT or `weave stop`. The only place router, IPAM and DNS meet:
// IPAM and DNS gossip on the router's hub, follow the ContainerManager's
// attach/detach events through listeners of their own shape
// (ipam/container-hook.ts, dns/container-hook.ts), and export their HTTP
// endpoints as values (common/api-route.ts) that are mounted on the API here.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { SystemClock } from '../common/clock';
import { DEFAULT_TIMINGS, FAST_TIMINGS } from '../router/mesh/constants';
import { RouterError } from '../router/mesh/errors';
import { errorMessage } from '../common/errors';
import { HttpApi } from '../router/api/http-api';
import { claimSocketPath } from '../router/api/unix-socket';
import { lookupApiGroup } from './api-socket';
import { ensureDatadir, loadPeerIdentity, loadPins, loadTargets, nextIncarnation, savePins, saveTargets } from '../router/mesh/identity';
import { TextLogger } from '../common/logger';
import { normalisePeerAddress } from '../router/mesh/peer-address';
import { stretchPassword } from '../router/mesh/password-key';
import { DEFAULT_FAR_TIMINGS, FarKeys } from '../router/mesh/far-keys';
import { DEFAULT_REKEY_OPTIONS } from '../router/mesh/key-schedule';
import { PinSaver } from '../router/mesh/peer-pins';
import { DEFAULT_AUTHORITY_OPTIONS } from '../router/mesh/signed-gossip';
import { systemRng } from '../common/rng';
import { Router } from '../router/mesh/router';
import { loadSodium } from '../router/mesh/sodium';
import { StatusServer } from '../router/api/status-server';
import { TcpTransport } from '../router/mesh/tcp-transport';
import type { DaemonConfig } from './config';
import { ExecCommandRunner } from '../router/host/command-runner';
import { containerApi } from '../router/api/container-api';
import { ContainerManager } from '../router/host/container-manager';
import { DockerClient, dockerSocketFromEnv } from '../router/host/docker-client';
// weave reset: hooks of the parts that made something on the host, the bridge at stop (router/host/host-reset.ts).
import { HostReset } from '../router/host/host-reset';
import { hostResetApi } from '../router/api/host-reset-api';
import { keepBridgeForwarding } from '../router/host/bridge-firewall';
import { PortGuard, nftApplier, removePortSecurity } from '../router/host/port-security';
import { DEFAULT_BRIDGE } from '../router/host/host-bridge';
import { DataPlaneSetup, startDataPlane, TAP_NAME } from './data-plane';
import { LINK_LOCAL_ROUTE } from '../dns/constants';
import { DnsDaemon } from '../dns/daemon';
import { dnsUpstreamSocketOpener, openDnsDatagramPort } from './dns-datagrams';
import { dnsApi } from '../dns/http-routes';
import { checkRangeFreeOnHost } from '../ipam/host-check';
import { ipamContainerListener, isIpv4Cidr, parseAddressRequests, resolveAddresses, withV6Twins } from '../ipam/container-hook';
import { DEFAULT_IPAM_TIMINGS } from '../ipam/constants';
import { ipamApi } from '../ipam/http-routes';
import { Ipam } from '../ipam/ipam';
import { FileIpamStore } from '../ipam/persistence';
import { ipamConfigOf } from './launch-options';
import { renderStatus } from './render-status';
import { packageVersion } from './version';
import { supervisorInfoFromEnv, withDaemonHealth } from './daemon-health';
import { READY_MESSAGE } from './supervisor';
import { configureStateFiles, stateFiles } from '../common/state-files';
// weave expose / hide (router/host/host-exposer.ts), addresses from IPAM:
import { EXPOSE_OWNER, HostExposer } from '../router/host/host-exposer';
import { exposeApi } from '../router/api/expose-api';
// CNI runtimes through the weave-net plugin (cni/, cli/cni-daemon.ts):
import { buildCniEndpoint, cniDnsView } from './cni-daemon';
import { cniApi } from '../router/api/cni-api';
// docker run --network weave: the Docker network and IPAM plugin (cli/docker-plugin-daemon.ts).
import { DockerPluginRuntime, pluginDnsView, withPluginHealth } from './docker-plugin-daemon';
import { processAlive } from '../common/process-alive';

const PID_FILE = 'weave.pid';
/** As often as the bridge's own firewall exception is re-checked (router/host/bridge-firewall.ts). */
const EXPOSE_RECHECK_MS = 30_000;


/** One router per data directory: a live pid in the pid file means another one runs. */
function claimPidFile(datadir: string): string {
  const file = path.join(datadir, PID_FILE);
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
      throw RouterError.config(`another weave router (pid ${pid}) is using data directory ${datadir}`);
    }
  } catch (err) {
    if (err instanceof RouterError) throw err;
  }
  try {
    fs.writeFileSync(file, `${process.pid}\n`);
  } catch (err) {
    // A full disk must not keep the router down; weave stop then watches the API (and the supervisor) only.
    process.stderr.write(`weave router: cannot write ${file}: ${errorMessage(err)}\n`);
  }
  return file;
}

export async function runDaemon(config: DaemonConfig): Promise<void> {
  const clock = new SystemClock();
  // weave.log on a full disk: log lines are lost, the router keeps running (an unhandled stream error would end it).
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  const logger = new TextLogger(config.logLevel);
  // State files that cannot be read or written are reported, set aside and retried, never fatal (common/state-files.ts).
  configureStateFiles({ logger: logger.child({ component: 'state' }), clock });
  ensureDatadir(config.datadir);
  const pidFile = claimPidFile(config.datadir);
  // The API socket before anything touches the host: a missing --api-group or
  // another router answering on the socket must fail a second router cleanly.
  let apiGid: number | null;
  try {
    apiGid = config.apiGroup === null ? null : lookupApiGroup(config.apiGroup).gid;
    await claimSocketPath({ path: config.apiSocket, gid: apiGid }, 'HTTP API');
  } catch (err) {
    try { fs.unlinkSync(pidFile); } catch { /* already gone */ }
    throw err;
  }

  await loadSodium();
  let identity: ReturnType<typeof loadPeerIdentity>;
  try {
    identity = loadPeerIdentity(config.datadir, config.name);
  } catch (err) {
    try { fs.unlinkSync(pidFile); } catch { /* already gone */ }
    throw err;
  }
  const { key, previous } = identity;
  const name = key.name;
  if (previous !== null) {
    logger.warn('new peer name: names are derived from the key in the data directory now; space and records of the old name are not ours (weave rmpeer it on another peer)', { peer: name, previous });
  }
  const incarnation = nextIncarnation(config.datadir, clock.now());
  const passwordKey = config.password !== null ? stretchPassword(config.password) : null;
  const oldPasswordKey = config.oldPassword !== undefined ? stretchPassword(config.oldPassword) : null;

  const stored = loadTargets(config.datadir);
  if (stored.problem) logger.warn(stored.problem);
  const storedTargets: string[] = [];
  for (const t of stored.targets) {
    try {
      storedTargets.push(normalisePeerAddress(t));
    } catch (err) {
      logger.warn('ignoring a stored peer address', { addr: t, error: errorMessage(err) });
    }
  }
  const initialTargets = [...new Set([...config.peers, ...storedTargets])];

  const fast = process.env['WEAVE_TEST_FAST'] === '1';
  const runner = new ExecCommandRunner();
  const ipamConfig = ipamConfigOf(config);
  let dataPlane: DataPlaneSetup;
  let dockerSocket: string;
  try {
    // DOCKER_HOST as the docker CLI reads it; anything but a local unix socket is refused by name.
    dockerSocket = dockerSocketFromEnv();
    // Refuse a range the host already routes elsewhere: containers would shadow those networks.
    await checkRangeFreeOnHost(ipamConfig.range.toString(), runner, { ignoreDevices: [DEFAULT_BRIDGE] });
    if (ipamConfig.rangeV6 !== null) {
      await checkRangeFreeOnHost(ipamConfig.rangeV6.toString(), runner, { ignoreDevices: [DEFAULT_BRIDGE], what: '--ipalloc-range-v6' });
    }
  } catch (err) {
    try { fs.unlinkSync(pidFile); } catch { /* already gone */ }
    throw err;
  }
  try {
    const fastdpOff = config.password !== null ? 'a password is set: encrypted frames never take the fast path'
      : config.fastdp === false ? 'fast path turned off (--no-fastdp)' : null;
    dataPlane = await startDataPlane({ clock, logger, runner },
      { localPeer: name, port: config.port, mtu: config.mtu, fast, fastdpOff, kernelRelay: config.kernelRelay !== false });
  } catch (err) {
    try { fs.unlinkSync(pidFile); } catch { /* already gone */ }
    throw new RouterError('io', `cannot start the data plane: ${errorMessage(err)}`, { cause: err });
  }

  const router = new Router({ clock, rng: systemRng, logger, transport: new TcpTransport(), dataPlane: dataPlane.overlay }, {
    name,
    key,
    nickname: config.nickname,
    incarnation,
    port: config.port,
    passwordKey,
    oldPasswordKey,
    ...(config.rekeyIntervalMs !== undefined ? { rekey: { ...DEFAULT_REKEY_OPTIONS, intervalMs: config.rekeyIntervalMs } } : {}),
    discovery: config.discovery,
    connLimit: config.connLimit,
    // WEAVE_TEST_FAST shortens heartbeats and retries for end-to-end tests and demos.
    timings: fast ? FAST_TIMINGS : DEFAULT_TIMINGS,
    version: packageVersion(),
    onDirectTargetsChanged: (targets) => {
      try {
        saveTargets(config.datadir, targets);
      } catch (err) {
        logger.error('cannot persist peer list', { error: errorMessage(err) });
      }
    },
  });

  // Trust on first use survives a restart: the keys pinned for other peers' names come back before any
  // connection, and every new pin is written soon after (router/mesh/peer-pins.ts).
  const authority = router.gossip.signing;
  const pinned = authority.restore(loadPins(config.datadir, DEFAULT_AUTHORITY_OPTIONS.maxKnownKeys));
  if (pinned > 0) logger.info('peer keys restored', { count: pinned });
  const pinSaver = new PinSaver(clock, () => savePins(config.datadir, authority.pins()));
  authority.onPinned = () => pinSaver.changed();
  // Once per start, so entries the file held but nobody trusts (reported by loadPins) leave it.
  pinSaver.changed();

  // With a password (and AES-256-GCM here), unicast frames to peers two hops away are sealed end to end,
  // so a relay opens only their headers: the keys are exchanged as unicast gossip (router/mesh/far-keys.ts).
  const farPath = passwordKey !== null ? dataPlane.overlay.far : null;
  const farKeys = farPath === null ? null
    : new FarKeys({ clock, logger: logger.child({ component: 'far-keys' }), hub: router.gossip, sink: farPath },
      config.rekeyIntervalMs !== undefined ? { ...DEFAULT_FAR_TIMINGS, rekeyMs: config.rekeyIntervalMs } : DEFAULT_FAR_TIMINGS);
  if (farPath !== null) farPath.source = farKeys;

  // IPAM: the address ring, gossiped on the mesh; consensus on the initial split happens on first need.
  const ipam = new Ipam(
    { hub: router.gossip, clock, rng: systemRng, logger: logger.child({ component: 'ipam' }), store: new FileIpamStore(config.datadir) },
    { config: ipamConfig, ...(fast ? { timings: { requestTimeoutMs: 15_000, releaseGraceMs: 5_000 } } : {}) },
  );

  // Firewall chains created after we start (a reload, dockerd starting later) get our accept rule too.
  const forwarding = keepBridgeForwarding({ bridge: dataPlane.bridge, tap: TAP_NAME }, { runner, clock, logger });
  const releaseGraceMs = fast ? 5_000 : DEFAULT_IPAM_TIMINGS.releaseGraceMs;
  const containers = new ContainerManager(
    { runner, docker: new DockerClient(logger, { socketPath: dockerSocket }), logger, clock },
    // LINK_LOCAL_ROUTE: containers reach this host's DNS server on the bridge (dns/link-local.ts).
    // Dual stack: the IPv6 range is routed via ethwe in containers that have an IPv6 address.
    { bridge: dataPlane.bridge, mtu: dataPlane.mtu, overlayRoutes: [ipamConfig.range.toString(), ...(ipamConfig.rangeV6 !== null ? [ipamConfig.rangeV6.toString()] : []), LINK_LOCAL_ROUTE], datadir: config.datadir,
      // A stopped container's record keeps its addresses exactly as long as IPAM does.
      graceMs: releaseGraceMs },
  );
  containers.setAddressSource({
    // Dual stack: each IPv4 address from IPAM brings its IPv6 twin (--ipalloc-range-v6).
    obtain: async (c, requests) => withV6Twins(ipam, await resolveAddresses(ipam, c.id, parseAddressRequests(requests), {
      onWaiting: (why) => logger.info('attach waits for IPAM', { container: c.name, why }),
    })),
    // IPv6 twins are derived, not held: giving back the IPv4 address frees both.
    giveBack: (c, addresses) => { for (const a of addresses.filter(isIpv4Cidr)) ipam.release(c.id, a); },
    // ...so detaching an IPv4 address takes its IPv6 twin along, or the twin would clash with the next holder.
    twinsOf: (cidr) => withV6Twins(ipam, [cidr]).slice(1),
  });
  containers.addListener(ipamContainerListener(ipam, { graceMs: releaseGraceMs, logger }));
  // DNS: names of attached containers, replicated on the mesh (dns/daemon.ts).
  const dns = new DnsDaemon(
    {
      hub: router.gossip, clock, rng: systemRng, logger: logger.child({ component: 'dns' }), run: (cmd, args) => runner.run(cmd, args, { allowFail: true }),
      openDatagrams: openDnsDatagramPort, openUpstreamSocket: dnsUpstreamSocketOpener(),
    },
    { ...config.dns, bridge: dataPlane.bridge, datadir: config.datadir },
  );
  // The manager's attachment record is passed as DNS's DnsContainer, its detach
  // reason as DNS's ContainerGoneReason: written out so the compiler checks each
  // argument against the shape DNS asks for.
  containers.addListener({
    onAttached: (c, added) => dns.onAttached(c, added),
    onDetached: (c, removed, reason) => dns.onDetached(c, removed, reason),
  });
  // weave expose / hide: the host's addresses on the bridge and NAT out of the overlay, held in IPAM as weave:expose.
  const exposer = new HostExposer({
    runner,
    logger: logger.child({ component: 'expose' }),
    addresses: {
      obtain: (requests) => resolveAddresses(ipam, EXPOSE_OWNER, parseAddressRequests(requests)),
      giveBack: (cidrs) => { for (const c of cidrs) ipam.release(EXPOSE_OWNER, c); },
    },
  }, { bridge: dataPlane.bridge, datadir: config.datadir });
  // A firewall reload or a flushed bridge would silently cut containers off the outside: put it back.
  const exposeRecheck = setInterval(() => {
    exposer.recheck().catch((err: unknown) => logger.warn('cannot re-apply the host exposure', { error: errorMessage(err) }));
  }, EXPOSE_RECHECK_MS);
  exposeRecheck.unref();
  // end weave expose / hide
  // Port security: each container port may speak only for its own MAC and addresses (--no-port-security: off).
  // Changed after every attach and detach of any kind, before the attach is reported done, and before a new
  // port announces its MAC (onPortsChanging: the port of an attach under way is in ports()).
  const guardLogger = logger.child({ component: 'port-security' });
  const portGuard = config.portSecurity === false ? null : new PortGuard({
    runner, clock, logger: guardLogger, nft: nftApplier(runner, clock, guardLogger),
    ports: () => [...containers.ports(), ...cni.ports(), ...(dockerPlugin?.ports() ?? [])],
  });
  const guardPorts = (): Promise<void> => portGuard?.sync() ?? Promise.resolve();
  containers.addListener({ onAttached: guardPorts, onDetached: guardPorts, onPortsChanging: guardPorts });
  // CNI: the same bridge and routes as weave attach; addresses keyed on the runtime's container id.
  const cni = buildCniEndpoint({
    runner, logger, ipam, dns, datadir: config.datadir, bridge: dataPlane.bridge, mtu: dataPlane.mtu, domain: config.dns.domain,
    overlayRoutes: [ipamConfig.range.toString(), ...(ipamConfig.rangeV6 !== null ? [ipamConfig.rangeV6.toString()] : []), LINK_LOCAL_ROUTE],
  });
  cni.addListener({ onAttached: guardPorts, onDetached: guardPorts, onPortsChanging: guardPorts });
  // The local API: the router's own endpoints, then each part's, in the order GET /report lists them.
  // Status carries the daemon's own health too: ignored state files, restarts by the supervisor (cli/daemon-health.ts).
  const supervisor = supervisorInfoFromEnv(process.env);
  const dockerPlugin = config.dockerPlugin === false ? null : new DockerPluginRuntime({
    runner, logger, ipam, ipamConfig, dns, docker: new DockerClient(logger, { socketPath: dockerSocket }), dockerSocket,
    datadir: config.datadir, bridge: dataPlane.bridge, mtu: dataPlane.mtu, graceMs: releaseGraceMs,
    overlayRoutes: [ipamConfig.range.toString(), LINK_LOCAL_ROUTE], onEndpointsChanged: guardPorts,
  });
  const control = withPluginHealth(withDaemonHealth(router, () => ({ problems: stateFiles.list(), supervisor, portSecurity: portGuard?.status() ?? null })), dockerPlugin);
  const api = new HttpApi({ control, logger }, { socketPath: config.apiSocket, gid: apiGid });
  api.mount(containerApi(containers));
  api.mount(dnsApi(dns));
  api.mount(ipamApi(ipam));
  api.mount(exposeApi(exposer));
  api.mount(cniApi(cni));
  // weave reset: parts that made something on the host register a hook (hostReset.addHook); the bridge goes at stop.
  const hostReset = new HostReset(runner, logger.child({ component: 'reset' }), dataPlane.bridge);
  api.mount(hostResetApi(hostReset));
  hostReset.addHook('fast path', () => dataPlane.resetFastdp());
  hostReset.addHook('port security', () => removePortSecurity(runner));
  containers.addEndpointSource({ list: () => cni.attached() });
  if (dockerPlugin !== null) {
    containers.addEndpointSource({ list: () => dockerPlugin.attached() });
    hostReset.addHook('docker-plugin', () => dockerPlugin.reset());
  }
  const statusServer = new StatusServer({ status: () => control.status(), renderText: renderStatus, logger }, { address: config.statusAddress });

  let shuttingDown = false;
  const shutdown = async (why: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info('router stopping', { reason: why });
    clearInterval(exposeRecheck);
    ipam.shutdown();
    portGuard?.close();
    router.shutdown();
    pinSaver.flush();
    farKeys?.close();
    await containers.close();
    await dockerPlugin?.close();
    await dns.close();
    forwarding.close();
    await dataPlane.close();
    await hostReset.onStop();
    stateFiles.close();
    await Promise.allSettled([api.close(), statusServer.close()]);
    try { fs.unlinkSync(pidFile); } catch { /* already gone */ }
  };

  try {
    await router.start(initialTargets);
    await dns.start();
    const restored = await containers.restore();
    if (restored.length > 0) logger.info('containers restored', { count: restored.length });
    const cniRestored = await cni.restore();
    if (cniRestored.length > 0) logger.info('CNI attachments restored', { count: cniRestored.length });
    // The plugin's socket answers from here on; its record's running containers are listed for DNS with the rest.
    const pluginRestored = dockerPlugin === null ? [] : await dockerPlugin.start();
    dns.sync([...containers.list(), ...cniRestored.map(cniDnsView), ...pluginRestored.map(pluginDnsView)]);
    // The previous run's table guarded the ports until now; this one is built from what was restored.
    await (portGuard?.start() ?? removePortSecurity(runner));
    // weave expose: re-apply what expose.json records; a failure leaves the router running without it.
    await exposer.restore().catch((err: unknown) => logger.error('cannot restore the exposed addresses', { error: errorMessage(err) }));
    // Docker events: restarts re-attached, deaths and removals released; labelled containers attached (--no-auto-attach: off).
    containers.watch({ autoAttach: config.autoAttach !== false });
    saveTargets(config.datadir, router.status().targets.filter((t) => t.direct).map((t) => t.address));
    await api.listen();
    await statusServer.listen();
  } catch (err) {
    await shutdown('startup failed');
    throw err instanceof RouterError ? err : new RouterError('io', errorMessage(err), { cause: err });
  }
  logger.info('ready', { api: config.apiSocket, status: config.statusAddress, datadir: config.datadir });
  // Under the supervisor: from now on a crash is restarted, not reported to weave launch. The
  // channel is closed once the message is out, so it never keeps this process alive.
  if (process.send !== undefined) process.send(READY_MESSAGE, () => process.disconnect?.());

  await new Promise<void>((resolve) => {
    const onSignal = (sig: string): void => { void shutdown(sig).then(resolve); };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    void router.whenStopRequested().then(() => shutdown('weave stop')).then(resolve);
  });
}
