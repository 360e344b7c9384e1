// The Docker plugin's socket: HTTP over /run/docker/plugins/weave.sock, where
// Docker's engine finds legacy plugins by name. Each request is
// `POST /<Interface>.<Method>` with a JSON body; this file reads it (capped,
// with a deadline), hands call and body to the plugin, and writes the reply
// or `{"Err": ...}`. The socket is root's, mode 0660, like the API's
// (unix-socket.ts): only root (the engine) may drive it.
//
// A socket something already answers on (another router, Weave Net's own
// plugin) is never taken over: listen() reports it, the daemon carries on
// without the plugin and says so in status. close() removes the socket.

import fs from 'node:fs';
import http from 'node:http';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';
import type { PluginCall } from '../host/docker-plugin-wire';
import { errorReply, MAX_PLUGIN_BODY_BYTES, PLUGIN_CONTENT_TYPE, pluginCallOf, PluginError } from '../host/docker-plugin-wire';
import { listenUnix, socketPathState } from './unix-socket';

/** Where the engine looks for a plugin named `weave`. */
export const DEFAULT_PLUGIN_SOCKET = '/run/docker/plugins/weave.sock';
/** A request must arrive whole within this; the engine sends a few hundred bytes at once. */
const REQUEST_DEADLINE_MS = 10_000;

export type PluginHandler = (call: PluginCall, body: unknown) => Promise<unknown>;

export class DockerPluginServer {
  private readonly server: http.Server;
  private listening = false;

  constructor(private readonly handler: PluginHandler, private readonly logger: Logger, readonly socketPath: string = DEFAULT_PLUGIN_SOCKET) {
    this.server = http.createServer((req, res) => this.serve(req, res));
    this.server.requestTimeout = REQUEST_DEADLINE_MS;
    this.server.headersTimeout = REQUEST_DEADLINE_MS;
  }

  /** Binds the socket; throws a clear error when it is taken or cannot be made. */
  async listen(): Promise<void> {
    const state = await socketPathState(this.socketPath);
    if (state === 'live') {
      throw new PluginError('unavailable', `something already answers on ${this.socketPath} (another weave router, or Weave Net's plugin): ` +
        'the Docker plugin is off on this router; stop the other one and relaunch, or launch with --no-docker-plugin');
    }
    await listenUnix(this.server, { path: this.socketPath, gid: null }, 'Docker plugin');
    this.listening = true;
  }

  async close(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    // The engine keeps connections to its plugins open: close() alone would wait for them.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // Gone already (server.close removes it on some versions).
    }
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const call = pluginCallOf((req.url ?? '').split('?')[0] ?? '');
    if (req.method !== 'POST' || call === null) {
      req.resume();
      this.reply(res, 404, errorReply(`the weave plugin has no ${req.method ?? ''} ${String(req.url).slice(0, 80)}`));
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return;
      total += c.length;
      if (total > MAX_PLUGIN_BODY_BYTES) {
        // The rest is read and dropped (the request deadline bounds it), so the client hears why.
        refused = true;
        chunks.length = 0;
        res.shouldKeepAlive = false;
        this.reply(res, 413, errorReply(`request body over ${MAX_PLUGIN_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (refused) return;
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = {};
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (err) {
          this.reply(res, 400, errorReply(`${call}: the request body is not JSON: ${errorMessage(err)}`));
          return;
        }
      }
      this.handler(call, body).then(
        (reply) => this.reply(res, 200, reply),
        (err: unknown) => {
          const status = err instanceof PluginError ? (err.code === 'bad-request' ? 400 : err.code === 'not-found' ? 404 : 500) : 500;
          if (!(err instanceof PluginError)) this.logger.error('docker plugin call failed', { call, error: errorMessage(err) });
          else this.logger.info('docker plugin call refused', { call, error: err.message });
          this.reply(res, status, errorReply(errorMessage(err)));
        },
      );
    });
  }

  private reply(res: http.ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return;
    const text = JSON.stringify(body ?? {});
    res.writeHead(status, { 'Content-Type': PLUGIN_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}
