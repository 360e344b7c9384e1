// The small HTTP client every CLI command uses to talk to the local router API.
// Owns finding the API (--api, WEAVE_API, default 127.0.0.1:6784), timeouts,
// and turning transport failures and API errors into one-line messages. It
// never retries on its own: polling (launch, stop) is the caller's business.

import http from 'node:http';
import type { Command } from 'commander';
import { DEFAULT_API_ADDRESS } from './config';
import { formatLoopbackAddress, parseLoopbackAddress } from '../router/api/loopback-address';
import { RouterError } from '../router/mesh/errors';
import { errorMessage } from '../common/errors';

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** A report of a big mesh is a few MB; anything far beyond that is not our router. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export type ApiErrorKind = 'not-running' | 'timeout' | 'http' | 'protocol';

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

/**
 * Chooses the API address: the --api flag, else WEAVE_API, else the default.
 * Accepts `host:port` or `http://host:port[/]`; loopback only, as the API never
 * listens elsewhere.
 */
export function resolveApiAddress(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['WEAVE_API'];
  const raw = flag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_API_ADDRESS);
  const what = flag !== undefined ? '--api' : fromEnv !== undefined && fromEnv !== '' ? 'WEAVE_API' : 'API address';
  const stripped = raw.trim().replace(/^http:\/\//i, '').replace(/\/+$/, '');
  const addr = parseLoopbackAddress(stripped, what);
  if (addr.port === 0) throw RouterError.config(`${what}: port must be from 1 to 65535, got 0`);
  return formatLoopbackAddress(addr);
}

export interface ApiClientOptions {
  timeoutMs?: number;
}

export class ApiClient {
  readonly address: string;
  private readonly host: string;
  private readonly port: number;
  private readonly timeoutMs: number;

  /** `address` is a loopback host:port, as resolveApiAddress returns. */
  constructor(address: string, opts: ApiClientOptions = {}) {
    const parsed = parseLoopbackAddress(address, 'API address');
    this.host = parsed.host;
    this.port = parsed.port;
    this.address = formatLoopbackAddress(parsed);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  get<T = unknown>(path: string, timeoutMs?: number): Promise<T> {
    return this.request<T>('GET', path, undefined, timeoutMs);
  }

  post<T = unknown>(path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    return this.request<T>('POST', path, body, timeoutMs);
  }

  /**
   * True when the router answers GET /status successfully; false when nothing
   * answers (refused, reset, timed out). HTTP errors count as running: something
   * that speaks our API is there.
   */
  async ping(timeoutMs = 1000): Promise<boolean> {
    try {
      await this.get('/status', timeoutMs);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.kind === 'http') return true;
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
      const req = http.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          headers: {
            Accept: 'application/json',
            ...(payload !== '' ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {}),
          },
          // No keep-alive pool: one request per CLI run, and polling must see a fresh connect each time.
          agent: false,
        },
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
    switch (err.code) {
      case 'ECONNREFUSED':
      case 'ECONNRESET':
      case 'EPIPE':
      case 'EADDRNOTAVAIL':
        return new ApiError('not-running', `weave router is not running (no answer on ${this.address})`, null, { cause: err });
      default:
        return new ApiError('not-running', `cannot reach the weave router API on ${this.address}: ${err.message}`, null, { cause: err });
    }
  }
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

/** The client for a command, honouring the global --api option. */
export function clientFor(cmd: Command, opts: ApiClientOptions = {}): ApiClient {
  const api = (cmd.optsWithGlobals() as { api?: unknown }).api;
  return new ApiClient(resolveApiAddress(typeof api === 'string' ? api : undefined), opts);
}
