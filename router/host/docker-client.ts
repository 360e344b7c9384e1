// A minimal Docker Engine API client over the unix socket: inspect a container
// (id, name, pid, running, and what auto-attach reads: labels, WEAVE_CIDR,
// network mode), list the running ones, and follow container
// start/die/destroy events, reconnecting when the stream breaks and saying
// whether the engine is reachable. Unversioned paths, so it speaks to the
// Docker 20.10 here (API 1.41) and to newer engines alike.
//
// It owns the HTTP connections to the socket and nothing else: it never changes
// a container, and it never throws an unexplained socket error at a caller —
// an engine that is not there becomes "cannot reach Docker at <socket>".

import http from 'node:http';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { validateDockerRef } from './container-ref';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';
const DEFAULT_TIMEOUT_MS = 10_000;
/** An inspect reply is a few KB; this only guards against something that is not Docker. */
const MAX_REPLY_BYTES = 8 * 1024 * 1024;
/** One event is well under 4 KB; a longer line without a newline means a broken stream. */
const MAX_EVENT_LINE_BYTES = 1024 * 1024;
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 30_000;

export interface DockerContainer {
  /** Full 64-hex-digit id. */
  id: string;
  /** Name without the leading '/'. */
  name: string;
  /** Pid of the container's init process; 0 when not running. */
  pid: number;
  running: boolean;
  /** Config.Labels with string values (absent when the reply has none); hostile input, parsed by the reader. */
  labels?: Readonly<Record<string, string>>;
  /** The value of WEAVE_CIDR in Config.Env, Weave Net's way to ask for an attach; absent when unset. */
  weaveCidr?: string;
  /** HostConfig.NetworkMode, e.g. none, default, host, container:ID. */
  networkMode?: string;
}

/** Whether the event stream reaches the engine; `error` says why not, with what to do. */
export interface DockerEngineState {
  reachable: boolean;
  socket: string;
  error: string | null;
}

export type DockerEventAction = 'start' | 'die' | 'destroy';

export interface DockerEvent {
  action: DockerEventAction;
  id: string;
  /** Container name from the event's attributes, when present. */
  name: string | null;
  /** Seconds since the epoch (Docker's `time`). */
  timeSec: number;
}

/** What the ContainerManager needs from Docker; a fake implements it in tests. */
export interface DockerApi {
  /** The container, or null when Docker has no such container. */
  inspect(ref: string): Promise<DockerContainer | null>;
  /** Streams start/die/destroy events until the returned handle is closed; `onState` hears the engine come and go. */
  watchEvents(onEvent: (ev: DockerEvent) => void, onState?: (s: DockerEngineState) => void): EventWatch;
  /** Ids of the running containers (a relaunched router looks for those it should have attached). */
  listRunning?(): Promise<string[]>;
}

export interface EventWatch {
  close(): void;
}

/**
 * The engine's socket from DOCKER_HOST (`unix:///path`), as the docker CLI
 * reads it; unset or empty: /var/run/docker.sock. Anything but a unix socket
 * is refused by name: the router inspects containers' namespaces, so it must
 * talk to the engine on this host.
 */
export function dockerSocketFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  const v = env['DOCKER_HOST'];
  if (v === undefined || v.trim() === '') return DEFAULT_DOCKER_SOCKET;
  const m = /^unix:\/\/(\/[^\u0000-\u001f]{1,200})$/.exec(v.trim());
  if (m === null) {
    throw RouterError.config(`DOCKER_HOST=${JSON.stringify(v)} is not supported: weave reaches Docker only on this host's unix socket (unix:///var/run/docker.sock)`);
  }
  return m[1] as string;
}

export interface DockerClientOptions {
  socketPath?: string;
  timeoutMs?: number;
}

export class DockerClient implements DockerApi {
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(
    private readonly logger: Logger = silentLogger,
    opts: DockerClientOptions = {},
  ) {
    this.socketPath = opts.socketPath ?? DEFAULT_DOCKER_SOCKET;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** True when the engine answers /_ping. */
  async ping(): Promise<boolean> {
    try {
      const r = await this.request('GET', '/_ping');
      return r.status === 200;
    } catch {
      return false;
    }
  }

  async inspect(ref: string): Promise<DockerContainer | null> {
    validateDockerRef(ref);
    const r = await this.request('GET', `/containers/${encodeURIComponent(ref)}/json`);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new RouterError('io', `Docker refused to inspect ${ref}: HTTP ${r.status} ${dockerMessage(r.body)}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.body);
    } catch (err) {
      throw new RouterError('io', `Docker's inspect reply for ${ref} is not JSON: ${errorMessage(err)}`);
    }
    return parseInspect(parsed, ref);
  }

  async listRunning(): Promise<string[]> {
    const r = await this.request('GET', '/containers/json');
    if (r.status !== 200) throw new RouterError('io', `Docker refused to list containers: HTTP ${r.status} ${dockerMessage(r.body)}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.body);
    } catch (err) {
      throw new RouterError('io', `Docker's container list is not JSON: ${errorMessage(err)}`);
    }
    if (!Array.isArray(parsed)) throw new RouterError('io', "Docker's container list is not a list");
    return parsed.flatMap((c: unknown) => {
      const id = (c as { Id?: unknown } | null)?.Id;
      return typeof id === 'string' && /^[0-9a-f]{64}$/.test(id) ? [id] : [];
    });
  }

  watchEvents(onEvent: (ev: DockerEvent) => void, onState?: (s: DockerEngineState) => void): EventWatch {
    return new EventStream(this.socketPath, this.logger, onEvent, onState ?? (() => undefined));
  }

  private request(method: string, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, method, path, headers: { Accept: 'application/json' }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        let total = 0;
        res.on('data', (c: Buffer) => {
          total += c.length;
          if (total > MAX_REPLY_BYTES) {
            req.destroy(new Error(`reply over ${MAX_REPLY_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(unreachable(this.socketPath, err)));
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(unreachable(this.socketPath, err)));
      req.end();
    });
  }
}

function unreachable(socketPath: string, err: unknown): RouterError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'is dockerd running?'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied: run the router as root or in the group that owns the socket (usually docker)'
    : errorMessage(err);
  return new RouterError('io', `cannot reach Docker at ${socketPath}: ${why}`, { cause: err });
}

function dockerMessage(body: string): string {
  try {
    const m = (JSON.parse(body) as { message?: unknown }).message;
    if (typeof m === 'string') return m;
  } catch {
    // Not JSON: show the text itself below.
  }
  return body.trim().slice(0, 200);
}

/** More labels than this is not a container anyone wrote by hand; the rest are ignored. */
const MAX_LABELS = 1024;
const MAX_ENV = 4096;

/** Picks the fields we use out of an inspect reply, checking each. */
export function parseInspect(json: unknown, ref: string): DockerContainer {
  const o = json as {
    Id?: unknown; Name?: unknown; State?: { Pid?: unknown; Running?: unknown };
    Config?: { Labels?: unknown; Env?: unknown } | null; HostConfig?: { NetworkMode?: unknown } | null;
  };
  if (typeof o !== 'object' || o === null || typeof o.Id !== 'string' || !/^[0-9a-f]{12,64}$/.test(o.Id)) {
    throw new RouterError('io', `Docker's inspect reply for ${ref} has no container id`);
  }
  const name = typeof o.Name === 'string' ? o.Name.replace(/^\//, '') : o.Id.slice(0, 12);
  const pid = typeof o.State?.Pid === 'number' && Number.isInteger(o.State.Pid) && o.State.Pid > 0 ? o.State.Pid : 0;
  const running = o.State?.Running === true && pid > 0;
  const out: DockerContainer = { id: o.Id, name, pid, running };
  const rawLabels = o.Config?.Labels;
  if (typeof rawLabels === 'object' && rawLabels !== null && !Array.isArray(rawLabels)) {
    const labels: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [k, v] of Object.entries(rawLabels as Record<string, unknown>).slice(0, MAX_LABELS)) {
      if (typeof v === 'string') labels[k] = v;
    }
    out.labels = labels;
  }
  const env = o.Config?.Env;
  if (Array.isArray(env)) {
    // The last definition wins, as in the container's own environment.
    const found = env.slice(0, MAX_ENV).filter((e): e is string => typeof e === 'string' && e.startsWith('WEAVE_CIDR=')).pop();
    if (found !== undefined) out.weaveCidr = found.slice('WEAVE_CIDR='.length);
  }
  if (typeof o.HostConfig?.NetworkMode === 'string') out.networkMode = o.HostConfig.NetworkMode;
  return out;
}

/** One event line from /events, or null for anything we do not follow. */
export function parseEvent(line: string): DockerEvent | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof o !== 'object' || o === null || o['Type'] !== 'container') return null;
  const action = o['Action'];
  if (action !== 'start' && action !== 'die' && action !== 'destroy') return null;
  const actor = o['Actor'] as { ID?: unknown; Attributes?: Record<string, unknown> } | undefined;
  const id = typeof actor?.ID === 'string' ? actor.ID : typeof o['id'] === 'string' ? o['id'] : null;
  if (id === null) return null;
  const name = typeof actor?.Attributes?.['name'] === 'string' ? actor.Attributes['name'] : null;
  const timeSec = typeof o['time'] === 'number' ? o['time'] : 0;
  return { action, id, name, timeSec };
}

const EVENT_FILTERS = JSON.stringify({ type: ['container'], event: ['start', 'die', 'destroy'] });

/**
 * A long-poll GET /events that reconnects with growing delays and resumes with
 * `since` so that events during a reconnect are not lost.
 */
class EventStream implements EventWatch {
  private closed = false;
  private req: http.ClientRequest | null = null;
  private timer: NodeJS.Timeout | null = null;
  private delayMs = RECONNECT_FIRST_MS;
  private lastTimeSec = 0;
  private warned = false;
  private everConnected = false;

  constructor(
    private readonly socketPath: string,
    private readonly logger: Logger,
    private readonly onEvent: (ev: DockerEvent) => void,
    private readonly onState: (s: DockerEngineState) => void,
  ) {
    this.connect();
  }

  private tell(reachable: boolean, error: string | null): void {
    try {
      this.onState({ reachable, socket: this.socketPath, error });
    } catch (err) {
      this.logger.error('docker state handler failed', { error: errorMessage(err) });
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.req?.destroy();
    this.req = null;
  }

  private connect(): void {
    if (this.closed) return;
    const query = new URLSearchParams({ filters: EVENT_FILTERS });
    if (this.lastTimeSec > 0) query.set('since', String(this.lastTimeSec));
    const req = http.request({ socketPath: this.socketPath, method: 'GET', path: `/events?${query.toString()}`, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        this.retry(`HTTP ${res.statusCode ?? 0}`);
        return;
      }
      if (this.warned) this.logger.info('docker events: connected', { socket: this.socketPath });
      this.warned = false;
      this.everConnected = true;
      this.tell(true, null);
      this.delayMs = RECONNECT_FIRST_MS;
      // From now on a reconnect resumes here, so events while we were away still arrive.
      if (this.lastTimeSec === 0) this.lastTimeSec = Math.floor(Date.now() / 1000);
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line !== '') this.deliver(line);
        }
        if (pending.length > MAX_EVENT_LINE_BYTES) {
          req.destroy(new Error('event line too long'));
        }
      });
      res.on('end', () => this.retry('stream ended'));
      res.on('error', (err) => this.retry(errorMessage(err)));
    });
    req.on('error', (err) => this.retry(unreachable(this.socketPath, err).message));
    req.end();
    this.req = req;
  }

  private deliver(line: string): void {
    const ev = parseEvent(line);
    if (ev === null) return;
    // `since` is inclusive at one-second resolution: a reconnect may repeat the
    // last second's events. Consumers treat events as idempotent.
    if (ev.timeSec > this.lastTimeSec) this.lastTimeSec = ev.timeSec;
    try {
      this.onEvent(ev);
    } catch (err) {
      this.logger.error('docker event handler failed', { action: ev.action, container: ev.id, error: errorMessage(err) });
    }
  }

  private retry(why: string): void {
    if (this.closed || this.timer !== null) return;
    this.req?.destroy();
    this.req = null;
    this.tell(false, why);
    // A host without Docker is normal: say so once, quietly; a lost stream is worth a warning.
    if (!this.warned) {
      if (this.everConnected) this.logger.warn('docker events: stream lost, reconnecting', { socket: this.socketPath, error: why });
      else this.logger.info('docker events: Docker not reachable; will keep trying', { socket: this.socketPath, error: why });
    }
    this.warned = true;
    const delay = this.delayMs;
    this.delayMs = Math.min(RECONNECT_MAX_MS, Math.round(this.delayMs * 1.5));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
    // Watching must not keep a finished process alive.
    this.timer.unref();
  }
}
