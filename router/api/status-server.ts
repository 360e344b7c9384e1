// The read-only status server (127.0.0.1:6782 by default, as in Weave Net):
// GET /status (the text `weave status` prints), GET /status/json and GET
// /metrics (Prometheus). Loopback TCP, open to every local user, so it must
// stay harmless: GET routes only, and nothing here can change router state
// (it takes a status provider, not RouterControl). RouterStatus carries no
// password, key or container secret: names, addresses, counters and health
// (router/mesh/status.ts). The text renderer is injected because it lives in
// cli/, which router/ must not import.

import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import type { LoopbackAddress } from './loopback-address';
import { LoopbackHttpServer, RawResponse } from './loopback-server';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics';
import type { RouterStatus } from '../mesh/status';

export interface StatusServerDeps {
  status: () => RouterStatus;
  /** Human rendering for GET /status; the daemon passes cli/render-status renderStatus. */
  renderText: (status: RouterStatus) => string;
  logger?: Logger;
}

export interface StatusServerOptions {
  /** Loopback host:port; DEFAULT_STATUS_ADDRESS in cli/config.ts is the usual value. */
  address: string;
}

export class StatusServer {
  private readonly server: LoopbackHttpServer;

  constructor(deps: StatusServerDeps, opts: StatusServerOptions) {
    // GETs only: a tiny body limit costs nothing and refuses junk early.
    this.server = new LoopbackHttpServer(deps.logger ?? silentLogger, {
      listen: { tcp: opts.address },
      what: 'status server',
      maxBodyBytes: 4096,
    });
    this.server.route('GET', '/status', () => new RawResponse(deps.renderText(deps.status()), 'text/plain'));
    this.server.route('GET', '/status/json', () => deps.status());
    this.server.route('GET', '/metrics', () => new RawResponse(renderMetrics(deps.status()), METRICS_CONTENT_TYPE));
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
}
