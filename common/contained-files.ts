// Files inside a container's filesystem (its resolv.conf), read, replaced and
// removed so that nothing the container controls can lead the root daemon to
// a file outside it. The typed face of the addon's fileRead/fileWrite/
// fileUnlink (native/fs.c): every lookup is openat2 confined to the root with
// no symlinks at all, only regular files within a size limit are opened, and
// for a process in another user namespace the work is done with that
// namespace's rights, so a bind mount of a host file over the container's
// resolv.conf gets EACCES instead of our root. Each call runs in a child
// process under a deadline (a FUSE mount could hang it); the child shares our
// memory (clone with CLONE_VM), so a call costs well under a millisecond
// rather than a fork of the daemon.
//
// It lives in common/ because dns/ (which writes resolv.conf) may import only
// common/; it loads the same build/Release/weave_native.node as
// router/overlay/native.ts. It must never fall back to plain node:fs: without
// the addon every call fails with 'unsupported' and the caller leaves the file
// alone.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { CodedError, errorMessage } from './errors';

/**
 * The root that paths are confined to: a directory we own (e.g. /etc/netns),
 * or a process directory (/proc/PID) whose root and user namespace are used.
 */
export type FileRoot = { kind: 'dir'; path: string } | { kind: 'process'; procDir: string };

export type ContainedFileErrorCode =
  /** The file (or a directory on its path) does not exist. */
  | 'missing'
  /** The file is, or the path passes through, a symbolic link. */
  | 'symlink'
  /** A FIFO, device, socket or directory. */
  | 'not-regular'
  | 'too-big'
  /** Refused by the kernel with the container's rights, or its user namespace could not be entered. */
  | 'denied'
  | 'timeout'
  /** No addon, or a kernel without openat2 (5.6+). */
  | 'unsupported'
  | 'io';

export class ContainedFileError extends CodedError<ContainedFileErrorCode> {
  override readonly name = 'ContainedFileError';
}

export interface ContainedFile {
  data: Buffer;
  /** Identity of the file read, to tell the host's own file from a container's. */
  dev: bigint;
  ino: bigint;
}

export interface ContainedFiles {
  /** Throws ContainedFileError; 'missing' when there is no such file. */
  read(root: FileRoot, rel: string, maxBytes: number): ContainedFile;
  /** Replaces the content in place (same inode: Docker bind-mounts resolv.conf); `create` allows a new file. */
  write(root: FileRoot, rel: string, data: Uint8Array, opts: { maxBytes: number; create: boolean }): void;
  /** Removes a regular file, never a symlink or anything else. */
  unlink(root: FileRoot, rel: string): void;
}

/** Far above a healthy read of a small file; a hung filesystem costs the daemon at most this. */
export const CONTAINED_FILE_TIMEOUT_MS = 2000;

const ADDON_FILE = 'weave_native.node';

interface FsAddon {
  fileRead(root: string, isProcess: boolean, rel: string, maxBytes: number, timeoutMs: number): ContainedFile;
  fileWrite(root: string, isProcess: boolean, rel: string, data: Uint8Array, maxBytes: number, create: boolean, timeoutMs: number): void;
  fileUnlink(root: string, isProcess: boolean, rel: string, timeoutMs: number): void;
}

/** Where a path is, for messages: /proc/PID/root/etc/resolv.conf or /etc/netns/NAME/resolv.conf. */
export function describeContained(root: FileRoot, rel: string): string {
  return root.kind === 'dir' ? path.join(root.path, rel) : path.join(root.procDir, 'root', rel);
}

let addon: FsAddon | null = null;

function loadAddon(): FsAddon {
  if (addon !== null) return addon;
  // Next to the sources (common/) or the compiled output (dist/common/).
  const candidates = [path.resolve(__dirname, '..', 'build', 'Release', ADDON_FILE), path.resolve(__dirname, '..', '..', 'build', 'Release', ADDON_FILE)];
  const file = candidates.find((p) => fs.existsSync(p));
  if (file === undefined) throw new ContainedFileError('unsupported', `the native addon is not built (build/Release/${ADDON_FILE}; run npx node-gyp rebuild)`);
  let mod: unknown;
  try {
    mod = require(file) as unknown;
  } catch (err) {
    throw new ContainedFileError('unsupported', `loading ${file} failed: ${errorMessage(err)}`, { cause: err });
  }
  const m = mod as Record<string, unknown>;
  if (typeof m['fileRead'] !== 'function' || typeof m['fileWrite'] !== 'function' || typeof m['fileUnlink'] !== 'function') {
    throw new ContainedFileError('unsupported', `${file} has no fileRead/fileWrite/fileUnlink (stale build? run npx node-gyp rebuild)`);
  }
  addon = mod as FsAddon;
  return addon;
}

const USERNS_STEPS = new Set(['setgroups', 'setns', 'setresgid', 'setresuid']);

/** The addon's errno-shaped error as a ContainedFileError naming the file. */
function classify(err: unknown, where: string, timeoutMs: number): ContainedFileError {
  if (err instanceof ContainedFileError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; syscall?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const step = typeof e.syscall === 'string' ? e.syscall : '';
  const detail = errorMessage(err);
  const make = (c: ContainedFileErrorCode, text: string): ContainedFileError => new ContainedFileError(c, `${where} ${text}`, { cause: err });
  if (USERNS_STEPS.has(step)) return make('denied', `is out of reach: cannot take on the rights of its user namespace (${detail})`);
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ESRCH':
      return make('missing', 'does not exist');
    case 'ELOOP':
      return make('symlink', 'is, or is reached through, a symbolic link');
    case 'ERR_NOT_REGULAR':
      return make('not-regular', `is not a regular file (${detail})`);
    case 'EFBIG':
      return make('too-big', 'is too big for what it should be');
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return make('denied', `may not be changed with the container's own rights (${code})`);
    case 'ETIMEDOUT':
      return make('timeout', `did not answer within ${timeoutMs} ms`);
    case 'ENOSYS':
      return make('unsupported', 'cannot be opened safely: the kernel lacks openat2 (needs Linux 5.6+)');
    default:
      return make('io', `cannot be used: ${detail}`);
  }
}

function call<T>(root: FileRoot, rel: string, timeoutMs: number, fn: (a: FsAddon, base: string, isProcess: boolean) => T): T {
  const where = describeContained(root, rel);
  try {
    const a = loadAddon();
    return root.kind === 'dir' ? fn(a, root.path, false) : fn(a, root.procDir, true);
  } catch (err) {
    throw classify(err, where, timeoutMs);
  }
}

/** The real thing, through the addon. */
export function nativeContainedFiles(timeoutMs: number = CONTAINED_FILE_TIMEOUT_MS): ContainedFiles {
  return {
    read: (root, rel, maxBytes) => call(root, rel, timeoutMs, (a, base, isProcess) => a.fileRead(base, isProcess, rel, maxBytes, timeoutMs)),
    write: (root, rel, data, opts) =>
      call(root, rel, timeoutMs, (a, base, isProcess) => a.fileWrite(base, isProcess, rel, data, opts.maxBytes, opts.create, timeoutMs)),
    unlink: (root, rel) => call(root, rel, timeoutMs, (a, base, isProcess) => a.fileUnlink(base, isProcess, rel, timeoutMs)),
  };
}
