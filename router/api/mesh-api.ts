// The router's own endpoints on the local API: GET /status, POST /connect,
// POST /forget and POST /stop, as routes over RouterControl. Owns validating
// their bodies (RouterError('config') -> 400) before the router sees them;
// the work itself is the router's.
//
//   GET  /status                                 -> RouterStatus
//   POST /connect {peers: [host[:port]], replace?} -> {}
//   POST /forget  {peers: [host[:port]]}         -> {}
//   POST /stop                                   -> {stopping: true}, then stops

import type { ApiEndpoints } from '../../common/api-route';
import { RouterError } from '../mesh/errors';
import type { RouterControl } from './control';

/** Upper bound on peers in one /connect or /forget, checked before anything else. */
export const MAX_PEERS_PER_REQUEST = 1000;

export interface ConnectRequest {
  peers: string[];
  replace: boolean;
}

export function meshApi(control: RouterControl): ApiEndpoints {
  return {
    routes: [
      { method: 'GET', path: '/status', handler: () => control.status() },
      {
        method: 'POST', path: '/connect', handler: (req) => {
          const body = parsePeersBody(req.body, '/connect', true);
          control.connect(body.peers, body.replace);
          return {};
        },
      },
      {
        method: 'POST', path: '/forget', handler: (req) => {
          const body = parsePeersBody(req.body, '/forget', false);
          control.forget(body.peers);
          return {};
        },
      },
      {
        method: 'POST', path: '/stop', handler: (req) => {
          // The router stops only once the reply is on the wire, so `weave stop` gets its answer.
          req.afterResponse(() => control.stop());
          return { stopping: true };
        },
      },
    ],
    // The router's status heads GET /report on its own (http-api.ts), not as a section.
    reportSections: [],
  };
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
