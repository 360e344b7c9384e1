// Starting and stopping the daemon: the only CLI work that is not a plain API
// call. `launch` starts `weave router` under its supervisor (cli/supervisor.ts:
// restarts it after a crash), detached (own session, output appended to
// <datadir>/weave.log, password in the environment), waits until its API
// answers and returns; on failure it reports why, with the end of the log.
// `stop` asks the router to stop and waits until it and its supervisor are
// gone; when the API does not answer (crashed, overloaded, stopped) or the
// router does not go in time, it signals the processes it started instead
// (SIGTERM, then SIGKILL), after checking in /proc that they are ours. Neither
// ever touches host state itself (docs/architecture.md: only the daemon does).

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ApiClient, ApiError } from './api-client';
import { lookupApiGroup } from './api-socket';
import type { DaemonConfig } from './config';
import { daemonConfigToArgs } from './launch-options';
import { SUPERVISOR_PID_FILE } from './supervisor';
import { RouterError } from '../router/mesh/errors';
import { errorMessage } from '../common/errors';
import { processAlive } from '../common/process-alive';

export const LOG_FILE = 'weave.log';
/** Written by the daemon (cli/daemon.ts) while it runs. */
export const PID_FILE = 'weave.pid';
/** The router's bundle beside weave.js (scripts/bundle-router.ts). */
export const ROUTER_BUNDLE_FILE = 'weave-router.js';
export const DEFAULT_READY_TIMEOUT_MS = 15_000;
export const DEFAULT_STOP_TIMEOUT_MS = 15_000;
/** After SIGTERM, how long a router that does not answer gets before SIGKILL. */
export const DEFAULT_KILL_AFTER_MS = 10_000;
/** After SIGKILL, how long until we report that the process is still there. */
const KILL_WAIT_MS = 5_000;
export const POLL_INTERVAL_MS = 100;
/** Enough of the log to show a startup error and its context, not a whole session. */
const TAIL_LINES = 20;
const TAIL_MAX_BYTES = 16 * 1024;

export interface LaunchOptions {
  /** The compiled CLI entry; default dist/cli/weave.js next to this file. */
  weaveScript?: string;
  /** The compiled supervisor; default dist/cli/supervisor.js next to this file. */
  supervisorScript?: string;
  readyTimeoutMs?: number;
  pollIntervalMs?: number;
  /** Environment the child starts from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface LaunchResult {
  /** The supervisor's pid (the daemon is its child). */
  pid: number;
  logPath: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The last lines written to `file` since byte `fromOffset`, or a note why there are none. */
export function logTail(file: string, fromOffset = 0): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    return `(cannot read ${file}: ${errorMessage(err)})`;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const start = Math.max(fromOffset, size - TAIL_MAX_BYTES);
    const buf = Buffer.alloc(Math.max(0, size - start));
    fs.readSync(fd, buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n').filter((l) => l.trim() !== '');
    if (lines.length === 0) return `(nothing in ${file})`;
    return lines.slice(-TAIL_LINES).join('\n');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Starts the router detached and returns once GET /status answers. Throws
 * RouterError('io') if a router already answers, if the child exits first, or
 * if it does not answer within the timeout (then the child is killed, so a
 * half-started router never lingers).
 */
/**
 * The script the supervisor runs as the router: the bundle of scripts/bundle-router.ts
 * (weave-router.js, the same CLI in one file: issue 14, idle RSS) when it was built
 * after weave.js, else weave.js itself. A `tsc` that rewrote the files since the
 * last bundle makes the bundle old: then the files run, never yesterday's code.
 */
export function routerScript(dir: string): string {
  const files = path.join(dir, 'weave.js');
  const bundle = path.join(dir, ROUTER_BUNDLE_FILE);
  try {
    return fs.statSync(bundle).mtimeMs >= fs.statSync(files).mtimeMs ? bundle : files;
  } catch {
    return files;
  }
}

export async function launch(config: DaemonConfig, opts: LaunchOptions = {}): Promise<LaunchResult> {
  // The daemon checks again; here a missing group fails before anything starts.
  if (config.apiGroup !== null) lookupApiGroup(config.apiGroup);
  const client = new ApiClient(config.apiSocket);
  if (await client.ping()) {
    throw new RouterError('io', `weave router already running (answering on ${client.address})`);
  }
  // Its router may be between a crash and the restart: a second supervisor would fight it.
  const supervisor = readPid(config.datadir, SUPERVISOR_PID_FILE);
  if (supervisor !== null && isSupervisor(supervisor)) {
    throw new RouterError('io', `weave router already running under its supervisor (pid ${supervisor}), which restarts it; weave stop ends both`);
  }

  try {
    fs.mkdirSync(config.datadir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new RouterError('io', `cannot create datadir ${config.datadir}: ${errorMessage(err)}`, { cause: err });
  }
  const logPath = path.join(config.datadir, LOG_FILE);
  let logFd: number;
  try {
    logFd = fs.openSync(logPath, 'a', 0o640);
  } catch (err) {
    throw new RouterError('io', `cannot open ${logPath}: ${errorMessage(err)}`, { cause: err });
  }
  // Where this run's output begins, so a failure shows this run's lines only.
  const logStart = fs.fstatSync(logFd).size;

  const invocation = daemonConfigToArgs(config);
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), ...invocation.env };
  // A stale WEAVE_PASSWORD must not turn an unencrypted config into an encrypted router.
  if (config.password === null) delete env['WEAVE_PASSWORD'];
  if (config.oldPassword === undefined) delete env['WEAVE_OLD_PASSWORD'];
  const script = opts.weaveScript ?? routerScript(__dirname);
  const supervisorScript = opts.supervisorScript ?? path.join(__dirname, 'supervisor.js');

  let child: ChildProcess;
  try {
    // detached: the supervisor leads its own session and process group (the
    // router inherits them), so both survive this CLI, the terminal closing
    // and a Ctrl-C sent to us.
    child = spawn(process.execPath, [supervisorScript, config.datadir, script, 'router', ...invocation.args], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env,
      cwd: '/',
    });
  } finally {
    // The child holds its own copy of the descriptor.
    fs.closeSync(logFd);
  }

  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let spawnError: Error | null = null;
  child.once('exit', (code, signal) => {
    exited = { code, signal };
  });
  child.once('error', (err) => {
    spawnError = err;
  });

  const readyTimeoutMs = opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const pollMs = opts.pollIntervalMs ?? POLL_INTERVAL_MS;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (spawnError !== null) {
      throw new RouterError('io', `cannot start ${process.execPath} ${script}: ${errorMessage(spawnError)}`);
    }
    if (exited !== null) {
      const { code, signal } = exited as { code: number | null; signal: NodeJS.Signals | null };
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}`;
      throw new RouterError('io', `weave router ${how} before its API answered; last lines of ${logPath}:\n${logTail(logPath, logStart)}`);
    }
    if (await client.ping(Math.max(100, Math.min(1000, deadline - Date.now())))) break;
    if (Date.now() >= deadline) {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // Already gone between the check and the kill: nothing to clean up.
        }
      }
      throw new RouterError(
        'io',
        `weave router did not answer on ${client.address} within ${readyTimeoutMs / 1000} s and was stopped; ` +
          `last lines of ${logPath}:\n${logTail(logPath, logStart)}`,
      );
    }
    await sleep(pollMs);
  }
  // Only now let go: until the API answered we wanted to hear about an early exit.
  child.unref();
  return { pid: child.pid ?? 0, logPath };
}

export interface StopOptions {
  /** Where to find weave.pid; without it only the API is watched. */
  datadir?: string;
  timeoutMs?: number;
  pollIntervalMs?: number;
  /** When signalling a router that does not answer: SIGTERM, then SIGKILL after this long. */
  killAfterMs?: number;
}

/** A process of ours that stop may signal, verified from /proc (a pid file may be stale). */
interface OurProcess {
  pid: number;
  what: 'supervisor' | 'router';
}

function readPid(datadir: string | undefined, file = PID_FILE): number | null {
  if (datadir === undefined) return null;
  try {
    const text = fs.readFileSync(path.join(datadir, file), 'utf8').trim();
    return /^\d{1,10}$/.test(text) && Number(text) > 1 ? Number(text) : null;
  } catch {
    return null;
  }
}


/**
 * Asks the router to stop and waits until its API stops answering and its
 * process and its supervisor's (from <datadir>/weave.pid and
 * weave-supervisor.pid, when present) have exited. When the API does not
 * answer (a crashed router waiting for its restart, or one too overloaded to
 * answer), or the router does not go within the timeout, stop signals the
 * processes it started instead, once /proc shows they really are ours:
 * SIGTERM (and SIGCONT, so a stopped process can act on it), then SIGKILL
 * after killAfterMs, supervisor first so it restarts nothing. Throws
 * RouterError('io') "weave router is not running (...)" when nothing answers
 * and nothing of ours runs, and the permission message when the socket is not
 * ours to use.
 */
export async function stop(client: ApiClient, opts: StopOptions = {}): Promise<void> {
  // Read before stopping: the daemon and the supervisor remove their files as they exit.
  const pid = readPid(opts.datadir);
  const supervisorPid = readPid(opts.datadir, SUPERVISOR_PID_FILE);
  const ours = (): OurProcess[] => [
    ...(supervisorPid !== null && isSupervisor(supervisorPid) ? [{ pid: supervisorPid, what: 'supervisor' as const }] : []),
    ...(pid !== null && isRouter(pid, opts.datadir) ? [{ pid, what: 'router' as const }] : []),
  ];
  const timeoutMs = opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const pollMs = opts.pollIntervalMs ?? POLL_INTERVAL_MS;
  const killAfterMs = opts.killAfterMs ?? DEFAULT_KILL_AFTER_MS;
  const deadline = Date.now() + timeoutMs;
  /** The API cannot help: signal what runs, or say why nothing does. */
  const signalOrExplain = async (why: string, cause: unknown): Promise<void> => {
    const procs = ours();
    if (procs.length === 0) throw new RouterError('io', why, { cause });
    await terminate(procs, killAfterMs, pollMs);
  };
  try {
    await client.get('/status', 1000);
  } catch (err) {
    // The client's own words: no socket, a stale one, no answer in time, or who may use it.
    if (err instanceof ApiError && err.kind !== 'http') {
      if (err.kind === 'permission') throw new RouterError('io', err.message, { cause: err });
      await signalOrExplain(err.message, err);
      return;
    }
  }
  try {
    await client.post('/stop');
  } catch (err) {
    // A reset here means it went down while answering, which is what we asked for.
    if (err instanceof ApiError && err.kind === 'timeout') {
      await signalOrExplain(err.message, err);
      return;
    }
    if (!(err instanceof ApiError && err.kind === 'not-running')) throw err;
  }
  while (await client.ping(500)) {
    if (Date.now() >= deadline) {
      await signalOrExplain(`weave router still answers on ${client.address} ${timeoutMs / 1000} s after being asked to stop`, null);
      return;
    }
    await sleep(pollMs);
  }
  const left = async (): Promise<void> => {
    const procs = [pid, supervisorPid].filter((p): p is number => p !== null);
    while (procs.some(processAlive)) {
      if (Date.now() >= deadline) {
        await signalOrExplain(`weave router (pid ${procs.join(', ')}) stopped answering but has not exited after ${timeoutMs / 1000} s`, null);
        return;
      }
      await sleep(pollMs);
    }
  };
  // The router exited cleanly, so its supervisor ends too; wait for both, so nothing is left when we return.
  await left();
}

/**
 * SIGTERM (with SIGCONT) to each, then SIGKILL to whatever is still there
 * after `killAfterMs`; returns once all are gone. The supervisor comes first
 * in `procs`, so it is never alive to restart a router we killed.
 */
async function terminate(procs: readonly OurProcess[], killAfterMs: number, pollMs: number): Promise<void> {
  for (const p of procs) {
    signal(p.pid, 'SIGTERM');
    signal(p.pid, 'SIGCONT');
  }
  const graceEnd = Date.now() + killAfterMs;
  while (procs.some((p) => processAlive(p.pid)) && Date.now() < graceEnd) await sleep(pollMs);
  const stubborn = procs.filter((p) => processAlive(p.pid));
  for (const p of stubborn) signal(p.pid, 'SIGKILL');
  const killEnd = Date.now() + KILL_WAIT_MS;
  for (const p of stubborn) {
    while (processAlive(p.pid)) {
      if (Date.now() >= killEnd) throw new RouterError('io', `weave ${p.what} (pid ${p.pid}) is still there ${KILL_WAIT_MS / 1000} s after SIGKILL`);
      await sleep(pollMs);
    }
  }
}

/**
 * A live process running `weave router` (the CLI entry, then "router"), for
 * this data directory when its argv names one: a stale pid file's number may
 * belong to anything by now, and we must never signal a stranger.
 */
function isRouter(pid: number, datadir: string | undefined): boolean {
  if (!processAlive(pid)) return false;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const entry = argv.findIndex((a) => ['weave.js', 'weave', ROUTER_BUNDLE_FILE].includes(path.basename(a)));
    if (entry < 0 || argv[entry + 1] !== 'router') return false;
    const flag = argv.indexOf('--datadir');
    return flag < 0 || datadir === undefined || path.resolve(argv[flag + 1] ?? '') === path.resolve(datadir);
  } catch {
    return false;
  }
}

/** A live process running our supervisor: a stale pid file's number may belong to anything by now. */
function isSupervisor(pid: number): boolean {
  if (!processAlive(pid)) return false;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => path.basename(a) === 'supervisor.js');
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone between the check and the signal: what we wanted.
  }
}
