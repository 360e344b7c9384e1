// IP addresses as DNS needs them: strict parsing of IPv4 and IPv6 text into
// bytes, one canonical text form per address (RFC 5952 for IPv6), and the
// reverse-lookup names of RFC 1035 §3.5 (in-addr.arpa) and RFC 3596 §2.5
// (ip6.arpa). Pure: no sockets, no node:net, so the store and the query core
// can use it anywhere. Anything that is not exactly an address yields null.

import { formatIpv6Groups } from '../common/ip';

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

const V4_PART = /^(0|[1-9]\d{0,2})$/;

/** Dotted quad, no leading zeros (some tools read them as octal), each part 0-255. */
export function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    if (!V4_PART.test(p) || Number(p) > 255) return null;
    out[i] = Number(p);
  }
  return out;
}

/** Any RFC 4291 §2.2 text form, including `::` and a trailing dotted quad; no zone ids, no brackets. */
export function parseIpv6(text: string): Uint8Array | null {
  if (text.length < 2 || text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  let head = text;
  let tail4: Uint8Array | null = null;
  if (text.includes('.')) {
    const lastColon = text.lastIndexOf(':');
    tail4 = parseIpv4(text.slice(lastColon + 1));
    if (tail4 === null) return null;
    // Keep a "::" right before the quad ("::1.2.3.4"), drop a single separating colon.
    const prefix = text.slice(0, lastColon + 1);
    head = prefix.endsWith('::') ? prefix : prefix.slice(0, -1);
  }
  const groupsWanted = tail4 === null ? 8 : 6;
  const dbl = head.indexOf('::');
  if (dbl !== head.lastIndexOf('::')) return null;
  const parseGroups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (dbl >= 0) {
    const left = parseGroups(head.slice(0, dbl));
    const right = parseGroups(head.slice(dbl + 2));
    if (left === null || right === null) return null;
    const missing = groupsWanted - left.length - right.length;
    // "::" stands for at least one group of zeros.
    if (missing < 1) return null;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    const all = parseGroups(head);
    if (all === null || all.length !== groupsWanted) return null;
    groups = all;
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < groups.length; i++) {
    out[i * 2] = (groups[i] as number) >> 8;
    out[i * 2 + 1] = (groups[i] as number) & 0xff;
  }
  if (tail4 !== null) out.set(tail4, 12);
  return out;
}

export function parseIp(text: string): IpAddress | null {
  if (typeof text !== 'string') return null;
  const v4 = parseIpv4(text);
  if (v4 !== null) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(text);
  if (v6 !== null) return { family: 6, bytes: v6 };
  return null;
}

export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, got ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((bytes[i * 2] as number) << 8) | (bytes[i * 2 + 1] as number));
  return formatIpv6Groups(groups);
}

/** The canonical text of an address, or null when `text` is not one. */
export function canonicalIp(text: string): string | null {
  const ip = parseIp(text);
  return ip === null ? null : formatIp(ip.bytes);
}

export function ipFamily(canonical: string): IpFamily {
  return canonical.includes(':') ? 6 : 4;
}

/** `1.2.3.4` -> `4.3.2.1.in-addr.arpa`; IPv6 -> 32 nibbles under ip6.arpa. */
export function reverseName(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${Array.from(bytes).reverse().join('.')}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) {
    const b = bytes[i] as number;
    nibbles.push((b & 0xf).toString(16), (b >> 4).toString(16));
  }
  return `${nibbles.join('.')}.ip6.arpa`;
}

export type ReverseParse =
  | { kind: 'address'; address: string }
  /** Under in-addr.arpa or ip6.arpa, but not one whole address (a zone cut, or junk). */
  | { kind: 'partial' }
  | { kind: 'not-reverse' };

/** Reads a reverse name (lower case, no trailing dot). */
export function parseReverseName(name: string): ReverseParse {
  if (name === 'in-addr.arpa' || name.endsWith('.in-addr.arpa')) {
    const labels = name === 'in-addr.arpa' ? [] : name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (labels.length !== 4) return { kind: 'partial' };
    const v4 = parseIpv4(labels.reverse().join('.'));
    return v4 === null ? { kind: 'partial' } : { kind: 'address', address: formatIp(v4) };
  }
  if (name === 'ip6.arpa' || name.endsWith('.ip6.arpa')) {
    const labels = name === 'ip6.arpa' ? [] : name.slice(0, -'.ip6.arpa'.length).split('.');
    if (labels.length !== 32 || !labels.every((l) => /^[0-9a-f]$/.test(l))) return { kind: 'partial' };
    const out = new Uint8Array(16);
    for (let i = 0; i < 16; i++) {
      const lo = parseInt(labels[30 - i * 2 + 0] as string, 16);
      const hi = parseInt(labels[30 - i * 2 + 1] as string, 16);
      out[i] = (hi << 4) | lo;
    }
    return { kind: 'address', address: formatIp(out) };
  }
  return { kind: 'not-reverse' };
}
