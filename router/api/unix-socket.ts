// Binding the API's Unix socket so that its file mode is the access control:
// created 0600 (umask held around the bind, so there is no moment at which
// anyone else may connect), then handed to root and the API group and opened
// to 0660. Also owns what may already be at the path: a socket nobody
// answers on (a router that died) is replaced; a socket something answers on
// is another router and is never taken over; anything that is not a socket
// (a file, a symlink) is left alone with an error. The directory must be
// ours and not writable by others, or someone could swap the socket under us.
//
// The kernel checks the socket's write permission on connect, so no
// SO_PEERCRED check is needed on top: a request that arrives came from root
// or a member of the group (docs/architecture.md).

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RouterError } from '../mesh/errors';

export const API_SOCKET_MODE = 0o660;
/** How long a connect to an existing socket may take before we call it live: a busy router still accepts. */
const PROBE_TIMEOUT_MS = 1_000;

export interface UnixSocketSpec {
  path: string;
  /** Group that may use the socket besides root; null: root's own group only. */
  gid: number | null;
}

/** What is at `p`: nothing, a socket something answers on, a socket nobody answers on, or something else. */
export type SocketPathState = 'absent' | 'live' | 'stale' | 'not-a-socket';

function probe(p: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: p });
    const done = (r: 'live' | 'stale'): void => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(PROBE_TIMEOUT_MS, () => done('live'));
    s.once('connect', () => done('live'));
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.destroy();
      if (err.code === 'ECONNREFUSED') resolve('stale');
      else if (err.code === 'ENOENT') resolve('stale');
      else reject(new RouterError('io', `cannot tell whether something answers on ${p}: ${err.message}`, { cause: err }));
    });
  });
}

export async function socketPathState(p: string): Promise<SocketPathState> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw new RouterError('io', `cannot inspect ${p}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) return 'not-a-socket';
  return probe(p);
}

/**
 * Creates the socket's directory if missing (0755: clients must traverse it)
 * and refuses one that others could write to.
 */
export function prepareSocketDir(p: string, what: string): void {
  const dir = path.dirname(p);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new RouterError('io', `cannot create ${dir} for the ${what} socket: ${(err as Error).message}`, { cause: err });
  }
  const st = fs.lstatSync(dir);
  const euid = process.geteuid?.() ?? 0;
  if (!st.isDirectory()) throw RouterError.config(`${dir} (for the ${what} socket) is not a directory`);
  if (st.uid !== euid || (st.mode & 0o022) !== 0) {
    throw RouterError.config(
      `${dir} (for the ${what} socket) must be owned by uid ${euid} and writable by nobody else ` +
        `(it is uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}): others could replace the socket`,
    );
  }
}

/**
 * Makes `spec.path` free for our bind: refuses a live socket or a non-socket,
 * removes a stale socket. Called once at startup before anything else binds
 * (so a second router fails before touching the host) and again right before
 * the bind.
 */
export async function claimSocketPath(spec: UnixSocketSpec, what: string): Promise<void> {
  prepareSocketDir(spec.path, what);
  const state = await socketPathState(spec.path);
  switch (state) {
    case 'absent':
      return;
    case 'live':
      throw new RouterError('io', `another weave router is answering on ${spec.path}; stop it first (weave stop) or use another data directory`);
    case 'not-a-socket':
      throw RouterError.config(`${spec.path} exists and is not a socket; it was not made by weave, so it is left alone: remove it yourself`);
    case 'stale':
      try {
        fs.unlinkSync(spec.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new RouterError('io', `cannot remove the stale socket ${spec.path}: ${(err as Error).message}`, { cause: err });
        }
      }
  }
}

/** Binds `server` to the socket with mode 0600, then gives it to the group and opens it to 0660. */
export async function listenUnix(server: net.Server, spec: UnixSocketSpec, what: string): Promise<void> {
  await claimSocketPath(spec, what);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(new RouterError('io', `cannot listen on ${spec.path} for the ${what}: ${err.message}`, { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // The bind happens inside listen() (synchronously, for a path in the
    // primary process), so the umask governs the socket's first mode.
    const previous = process.umask(0o177);
    try {
      server.listen({ path: spec.path, exclusive: true });
    } finally {
      process.umask(previous);
    }
  });
  try {
    const euid = process.geteuid?.() ?? 0;
    const egid = process.getegid?.() ?? 0;
    fs.chownSync(spec.path, euid, spec.gid ?? egid);
    fs.chmodSync(spec.path, API_SOCKET_MODE);
  } catch (err) {
    // A socket we cannot hand to the group is useless to it: close rather than half-work.
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw new RouterError('io', `cannot set the owner and mode of ${spec.path}: ${(err as Error).message}`, { cause: err });
  }
}
