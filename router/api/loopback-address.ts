// Loopback host:port addresses for the read-only status server: parsing,
// refusing anything that is not loopback, and printing. It has no
// authentication of its own (every local user may read status and metrics;
// the API that changes state is a Unix socket), so a non-loopback address is
// refused here, before anything listens. Whether
// text is an IP address is common/ip's call (no zone ids, no leading zeros),
// the same as everywhere else in the daemon.

import { familyOfCanonical, formatIp, IpAddress, tryParseIp, unmapIpv4 } from '../../common/ip';
import { RouterError } from '../mesh/errors';

export interface LoopbackAddress {
  host: string;
  port: number;
}

/** The IP address `host` names when it is loopback: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104; else null. */
function loopbackIp(host: string): IpAddress | null {
  const ip = tryParseIp(host);
  if (ip === null) return null;
  if (ip.family === 6 && ip.value === 1n) return ip;
  const v4 = unmapIpv4(ip);
  return v4.family === 4 && v4.value >> 24n === 127n ? ip : null;
}

/** True for localhost, 127.0.0.0/8, ::1 and the IPv4-mapped form of 127/8. */
export function isLoopbackHost(host: string): boolean {
  return host.toLowerCase() === 'localhost' || loopbackIp(host) !== null;
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
  const localhost = host.toLowerCase() === 'localhost';
  const ip = localhost ? null : loopbackIp(host);
  if (!localhost && ip === null) {
    throw RouterError.config(
      `${what} must be a loopback address (127.0.0.1, [::1] or localhost), got ${JSON.stringify(host)}: ` +
        'it has no authentication, so it must not be reachable from other hosts',
    );
  }
  return { host: ip === null ? '127.0.0.1' : formatIp(ip), port: Number(portText) };
}

export function formatLoopbackAddress(addr: LoopbackAddress): string {
  return familyOfCanonical(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
