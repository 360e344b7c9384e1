// File helpers for state in the data directory: atomic replacement, so a
// crash leaves the old file or the new one, never half of either. Every part
// that persists state (identity, IPAM ring, containers, expose, DNS resolver
// backups) writes through here. Paths inside a container's filesystem are not
// for this helper: those need the container-root checks in dns/ and router/host.

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file; state files default to owner-only. */
  mode?: number;
  /** fsync the file and its directory, so the rename survives a power cut (IPAM's ring must). */
  durable?: boolean;
}

/** Writes via a temporary file in the same directory and a rename. Throws the fs error as is. */
export function writeFileAtomic(file: string, content: string, opts: AtomicWriteOptions = {}): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'w', opts.mode ?? 0o600);
    try {
      fs.writeSync(fd, content);
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
