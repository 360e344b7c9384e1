// Simulated multi-host networks in Linux network namespaces, shared by the
// end-to-end tests, the demo and the benchmarks. A SimNetwork owns: the
// namespaces it creates (all named with one random per-run prefix), the
// underlay between them (a "switch" namespace with a bridge, one veth per
// host), its firewall (sim-firewall.ts), a temporary directory of per-host data
// directories, the /etc/netns entries of its namespaces, and every process
// running in those namespaces; it tears all of that down on destroy(), at exit
// or on a signal if a run forgot to, and (sim-owners.ts) at the next create()
// if its run was killed outright.
//
// It must never touch the root namespace's links, addresses or firewall, and
// never send traffic anywhere but loopback or its own namespaces: every link
// is created directly inside a namespace of ours, and every host command runs
// through `ip netns exec`.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { errorMessage } from '../common/errors';
import { formatIp } from '../common/ip';
import { Cidr, IpWithPrefix, parseIpWithPrefix } from '../common/ip-cidr';
import { BackgroundProcess, KILL_GRACE_MS, mergedEnv, run, signalNumber, type SpawnOptions } from './command';
import { deleteNamespace, killAll, listNamespaces, namespaceExists, pidsIn, removeNetnsConfig, unusedPrefix } from './netns';
import { claimNetwork, reapAbandonedNetworks, releaseNetwork } from './sim-owners';
import { SimFirewall, type BlockKind } from './sim-firewall';
import { SimHost } from './sim-host';
import { sleep, sleepSync } from './wait';

export interface SimNetworkOptions {
  /** A count (hosts h1..hN) or explicit names (lowercase, letters and digits, up to 12 chars). */
  hosts: number | string[];
  /** Namespace name prefix; default `wvt<4 random hex>-`. Must be unique to this run. */
  prefix?: string;
  /** Underlay IPv4 subnet; host i (from 0) gets the (i+1)th address. Default 10.250.0.0/24. */
  subnet?: string;
  /** MTU of the underlay links; default the kernel's (1500). */
  mtu?: number;
  /** WEAVE_PASSWORD for every `weave` call unless overridden per call. */
  password?: string | null;
  /** Extra environment for every `weave` call (e.g. WEAVE_TEST_FAST=1). */
  weaveEnv?: Record<string, string | undefined>;
  /**
   * Routers serve the Docker network plugin (default false: `weave launch`
   * and `weave router` get --no-docker-plugin). Its socket,
   * /run/docker/plugins/weave.sock, is one per machine, shared by every
   * simulated host, and the plugin creates a network named weave in whatever
   * engine answers; a test that wants it gives each host a mount namespace
   * of its own (test/e2e/docker-plugin).
   */
  dockerPlugin?: boolean;
  /** Where the repository lives (for dist/cli/weave.js); default two levels above this compiled file. */
  repoRoot?: string;
  /** Receives one line per namespace/firewall change, for debugging. */
  log?: (line: string) => void;
}

const DEFAULT_SUBNET = '10.250.0.0/24';
const HOST_NAME_RE = /^[a-z][a-z0-9]{0,11}$/;
const PREFIX_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$/;
const BRIDGE = 'br0';

// ---------------------------------------------------------------------------
// Underlay addresses

/** The first `count` host addresses of `cidr` (host bits ignored), plus its prefix length. */
function hostAddresses(cidr: string, count: number): { addresses: string[]; prefixLen: number } {
  let subnet: IpWithPrefix;
  try {
    subnet = parseIpWithPrefix(cidr, 4);
  } catch (err) {
    throw new Error(`subnet: ${errorMessage(err)}`);
  }
  const { address, prefixLen } = subnet;
  if (prefixLen < 8 || prefixLen > 30) throw new Error(`subnet prefix length must be 8..30, got ${prefixLen}`);
  const block = Cidr.containing(address, prefixLen);
  const size = Number(block.size);
  if (count > size - 2) throw new Error(`subnet ${cidr} has room for ${size - 2} hosts, asked for ${count}`);
  const addresses: string[] = [];
  for (let i = 0; i < count; i++) addresses.push(formatIp(block.at(1 + i)));
  return { addresses, prefixLen };
}

// ---------------------------------------------------------------------------
// Cleanup of networks a run did not destroy

// Every live network, so signal and exit handlers can tear down what a crashed
// or interrupted run left behind.
const liveNetworks = new Set<SimNetwork>();
let handlersInstalled = false;

function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const net of liveNetworks) {
      process.stderr.write(`netns: network ${net.prefix} was not destroyed; cleaning up at exit\n`);
      net.destroySync();
    }
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const net of liveNetworks) {
        process.stderr.write(`netns: ${signal}: destroying simulated network ${net.prefix}\n`);
        net.destroySync();
      }
      process.exit(128 + signalNumber(signal));
    });
  }
}

// ---------------------------------------------------------------------------
// The network

export class SimNetwork {
  readonly hosts: SimHost[] = [];
  /** The namespace holding the bridge that joins the hosts' eth0 links. */
  readonly switchNs: string;
  readonly weaveCli: string;
  readonly password: string | null;
  readonly weaveEnv: Record<string, string | undefined>;
  readonly dockerPlugin: boolean;
  private readonly background = new Set<BackgroundProcess>();
  private readonly firewall: SimFirewall;
  private destroyed = false;

  private constructor(
    readonly prefix: string,
    /** Temporary directory holding every host's datadir; removed by destroy(). */
    readonly rootDir: string,
    readonly subnet: string,
    private readonly opts: SimNetworkOptions,
  ) {
    this.switchNs = `${prefix}sw`;
    const repoRoot = opts.repoRoot ?? resolve(__dirname, '..', '..');
    this.weaveCli = join(repoRoot, 'dist', 'cli', 'weave.js');
    this.firewall = new SimFirewall((line) => this.log(line));
    this.password = opts.password ?? null;
    this.weaveEnv = opts.weaveEnv ?? {};
    this.dockerPlugin = opts.dockerPlugin ?? false;
  }

  static async create(opts: SimNetworkOptions): Promise<SimNetwork> {
    const names = typeof opts.hosts === 'number'
      ? Array.from({ length: opts.hosts }, (_, i) => `h${i + 1}`)
      : [...opts.hosts];
    if (names.length === 0) throw new Error('a simulated network needs at least one host');
    for (const n of names) {
      // The switch-side link is "v-<name>", and interface names stop at 15 bytes.
      if (!HOST_NAME_RE.test(n)) throw new Error(`host name must be lowercase letters and digits, at most 12, got ${JSON.stringify(n)}`);
    }
    if (new Set(names).size !== names.length) throw new Error(`host names must be distinct: ${names.join(', ')}`);
    if (opts.prefix !== undefined && !PREFIX_RE.test(opts.prefix)) throw new Error(`bad namespace prefix ${JSON.stringify(opts.prefix)}`);
    if (opts.mtu !== undefined && (!Number.isInteger(opts.mtu) || opts.mtu < 576 || opts.mtu > 65535)) {
      throw new Error(`mtu must be an integer from 576 to 65535, got ${opts.mtu}`);
    }
    const subnet = opts.subnet ?? DEFAULT_SUBNET;
    const { addresses, prefixLen } = hostAddresses(subnet, names.length);

    installCleanupHandlers();
    const reaped = reapAbandonedNetworks();
    if (reaped.length > 0) process.stderr.write(`netns: removed networks left by runs that were killed: ${reaped.join(' ')}\n`);
    const prefix = opts.prefix ?? unusedPrefix();
    if (listNamespaces().some((n) => n.startsWith(prefix))) {
      throw new Error(`namespaces with prefix ${prefix} already exist; pick a prefix unique to this run`);
    }
    const rootDir = mkdtempSync(join(tmpdir(), `weave-sim-${prefix}`));
    claimNetwork(prefix, rootDir);
    const net = new SimNetwork(prefix, rootDir, subnet, opts);
    // Registered before the first namespace exists, so a failure half-way is cleaned up too.
    liveNetworks.add(net);
    try {
      await net.build(names, addresses, prefixLen);
    } catch (e) {
      await net.destroy().catch(() => undefined);
      throw e;
    }
    return net;
  }

  private log(line: string): void {
    this.opts.log?.(`netns ${this.prefix}: ${line}`);
  }

  private async ip(args: string[]): Promise<void> {
    this.log(`ip ${args.join(' ')}`);
    await run(['ip', ...args], { check: true, timeoutMs: 10_000 });
  }

  private async build(names: string[], addresses: string[], prefixLen: number): Promise<void> {
    const mtu = this.opts.mtu === undefined ? [] : ['mtu', String(this.opts.mtu)];
    const sw = this.switchNs;
    await this.ip(['netns', 'add', sw]);
    await this.ip(['-n', sw, 'link', 'set', 'lo', 'up']);
    // STP stays off (the default), so ports forward at once instead of after a listening delay.
    await this.ip(['-n', sw, 'link', 'add', BRIDGE, ...mtu, 'type', 'bridge']);
    await this.ip(['-n', sw, 'link', 'set', BRIDGE, 'up']);
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const address = addresses[i] as string;
      const ns = `${this.prefix}${name}`;
      const datadir = join(this.rootDir, name);
      mkdirSync(datadir, { recursive: true });
      await this.ip(['netns', 'add', ns]);
      this.hosts.push(new SimHost(this, name, ns, address, datadir));
      await this.ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      // Created inside the switch namespace with its peer end placed straight into
      // the host namespace, so no link ever appears in the root namespace.
      await this.ip(['-n', sw, 'link', 'add', `v-${name}`, ...mtu, 'type', 'veth', 'peer', 'name', 'eth0', ...mtu, 'netns', ns]);
      await this.ip(['-n', sw, 'link', 'set', `v-${name}`, 'master', BRIDGE, 'up']);
      await this.ip(['-n', ns, 'addr', 'add', `${address}/${prefixLen}`, 'dev', 'eth0']);
      await this.ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    }
  }

  host(name: string): SimHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${JSON.stringify(name)} in network ${this.prefix} (hosts: ${this.hosts.map((x) => x.name).join(', ')})`);
    return h;
  }

  /** Namespaces with this network's prefix that exist right now (hosts, switch, and any a test added). */
  namespaces(): string[] {
    return listNamespaces().filter((n) => n.startsWith(this.prefix));
  }

  /** Used by SimHost.spawn; tracked so destroy() can stop it. */
  spawnIn(ns: string, cmd: string[], opts: SpawnOptions): BackgroundProcess {
    if (this.destroyed) throw new Error(`network ${this.prefix} is destroyed`);
    const argv = ['ip', 'netns', 'exec', ns, ...cmd];
    const child = spawn('ip', argv.slice(1), { env: mergedEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new BackgroundProcess(argv, child);
    this.background.add(proc);
    void proc.exited.then(() => this.background.delete(proc));
    return proc;
  }

  // -------------------------------------------------------------------------
  // Firewall

  /**
   * Drops traffic between the underlay addresses of hosts a and b, in both
   * directions, with nftables rules in both hosts' namespaces. 'udp' and 'tcp'
   * drop only that protocol (e.g. UDP blocked: the sleeve fails, TCP works).
   */
  async blockBetween(a: string, b: string, what: BlockKind): Promise<void> {
    const ha = this.host(a);
    const hb = this.host(b);
    if (ha === hb) throw new Error(`blockBetween: ${a} and ${b} are the same host`);
    await this.firewall.block(ha, hb, what);
  }

  /** Removes the blocks between a and b (only `what`, or all kinds when omitted). */
  async unblock(a: string, b: string, what?: BlockKind): Promise<void> {
    await this.firewall.unblock(this.host(a), this.host(b), what);
  }

  // -------------------------------------------------------------------------
  // Teardown

  /**
   * Stops every process in this network's namespaces (SIGTERM, then SIGKILL),
   * deletes the namespaces and the data directories. Throws, after doing all it
   * can, if anything is left behind.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.log('destroying');
    await Promise.all([...this.background].map((p) => p.stop('SIGTERM', KILL_GRACE_MS)));
    const namespaces = this.namespaces();
    for (const ns of namespaces) killAll(pidsIn(ns), 'SIGTERM');
    const deadline = Date.now() + KILL_GRACE_MS;
    while (Date.now() < deadline && namespaces.some((ns) => pidsIn(ns).length > 0)) await sleep(50);
    this.finishTeardown(namespaces);
  }

  /** The same as destroy(), synchronously: for exit and signal handlers. */
  destroySync(): void {
    if (this.destroyed && !liveNetworks.has(this)) return;
    this.destroyed = true;
    for (const p of this.background) if (p.running) p.child.kill('SIGTERM');
    const namespaces = this.namespaces();
    for (const ns of namespaces) killAll(pidsIn(ns), 'SIGTERM');
    const deadline = Date.now() + KILL_GRACE_MS;
    while (Date.now() < deadline && namespaces.some((ns) => pidsIn(ns).length > 0)) sleepSync(50);
    try {
      this.finishTeardown(namespaces);
    } catch (e) {
      process.stderr.write(`netns: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }

  private finishTeardown(namespaces: string[]): void {
    const problems: string[] = [];
    for (const p of this.background) if (p.running) p.child.kill('SIGKILL');
    for (const ns of namespaces) {
      const stubborn = pidsIn(ns);
      if (stubborn.length > 0) {
        killAll(stubborn, 'SIGKILL');
        sleepSync(100);
      }
      // Deleting the name does not kill what runs inside, hence the kills above.
      if (!deleteNamespace(ns)) problems.push(`could not delete namespace ${ns}`);
    }
    const leftPids = namespaces.flatMap((ns) => (namespaceExists(ns) ? pidsIn(ns) : []));
    if (leftPids.length > 0) problems.push(`processes still running: ${leftPids.join(' ')}`);
    removeNetnsConfig(this.prefix);
    rmSync(this.rootDir, { recursive: true, force: true });
    // A router killed above leaves its API socket in /run/weave (cli/api-socket.ts); a clean stop removes it itself.
    for (const h of this.hosts) rmSync(h.apiSocket, { force: true });
    liveNetworks.delete(this);
    releaseNetwork(this.prefix);
    const left = this.namespaces();
    if (left.length > 0) problems.push(`namespaces left: ${left.join(' ')}`);
    if (problems.length > 0) throw new Error(`destroying network ${this.prefix}: ${problems.join('; ')}`);
  }
}
