// Where the router's API socket is and who may use it: the path derived from
// the data directory (shared by the daemon, `weave launch` and every client,
// so they agree without being told), the --api-group lookup, and the message
// a refused user sees. The API is a Unix socket rather than loopback TCP
// because loopback is no access control on a shared host: the socket's file
// mode (0660, root and the optional group) is (docs/architecture.md).
//
// Why /run/weave and not the data directory: the data directory is 0700, so
// a member of --api-group could not reach a socket inside it without the
// daemon loosening it; and sun_path holds at most 107 bytes, which a deep
// --datadir would exceed. A hash of the data directory keeps simulated hosts
// (one data directory each) apart in 38 bytes.

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { DEFAULT_DATADIR } from './config';
import { RouterError } from '../router/mesh/errors';
import { sha256Hex } from '../common/sha256';

export const API_SOCKET_DIR = '/run/weave';
/** The socket of the router that uses the default data directory, as Docker's is /run/docker.sock. */
export const DEFAULT_API_SOCKET = `${API_SOCKET_DIR}/weave.sock`;
/** sizeof(sockaddr_un.sun_path) on Linux, less the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
/** Group names as useradd/groupadd accept them (shadow-utils' default pattern, plus a trailing $). */
const GROUP_NAME_RE = /^[a-z_][a-z0-9_-]{0,30}\$?$/i;
const GETENT_TIMEOUT_MS = 5_000;

/**
 * The API socket of the router using `datadir`: /run/weave/weave.sock for the
 * default data directory, else /run/weave/weave-<16 hex of sha256(datadir)>.sock,
 * with datadir made absolute first (as the daemon does), so a relative
 * WEAVE_DATADIR finds the same router from the same directory.
 */
export function apiSocketFor(datadir: string): string {
  const abs = path.resolve(datadir);
  if (abs === DEFAULT_DATADIR) return DEFAULT_API_SOCKET;
  // Not node:crypto: every CLI run resolves the socket, and loading it cost ~4 ms
  // of each start (issue 14); common/sha256.ts gives the same digest.
  const digest = sha256Hex(Buffer.from(abs, 'utf8')).slice(0, 16);
  return `${API_SOCKET_DIR}/weave-${digest}.sock`;
}

/** Checks an explicit socket path (--api-socket, --api, WEAVE_API_SOCKET); returns it absolute. */
export function checkSocketPath(text: string, what: string): string {
  const s = text.trim();
  if (/^(https?:\/\/)?[^/]*:\d+\/?$/i.test(s)) {
    throw RouterError.config(`${what} takes the path of the router's API socket (the API no longer listens on TCP), got ${JSON.stringify(text)}`);
  }
  if (s === '' || s.includes('\0')) throw RouterError.config(`${what} must be a file path, got ${JSON.stringify(text)}`);
  if (!path.isAbsolute(s)) throw RouterError.config(`${what} must be an absolute path, got ${JSON.stringify(text)}`);
  const abs = path.normalize(s);
  const bytes = Buffer.byteLength(abs, 'utf8');
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw RouterError.config(`${what}: a Unix socket path holds at most ${MAX_SOCKET_PATH_BYTES} bytes, got ${bytes} (${abs})`);
  }
  return abs;
}

/**
 * The socket a client talks to: the explicit path (--api, else
 * WEAVE_API_SOCKET), else the one of `datadir` (default WEAVE_DATADIR, else
 * the default data directory).
 */
export function resolveApiSocket(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, datadir?: string): string {
  if (flag !== undefined) return checkSocketPath(flag, '--api');
  const fromEnv = env['WEAVE_API_SOCKET'];
  if (fromEnv !== undefined && fromEnv !== '') return checkSocketPath(fromEnv, 'WEAVE_API_SOCKET');
  const envDir = env['WEAVE_DATADIR'];
  return apiSocketFor(datadir ?? (envDir !== undefined && envDir !== '' ? envDir : DEFAULT_DATADIR));
}

/** Refuses what cannot be a group name before anything runs getent with it. */
export function checkGroupName(text: string, what = '--api-group'): string {
  const s = text.trim();
  if (!GROUP_NAME_RE.test(s)) throw RouterError.config(`${what} must be a group name (letters, digits, _ and -), got ${JSON.stringify(text)}`);
  return s;
}

export interface GroupEntry {
  name: string;
  gid: number;
}

/** Parses one line of `getent group` (name:password:gid:members); null if malformed. */
export function parseGroupLine(line: string): GroupEntry | null {
  const fields = line.trim().split(':');
  if (fields.length < 3) return null;
  const name = fields[0] ?? '';
  const gidText = fields[2] ?? '';
  if (name === '' || !/^\d{1,10}$/.test(gidText) || Number(gidText) > 0xfffffffe) return null;
  return { name, gid: Number(gidText) };
}

/** `getent group KEY` (a name or a gid), through NSS like every other tool; null when there is no such group. */
export type GroupLookup = (key: string) => GroupEntry | null;

export const getentGroup: GroupLookup = (key) => {
  try {
    const out = execFileSync('getent', ['group', key], { encoding: 'utf8', timeout: GETENT_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'ignore'] });
    return parseGroupLine(out.split('\n')[0] ?? '');
  } catch {
    // getent exits 2 for "no such group"; anything else (missing getent) also leaves us without an answer.
    return null;
  }
};

/** The group --api-group names, or a config error saying it does not exist. */
export function lookupApiGroup(name: string, lookup: GroupLookup = getentGroup): GroupEntry {
  const checked = checkGroupName(name);
  const entry = lookup(checked);
  if (entry === null) throw RouterError.config(`--api-group: there is no group ${JSON.stringify(checked)} on this host (create it with groupadd)`);
  return entry;
}

/** What a user without access to the socket is told; `group` is the socket's group, null when that is root's. */
export function permissionDeniedMessage(group: string | null): string {
  return group === null ? 'permission denied: weave needs root' : `permission denied: weave needs root or membership of group ${group}`;
}
