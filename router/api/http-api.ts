// The daemon's local HTTP API (127.0.0.1:6784 by default): the loopback
// server (loopback-server.ts) with the router's own endpoints (mesh-api.ts)
// and GET /report, onto which the composition root mounts the endpoints of
// every other part (containers, expose, IPAM, DNS) as ApiEndpoints values
// (common/api-route.ts), so this file never grows with them. It owns the
// report: the router's status plus each mounted section. It must never
// listen on anything but loopback: the API can stop the router and rewire
// the mesh, and it has no authentication of its own.

import type { ApiEndpoints, ApiHandler } from '../../common/api-route';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { RouterControl } from './control';
import type { LoopbackAddress } from './loopback-address';
import { LoopbackHttpServer } from './loopback-server';
import { meshApi } from './mesh-api';

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
