// One host of a simulated network: a namespace with an underlay address and a
// weave data directory. It runs commands inside its namespace (`exec`,
// `spawn`) and the `weave` CLI with its own datadir and the network's password.
// The network that owns it (sim-network.ts) tracks what it spawns.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RouterStatus } from '../router/mesh/status';
import { apiSocketFor } from '../cli/api-socket';
import { run, type BackgroundProcess, type ExecOptions, type ExecResult, type SpawnOptions } from './command';
import { pidsIn } from './netns';

export interface WeaveOptions extends ExecOptions {
  /** Overrides the network's password for this call; null runs without one. */
  password?: string | null;
}

/** What a host needs from the network that owns it. */
export interface HostNetwork {
  /** Path of dist/cli/weave.js. */
  readonly weaveCli: string;
  readonly password: string | null;
  readonly weaveEnv: Record<string, string | undefined>;
  /** False: the daemon verbs get --no-docker-plugin (sim-network.ts says why). */
  readonly dockerPlugin: boolean;
  /** Starts a tracked background process in namespace `ns`. */
  spawnIn(ns: string, cmd: string[], opts: SpawnOptions): BackgroundProcess;
}

export class SimHost {
  constructor(
    private readonly net: HostNetwork,
    /** Short name, e.g. "h1". */
    readonly name: string,
    /** Network namespace name (prefix + name). */
    readonly ns: string,
    /** Underlay IPv4 address on eth0. */
    readonly address: string,
    /** This host's weave data directory (WEAVE_DATADIR). */
    readonly datadir: string,
  ) {}

  /** The API socket of this host's router: derived from its datadir, so every host has its own. */
  get apiSocket(): string {
    return apiSocketFor(this.datadir);
  }

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
    return this.exec(['node', this.net.weaveCli, ...this.withPluginChoice(args)], { ...opts, env: this.weaveEnv(opts) });
  }

  private withPluginChoice(args: string[]): string[] {
    const [verb, ...rest] = args;
    const daemonVerb = verb === 'launch' || verb === 'router';
    if (this.net.dockerPlugin || !daemonVerb || rest.includes('--no-docker-plugin')) return args;
    return [verb, '--no-docker-plugin', ...rest];
  }

  /** The environment weave(args) uses; handy for spawning `weave router` in the foreground. */
  weaveEnv(opts: { password?: string | null; env?: Record<string, string | undefined> } = {}): Record<string, string | undefined> {
    const password = opts.password !== undefined ? opts.password : this.net.password;
    return {
      // The API socket follows WEAVE_DATADIR (cli/api-socket.ts); a
      // WEAVE_API_SOCKET from the caller's shell would point every host elsewhere.
      WEAVE_API_SOCKET: undefined,
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
