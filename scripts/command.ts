// Running commands for the simulated networks, the demo and the benchmarks:
// one-shot commands whose exit code and output we collect (`run`), and
// long-running processes we keep a handle on (`BackgroundProcess`). Commands
// are argument vectors, never shell strings, so nothing a caller passes is
// interpreted by a shell.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';

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

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
}

const DEFAULT_EXEC_TIMEOUT_MS = 60_000;
// A CLI that starts a detached daemon may leave it holding our stdout pipe; after
// the CLI itself exits we give its output this long to drain, then stop reading.
const PIPE_DRAIN_AFTER_EXIT_MS = 200;
/**
 * How long processes get between SIGTERM and SIGKILL when they are stopped:
 * enough for a router to close its sockets, short enough to keep tests quick.
 */
export const KILL_GRACE_MS = 3_000;

/** process.env with `extra` merged over it; a value of undefined removes the variable. */
export function mergedEnv(extra: Record<string, string | undefined> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (extra) {
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
  }
  return env;
}

/** The number of a signal name (SIGTERM -> 15), 0 for none or unknown. */
export function signalNumber(signal: NodeJS.Signals | null): number {
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

/** Runs a short command synchronously (for exit handlers); failures come back as a non-zero code. */
export function runSync(argv: string[]): { code: number; stdout: string } {
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

