// The daemon's local HTTP API (127.0.0.1:6784 by default): JSON in, JSON out,
// loopback only. Owns request plumbing (routing, body limits, error mapping,
// listen/close) and the mesh endpoints /status, /report, /connect, /forget and
// /stop. Other subsystems (IPAM, DNS, containers) add their endpoints through
// `route()` and their report sections through `addReportSection()`, so this
// file never grows with them. It must never let one request crash the daemon,
// and never listen on anything but a loopback address: the API can stop the
// router and rewire the mesh, and it has no authentication of its own.

import http from 'node:http';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { RouterControl } from './control';
import { RouterError, errorMessage } from '../mesh/errors';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';

/** 1 MiB: generous for any command we have; stops a runaway client from filling memory. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** A whole request (headers and body) must arrive within this; loopback clients are fast. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Upper bound on peers in one /connect or /forget, checked before anything else. */
export const MAX_PEERS_PER_REQUEST = 1000;

// ---------------------------------------------------------------------------
// Loopback addresses

export interface LoopbackAddress {
  host: string;
  port: number;
}

/** True for 127.0.0.0/8, ::1 and the IPv4-mapped form of 127/8. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped !== null && (mapped[1] ?? '').startsWith('127.');
  }
  return false;
}

/**
 * Parses `host:port` (IPv6 in brackets) and refuses anything that is not a
 * loopback address. `localhost` becomes 127.0.0.1 so that what we bind does not
 * depend on the resolver. Port 0 is allowed (an ephemeral port, for tests);
 * callers that need a fixed port check that themselves.
 */
export function parseLoopbackAddress(text: string, what: string): LoopbackAddress {
  const s = text.trim();
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') {
      throw RouterError.config(`${what} must be host:port (IPv6 as [::1]:port), got ${JSON.stringify(text)}`);
    }
    host = s.slice(1, close);
    portText = s.slice(close + 2);
  } else {
    const idx = s.lastIndexOf(':');
    if (idx < 0 || s.indexOf(':') !== idx) {
      throw RouterError.config(`${what} must be host:port (IPv6 as [::1]:port), got ${JSON.stringify(text)}`);
    }
    host = s.slice(0, idx);
    portText = s.slice(idx + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw RouterError.config(`${what}: port must be a number from 0 to 65535, got ${JSON.stringify(portText)}`);
  }
  if (!isLoopbackHost(host)) {
    throw RouterError.config(
      `${what} must be a loopback address (127.0.0.1, [::1] or localhost), got ${JSON.stringify(host)}: ` +
        'the API has no authentication, so it must not be reachable from other hosts',
    );
  }
  return { host: host.toLowerCase() === 'localhost' ? '127.0.0.1' : host.toLowerCase(), port: Number(portText) };
}

export function formatLoopbackAddress(addr: LoopbackAddress): string {
  return isIP(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

// ---------------------------------------------------------------------------
// Requests, responses, errors

export interface ApiRequest {
  method: string;
  /** Path without query string and without a trailing slash. */
  path: string;
  /** Values of `:name` segments in the route pattern. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body; undefined when the body was empty. */
  body: unknown;
  /** Runs `fn` once the response has been written (e.g. stop after replying). */
  afterResponse(fn: () => void): void;
}

/** Whatever a handler returns is sent as JSON with status 200, unless it is a RawResponse. */
export type ApiHandler = (req: ApiRequest) => unknown;

/** Lets a handler answer with something other than JSON (text status, metrics). */
export class RawResponse {
  constructor(
    readonly body: string,
    readonly contentType: string,
    readonly statusCode = 200,
  ) {}
}

/** Thrown by handlers to answer with a specific status and message. */
export class HttpError extends Error {
  override readonly name = 'HttpError';

  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Errors of any folder that carry `code: 'config'` (RouterError, and by the same
 * convention IpamError and DnsError) are the caller's fault: 400, not 500. Duck
 * typed so that router/ need not import ipam/ or dns/ (DESIGN.md).
 */
function statusCodeFor(err: unknown): number {
  if (err instanceof HttpError) return err.statusCode;
  if (err instanceof Error && (err as Error & { code?: unknown }).code === 'config') return 400;
  return 500;
}

interface Route {
  method: string;
  segments: string[];
  handler: ApiHandler;
}

export interface LoopbackServerOptions {
  /** host:port, loopback only; port 0 picks a free port. */
  address: string;
  /** Names the server in errors and logs ("HTTP API", "status server"). */
  what: string;
  maxBodyBytes?: number;
  requestTimeoutMs?: number;
}

/**
 * An HTTP server that binds loopback only and dispatches to registered routes.
 * Shared by the API and the status server so both refuse the same things.
 */
export class LoopbackHttpServer {
  private readonly routes: Route[] = [];
  private readonly server: http.Server;
  private readonly bindAddress: LoopbackAddress;
  private readonly what: string;
  private readonly maxBodyBytes: number;
  private listening = false;

  constructor(
    private readonly logger: Logger,
    opts: LoopbackServerOptions,
  ) {
    this.what = opts.what;
    // Validated here, at construction, so a bad flag fails startup before anything listens.
    this.bindAddress = parseLoopbackAddress(opts.address, `${opts.what} address`);
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

  listen(): Promise<void> {
    const { host, port } = this.bindAddress;
    const shown = formatLoopbackAddress(this.bindAddress);
    return new Promise<void>((resolve, reject) => {
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

  /** The bound address; with port 0 this tells which port was picked. */
  address(): LoopbackAddress {
    const a = this.server.address() as AddressInfo | null;
    if (a === null || typeof a === 'string') return { ...this.bindAddress };
    return { host: a.address, port: a.port };
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
      const code = statusCodeFor(err);
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
 * refused.
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

// ---------------------------------------------------------------------------
// The mesh API

export interface HttpApiDeps {
  control: RouterControl;
  logger?: Logger;
}

export interface HttpApiOptions {
  /** Loopback host:port; DEFAULT_API_ADDRESS in cli/config.ts is the usual value. */
  address: string;
  maxBodyBytes?: number;
  requestTimeoutMs?: number;
}

export type ReportProvider = () => unknown;

export interface ConnectRequest {
  peers: string[];
  replace: boolean;
}

export class HttpApi {
  private readonly server: LoopbackHttpServer;
  private readonly control: RouterControl;
  private readonly reportSections = new Map<string, ReportProvider>();

  constructor(deps: HttpApiDeps, opts: HttpApiOptions) {
    this.control = deps.control;
    this.server = new LoopbackHttpServer(deps.logger ?? silentLogger, {
      address: opts.address,
      what: 'HTTP API',
      ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
      ...(opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: opts.requestTimeoutMs } : {}),
    });
    this.server.route('GET', '/status', () => this.control.status());
    this.server.route('GET', '/report', () => this.report());
    this.server.route('POST', '/connect', (req) => {
      const body = parsePeersBody(req.body, '/connect', true);
      this.control.connect(body.peers, body.replace);
      return {};
    });
    this.server.route('POST', '/forget', (req) => {
      const body = parsePeersBody(req.body, '/forget', false);
      this.control.forget(body.peers);
      return {};
    });
    this.server.route('POST', '/stop', (req) => {
      // The router stops only once the reply is on the wire, so `weave stop` gets its answer.
      req.afterResponse(() => this.control.stop());
      return { stopping: true };
    });
  }

  /** Adds an endpoint for another subsystem; see LoopbackHttpServer.route. */
  route(method: string, pattern: string, handler: ApiHandler): void {
    this.server.route(method, pattern, handler);
  }

  /**
   * Adds a section to GET /report under `name`. The provider may be async; if
   * it throws, the report carries `{error}` for that section instead of failing.
   */
  addReportSection(name: string, provider: ReportProvider): void {
    if (name === 'status') throw new Error('report section name "status" is reserved');
    if (this.reportSections.has(name)) throw new Error(`report section ${JSON.stringify(name)} is already registered`);
    this.reportSections.set(name, provider);
  }

  listen(): Promise<void> {
    return this.server.listen();
  }

  address(): LoopbackAddress {
    return this.server.address();
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private async report(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = { status: this.control.status() };
    for (const [name, provider] of this.reportSections) {
      try {
        out[name] = await provider();
      } catch (err) {
        out[name] = { error: errorMessage(err) };
      }
    }
    return out;
  }
}

/** Validates `{peers: string[], replace?: boolean}` before the router sees it. */
export function parsePeersBody(body: unknown, endpoint: string, allowReplace: boolean): ConnectRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw RouterError.config(`${endpoint} expects a JSON object {"peers": ["host[:port]", ...]}`);
  }
  const rec = body as Record<string, unknown>;
  const peers = rec['peers'];
  if (!Array.isArray(peers)) throw RouterError.config(`${endpoint}: "peers" must be an array of "host[:port]" strings`);
  if (peers.length > MAX_PEERS_PER_REQUEST) {
    throw RouterError.config(`${endpoint}: ${peers.length} peers in one request, over the limit of ${MAX_PEERS_PER_REQUEST}`);
  }
  for (const p of peers) {
    if (typeof p !== 'string') throw RouterError.config(`${endpoint}: every peer must be a string, got ${JSON.stringify(p)}`);
  }
  const replace = rec['replace'];
  if (replace !== undefined && typeof replace !== 'boolean') {
    throw RouterError.config(`${endpoint}: "replace" must be true or false, got ${JSON.stringify(replace)}`);
  }
  if (!allowReplace && replace !== undefined) throw RouterError.config(`${endpoint} does not take "replace"`);
  return { peers: peers as string[], replace: replace === true };
}
