// File helpers for state in the data directory: atomic replacement, so a
// crash leaves the old file or the new one, never half of either; a capped
// read, so a huge file is refused before it is buffered; and setting a bad
// file aside (FILE.corrupt-TIMESTAMP) instead of overwriting it, so whatever
// it held can still be recovered by hand. Every part that persists state
// (identity, IPAM ring, containers, expose, DNS resolver backups) goes through
// here (the retrying, reporting layer on top is common/state-files.ts). Paths
// inside a container's filesystem are not for this helper: those need the
// container-root checks in dns/ and router/host.

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file; state files default to owner-only. */
  mode?: number;
  /** fsync the file and its directory, so the rename survives a power cut (IPAM's ring must). */
  durable?: boolean;
}

/** Distinguishes temporary files of overlapping writes within one process. */
let tmpCounter = 0;

/** Writes via a temporary file in the same directory and a rename. Throws the fs error as is (ENOSPC included). */
export function writeFileAtomic(file: string, content: string, opts: AtomicWriteOptions = {}): void {
  const tmp = `${file}.tmp-${process.pid}-${tmpCounter++}`;
  try {
    const fd = fs.openSync(tmp, 'w', opts.mode ?? 0o600);
    try {
      const bytes = Buffer.from(content, 'utf8');
      // writeSync may write less than asked (a nearly full disk, a signal): loop until all is down.
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off);
      if (opts.durable === true) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  if (opts.durable === true) syncDirectory(path.dirname(file));
}

/** Makes a rename durable; best effort, as some filesystems refuse fsync on a directory. */
function syncDirectory(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // The rename itself has happened; only its durability across a power cut is weaker.
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/** Why a state file could not be read as text; `missing` is the normal first start. */
export type StateReadProblem = 'too-big' | 'not-a-file' | 'unreadable' | 'not-text';

export class StateReadError extends Error {
  constructor(readonly problem: StateReadProblem, message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'StateReadError';
  }
}

/**
 * The file's text, or null when it does not exist. Throws StateReadError when
 * it is bigger than `maxBytes` (checked before reading), not a regular file,
 * unreadable, or not UTF-8. Opened once and checked through the descriptor, so
 * a file swapped in between is not read past the cap.
 */
export function readStateFile(file: string, maxBytes: number): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new StateReadError('not-a-file', `${file} is a symbolic link`);
    throw new StateReadError('unreadable', `cannot open ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new StateReadError('not-a-file', `${file} is not a regular file`);
    if (st.size > maxBytes) throw new StateReadError('too-big', `${file} is ${st.size} bytes, more than the ${maxBytes} a state file may be`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, off));
    } catch {
      throw new StateReadError('not-text', `${file} is not UTF-8 text`);
    }
  } catch (err) {
    if (err instanceof StateReadError) throw err;
    throw new StateReadError('unreadable', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    fs.closeSync(fd);
  }
}

/** `ipam.json.corrupt-20240102T030405Z`, from a wall-clock instant. */
export function asidePath(file: string, nowMs: number): string {
  const stamp = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${file}.corrupt-${stamp}`;
}

/**
 * Moves a file we will not use out of the way (rename, never a copy, so a huge
 * file costs no space), keeping it for a human to look at. A second one in the
 * same second gets a numeric suffix. Returns where it went, or null when it
 * could not be moved (then it stays where it is, and is still never read).
 */
export function setAside(file: string, nowMs: number): string | null {
  const base = asidePath(file, nowMs);
  for (let i = 0; i < 100; i++) {
    const target = i === 0 ? base : `${base}.${i}`;
    try {
      // link + unlink instead of rename: never replaces an earlier aside copy.
      fs.linkSync(file, target);
      fs.unlinkSync(file);
      return target;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code === 'ENOENT') return null;
      // A filesystem without hard links: a plain rename (the stamp makes a clash unlikely).
      try {
        fs.renameSync(file, target);
        return target;
      } catch {
        return null;
      }
    }
  }
  return null;
}

/** Copies a file aside when only part of it was bad and the rest is still used (and rewritten). */
export function copyAside(file: string, nowMs: number): string | null {
  const target = asidePath(file, nowMs);
  try {
    fs.copyFileSync(file, target, fs.constants.COPYFILE_EXCL);
    return target;
  } catch {
    return null;
  }
}
