// Peer addresses as users write them: `host[:port]`, host an IPv4 address, a
// bracketed IPv6 address, or a DNS name. Normalised to `host:port` text, which
// is also the key of a connection target, so IP addresses are kept in their
// canonical spelling (common/ip: RFC 5952 for IPv6) and names in lower case.
//
// What is an IP address is common/ip's call, not node:net's: no zone ids, no
// leading zeros. A host that ends in a numeric label is taken for an IPv4
// attempt and refused unless it is one, because the resolver would read
// "010.0.0.1" or "10.1" the inet_aton way (octal, short forms).

import { formatIp, ipTextHint, IpError, parseIp, tryParseIp, tryParseIpv6 } from '../../common/ip';
import { RouterError } from './errors';

export const DEFAULT_MESH_PORT = 6783;

export interface PeerAddress {
  host: string;
  port: number;
}

const HOSTNAME_RE = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;
/** A last label of digits only: no host name ends so (RFC 3696 §2), only an IPv4 address. */
const NUMERIC_LAST_LABEL_RE = /(^|\.)\d+\.?$/;

export function parsePort(text: string, what = 'port'): number {
  if (!/^\d{1,5}$/.test(text)) throw RouterError.config(`${what} must be a number from 1 to 65535, got ${JSON.stringify(text)}`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw RouterError.config(`${what} must be from 1 to 65535, got ${port}`);
  return port;
}

export function parsePeerAddress(text: string, defaultPort = DEFAULT_MESH_PORT): PeerAddress {
  const s = text.trim();
  if (s === '') throw RouterError.config('empty peer address');
  let host: string;
  let portText: string | null = null;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw RouterError.config(`peer address ${JSON.stringify(text)}: missing ']'`);
    const inside = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw RouterError.config(`peer address ${JSON.stringify(text)}: expected ':port' after ']'`);
      portText = rest.slice(1);
    }
    const ip = tryParseIp(inside);
    if (ip === null || ip.family !== 6) {
      throw RouterError.config(`peer address ${JSON.stringify(text)}: not an IPv6 address inside brackets${ipTextHint(inside)}`);
    }
    host = formatIp(ip);
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) {
      if (tryParseIpv6(s) !== null) throw RouterError.config(`peer address ${JSON.stringify(text)}: write IPv6 addresses in brackets, e.g. [${s}]:${defaultPort}`);
      throw RouterError.config(`peer address ${JSON.stringify(text)}: too many ':'`);
    }
    const idx = s.indexOf(':');
    const name = idx < 0 ? s : s.slice(0, idx);
    portText = idx < 0 ? null : s.slice(idx + 1);
    host = hostOf(name, text);
  }
  const port = portText === null ? defaultPort : parsePort(portText, `port in peer address ${JSON.stringify(text)}`);
  return { host, port };
}

/** An IPv4 address or a host name (lower case), as written outside brackets. */
function hostOf(name: string, text: string): string {
  if (NUMERIC_LAST_LABEL_RE.test(name)) {
    try {
      return formatIp(parseIp(name, 4));
    } catch (err) {
      if (err instanceof IpError) throw RouterError.config(`peer address ${JSON.stringify(text)}: ${err.message}`);
      throw err;
    }
  }
  if (!HOSTNAME_RE.test(name)) {
    throw RouterError.config(`peer address ${JSON.stringify(text)}: ${JSON.stringify(name)} is neither an IP address nor a host name`);
  }
  return name.toLowerCase();
}

export function formatPeerAddress(addr: PeerAddress): string {
  return tryParseIpv6(addr.host) !== null ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** Parses and normalises; the result is the canonical key of a target. */
export function normalisePeerAddress(text: string, defaultPort = DEFAULT_MESH_PORT): string {
  return formatPeerAddress(parsePeerAddress(text, defaultPort));
}
