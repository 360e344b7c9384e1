// The small HTTP client every CLI command uses to talk to the local router API
// over its Unix socket. Owns finding the socket (--api, WEAVE_API_SOCKET, else
// the one of WEAVE_DATADIR; cli/api-socket.ts), timeouts, and turning
// transport failures and API errors into one-line messages: EACCES names who
// may use the socket, ENOENT and ECONNREFUSED say the router is not running.
// It never retries on its own: polling (launch, stop) is the caller's business.

import fs from 'node:fs';
import http from 'node:http';
import type { Command } from 'commander';
import type { GroupLookup } from './api-socket';
import { checkSocketPath, getentGroup, permissionDeniedMessage, resolveApiSocket } from './api-socket';
import { errorMessage } from '../common/errors';

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** A report of a big mesh is a few MB; anything far beyond that is not our router. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export type ApiErrorKind = 'not-running' | 'permission' | 'timeout' | 'http' | 'protocol';

export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly kind: ApiErrorKind,
    message: string,
    /** HTTP status when the API answered with an error; null otherwise. */
    readonly statusCode: number | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ApiClientOptions {
  timeoutMs?: number;
  /** Names the socket's group in a permission-denied message; default getent. */
  lookupGroup?: GroupLookup;
}

export class ApiClient {
  /** The socket path, for messages. */
  readonly address: string;
  private readonly timeoutMs: number;
  private readonly lookupGroup: GroupLookup;

  /** `socketPath` is absolute, as resolveApiSocket returns. */
  constructor(socketPath: string, opts: ApiClientOptions = {}) {
    this.address = checkSocketPath(socketPath, 'API socket');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.lookupGroup = opts.lookupGroup ?? getentGroup;
  }

  get<T = unknown>(path: string, timeoutMs?: number): Promise<T> {
    return this.request<T>('GET', path, undefined, timeoutMs);
  }

  post<T = unknown>(path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    return this.request<T>('POST', path, body, timeoutMs);
  }

  /**
   * True when the router answers GET /status successfully; false when nothing
   * answers (no socket, refused, reset, timed out). HTTP errors count as
   * running: something that speaks our API is there. A permission error is
   * thrown: whether the router runs is then unknown, and the user must hear why.
   */
  async ping(timeoutMs = 1000): Promise<boolean> {
    try {
      await this.get('/status', timeoutMs);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.kind === 'http') return true;
      if (err instanceof ApiError && err.kind === 'permission') throw err;
      return false;
    }
  }

  /** Sends one request; resolves with the parsed JSON reply, rejects with ApiError. */
  request<T = unknown>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const payload = body === undefined ? '' : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const fail = (err: ApiError): void => {
        if (settled) return;
        settled = true;
        reject(err);
      };
      // servername is a TLS option the agent reads, hence not in RequestOptions' type.
      const options: http.RequestOptions & { servername: string } = {
        socketPath: this.address,
        method,
        path,
        headers: {
          Accept: 'application/json',
          ...(payload !== '' ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {}),
        },
        // No keep-alive pool: one request per CLI run, and polling must see a fresh connect each time.
        agent: false,
        // A Unix socket has no TLS server name. Without one given, node's agent works one
        // out from the host and checks it with net.isIP, whose first use compiles the IPv6
        // pattern: ~15 ms of every CLI run (issue 14), for a name nothing reads.
        servername: '',
      };
      const req = http.request(
        options,
        (res) => {
          const chunks: Buffer[] = [];
          let total = 0;
          res.on('data', (chunk: Buffer) => {
            total += chunk.length;
            if (total > MAX_RESPONSE_BYTES) {
              fail(new ApiError('protocol', `reply from ${this.address} is over ${MAX_RESPONSE_BYTES} bytes; is that a weave router?`));
              req.destroy();
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', (err) => fail(new ApiError('protocol', `reading reply from ${this.address}: ${err.message}`, null, { cause: err })));
          res.on('end', () => {
            if (settled) return;
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let parsed: unknown = undefined;
            let parseError: string | null = null;
            if (text.trim() !== '') {
              try {
                parsed = JSON.parse(text);
              } catch (err) {
                parseError = errorMessage(err);
              }
            }
            if (status < 200 || status > 299) {
              const msg = apiErrorMessage(parsed) ?? `${method} ${path} failed with HTTP ${status}`;
              fail(new ApiError('http', msg, status));
              return;
            }
            if (parseError !== null) {
              fail(new ApiError('protocol', `reply from ${this.address} is not JSON (${parseError}); is that a weave router?`));
              return;
            }
            settled = true;
            resolve(parsed as T);
          });
        },
      );
      req.setTimeout(timeoutMs, () => {
        fail(new ApiError('timeout', `weave router did not answer on ${this.address} within ${formatSeconds(timeoutMs)}`));
        req.destroy();
      });
      req.on('error', (err: NodeJS.ErrnoException) => fail(this.transportError(err)));
      req.end(payload);
    });
  }

  private transportError(err: NodeJS.ErrnoException): ApiError {
    const p = this.address;
    switch (err.code) {
      case 'EACCES':
      case 'EPERM':
        return new ApiError('permission', `${permissionDeniedMessage(socketGroupName(p, this.lookupGroup))} (to use ${p})`, null, { cause: err });
      case 'ENOENT':
        return new ApiError('not-running', `weave router is not running (no socket at ${p})`, null, { cause: err });
      case 'ECONNREFUSED':
        return new ApiError('not-running', `weave router is not running (nothing answers on ${p}; the socket is left from a router that stopped)`, null, { cause: err });
      case 'ENOTSOCK':
        return new ApiError('not-running', `weave router is not running (${p} is not a socket)`, null, { cause: err });
      case 'ECONNRESET':
      case 'EPIPE':
        return new ApiError('not-running', `weave router is not running (the connection on ${p} was closed)`, null, { cause: err });
      default:
        return new ApiError('not-running', `cannot reach the weave router API on ${p}: ${err.message}`, null, { cause: err });
    }
  }
}

/**
 * The group a refused user would need: the socket's group, by name when the
 * host knows it. null when that is root's group (or the socket cannot even be
 * seen), so the message says "root" only.
 */
export function socketGroupName(socketPath: string, lookup: GroupLookup): string | null {
  let gid: number;
  try {
    gid = fs.statSync(socketPath).gid;
  } catch {
    return null;
  }
  if (gid === 0) return null;
  return lookup(String(gid))?.name ?? `with gid ${gid}`;
}

function apiErrorMessage(body: unknown): string | null {
  if (typeof body === 'object' && body !== null && typeof (body as Record<string, unknown>)['error'] === 'string') {
    return (body as Record<string, string>)['error'] ?? null;
  }
  return null;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * The client for a command: the global --api socket, else WEAVE_API_SOCKET,
 * else the socket of `datadir` (default WEAVE_DATADIR, else the default).
 */
export function clientFor(cmd: Command, opts: ApiClientOptions & { datadir?: string } = {}): ApiClient {
  const api = (cmd.optsWithGlobals() as { api?: unknown }).api;
  const { datadir, ...clientOpts } = opts;
  return new ApiClient(resolveApiSocket(typeof api === 'string' ? api : undefined, process.env, datadir), clientOpts);
}
