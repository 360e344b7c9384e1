// The small HTTP client every CLI command uses to talk to the local router API
// over its Unix socket. Owns finding the socket (--api, WEAVE_API_SOCKET, else
// the one of WEAVE_DATADIR; cli/api-socket.ts), timeouts, and turning
// transport failures and API errors into one-line messages: EACCES names who
// may use the socket, ENOENT and ECONNREFUSED say the router is not running.
// It never retries on its own: polling (launch, stop) is the caller's business.
// HTTP/1.1 is spoken over a node:net socket, the reply read by http-reply.ts:
// node:http's load and first request cost every CLI run several ms (issue 14).

import fs from 'node:fs';
import net from 'node:net';
import type { Command } from 'commander';
import type { GroupLookup } from './api-socket';
import { checkSocketPath, getentGroup, permissionDeniedMessage, resolveApiSocket } from './api-socket';
import { errorMessage } from '../common/errors';
import type { HttpReply } from './http-reply';
import { HttpReplyReader, ReplyError } from './http-reply';

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
    const payload = Buffer.from(body === undefined ? '' : JSON.stringify(body), 'utf8');
    // One request per connection, closed by the router once it has answered: no keep-alive pool,
    // and polling sees a fresh connect each time. Never half-closed from here: node's HTTP server
    // takes a client's FIN as the end of the request and would drop a reply still being worked out.
    const head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n` +
      (payload.length > 0 ? `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n` : '') + '\r\n';
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const socket = net.connect({ path: this.address });
      const reader = new HttpReplyReader(MAX_RESPONSE_BYTES);
      const fail = (err: ApiError): void => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(err);
      };
      const finish = (): void => {
        if (settled) return;
        let reply: HttpReply;
        try {
          reply = reader.reply();
        } catch (err) {
          fail(replyError(err, this.address));
          return;
        }
        settled = true;
        socket.destroy();
        const result = interpret(reply, method, path, this.address);
        if (result instanceof ApiError) reject(result);
        else resolve(result as T);
      };
      socket.setTimeout(timeoutMs, () => fail(new ApiError('timeout', `weave router did not answer on ${this.address} within ${formatSeconds(timeoutMs)}`)));
      socket.on('connect', () => socket.write(payload.length > 0 ? Buffer.concat([Buffer.from(head, 'latin1'), payload]) : head));
      socket.on('data', (chunk: Buffer) => {
        if (settled) return;
        try {
          if (reader.push(chunk)) finish();
        } catch (err) {
          fail(replyError(err, this.address));
        }
      });
      socket.on('end', finish);
      socket.on('error', (err: NodeJS.ErrnoException) => fail(this.transportError(err)));
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

/** A reply that broke off or is not HTTP: closed before an answer means the router went away, as with node:http. */
function replyError(err: unknown, address: string): ApiError {
  if (err instanceof ReplyError && err.problem === 'no-reply') {
    return new ApiError('not-running', `weave router is not running (the connection on ${address} was closed)`, null, { cause: err });
  }
  return new ApiError('protocol', `reply from ${address} ${errorMessage(err)}; is that a weave router?`, null, { cause: err });
}

/** The parsed JSON of a 2xx reply, or the ApiError an error status or a non-JSON body means. */
function interpret(reply: HttpReply, method: string, path: string, address: string): unknown {
  const text = reply.body.toString('utf8');
  let parsed: unknown = undefined;
  let parseError: string | null = null;
  if (text.trim() !== '') {
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      parseError = errorMessage(err);
    }
  }
  if (reply.status < 200 || reply.status > 299) {
    return new ApiError('http', apiErrorMessage(parsed) ?? `${method} ${path} failed with HTTP ${reply.status}`, reply.status);
  }
  if (parseError !== null) return new ApiError('protocol', `reply from ${address} is not JSON (${parseError}); is that a weave router?`);
  return parsed;
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
