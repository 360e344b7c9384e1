// Addresses for containers' ethwe and for the host (weave expose), as text
// from users, IPAM and the state file: attach CIDRs of either family (refusing
// what can never be a unicast host address), route CIDRs normalised to their
// network, the family of a CIDR, and the checks on a request's list of
// addresses.
//
// Pure: no I/O, no state. It must never hand out an address in a form other
// than the canonical one (IPv6 per RFC 5952), since records, IPAM and `ip`
// output are compared as text.

import { RouterError } from '../mesh/errors';
import { formatIpv6Groups } from '../../common/ip';

/** Upper bound on addresses in one request: far above any real use, stops a runaway client. */
export const MAX_ADDRESSES_PER_REQUEST = 64;

export interface Ipv4Cidr {
  /** Dotted quad. */
  address: string;
  prefixLen: number;
  /** Normalised `a.b.c.d/n`. */
  cidr: string;
}

/** An address for ethwe, either family (dual stack). IPv6 text is canonical (RFC 5952). */
export interface AttachCidr {
  family: 4 | 6;
  address: string;
  prefixLen: number;
  /** Normalised `address/n`. */
  cidr: string;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipv4ToNumber(text: string): number | null {
  const m = IPV4_RE.exec(text);
  if (m === null) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] ?? '';
    // Leading zeros are refused: some tools read them as octal.
    if ((part.length > 1 && part.startsWith('0')) || Number(part) > 255) return null;
    n = n * 256 + Number(part);
  }
  return n;
}

function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** IPv6 text (`::` compression, a trailing dotted quad allowed; no zone) as a 128-bit number, or null. */
function ipv6ToBigint(text: string): bigint | null {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (part: string): string[] | null => (part === '' ? [] : part.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  if (head === null || tail === null) return null;
  const last = halves.length === 2 ? tail : head;
  const end = last[last.length - 1];
  if (end !== undefined && end.includes('.')) {
    const v4 = ipv4ToNumber(end);
    if (v4 === null) return null;
    last.splice(last.length - 1, 1, Math.floor(v4 / 65536).toString(16), (v4 % 65536).toString(16));
  }
  if (![...head, ...tail].every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return null;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups compressed (the first if tied). */
function bigintToIpv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  return formatIpv6Groups(groups);
}

const V6_BITS = 128n;
const V6_ALL = (1n << V6_BITS) - 1n;

function v6Mask(prefixLen: number): bigint {
  return V6_ALL ^ ((1n << (V6_BITS - BigInt(prefixLen))) - 1n);
}

function inV6Block(v: bigint, base: bigint, prefixLen: number): boolean {
  return (v & v6Mask(prefixLen)) === base;
}

function parseV6CidrParts(text: string, what: string): { value: bigint; prefixLen: number; address: string } {
  const s = text.trim();
  const slash = s.indexOf('/');
  const example = 'fd00:77:1::5/48';
  if (slash < 0) {
    if (ipv6ToBigint(s) !== null) throw RouterError.config(`${what} ${JSON.stringify(text)} needs a prefix length, e.g. ${s}/64`);
    throw RouterError.config(`${what} must be a CIDR such as 10.32.0.1/12 or ${example}, got ${JSON.stringify(text)}`);
  }
  const value = ipv6ToBigint(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (value === null || !/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) {
    throw RouterError.config(`${what} must be an IPv6 CIDR such as ${example}, got ${JSON.stringify(text)}`);
  }
  return { value, prefixLen: Number(lenText), address: bigintToIpv6(value) };
}

function parseCidrParts(text: string, what: string): { base: number; prefixLen: number; address: string } {
  const s = typeof text === 'string' ? text.trim() : '';
  if (s.includes(':')) throw RouterError.config(`${what} ${JSON.stringify(text)}: IPv6 is not supported here, use an IPv4 CIDR such as 10.32.0.1/12`);
  const slash = s.indexOf('/');
  if (slash < 0) {
    if (ipv4ToNumber(s) !== null) throw RouterError.config(`${what} ${JSON.stringify(text)} needs a prefix length, e.g. ${s}/12`);
    throw RouterError.config(`${what} must be an IPv4 CIDR such as 10.32.0.1/12, got ${JSON.stringify(text)}`);
  }
  const address = s.slice(0, slash);
  const lenText = s.slice(slash + 1);
  const base = ipv4ToNumber(address);
  if (base === null || !/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    throw RouterError.config(`${what} must be an IPv4 CIDR such as 10.32.0.1/12, got ${JSON.stringify(text)}`);
  }
  return { base, prefixLen: Number(lenText), address };
}

/**
 * An IPv4 address for a container's ethwe (or the host, weave expose): a host
 * address with its prefix. Refuses IPv6 (see parseAttachAddress), the network
 * and broadcast addresses of the subnet (for prefixes up to /30) and addresses
 * that can never be a unicast host address.
 */
export function parseAttachCidr(text: string): Ipv4Cidr {
  const { base, prefixLen, address } = parseCidrParts(text, 'address');
  const first = Math.floor(base / 2 ** 24);
  if (prefixLen === 0) throw RouterError.config(`address ${text}: prefix length 0 would claim the whole Internet`);
  if (first === 0) throw RouterError.config(`address ${text} is in 0.0.0.0/8, which is not a host address`);
  if (first === 127) throw RouterError.config(`address ${text} is a loopback address`);
  if (first >= 224 && first <= 239) throw RouterError.config(`address ${text} is a multicast address`);
  if (first >= 240) throw RouterError.config(`address ${text} is in the reserved range 240.0.0.0/4`);
  if (prefixLen <= 30) {
    const size = 2 ** (32 - prefixLen);
    const host = base % size;
    const net = numberToIpv4(base - host);
    if (host === 0) throw RouterError.config(`address ${text} is the network address of ${net}/${prefixLen}; pick a host address`);
    if (host === size - 1) throw RouterError.config(`address ${text} is the broadcast address of ${net}/${prefixLen}; pick a host address`);
  }
  return { address, prefixLen, cidr: `${address}/${prefixLen}` };
}

/** Blocks no container address may be in: [base, prefix, what it is]. */
const V6_REFUSED: readonly (readonly [bigint, number, string])[] = [
  [0n, 128, 'the unspecified address'],
  [1n, 128, 'the loopback address'],
  [0xffffn << 32n, 96, 'an IPv4-mapped address (::ffff:0:0/96)'],
  [0xfe80n << 112n, 10, 'a link-local address (fe80::/10); ethwe has its own'],
  [0xffn << 120n, 8, 'a multicast address'],
];

/**
 * An address for a container's ethwe, IPv4 (as parseAttachCidr) or IPv6 (dual
 * stack). IPv6 refuses a prefix length of 0, the unspecified, loopback,
 * IPv4-mapped, link-local and multicast addresses, and the subnet-router
 * anycast address (host part zero) of prefixes up to /126.
 */
export function parseAttachAddress(text: string): AttachCidr {
  const s = typeof text === 'string' ? text.trim() : '';
  if (!s.includes(':')) return { family: 4, ...parseAttachCidr(text) };
  const { value, prefixLen, address } = parseV6CidrParts(s, 'address');
  if (prefixLen === 0) throw RouterError.config(`address ${text}: prefix length 0 would claim the whole Internet`);
  for (const [base, len, what] of V6_REFUSED) {
    if (inV6Block(value, base, len)) throw RouterError.config(`address ${text} is ${what}`);
  }
  if (prefixLen <= 126 && (value & ~v6Mask(prefixLen) & V6_ALL) === 0n) {
    throw RouterError.config(`address ${text} is the subnet-router anycast address of ${address}/${prefixLen}; pick a host address`);
  }
  return { family: 6, address, prefixLen, cidr: `${address}/${prefixLen}` };
}

/** A route destination, either family: normalised to its network address (10.32.1.0/12 -> 10.32.0.0/12). */
export function parseRouteCidr(text: string): string {
  if (typeof text === 'string' && text.includes(':')) {
    const { value, prefixLen } = parseV6CidrParts(text, 'overlay route');
    return `${bigintToIpv6(value & v6Mask(prefixLen))}/${prefixLen}`;
  }
  const { base, prefixLen } = parseCidrParts(text, 'overlay route');
  const size = 2 ** (32 - prefixLen);
  return `${numberToIpv4(base - (base % size))}/${prefixLen}`;
}

/** The family of a normalised CIDR or address. */
export function familyOf(cidr: string): 4 | 6 {
  return cidr.includes(':') ? 6 : 4;
}

/** The address part of a normalised CIDR. */
export function ipOf(cidr: string): string {
  return cidr.slice(0, cidr.indexOf('/'));
}

/** True when any of the CIDRs is IPv6. */
export function hasV6(cidrs: readonly string[]): boolean {
  return cidrs.some((c) => familyOf(c) === 6);
}

/**
 * A request's list of addresses, each checked by parseAttachAddress; at most
 * MAX_ADDRESSES_PER_REQUEST, at least one when `required`. The same address
 * twice is folded into one, but not with two different prefixes.
 */
export function parseAttachAddresses(cidrs: unknown, required: boolean): AttachCidr[] {
  if (!Array.isArray(cidrs)) throw RouterError.config('addresses must be a list of CIDRs such as 10.32.0.1/12');
  if (required && cidrs.length === 0) {
    throw RouterError.config('an address is required when no IPAM runs here: e.g. weave attach 10.32.0.1/12 <container>');
  }
  if (cidrs.length > MAX_ADDRESSES_PER_REQUEST) {
    throw RouterError.config(`${cidrs.length} addresses in one request, over the limit of ${MAX_ADDRESSES_PER_REQUEST}`);
  }
  const out: AttachCidr[] = [];
  for (const c of cidrs) {
    if (typeof c !== 'string') throw RouterError.config(`every address must be a string CIDR, got ${JSON.stringify(c)}`);
    const parsed = parseAttachAddress(c);
    const dup = out.find((o) => o.address === parsed.address);
    if (dup !== undefined && dup.cidr !== parsed.cidr) {
      throw RouterError.config(`address ${parsed.address} given twice with different prefixes (${dup.cidr}, ${parsed.cidr})`);
    }
    if (dup === undefined) out.push(parsed);
  }
  return out;
}
