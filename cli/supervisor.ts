// The supervisor `weave launch` runs the daemon under (Weave Net runs its
// router container with --restart=always; this is that, without Docker). A
// small parent process: it starts `weave router`, restarts it after an
// abnormal exit (a signal, a non-zero code) with backoff, logs each restart to
// weave.log and tells the new daemon how many restarts came before and why
// (WEAVE_SUPERVISOR_* in its environment, shown by `weave status`). It ends
// for good when the daemon exits cleanly (`weave stop`, SIGTERM), when it is
// itself told to stop (SIGTERM/SIGINT: forwarded to the daemon, no restart),
// or when the very first daemon fails before it was ever ready (a config
// error: `weave launch` reports it rather than watching it loop).
//
// It writes <datadir>/weave-supervisor.pid while it runs; `weave stop` signals
// that pid when the API does not answer (cli/launch.ts). Run as
//   node supervisor.js <datadir> <weave.js> router [options...]
// and runs the router as `node ROUTER_NODE_FLAGS <weave.js> router [options...]`.
// The decisions (restart or not, how long to wait) are the pure RestartPolicy.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../common/errors';
import { TextLogger } from '../common/logger';
import type { Logger } from '../common/logger';

export const SUPERVISOR_PID_FILE = 'weave-supervisor.pid';
/** The daemon's environment: the supervisor's pid, restarts so far, and how the last daemon ended. */
export const ENV_SUPERVISOR_PID = 'WEAVE_SUPERVISOR_PID';
export const ENV_RESTARTS = 'WEAVE_SUPERVISOR_RESTARTS';
export const ENV_LAST_EXIT = 'WEAVE_SUPERVISOR_LAST_EXIT';
/** The message a daemon sends on its IPC channel once its API answers (cli/daemon.ts). */
export const READY_MESSAGE = 'weave-router-ready';

/**
 * Node flags of the router process (issue 14: its RSS). V8 lets the young
 * generation grow to 16 MiB per semi-space; the router allocates little per
 * frame, and the grown space was ~4 MiB of an idle router's RSS for nothing.
 * 1 MiB: idle RSS ~2 MiB lower, throughput within the noise of scripts/bench.
 * --max-bytecode-size-for-early-opt=0: V8 otherwise hands any function of
 * at most 81 bytes of bytecode to its optimizing compiler at the first budget
 * interrupt; Node's own small helpers (argument validators behind fs,
 * child_process and http) got there during startup, and the compiler's first
 * run maps ~3.5 MB of its code and zones in a router that then idles. Now a
 * small function is optimized once it is hot, like any other; the frame path
 * is hot within the first frames, so throughput is unchanged (docs/architecture.md).
 * `weave router` run in the foreground gets Node's defaults.
 */
export const ROUTER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--max-bytecode-size-for-early-opt=0'];
/**
 * glibc gives each thread that allocates an arena of its own (V8's workers
 * do); two arenas instead of one per thread was another ~2 MiB of idle RSS,
 * and one instead of two 2-3 MB more once a transfer has run, at the same
 * throughput (docs/architecture.md). A value the user set is kept.
 */
const ROUTER_MALLOC_ARENA_MAX = '1';

export const FIRST_RESTART_DELAY_MS = 1_000;
export const MAX_RESTART_DELAY_MS = 60_000;
/** A daemon that ran this long was healthy: the next crash starts the backoff again from the first delay. */
export const STABLE_RUN_MS = 60_000;

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function describeExit(e: DaemonExit): string {
  return e.signal !== null ? `killed by ${e.signal}` : `exited with code ${e.code ?? '?'}`;
}

export type Decision = { kind: 'stop'; exitCode: number; why: string } | { kind: 'restart'; delayMs: number };

/** Pure: what to do after the daemon exited. */
export class RestartPolicy {
  private delayMs = FIRST_RESTART_DELAY_MS;
  private everReady = false;

  markReady(): void {
    this.everReady = true;
  }

  decide(exit: DaemonExit, ranMs: number, stopRequested: boolean): Decision {
    if (stopRequested) return { kind: 'stop', exitCode: 0, why: 'asked to stop' };
    if (exit.signal === null && exit.code === 0) return { kind: 'stop', exitCode: 0, why: 'the router stopped cleanly' };
    if (!this.everReady) return { kind: 'stop', exitCode: exit.code ?? 1, why: `the router ${describeExit(exit)} before it was ever ready` };
    if (ranMs >= STABLE_RUN_MS) this.delayMs = FIRST_RESTART_DELAY_MS;
    const delayMs = this.delayMs;
    this.delayMs = Math.min(MAX_RESTART_DELAY_MS, this.delayMs * 2);
    return { kind: 'restart', delayMs };
  }
}

export interface SupervisorOptions {
  datadir: string;
  /** argv after `node`: the CLI script and `router ...`. */
  daemonArgs: string[];
  logger: Logger;
}

/** Runs until the daemon is stopped for good; resolves with the exit code for this process. */
export function supervise(opts: SupervisorOptions): Promise<number> {
  const { logger } = opts;
  const policy = new RestartPolicy();
  const pidFile = path.join(opts.datadir, SUPERVISOR_PID_FILE);
  let child: ChildProcess | null = null;
  let restartTimer: NodeJS.Timeout | null = null;
  let stopRequested = false;
  let restarts = 0;
  let lastExit = '';
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => { finish = resolve; });

  const end = (code: number): void => {
    try { fs.unlinkSync(pidFile); } catch { /* already gone */ }
    finish(code);
  };

  const start = (): void => {
    restartTimer = null;
    const env: NodeJS.ProcessEnv = { ...process.env, [ENV_SUPERVISOR_PID]: String(process.pid), [ENV_RESTARTS]: String(restarts) };
    if (lastExit !== '') env[ENV_LAST_EXIT] = lastExit;
    env['MALLOC_ARENA_MAX'] ??= ROUTER_MALLOC_ARENA_MAX;
    const startedMs = Date.now();
    const c = spawn(process.execPath, [...ROUTER_NODE_FLAGS, ...opts.daemonArgs], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env, cwd: '/' });
    child = c;
    c.on('message', (m: unknown) => {
      if (m === READY_MESSAGE) policy.markReady();
    });
    c.once('error', (err) => logger.error('cannot start the router', { error: errorMessage(err) }));
    c.once('exit', (code, signal) => {
      child = null;
      const exit = { code, signal };
      const decision = policy.decide(exit, Date.now() - startedMs, stopRequested);
      if (decision.kind === 'stop') {
        if (decision.exitCode !== 0 || !stopRequested) logger.info('supervisor done', { router: describeExit(exit), why: decision.why });
        end(decision.exitCode);
        return;
      }
      restarts++;
      lastExit = `${describeExit(exit)} at ${new Date().toISOString()}`;
      logger.warn('router ended abnormally; restarting it', { how: describeExit(exit), restarts, inMs: decision.delayMs, pid: c.pid ?? null });
      restartTimer = setTimeout(start, decision.delayMs);
    });
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    stopRequested = true;
    if (restartTimer !== null) {
      clearTimeout(restartTimer);
      restartTimer = null;
    }
    if (child === null) {
      end(0);
      return;
    }
    child.kill(sig === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  // Detached from any terminal; a hangup is not a reason to stop the router.
  process.on('SIGHUP', () => undefined);

  try {
    fs.writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  } catch (err) {
    // A full disk: run anyway; weave stop then finds the router through its API only.
    logger.warn('cannot write the supervisor pid file', { file: pidFile, error: errorMessage(err) });
  }
  logger.info('supervisor started', { pid: process.pid });
  start();
  return done;
}

if (require.main === module) {
  const [datadir, ...daemonArgs] = process.argv.slice(2);
  if (datadir === undefined || daemonArgs.length === 0) {
    process.stderr.write('usage: supervisor.js <datadir> <weave.js> router [options...] (weave launch runs this)\n');
    process.exitCode = 2;
  } else {
    // weave.log on a full disk: lines are lost, the supervisor keeps going (an unhandled stream error would end it).
    for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
    const logger = new TextLogger('info', (line) => process.stdout.write(line + '\n'), { component: 'supervisor' });
    supervise({ datadir, daemonArgs, logger }).then(
      (code) => process.exit(code),
      (err: unknown) => {
        process.stderr.write(`weave supervisor: ${errorMessage(err)}\n`);
        process.exit(1);
      },
    );
  }
}
