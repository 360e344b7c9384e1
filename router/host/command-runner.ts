// The one seam through which host plumbing (bridge, veth, addresses, routes,
// nftables, nsenter) runs external commands. It owns: the CommandRunner
// interface, the real implementation over execFile (argument vectors, never a
// shell, so nothing a user typed is ever interpreted), a wrapper that runs every
// command inside another network namespace (tests, simulated hosts), and a
// scripted fake that records commands for unit tests.
//
// It must never build a shell string, and never swallow a failure silently:
// a failing command rejects with a RouterError naming the command and its
// stderr, unless the caller said `allowFail` and inspects the result itself.

import { execFile } from 'node:child_process';
import { RouterError } from '../mesh/errors';

export interface RunOptions {
  /**
   * Written to the command's stdin. Node hands the child a socket, so tools
   * that open /dev/stdin by name (`nft -f -`) cannot read it; pass such input
   * as an argument instead (`nft -j JSON`).
   */
  input?: string;
  /** Resolve with the non-zero exit code instead of rejecting. */
  allowFail?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  run(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
}

/**
 * Runs a removal whose failure means there was nothing to remove; never
 * throws. allowFail still rejects when the program is missing (a host
 * without nft): nothing of ours can be there then.
 */
export async function runQuietly(runner: CommandRunner, cmd: string, args: string[]): Promise<void> {
  try {
    await runner.run(cmd, args, { allowFail: true });
  } catch { /* nothing to remove */ }
}

/** `ip link add ...` as a person would type it, for error messages and logs. */
export function describeCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./*-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** The error a failed command becomes: what ran, the exit code, and what it said. */
export function commandFailed(cmd: string, args: readonly string[], result: RunResult): RouterError {
  const said = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(0, 5).join('; ');
  return new RouterError('io', `${describeCommand(cmd, args)} failed (exit ${result.code})${said !== '' ? `: ${said}` : ''}`);
}

/** Host plumbing commands answer in well under a second; this only stops a wedged one. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** `nft -j list ruleset` on a big firewall can be a few MB. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface ExecRunnerOptions {
  timeoutMs?: number;
  /** Extra environment; the rest is inherited. */
  env?: NodeJS.ProcessEnv;
}

/** Runs commands on this machine with execFile. */
export class ExecCommandRunner implements CommandRunner {
  private readonly timeoutMs: number;

  constructor(private readonly opts: ExecRunnerOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return new Promise<RunResult>((resolve, reject) => {
      const child = execFile(
        cmd,
        args,
        {
          encoding: 'utf8',
          timeout: this.timeoutMs,
          maxBuffer: MAX_OUTPUT_BYTES,
          env: this.opts.env ? { ...process.env, ...this.opts.env } : process.env,
        },
        (err, stdout, stderr) => {
          if (err === null) {
            resolve({ code: 0, stdout, stderr });
            return;
          }
          const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string | null };
          if (typeof e.code === 'string') {
            // The command could not be started at all (ENOENT: not installed).
            const hint = e.code === 'ENOENT' ? `${cmd} is not installed (or not on PATH)` : e.message;
            reject(new RouterError('io', `cannot run ${describeCommand(cmd, args)}: ${hint}`, { cause: err }));
            return;
          }
          const code = typeof e.code === 'number' ? e.code : 1;
          const result: RunResult = {
            code,
            stdout,
            stderr: e.killed === true ? `${stderr}\n(killed after ${this.timeoutMs} ms)`.trim() : stderr,
          };
          if (opts.allowFail === true) resolve(result);
          else reject(commandFailed(cmd, args, result));
        },
      );
      if (opts.input !== undefined) child.stdin?.end(opts.input);
      else child.stdin?.end();
    });
  }
}

/**
 * Runs every command inside the named network namespace (`ip netns exec NAME
 * cmd...`), so a daemon-side component can act "as" a simulated host. Commands
 * that enter another namespace themselves (nsenter --net=...) still work: the
 * path they name is absolute.
 */
export class NetnsCommandRunner implements CommandRunner {
  constructor(
    private readonly inner: CommandRunner,
    readonly netns: string,
  ) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(netns)) {
      throw RouterError.config(`network namespace name must be letters, digits, '_', '.', '-', got ${JSON.stringify(netns)}`);
    }
  }

  async run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const full = ['netns', 'exec', this.netns, cmd, ...args];
    const result = await this.inner.run('ip', full, { ...opts, allowFail: true });
    if (result.code !== 0 && opts.allowFail !== true) throw commandFailed(cmd, args, result);
    return result;
  }
}

// ---------------------------------------------------------------------------
// Test double

export interface RecordedCommand {
  cmd: string;
  args: string[];
  input?: string;
}

/** Decides what a scripted command returns; return undefined for "succeed silently". */
export type FakeResponder = (cmd: string, args: string[]) => Partial<RunResult> | undefined;

/**
 * Records every command and answers from a responder, so logic that drives
 * `ip`/`nft` can be tested without root. `line(i)` gives a command as one
 * string for compact expectations. An `ip -batch -` (directly or through
 * nsenter) is played as iproute2 plays it: each stdin line is recorded and
 * answered as its own `ip` command, a failure is reported as the message and
 * "Command failed -:N", and the batch stops there unless -force.
 */
export class FakeCommandRunner implements CommandRunner {
  readonly commands: RecordedCommand[] = [];

  constructor(private responder: FakeResponder = () => undefined) {}

  setResponder(responder: FakeResponder): void {
    this.responder = responder;
  }

  async run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const ipAt = cmd === 'ip' ? -1 : cmd === 'nsenter' ? args.indexOf('ip') : -2;
    const ipArgs = ipAt === -2 ? [] : args.slice(ipAt + 1);
    if (opts.input !== undefined && ipArgs.join(' ').replace(/^-force /, '') === '-batch -') {
      return this.runBatch(cmd, args.slice(0, ipAt + 1), ipArgs[0] === '-force', opts.input, opts.allowFail === true);
    }
    this.commands.push(opts.input === undefined ? { cmd, args: [...args] } : { cmd, args: [...args], input: opts.input });
    const r = this.responder(cmd, args) ?? {};
    const result: RunResult = { code: r.code ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    if (result.code !== 0 && opts.allowFail !== true) throw commandFailed(cmd, args, result);
    return result;
  }

  private async runBatch(cmd: string, prefix: string[], force: boolean, input: string, allowFail: boolean): Promise<RunResult> {
    let stderr = '';
    let stdout = '';
    const lines = input.split('\n').filter((l) => l.trim() !== '');
    for (const [i, line] of lines.entries()) {
      const r = await this.run(cmd, [...prefix, ...line.trim().split(/\s+/)], { allowFail: true });
      stdout += r.stdout;
      if (r.code === 0) continue;
      stderr += `${r.stderr.trim()}\nCommand failed -:${i + 1}\n`;
      if (!force) break;
    }
    const result: RunResult = { code: stderr === '' ? 0 : 1, stdout, stderr };
    if (result.code !== 0 && !allowFail) throw commandFailed(cmd, [...prefix, '-batch', '-'], result);
    return result;
  }

  /** Every recorded command as `cmd arg arg...`. */
  lines(): string[] {
    return this.commands.map((c) => [c.cmd, ...c.args].join(' '));
  }

  clear(): void {
    this.commands.length = 0;
  }
}
