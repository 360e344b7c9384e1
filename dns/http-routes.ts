// DNS's endpoints on the daemon's local HTTP API, and its section of
// GET /report, as a plain ApiEndpoints value (common/api-route.ts) that
// cli/daemon.ts mounts: dns/ never sees the server. Glue only: each body and
// query is validated here (refused with DnsError('config'), which is 400)
// before the DnsDaemon (daemon.ts) sees it. Reply shapes: api-types.ts.
//
//   GET  /dns                                  -> DnsStatusReport
//   POST /dns/add    {name?, addresses?, container?} -> DnsChangeReply
//   POST /dns/remove {name?, addresses?, container?} -> DnsChangeReply
//   GET  /dns/lookup?name=NAME | ?address=IP   -> DnsLookupReply | DnsReverseReply

import type { ApiEndpoints } from '../common/api-route';
import { canonicalIp } from '../common/ip';
import type { DnsAddRequest } from './api-types';
import type { DnsDaemon } from './daemon';
import { DnsError } from './errors';

function objectBody(body: unknown, endpoint: string): Record<string, unknown> {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw DnsError.config(`${endpoint} expects a JSON object`);
  return body as Record<string, unknown>;
}

function optString(rec: Record<string, unknown>, key: string, endpoint: string): string | undefined {
  const v = rec[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 1024) throw DnsError.config(`${endpoint}: "${key}" must be a string`);
  return v;
}

function optAddresses(rec: Record<string, unknown>, endpoint: string): string[] | undefined {
  const v = rec['addresses'];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > 64 || !v.every((x) => typeof x === 'string')) {
    throw DnsError.config(`${endpoint}: "addresses" must be a list of at most 64 IP addresses`);
  }
  for (const a of v as string[]) if (canonicalIp(a) === null) throw DnsError.config(`${endpoint}: ${JSON.stringify(a)} is not an IP address`);
  return v as string[];
}

export function parseDnsChangeBody(body: unknown, endpoint: string): DnsAddRequest {
  const rec = objectBody(body, endpoint);
  const out: DnsAddRequest = {};
  const name = optString(rec, 'name', endpoint);
  const container = optString(rec, 'container', endpoint);
  const addresses = optAddresses(rec, endpoint);
  if (name !== undefined) out.name = name;
  if (container !== undefined) out.container = container;
  if (addresses !== undefined) out.addresses = addresses;
  return out;
}

export type DnsApiTarget = Pick<DnsDaemon, 'add' | 'remove' | 'lookup' | 'reverse' | 'status'>;

export function dnsApi(dns: DnsApiTarget): ApiEndpoints {
  return {
    routes: [
      { method: 'GET', path: '/dns', handler: () => dns.status() },
      { method: 'POST', path: '/dns/add', handler: (req) => dns.add(parseDnsChangeBody(req.body, '/dns/add')) },
      { method: 'POST', path: '/dns/remove', handler: (req) => dns.remove(parseDnsChangeBody(req.body, '/dns/remove')) },
      {
        method: 'GET', path: '/dns/lookup', handler: (req) => {
          const name = req.query.get('name');
          const address = req.query.get('address');
          if ((name === null) === (address === null)) throw DnsError.config('/dns/lookup needs exactly one of ?name= or ?address=');
          return name !== null ? dns.lookup(name) : dns.reverse(address as string);
        },
      },
    ],
    reportSections: [{ name: 'dns', build: () => dns.status() }],
  };
}
