// A small HTTP server for the daemon's local endpoints (the API on its Unix
// socket, the status server on loopback TCP): JSON in, JSON out, local only.
// Owns the request plumbing: binding, routing on method and path pattern,
// body limits, timeouts, refusing browsers and foreign Host headers, and
// mapping what a handler throws to a status (common/api-route.ts
// httpStatusOf). It knows no endpoint of its own. It must never let one
// request crash the daemon, and never listen on anything but a loopback
// address or a Unix socket (unix-socket.ts sets who may connect to that).

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApiHandler, ApiRequest, ApiRoute } from '../../common/api-route';
import { httpStatusOf } from '../../common/api-route';
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { LoopbackAddress } from './loopback-address';
import { formatLoopbackAddress, isLoopbackHost, parseLoopbackAddress } from './loopback-address';
import type { UnixSocketSpec } from './unix-socket';
import { listenUnix } from './unix-socket';

/** 1 MiB: generous for any command we have; stops a runaway client from filling memory. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** A whole request (headers and body) must arrive within this; loopback clients are fast. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Lets a handler answer with something other than JSON (text status, metrics). */
export class RawResponse {
  constructor(
    readonly body: string,
    readonly contentType: string,
    readonly statusCode = 200,
  ) {}
}

interface Route {
  method: string;
  segments: string[];
  handler: ApiHandler;
}

export interface LoopbackServerOptions {
  /** Where to listen: host:port, loopback only (port 0 picks a free port), or a Unix socket. */
  listen: { tcp: string } | { unix: UnixSocketSpec };
  /** Names the server in errors and logs ("HTTP API", "status server"). */
  what: string;
  maxBodyBytes?: number;
  requestTimeoutMs?: number;
}

/**
 * An HTTP server that binds loopback or a Unix socket and dispatches to
 * registered routes. Shared by the API and the status server so both refuse
 * the same things.
 */
export class LoopbackHttpServer {
  private readonly routes: Route[] = [];
  private readonly server: http.Server;
  private readonly bindAddress: LoopbackAddress | null;
  private readonly socket: UnixSocketSpec | null;
  private readonly what: string;
  private readonly maxBodyBytes: number;
  private listening = false;

  constructor(
    private readonly logger: Logger,
    opts: LoopbackServerOptions,
  ) {
    this.what = opts.what;
    // Validated here, at construction, so a bad flag fails startup before anything listens.
    if ('tcp' in opts.listen) {
      this.bindAddress = parseLoopbackAddress(opts.listen.tcp, `${opts.what} address`);
      this.socket = null;
    } else {
      this.bindAddress = null;
      this.socket = { ...opts.listen.unix };
    }
    this.maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.server = http.createServer((req, res) => {
      // handle() catches everything it awaits; this catch is the last line of
      // defence so that no rejection ever reaches the process.
      this.handle(req, res).catch((err: unknown) => {
        this.logger.error('http request failed', { server: this.what, error: errorMessage(err) });
        if (!res.headersSent) sendJson(res, 500, { error: errorMessage(err) });
        else res.destroy();
      });
    });
    this.server.requestTimeout = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.server.headersTimeout = Math.min(this.server.requestTimeout, 10_000);
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /**
   * Adds an endpoint. `pattern` is a path such as `/ipam/claims/:cidr`; a
   * `:name` segment matches one path segment (URL-decoded) into `params.name`.
   */
  route(method: string, pattern: string, handler: ApiHandler): void {
    const m = method.toUpperCase();
    const segments = splitPath(pattern);
    const key = segments.map((s) => (s.startsWith(':') ? ':' : s)).join('/');
    for (const r of this.routes) {
      if (r.method === m && r.segments.map((s) => (s.startsWith(':') ? ':' : s)).join('/') === key) {
        throw new Error(`${this.what}: route ${m} ${pattern} is already registered`);
      }
    }
    this.routes.push({ method: m, segments, handler });
  }

  /** Adds every route of a part of the daemon (common/api-route.ts). */
  addRoutes(routes: readonly ApiRoute[]): void {
    for (const r of routes) this.route(r.method, r.path, r.handler);
  }

  async listen(): Promise<void> {
    if (this.socket !== null) {
      await listenUnix(this.server, this.socket, this.what);
      this.listening = true;
      this.logger.info(`${this.what} listening`, { socket: this.socket.path });
      return;
    }
    const bind = this.bindAddress as LoopbackAddress;
    const { host, port } = bind;
    const shown = formatLoopbackAddress(bind);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.server.off('listening', onListening);
        if (err.code === 'EADDRINUSE') {
          reject(
            new RouterError(
              'io',
              `cannot listen on ${shown} for the ${this.what}: address in use; ` +
                'another weave router is probably running in this network namespace',
              { cause: err },
            ),
          );
        } else if (err.code === 'EADDRNOTAVAIL') {
          reject(new RouterError('io', `cannot listen on ${shown} for the ${this.what}: no such local address`, { cause: err }));
        } else {
          reject(new RouterError('io', `cannot listen on ${shown} for the ${this.what}: ${err.message}`, { cause: err }));
        }
      };
      const onListening = (): void => {
        this.server.off('error', onError);
        this.listening = true;
        this.logger.info(`${this.what} listening`, { addr: formatLoopbackAddress(this.address()) });
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host, port, exclusive: true });
    });
  }

  /** The bound TCP address; with port 0 this tells which port was picked. Throws for a Unix socket server. */
  address(): LoopbackAddress {
    if (this.bindAddress === null) throw new Error(`${this.what} listens on a Unix socket, not an address`);
    const a = this.server.address() as AddressInfo | null;
    if (a === null || typeof a === 'string') return { ...this.bindAddress };
    return { host: a.address, port: a.port };
  }

  /** The Unix socket path; throws for a TCP server. */
  socketPath(): string {
    if (this.socket === null) throw new Error(`${this.what} listens on TCP, not on a Unix socket`);
    return this.socket.path;
  }

  /** Stops listening and drops open connections, so close never waits on a keep-alive client. */
  close(): Promise<void> {
    if (!this.listening) return Promise.resolve();
    this.listening = false;
    return new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = '/' + splitPath(url.pathname).join('/');

    const refusal = refuseNonLocal(req);
    if (refusal !== null) {
      req.resume();
      sendJson(res, 403, { error: refusal });
      return;
    }

    let segments: string[];
    try {
      segments = splitPath(url.pathname).map((s) => decodeURIComponent(s));
    } catch {
      req.resume();
      sendJson(res, 400, { error: `malformed path ${JSON.stringify(url.pathname)}` });
      return;
    }
    const candidates: { route: Route; params: Record<string, string> }[] = [];
    for (const route of this.routes) {
      const params = matchSegments(route.segments, segments);
      if (params !== null) candidates.push({ route, params });
    }
    if (candidates.length === 0) {
      req.resume();
      sendJson(res, 404, { error: `no such endpoint: ${path}` });
      return;
    }
    const chosen = candidates.find((c) => c.route.method === method);
    if (chosen === undefined) {
      req.resume();
      const allowed = [...new Set(candidates.map((c) => c.route.method))].sort().join(', ');
      sendJson(res, 405, { error: `${method} not allowed on ${path}; use ${allowed}` }, { Allow: allowed });
      return;
    }

    const body = await readBody(req, this.maxBodyBytes);
    if (body.kind === 'too-large') {
      // Connection: close because the rest of the oversize body is never read.
      sendJson(res, 413, { error: `request body over the limit of ${this.maxBodyBytes} bytes` }, { Connection: 'close' });
      return;
    }
    if (body.kind === 'aborted') return;
    let parsed: unknown = undefined;
    if (body.text.trim() !== '') {
      try {
        parsed = JSON.parse(body.text);
      } catch (err) {
        sendJson(res, 400, { error: `request body is not valid JSON: ${errorMessage(err)}` });
        return;
      }
    }

    const after: (() => void)[] = [];
    const apiReq: ApiRequest = {
      method,
      path,
      params: chosen.params,
      query: url.searchParams,
      body: parsed,
      afterResponse: (fn) => after.push(fn),
    };
    let result: unknown;
    try {
      result = await chosen.route.handler(apiReq);
    } catch (err) {
      const code = httpStatusOf(err);
      if (code >= 500) {
        this.logger.error('http handler failed', { server: this.what, method, path, error: errorMessage(err) });
      } else if (this.logger.enabled('debug')) {
        this.logger.debug('http request refused', { server: this.what, method, path, status: code, error: errorMessage(err) });
      }
      sendJson(res, code, { error: errorMessage(err) });
      return;
    }
    if (after.length > 0) {
      res.once('finish', () => {
        for (const fn of after) {
          try {
            fn();
          } catch (err) {
            this.logger.error('http after-response action failed', { server: this.what, path, error: errorMessage(err) });
          }
        }
      });
    }
    if (result instanceof RawResponse) {
      send(res, result.statusCode, result.body, result.contentType);
    } else {
      let text: string;
      try {
        text = JSON.stringify(result === undefined ? {} : result);
      } catch (err) {
        // e.g. a BigInt or a cycle in a report section: the handler's bug, but still an answer.
        this.logger.error('http response not serialisable', { server: this.what, path, error: errorMessage(err) });
        sendJson(res, 500, { error: `response not serialisable: ${errorMessage(err)}` });
        return;
      }
      send(res, 200, text + '\n', 'application/json');
    }
  }
}

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s !== '');
}

function matchSegments(pattern: string[], actual: string[]): Record<string, string> | null {
  if (pattern.length !== actual.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const a = actual[i] as string;
    if (p.startsWith(':')) params[p.slice(1)] = a;
    else if (p !== a) return null;
  }
  return params;
}

/**
 * Loopback binding keeps other hosts out, but a web page in a local browser can
 * still reach 127.0.0.1: a cross-site POST carries an Origin header, and a DNS
 * rebinding attack carries a foreign Host. The CLI sends neither, so both are
 * refused (on the Unix socket too, where they cost nothing: clients there
 * send Host: localhost).
 */
function refuseNonLocal(req: http.IncomingMessage): string | null {
  if (req.headers.origin !== undefined) return 'requests from web pages are not accepted';
  const host = req.headers.host;
  if (host === undefined) return null;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : (host.split(':')[0] ?? '');
  if (!isLoopbackHost(name)) return `Host ${JSON.stringify(host)} is not a loopback address`;
  return null;
}

type BodyResult = { kind: 'ok'; text: string } | { kind: 'too-large' } | { kind: 'aborted' };

function readBody(req: http.IncomingMessage, maxBytes: number): Promise<BodyResult> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (Number.isFinite(declared) && declared > maxBytes) {
    // Refuse before reading a byte; the client learns the limit at once.
    return Promise.resolve({ kind: 'too-large' });
  }
  return new Promise<BodyResult>((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    const finish = (r: BodyResult): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      resolve(r);
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > maxBytes) {
        chunks.length = 0;
        finish({ kind: 'too-large' });
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => finish({ kind: 'ok', text: Buffer.concat(chunks).toString('utf8') }));
    // 'close' also follows a normal 'end'; `done` makes that a no-op.
    req.on('close', () => finish(req.complete ? { kind: 'ok', text: Buffer.concat(chunks).toString('utf8') } : { kind: 'aborted' }));
    req.on('error', () => finish({ kind: 'aborted' }));
  });
}

function send(res: http.ServerResponse, statusCode: number, body: string, contentType: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(statusCode, {
    'Content-Type': contentType.includes('charset') ? contentType : `${contentType}; charset=utf-8`,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(body);
}

function sendJson(res: http.ServerResponse, statusCode: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, statusCode, JSON.stringify(value) + '\n', 'application/json', headers);
}
