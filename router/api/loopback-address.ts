// Loopback host:port addresses for the local servers (the API and the status
// server) and for the CLI that calls them: parsing, refusing anything that is
// not loopback, and printing. The API has no authentication of its own, so
// a non-loopback address is refused here, before anything listens.

import { isIP } from 'node:net';
import { RouterError } from '../mesh/errors';

export interface LoopbackAddress {
  host: string;
  port: number;
}

/** True for 127.0.0.0/8, ::1 and the IPv4-mapped form of 127/8. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped !== null && (mapped[1] ?? '').startsWith('127.');
  }
  return false;
}

/**
 * Parses `host:port` (IPv6 in brackets) and refuses anything that is not a
 * loopback address. `localhost` becomes 127.0.0.1 so that what we bind does not
 * depend on the resolver. Port 0 is allowed (an ephemeral port, for tests);
 * callers that need a fixed port check that themselves.
 */
export function parseLoopbackAddress(text: string, what: string): LoopbackAddress {
  const s = text.trim();
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') {
      throw RouterError.config(`${what} must be host:port (IPv6 as [::1]:port), got ${JSON.stringify(text)}`);
    }
    host = s.slice(1, close);
    portText = s.slice(close + 2);
  } else {
    const idx = s.lastIndexOf(':');
    if (idx < 0 || s.indexOf(':') !== idx) {
      throw RouterError.config(`${what} must be host:port (IPv6 as [::1]:port), got ${JSON.stringify(text)}`);
    }
    host = s.slice(0, idx);
    portText = s.slice(idx + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw RouterError.config(`${what}: port must be a number from 0 to 65535, got ${JSON.stringify(portText)}`);
  }
  if (!isLoopbackHost(host)) {
    throw RouterError.config(
      `${what} must be a loopback address (127.0.0.1, [::1] or localhost), got ${JSON.stringify(host)}: ` +
        'the API has no authentication, so it must not be reachable from other hosts',
    );
  }
  return { host: host.toLowerCase() === 'localhost' ? '127.0.0.1' : host.toLowerCase(), port: Number(portText) };
}

export function formatLoopbackAddress(addr: LoopbackAddress): string {
  return isIP(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
