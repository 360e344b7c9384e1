// Simulated multi-host networks in Linux network namespaces, shared by the
// end-to-end tests, the demo and the benchmarks. It owns: the namespaces it
// creates (all named with one random per-run prefix), the underlay between
// them (a "switch" namespace with a bridge, one veth per host), the firewall
// table `wvsim` it writes inside host namespaces, a temporary directory of
// per-host data directories, and every process running in those namespaces.
//
// It must never touch the root namespace's links, addresses or firewall, and
// never send traffic anywhere but loopback or its own namespaces: every link
// is created directly inside a namespace of ours, and every host command runs
// through `ip netns exec`. Commands are argument vectors, never shell strings,
// so nothing a caller passes is interpreted by a shell.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { constants as osConstants } from 'node:os';
import type { RouterStatus } from '../router/mesh/status';

export interface ExecOptions {
  /** Merged over process.env; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
  /** Killed with SIGKILL after this long; default 60 s. */
  timeoutMs?: number;
  /** Written to stdin, which is then closed. Without it stdin is empty. */
  input?: string;
  /** Throw (with the output in the message) when the exit code is not 0. */
  check?: boolean;
}

export interface ExecResult {
  /** Exit code, or 128 + signal number when killed, as a shell reports it. */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface WeaveOptions extends ExecOptions {
  /** Overrides the network's password for this call; null runs without one. */
  password?: string | null;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
}

export type BlockKind = 'all' | 'udp' | 'tcp';

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
  /** Where the repository lives (for dist/cli/weave.js); default two levels above this compiled file. */
  repoRoot?: string;
  /** Receives one line per namespace/firewall change, for debugging. */
  log?: (line: string) => void;
}

const DEFAULT_SUBNET = '10.250.0.0/24';
const DEFAULT_EXEC_TIMEOUT_MS = 60_000;
// A CLI that starts a detached daemon may leave it holding our stdout pipe; after
// the CLI itself exits we give its output this long to drain, then stop reading.
const PIPE_DRAIN_AFTER_EXIT_MS = 200;
// How long processes get between SIGTERM and SIGKILL when a network is destroyed:
// enough for a router to close its sockets, short enough to keep tests quick.
const KILL_GRACE_MS = 3_000;
const HOST_NAME_RE = /^[a-z][a-z0-9]{0,11}$/;
const PREFIX_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$/;
const FIREWALL_TABLE = 'wvsim';
const BRIDGE = 'br0';

// ---------------------------------------------------------------------------
// Processes

function mergedEnv(extra: Record<string, string | undefined> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (extra) {
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
  }
  return env;
}

function signalNumber(signal: NodeJS.Signals | null): number {
  if (signal === null) return 0;
  const n = (osConstants.signals as Record<string, number | undefined>)[signal];
  return n ?? 0;
}

function describeCommand(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** Runs argv[0] with the remaining arguments, no shell. Never rejects unless `check` is set. */
export function run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('run: empty command'));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise<ExecResult>((resolvePromise, reject) => {
    const child = spawn(file, args, {
      env: mergedEnv(opts.env),
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);

    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const result: ExecResult = {
        code: code ?? 128 + signalNumber(signal),
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      };
      if (opts.check && result.code !== 0) {
        reject(new Error(`command failed (exit ${result.code}${timedOut ? ', timed out' : ''}): ${describeCommand(argv)}\n` +
          `stdout: ${result.stdout.trim()}\nstderr: ${result.stderr.trim()}`));
      } else {
        resolvePromise(result);
      }
    };
    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`cannot run ${describeCommand(argv)}: ${e.message}`));
    });
    // 'close' waits for the pipes, which a detached grandchild may hold open for
    // its whole life; so settle on 'exit' after a short drain instead.
    child.on('close', (code, signal) => finish(code, signal));
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        if (settled) return;
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(code, signal);
      }, PIPE_DRAIN_AFTER_EXIT_MS).unref();
    });
  });
}

function runSync(argv: string[]): { code: number; stdout: string } {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runSync: empty command');
  try {
    const stdout = execFileSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).toString('utf8');
    return { code: 0, stdout };
  } catch (e) {
    const status = (e as { status?: number | null }).status;
    return { code: typeof status === 'number' ? status : 1, stdout: '' };
  }
}

/** A process left running in a namespace (a listener, a foreground router). */
export class BackgroundProcess {
  private out = '';
  private err = '';
  readonly exited: Promise<ExecResult>;

  constructor(readonly argv: string[], readonly child: ChildProcess) {
    child.stdout?.on('data', (b: Buffer) => { this.out += b.toString('utf8'); });
    child.stderr?.on('data', (b: Buffer) => { this.err += b.toString('utf8'); });
    this.exited = new Promise<ExecResult>((resolvePromise) => {
      child.on('error', (e) => {
        this.err += `spawn failed: ${e.message}\n`;
        resolvePromise({ code: 127, signal: null, stdout: this.out, stderr: this.err, timedOut: false });
      });
      child.on('close', (code, signal) => resolvePromise({
        code: code ?? 128 + signalNumber(signal), signal, stdout: this.out, stderr: this.err, timedOut: false,
      }));
    });
  }

  get pid(): number | undefined { return this.child.pid; }
  get stdout(): string { return this.out; }
  get stderr(): string { return this.err; }
  get running(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }

  /** Sends `signal` and waits for the exit; SIGKILL if it outlives `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = KILL_GRACE_MS): Promise<ExecResult> {
    if (this.running) this.child.kill(signal);
    const timer = setTimeout(() => { if (this.running) this.child.kill('SIGKILL'); }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

// ---------------------------------------------------------------------------
// Waiting

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface WaitForOptions {
  /** Said in the timeout error: "timed out after N ms waiting for <what>". */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Extra context for the timeout error (e.g. the status that did not match). */
  detail?: () => string | Promise<string>;
}

/**
 * Polls `predicate` until it returns something truthy, and returns that. A
 * predicate that throws counts as "not yet"; its last error is reported if the
 * wait times out, together with `detail()`.
 */
export async function waitFor<T>(
  predicate: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  opts: WaitForOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 250;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value;
      lastError = null;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  let message = `timed out after ${timeoutMs} ms waiting for ${opts.what}`;
  if (lastError !== null) message += `\nlast error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
  if (opts.detail) {
    try {
      message += `\n${await opts.detail()}`;
    } catch (e) {
      message += `\n(detail unavailable: ${e instanceof Error ? e.message : String(e)})`;
    }
  }
  throw new Error(message);
}

// ---------------------------------------------------------------------------
// Addresses

function parseIpv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${JSON.stringify(text)}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`not an IPv4 address: ${JSON.stringify(text)}`);
    n = n * 256 + Number(p);
  }
  return n;
}

function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** The first `count` host addresses of `cidr`, plus its prefix length. */
function hostAddresses(cidr: string, count: number): { addresses: string[]; prefixLen: number } {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || m[1] === undefined || m[2] === undefined) throw new Error(`subnet must look like 10.250.0.0/24, got ${JSON.stringify(cidr)}`);
  const prefixLen = Number(m[2]);
  if (prefixLen < 8 || prefixLen > 30) throw new Error(`subnet prefix length must be 8..30, got ${prefixLen}`);
  const size = 2 ** (32 - prefixLen);
  const base = parseIpv4(m[1]) - (parseIpv4(m[1]) % size);
  if (count > size - 2) throw new Error(`subnet ${cidr} has room for ${size - 2} hosts, asked for ${count}`);
  const addresses: string[] = [];
  for (let i = 0; i < count; i++) addresses.push(formatIpv4(base + 1 + i));
  return { addresses, prefixLen };
}

// ---------------------------------------------------------------------------
// Namespaces (the low-level steps, shared by async and sync teardown)

function listNamespaces(): string[] {
  const r = runSync(['ip', 'netns', 'list']);
  // Lines look like "name (id: 3)" or just "name".
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n !== '');
}

function pidsIn(ns: string): number[] {
  const r = runSync(['ip', 'netns', 'pids', ns]);
  return r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

function killAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: that is what we want.
    }
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

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

function randomPrefix(): string {
  const taken = listNamespaces();
  for (let i = 0; i < 100; i++) {
    const prefix = `wvt${randomBytes(2).toString('hex')}-`;
    if (!taken.some((n) => n.startsWith(prefix))) return prefix;
  }
  throw new Error('could not find an unused namespace prefix');
}

// ---------------------------------------------------------------------------
// Hosts

export class SimHost {
  constructor(
    private readonly net: SimNetwork,
    /** Short name, e.g. "h1". */
    readonly name: string,
    /** Network namespace name (prefix + name). */
    readonly ns: string,
    /** Underlay IPv4 address on eth0. */
    readonly address: string,
    /** This host's weave data directory (WEAVE_DATADIR). */
    readonly datadir: string,
  ) {}

  /** Runs a command inside this host's namespace. */
  exec(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.ns, ...cmd], opts);
  }

  /** Starts a long-running command in this namespace; destroy() kills it if still running. */
  spawn(cmd: string[], opts: SpawnOptions = {}): BackgroundProcess {
    return this.net.spawnIn(this.ns, cmd, opts);
  }

  /** Runs `node dist/cli/weave.js <args>` here, with this host's datadir and the network's password. */
  weave(args: string[], opts: WeaveOptions = {}): Promise<ExecResult> {
    return this.exec(['node', this.net.weaveCli, ...args], { ...opts, env: this.weaveEnv(opts) });
  }

  /** The environment weave(args) uses; handy for spawning `weave router` in the foreground. */
  weaveEnv(opts: { password?: string | null; env?: Record<string, string | undefined> } = {}): Record<string, string | undefined> {
    const password = opts.password !== undefined ? opts.password : this.net.password;
    return {
      // Each namespace has its own loopback, so the default API address is right;
      // a WEAVE_API from the caller's shell would point every host elsewhere.
      WEAVE_API: undefined,
      ...this.net.weaveEnv,
      WEAVE_DATADIR: this.datadir,
      // Always set or cleared explicitly, so a password in the caller's shell never leaks into a test.
      WEAVE_PASSWORD: password ?? undefined,
      ...opts.env,
    };
  }

  /** `weave status --json`, parsed; throws with the command's output when it fails. */
  async weaveStatus(opts: WeaveOptions = {}): Promise<RouterStatus> {
    const r = await this.weave(['status', '--json'], { timeoutMs: 15_000, ...opts });
    if (r.code !== 0) {
      throw new Error(`weave status --json on ${this.name} exited ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).slice(0, 2000)}`);
    }
    try {
      return JSON.parse(r.stdout) as RouterStatus;
    } catch (e) {
      throw new Error(`weave status --json on ${this.name} printed something that is not JSON (${e instanceof Error ? e.message : String(e)}): ${r.stdout.slice(0, 500)}`);
    }
  }

  /** The last `lines` lines of a file in the datadir (e.g. weave.log), or a note why there are none. */
  readLog(file = 'weave.log', lines = 40): string {
    try {
      const text = readFileSync(join(this.datadir, file), 'utf8');
      return text.split('\n').filter((l) => l.trim() !== '').slice(-lines).join('\n') || `(${file} is empty)`;
    } catch (e) {
      return `(cannot read ${file}: ${e instanceof Error ? e.message : String(e)})`;
    }
  }

  /** Process ids currently in this namespace. */
  pids(): number[] {
    return pidsIn(this.ns);
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
  private readonly background = new Set<BackgroundProcess>();
  // Firewall state per host, rendered whole into table `wvsim` on every change.
  private readonly blocks = new Map<string, Map<string, Set<BlockKind>>>();
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
    this.password = opts.password ?? null;
    this.weaveEnv = opts.weaveEnv ?? {};
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
    const prefix = opts.prefix ?? randomPrefix();
    if (listNamespaces().some((n) => n.startsWith(prefix))) {
      throw new Error(`namespaces with prefix ${prefix} already exist; pick a prefix unique to this run`);
    }
    const rootDir = mkdtempSync(join(tmpdir(), `weave-sim-${prefix}`));
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
    this.blockSet(ha, hb).add(what);
    this.blockSet(hb, ha).add(what);
    await this.renderFirewall(ha);
    await this.renderFirewall(hb);
  }

  /** Removes the blocks between a and b (only `what`, or all kinds when omitted). */
  async unblock(a: string, b: string, what?: BlockKind): Promise<void> {
    const ha = this.host(a);
    const hb = this.host(b);
    for (const [x, y] of [[ha, hb], [hb, ha]] as const) {
      const set = this.blockSet(x, y);
      if (what === undefined) set.clear();
      else set.delete(what);
    }
    await this.renderFirewall(ha);
    await this.renderFirewall(hb);
  }

  private blockSet(from: SimHost, to: SimHost): Set<BlockKind> {
    let perHost = this.blocks.get(from.name);
    if (!perHost) {
      perHost = new Map();
      this.blocks.set(from.name, perHost);
    }
    let set = perHost.get(to.name);
    if (!set) {
      set = new Set();
      perHost.set(to.name, set);
    }
    return set;
  }

  // The whole table is replaced in one `nft -f` transaction: the leading
  // "table ...; delete table ..." pair makes the delete valid whether or not the
  // table exists, so a host never sees a half-written rule set.
  private async renderFirewall(h: SimHost): Promise<void> {
    const inRules: string[] = [];
    const outRules: string[] = [];
    for (const [peerName, kinds] of this.blocks.get(h.name) ?? new Map<string, Set<BlockKind>>()) {
      const peer = this.host(peerName);
      for (const kind of [...kinds].sort()) {
        const proto = kind === 'all' ? '' : ` meta l4proto ${kind}`;
        inRules.push(`    ip saddr ${peer.address}${proto} drop`);
        outRules.push(`    ip daddr ${peer.address}${proto} drop`);
      }
    }
    let script = `table inet ${FIREWALL_TABLE}\ndelete table inet ${FIREWALL_TABLE}\n`;
    if (inRules.length > 0) {
      script += `table inet ${FIREWALL_TABLE} {\n` +
        `  chain input {\n    type filter hook input priority 0; policy accept;\n${inRules.join('\n')}\n  }\n` +
        `  chain output {\n    type filter hook output priority 0; policy accept;\n${outRules.join('\n')}\n  }\n}\n`;
    }
    this.log(`nft in ${h.ns}: ${inRules.length} input and ${outRules.length} output rules`);
    await h.exec(['nft', '-f', '-'], { input: script, check: true, timeoutMs: 10_000 });
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
      if (runSync(['ip', 'netns', 'del', ns]).code !== 0) problems.push(`could not delete namespace ${ns}`);
    }
    const leftPids = namespaces.flatMap((ns) => (existsSync(`/var/run/netns/${ns}`) ? pidsIn(ns) : []));
    if (leftPids.length > 0) problems.push(`processes still running: ${leftPids.join(' ')}`);
    rmSync(this.rootDir, { recursive: true, force: true });
    liveNetworks.delete(this);
    const left = this.namespaces();
    if (left.length > 0) problems.push(`namespaces left: ${left.join(' ')}`);
    if (problems.length > 0) throw new Error(`destroying network ${this.prefix}: ${problems.join('; ')}`);
  }
}
