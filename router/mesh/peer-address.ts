// Peer addresses as users write them: `host[:port]`, host an IPv4 address, a
// bracketed IPv6 address, or a DNS name. Normalised to `host:port` text, which
// is also the key of a connection target.

import { isIP } from 'node:net';
import { RouterError } from './errors';

export const DEFAULT_MESH_PORT = 6783;

export interface PeerAddress {
  host: string;
  port: number;
}

const HOSTNAME_RE = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

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
    host = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw RouterError.config(`peer address ${JSON.stringify(text)}: expected ':port' after ']'`);
      portText = rest.slice(1);
    }
    if (isIP(host) !== 6) throw RouterError.config(`peer address ${JSON.stringify(text)}: not an IPv6 address inside brackets`);
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) {
      if (isIP(s) === 6) throw RouterError.config(`peer address ${JSON.stringify(text)}: write IPv6 addresses in brackets, e.g. [${s}]:${defaultPort}`);
      throw RouterError.config(`peer address ${JSON.stringify(text)}: too many ':'`);
    }
    const idx = s.indexOf(':');
    host = idx < 0 ? s : s.slice(0, idx);
    portText = idx < 0 ? null : s.slice(idx + 1);
    if (isIP(host) !== 4 && !HOSTNAME_RE.test(host)) {
      throw RouterError.config(`peer address ${JSON.stringify(text)}: ${JSON.stringify(host)} is neither an IP address nor a host name`);
    }
  }
  const port = portText === null ? defaultPort : parsePort(portText, `port in peer address ${JSON.stringify(text)}`);
  return { host: host.toLowerCase(), port };
}

export function formatPeerAddress(addr: PeerAddress): string {
  return isIP(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** Parses and normalises; the result is the canonical key of a target. */
export function normalisePeerAddress(text: string, defaultPort = DEFAULT_MESH_PORT): string {
  return formatPeerAddress(parsePeerAddress(text, defaultPort));
}
