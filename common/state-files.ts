// What the daemon could not read or write in its data directory, and what it
// does about it. Loading: a state file that is too big, unreadable or does not
// parse is set aside (common/files.ts setAside, FILE.corrupt-TIMESTAMP), the
// daemon starts without it, and the problem is logged and listed for status
// (`weave status` health `state-file`). Saving: a write that fails (ENOSPC, a
// read-only remount) never throws into the caller's work; the latest content
// is kept and written again with backoff until it lands, and the problem is
// listed until then.
//
// One keeper per process (the daemon is one per process); the daemon gives it
// its logger and clock at start-up (configureStateFiles). Tests make their own
// StateFileKeeper.

import * as path from 'node:path';
import { SystemClock } from './clock';
import type { Clock, Timer } from './clock';
import { errorMessage } from './errors';
import { readStateFile, setAside, writeFileAtomic } from './files';
import type { AtomicWriteOptions } from './files';
import type { Logger } from './logger';
import { silentLogger } from './logger';

export interface StateFileProblem {
  file: string;
  /** 'ignored': read at start-up and not used; 'write': the latest save has not landed yet. */
  kind: 'ignored' | 'write';
  text: string;
  sinceMs: number;
}

interface PendingWrite {
  content: string;
  opts: AtomicWriteOptions;
  delayMs: number;
  timer: Timer | null;
  failures: number;
}

export const FIRST_RETRY_MS = 1_000;
export const MAX_RETRY_MS = 30_000;
/** Ignored-at-start-up notes kept for status; older ones only stay in the log. */
const MAX_IGNORED_LISTED = 32;

export class StateFileKeeper {
  private readonly problems = new Map<string, StateFileProblem>();
  private readonly pending = new Map<string, PendingWrite>();

  constructor(private logger: Logger = silentLogger, private clock: Clock = new SystemClock()) {}

  configure(deps: { logger: Logger; clock?: Clock }): void {
    this.logger = deps.logger;
    if (deps.clock !== undefined) this.clock = deps.clock;
  }

  /** Current problems, oldest first. */
  list(): StateFileProblem[] {
    return [...this.problems.values()].sort((a, b) => a.sinceMs - b.sinceMs);
  }

  /**
   * Reads and parses a state file. Null when it does not exist, and also when
   * it cannot be used: then it is set aside, and the problem logged and listed.
   * `parse` throws (any error) on content it refuses; its message is the reason.
   */
  load<T>(file: string, maxBytes: number, parse: (text: string) => T): T | null {
    let text: string | null;
    try {
      text = readStateFile(file, maxBytes);
      if (text === null) return null;
      return parse(text);
    } catch (err) {
      this.ignored(file, errorMessage(err), setAside(file, this.clock.now()));
      return null;
    }
  }

  /** Records that (part of) a file was not used; `keptAs` is where the original now is, if anywhere. */
  ignored(file: string, reason: string, keptAs: string | null): void {
    const where = keptAs !== null ? `; the file is kept as ${path.basename(keptAs)}` : '';
    const text = `ignored ${path.basename(file)}: ${reason}${where}`;
    this.logger.warn('state file ignored', { file, reason, keptAs });
    const ignoredCount = [...this.problems.values()].filter((p) => p.kind === 'ignored').length;
    if (ignoredCount >= MAX_IGNORED_LISTED) return;
    this.problems.set(`ignored\u0000${file}\u0000${text}`, { file, kind: 'ignored', text, sinceMs: this.clock.now() });
  }

  /**
   * Writes atomically now, or keeps the content and retries with backoff
   * (1 s doubling to 30 s) until it lands; a later save of the same file
   * replaces what is waiting. Never throws. Returns the error of this attempt,
   * or null when the file is written.
   */
  save(file: string, content: string, opts: AtomicWriteOptions = {}): Error | null {
    const waiting = this.pending.get(file);
    if (waiting !== undefined) {
      // Keep the backoff: a burst of saves on a full disk must not become a burst of failing writes.
      waiting.content = content;
      waiting.opts = opts;
      if (waiting.timer !== null) return new Error(this.problems.get(`write\u0000${file}`)?.text ?? 'write pending');
    }
    try {
      writeFileAtomic(file, content, opts);
    } catch (err) {
      this.failed(file, content, opts, err);
      return err instanceof Error ? err : new Error(String(err));
    }
    this.landed(file);
    return null;
  }

  /** The file is deleted on purpose: drop any write still waiting for it, or it would come back. */
  forget(file: string): void {
    const waiting = this.pending.get(file);
    waiting?.timer?.cancel();
    this.pending.delete(file);
    this.problems.delete(`write\u0000${file}`);
  }

  /** Stops retrying (daemon shutdown); what has not landed is lost, and was reported. */
  close(): void {
    for (const p of this.pending.values()) p.timer?.cancel();
    this.pending.clear();
  }

  private failed(file: string, content: string, opts: AtomicWriteOptions, err: unknown): void {
    let p = this.pending.get(file);
    if (p === undefined) {
      p = { content, opts, delayMs: FIRST_RETRY_MS, timer: null, failures: 0 };
      this.pending.set(file, p);
    } else {
      p.delayMs = Math.min(MAX_RETRY_MS, p.delayMs * 2);
    }
    p.failures++;
    const key = `write\u0000${file}`;
    const text = `cannot write ${path.basename(file)}: ${errorMessage(err)}; the daemon keeps running and retries`;
    const old = this.problems.get(key);
    if (old === undefined || old.text !== text) {
      this.logger.error('cannot write a state file; will retry', { file, error: errorMessage(err) });
    }
    this.problems.set(key, { file, kind: 'write', text, sinceMs: old?.sinceMs ?? this.clock.now() });
    const pending = p;
    pending.timer = this.clock.setTimer(pending.delayMs, () => {
      pending.timer = null;
      if (this.pending.get(file) !== pending) return;
      this.save(file, pending.content, pending.opts);
    });
  }

  private landed(file: string): void {
    const waiting = this.pending.get(file);
    if (waiting !== undefined) {
      waiting.timer?.cancel();
      this.pending.delete(file);
      this.logger.info('state file written after earlier failures', { file, failures: waiting.failures });
    }
    this.problems.delete(`write\u0000${file}`);
  }
}

/** The daemon's keeper; every store in this process reports through it. */
export const stateFiles = new StateFileKeeper();

export function configureStateFiles(deps: { logger: Logger; clock?: Clock }): void {
  stateFiles.configure(deps);
}
