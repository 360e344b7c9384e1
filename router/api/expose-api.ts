// The host exposure endpoints on the daemon's local HTTP API, and its section
// of GET /report, as ApiEndpoints the composition root mounts
// (common/api-route.ts). Bodies are validated here (RouterError('config') ->
// 400) before the exposer sees them.
//
//   POST /expose {addresses?: [ADDR]}  -> {addresses: [cidr]}  what this call exposed
//   POST /hide   {addresses?: [ADDR]}  -> {removed: [cidr]}
//   GET  /expose                       -> {addresses: [cidr]}  everything exposed
//
// ADDR: a CIDR or ip:CIDR (claimed), net:CIDR or net:default (allocated
// there); none exposes one address of the default subnet, or hides them all.

import type { ApiEndpoints } from '../../common/api-route';
import { RouterError } from '../mesh/errors';
import { MAX_EXPOSED_ADDRESSES } from '../host/expose-state';
import type { HostExposer } from '../host/host-exposer';

export interface ExposeReply {
  addresses: string[];
}

export interface HideReply {
  removed: string[];
}

const MAX_ADDRESS_CHARS = 100;

/** `{addresses?: string[]}`; an empty or missing body means no addresses. */
export function parseAddressesBody(body: unknown, endpoint: string): string[] {
  if (body === undefined) return [];
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw RouterError.config(`${endpoint} expects a JSON object {"addresses": ["10.32.0.1/12" or "net:10.32.1.0/24", ...] (optional)}`);
  }
  const list = (body as Record<string, unknown>)['addresses'];
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw RouterError.config(`${endpoint}: "addresses" must be an array of strings`);
  if (list.length > MAX_EXPOSED_ADDRESSES) {
    throw RouterError.config(`${endpoint}: ${list.length} addresses in one request, over the limit of ${MAX_EXPOSED_ADDRESSES}`);
  }
  return list.map((a) => {
    if (typeof a !== 'string' || a.trim() === '' || a.length > MAX_ADDRESS_CHARS) {
      throw RouterError.config(`${endpoint}: each address must be a non-empty string of at most ${MAX_ADDRESS_CHARS} characters`);
    }
    return a.trim();
  });
}

export type ExposeApiTarget = Pick<HostExposer, 'expose' | 'hide' | 'exposed'>;

export function exposeApi(exposer: ExposeApiTarget): ApiEndpoints {
  return {
    routes: [
      { method: 'POST', path: '/expose', handler: async (req): Promise<ExposeReply> => ({ addresses: await exposer.expose(parseAddressesBody(req.body, '/expose')) }) },
      { method: 'POST', path: '/hide', handler: async (req): Promise<HideReply> => ({ removed: await exposer.hide(parseAddressesBody(req.body, '/hide')) }) },
      { method: 'GET', path: '/expose', handler: (): ExposeReply => ({ addresses: exposer.exposed() }) },
    ],
    reportSections: [{ name: 'expose', build: (): ExposeReply => ({ addresses: exposer.exposed() }) }],
  };
}
