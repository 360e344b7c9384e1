// The plugin's one connection to the router: a JSON request over the API's
// Unix socket, and the CNI error each way of failing becomes. No socket, or
// nobody answering on it, means the router is not running (try again later);
// an HTTP error status is mapped by the table in router/api/cni-api.ts.
//
// Kept to node:http and nothing of ours but the error class, so the plugin
// starts fast (cli/api-client.ts would bring the CLI's modules along).

import http from 'node:http';
import { CNI_ERR, PluginError } from './errors';

/** A reply is one attachment or a list of them; far past this is not our router. */
const MAX_REPLY_BYTES = 8 * 1024 * 1024;

export type RouterCall = (method: 'GET' | 'POST', path: string, body?: unknown) => Promise<unknown>;

/** The CNI code for an HTTP status of the /cni endpoints. */
export function cniCodeForStatus(status: number): number {
  switch (status) {
    case 400: case 413: return CNI_ERR.invalidConfig;
    case 404: case 410: return CNI_ERR.containerUnknown;
    case 409: return CNI_ERR.drifted;
    case 503: return CNI_ERR.tryAgainLater;
    default: return CNI_ERR.ioFailure;
  }
}

export function routerClient(socketPath: string, timeoutMs: number): RouterCall {
  return (method, path, body) => new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    let done = false;
    const fail = (err: PluginError): void => {
      if (!done) {
        done = true;
        reject(err);
      }
    };
    const req = http.request({
      socketPath, method, path, agent: false,
      headers: { Accept: 'application/json', ...(payload !== '' ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (c: Buffer) => {
        total += c.length;
        if (total > MAX_REPLY_BYTES) {
          fail(new PluginError(CNI_ERR.ioFailure, `reply from ${socketPath} is over ${MAX_REPLY_BYTES} bytes; is that a weave router?`));
          req.destroy();
        } else {
          chunks.push(c);
        }
      });
      res.on('error', (err) => fail(new PluginError(CNI_ERR.ioFailure, `reading the router's reply: ${err.message}`)));
      res.on('end', () => {
        if (done) return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          fail(new PluginError(CNI_ERR.ioFailure, `reply from ${socketPath} is not JSON; is that a weave router?`));
          return;
        }
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          const msg = typeof parsed === 'object' && parsed !== null && typeof (parsed as { error?: unknown }).error === 'string'
            ? (parsed as { error: string }).error : `HTTP ${status}`;
          fail(new PluginError(cniCodeForStatus(status), msg, `${method} ${path} on ${socketPath}: HTTP ${status}`));
          return;
        }
        done = true;
        resolve(parsed);
      });
    });
    req.setTimeout(timeoutMs, () => {
      fail(new PluginError(CNI_ERR.tryAgainLater, `the weave router did not answer within ${Math.round(timeoutMs / 1000)} s`, socketPath));
      req.destroy();
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const gone = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK' || err.code === 'ECONNRESET';
      if (gone) fail(new PluginError(CNI_ERR.tryAgainLater, `weave router is not running (${err.code} on ${socketPath}); start it with weave launch`, socketPath));
      else if (err.code === 'EACCES' || err.code === 'EPERM') fail(new PluginError(CNI_ERR.ioFailure, `permission denied on ${socketPath}: the weave-net plugin must run as root`, socketPath));
      else fail(new PluginError(CNI_ERR.ioFailure, `cannot reach the weave router on ${socketPath}: ${err.message}`, socketPath));
    });
    req.end(payload);
  });
}
