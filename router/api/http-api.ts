// The daemon's local HTTP API, on a Unix socket (/run/weave/weave.sock for
// the default data directory; cli/api-socket.ts derives it): the local
// server (loopback-server.ts) with the router's own endpoints (mesh-api.ts)
// and GET /report, onto which the composition root mounts the endpoints of
// every other part (containers, expose, IPAM, DNS) as ApiEndpoints values
// (common/api-route.ts), so this file never grows with them. It owns the
// report: the router's status plus each mounted section. It must never
// listen on TCP: the API can stop the router, rewire the mesh and write into
// containers, and its only access control is the socket's file mode, root
// and the API group (unix-socket.ts).

import type { ApiEndpoints, ApiHandler } from '../../common/api-route';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { RouterControl } from './control';
import { LoopbackHttpServer } from './loopback-server';
import { meshApi } from './mesh-api';

export interface HttpApiDeps {
  control: RouterControl;
  logger?: Logger;
}

export interface HttpApiOptions {
  /** Absolute path of the socket; cli/api-socket.ts apiSocketFor(datadir) is the usual value. */
  socketPath: string;
  /** Group that may use the API besides root (--api-group); null: root only. */
  gid: number | null;
  maxBodyBytes?: number;
  requestTimeoutMs?: number;
}

export type ReportProvider = () => unknown;

export class HttpApi {
  private readonly server: LoopbackHttpServer;
  private readonly control: RouterControl;
  private readonly reportSections = new Map<string, ReportProvider>();

  constructor(deps: HttpApiDeps, opts: HttpApiOptions) {
    this.control = deps.control;
    this.server = new LoopbackHttpServer(deps.logger ?? silentLogger, {
      listen: { unix: { path: opts.socketPath, gid: opts.gid } },
      what: 'HTTP API',
      ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
      ...(opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: opts.requestTimeoutMs } : {}),
    });
    this.mount(meshApi(this.control));
    this.server.route('GET', '/report', () => this.report());
  }

  /** Adds a part's routes and report sections; a route or section already there is refused (throws). */
  mount(endpoints: ApiEndpoints): void {
    this.server.addRoutes(endpoints.routes);
    for (const s of endpoints.reportSections) this.addReportSection(s.name, s.build);
  }

  /** Adds one endpoint; see LoopbackHttpServer.route. */
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

  socketPath(): string {
    return this.server.socketPath();
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
