// Reverse-lookup names, the DNS side of an address: RFC 1035 §3.5
// (in-addr.arpa) and RFC 3596 §2.5 (ip6.arpa), built on common/ip.ts. Only a
// name that spells one whole address can be answered from our records
// (dns/answer.ts); the rest goes on like any other name. Pure; names arrive
// in lower case without the trailing dot, and their length is checked before
// any split.

import { IpAddress, ipToBytes, ipv4Address, tryParseIpv4 } from '../common/ip';

const DOT = 0x2e;

const V4_REVERSE = '.in-addr.arpa';
const V6_REVERSE = '.ip6.arpa';
/** Labels under ip6.arpa for one whole address: 32 nibbles and their dots. */
const V6_REVERSE_BODY_CHARS = 63;

/** `1.2.3.4` -> `4.3.2.1.in-addr.arpa`; IPv6 -> 32 nibbles under ip6.arpa. */
export function reverseName(addr: IpAddress): string {
  const bytes = ipToBytes(addr);
  if (addr.family === 4) return `${Array.from(bytes).reverse().join('.')}${V4_REVERSE}`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) {
    const b = bytes[i]!;
    nibbles.push((b & 0xf).toString(16), (b >> 4).toString(16));
  }
  return `${nibbles.join('.')}${V6_REVERSE}`;
}

export type ReverseName =
  | { kind: 'address'; address: IpAddress }
  /** Under in-addr.arpa or ip6.arpa, but not one whole address (a zone cut, or junk). */
  | { kind: 'partial' }
  | { kind: 'not-reverse' };

/** Reads a reverse name in lower case without the trailing dot, as DNS hands names over. */
export function parseReverseName(name: string): ReverseName {
  if (name === V4_REVERSE.slice(1) || name.endsWith(V4_REVERSE)) {
    const body = name.length > V4_REVERSE.length ? name.slice(0, -V4_REVERSE.length) : '';
    // Four labels in reverse order; the length check keeps junk from being split.
    if (body.length > 15) return { kind: 'partial' };
    const labels = body.split('.');
    if (labels.length !== 4) return { kind: 'partial' };
    const v4 = tryParseIpv4(labels.reverse().join('.'));
    return v4 === null ? { kind: 'partial' } : { kind: 'address', address: ipv4Address(v4) };
  }
  if (name === V6_REVERSE.slice(1) || name.endsWith(V6_REVERSE)) {
    const body = name.length > V6_REVERSE.length ? name.slice(0, -V6_REVERSE.length) : '';
    if (body.length !== V6_REVERSE_BODY_CHARS) return { kind: 'partial' };
    let v = 0n;
    // Nibbles run from the lowest to the highest: the last label is the top nibble.
    for (let i = V6_REVERSE_BODY_CHARS - 1; i >= 0; i -= 2) {
      const c = body.charCodeAt(i);
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x61 + 10 : -1;
      if (d < 0 || (i > 0 && body.charCodeAt(i - 1) !== DOT)) return { kind: 'partial' };
      v = (v << 4n) | BigInt(d);
    }
    return { kind: 'address', address: { family: 6, value: v } };
  }
  return { kind: 'not-reverse' };
}
