// resolv.conf as text (resolv.conf(5)): reading the host's (for upstream
// servers) and writing a container's (pointing it at us). Pure; the files
// themselves are handled by dns/upstreams.ts and dns/container-resolv.ts.

import { DNS_PORT, MAX_UPSTREAMS } from './constants';
import { DnsError } from './errors';
import { canonicalIp, familyOfCanonical } from '../common/ip';

export interface ResolvConf {
  /** Canonical addresses, in file order. */
  nameservers: string[];
  search: string[];
  options: string[];
}

/** Lenient, like glibc: unknown lines are ignored; the last `search`/`domain` line wins. */
export function parseResolvConf(text: string): ResolvConf {
  const out: ResolvConf = { nameservers: [], search: [], options: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (line === '') continue;
    const [key, ...rest] = line.split(/\s+/);
    switch (key) {
      case 'nameserver': {
        // A zone id (fe80::1%eth0) cannot be reached from another namespace anyway.
        const addr = canonicalIp(rest[0] ?? '');
        if (addr !== null && !out.nameservers.includes(addr)) out.nameservers.push(addr);
        break;
      }
      case 'search':
      case 'domain':
        out.search = rest.filter((s) => s !== '').map((s) => s.toLowerCase().replace(/\.$/, ''));
        break;
      case 'options':
        out.options.push(...rest);
        break;
      default:
        break;
    }
  }
  return out;
}

export interface Upstream {
  host: string;
  port: number;
}

export function formatUpstream(u: Upstream): string {
  return familyOfCanonical(u.host) === 6 ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

/** `1.2.3.4`, `1.2.3.4:5353`, `[::1]:53` or `::1`; addresses only, never names (resolving them needs a resolver). */
export function parseUpstream(text: string, what = '--dns-upstream'): Upstream {
  const s = typeof text === 'string' ? text.trim() : '';
  let host = s;
  let port = DNS_PORT;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracket !== null) {
    host = bracket[1] as string;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (/^[\d.]+:\d{1,5}$/.test(s)) {
    const i = s.lastIndexOf(':');
    host = s.slice(0, i);
    port = Number(s.slice(i + 1));
  }
  const canon = canonicalIp(host);
  if (canon === null || port < 1 || port > 65535) {
    throw DnsError.config(`${what} must be an IP address with an optional port (10.0.0.2, 10.0.0.2:5353, [fd00::2]:53), got ${JSON.stringify(text)}`);
  }
  return { host: canon, port };
}

/** --dns-upstream values (comma-separated, possibly repeated), checked. */
export function parseUpstreamList(values: readonly string[]): Upstream[] {
  return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '').map((s) => parseUpstream(s));
}

/** Upstreams from a parsed resolv.conf, minus those `isSelf` names (they would loop back to us). */
export function upstreamsFrom(conf: ResolvConf, isSelf: (u: Upstream) => boolean): Upstream[] {
  return conf.nameservers.map((host) => ({ host, port: DNS_PORT })).filter((u) => !isSelf(u)).slice(0, MAX_UPSTREAMS);
}

export const CONTAINER_RESOLV_MARKER = '# written by weave';

/**
 * A container's resolv.conf: our server, our domain first in the search list
 * (then the container's own), and ndots:1 so that a bare name is tried under
 * the search domains first while a dotted one goes out as is.
 */
export function renderContainerResolvConf(nameserver: string, domain: string, previous: ResolvConf | null): string {
  const search = [domain, ...(previous?.search ?? []).filter((d) => d !== domain)].slice(0, 6);
  return [
    `${CONTAINER_RESOLV_MARKER}: names under ${domain} come from the weave mesh, the rest from the host's servers.`,
    '# The previous content comes back when the container is detached.',
    `nameserver ${nameserver}`,
    `search ${search.join(' ')}`,
    'options ndots:1',
    '',
  ].join('\n');
}
