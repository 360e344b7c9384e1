// IP addresses, IPv4 and IPv6: the one place that turns address text into
// values and back (CIDR blocks build on it in ip-cidr.ts), so the data path,
// containers, IPAM, DNS and the scripts all accept the same forms and print
// the same spelling. Also bytes and arithmetic (reverse-lookup names are DNS's:
// dns/reverse-name.ts). Pure: no
// node: imports, no sockets. Callers wrap an IpError into their own error type
// (IpamError, DnsError, RouterError) and keep its message.
//
// Accepted text, and nothing else:
// - IPv4: dotted decimal, exactly four parts 0-255 without leading zeros.
//   inet_aton reads "010.1.2.3" as octal and "10.1" as 10.0.0.1, so such forms
//   mean different addresses to different tools; we refuse them.
// - IPv6: RFC 4291 §2.2 text: eight groups of 1-4 hex digits (either case), at
//   most one "::" standing for one or more zero groups, optionally ending in a
//   dotted-decimal IPv4 address (::ffff:1.2.3.4). No zone ids (%eth0), no
//   brackets, no surrounding spaces.
// Output is canonical: dotted decimal, and RFC 5952 §4 for IPv6.
//
// Text is hostile until parsed: its length is checked before any other work,
// and error messages quote at most a short prefix of it.

import { CodedError } from './errors';

export type IpFamily = 4 | 6;

/** An address as a value; an IPv4 address lives in the low 32 bits. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}

/** The longest valid address text: ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255. */
export const MAX_IP_TEXT_CHARS = 45;

export type IpErrorCode =
  | 'address'    // not an address (of the family asked for)
  | 'family'     // a valid address, but of the other family
  | 'prefix'     // prefix length missing, malformed or out of range
  | 'host-bits'; // a block written with host bits set (10.32.0.1/12)

export class IpError extends CodedError<IpErrorCode> {
  override readonly name = 'IpError';
}

export function familyBits(family: IpFamily): 32 | 128 {
  return family === 4 ? 32 : 128;
}

export function familyBytes(family: IpFamily): 4 | 16 {
  return family === 4 ? 4 : 16;
}

const V4_MAX = 0xffff_ffff;
const V6_MAX = (1n << 128n) - 1n;

/** The largest address value of a family. */
export function familyMax(family: IpFamily): bigint {
  return family === 4 ? BigInt(V4_MAX) : V6_MAX;
}

export function ipv4Address(value: number): IpAddress {
  if (!Number.isInteger(value) || value < 0 || value > V4_MAX) throw new RangeError(`IPv4 value ${value} is not a u32`);
  return { family: 4, value: BigInt(value) };
}

export function ipv6Address(value: bigint): IpAddress {
  if (value < 0n || value > V6_MAX) throw new RangeError(`IPv6 value ${value} is not 128 bits`);
  return { family: 6, value };
}

// ---------------------------------------------------------------------------
// Text to values

const DOT = 0x2e;
const COLON = 0x3a;

/** The IPv4 value of text[start, end) as a u32, or -1. */
function scanIpv4(text: string, start: number, end: number): number {
  if (end - start < 7 || end - start > 15) return -1;
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - 0x30);
      if (part > 255) return -1;
      digits++;
    } else if (c === DOT) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  if (digits === 0 || dots !== 3) return -1;
  return value * 256 + part;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** RFC 4291 §2.2 text as a 128-bit value, or null. */
function scanIpv6(text: string): bigint | null {
  const n = text.length;
  if (n < 2 || n > MAX_IP_TEXT_CHARS) return null;
  const head: number[] = [];
  const tail: number[] = [];
  // Groups go to `head` until the "::", then to `tail`.
  let groups = head;
  let i = 0;
  if (text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return null;
    if (n === 2) return 0n;
    groups = tail;
    i = 2;
  }
  for (;;) {
    let j = i;
    let g = 0;
    for (let h = j < n ? hexDigit(text.charCodeAt(j)) : -1; h >= 0; h = j < n ? hexDigit(text.charCodeAt(j)) : -1) {
      g = g * 16 + h;
      j++;
    }
    if (j < n && text.charCodeAt(j) === DOT) {
      // The dotted IPv4 tail fills the last two groups and must end the text.
      const v4 = scanIpv4(text, i, n);
      if (v4 < 0) return null;
      groups.push(v4 >>> 16, v4 & 0xffff);
      break;
    }
    if (j === i || j - i > 4) return null;
    groups.push(g);
    if (j === n) break;
    if (text.charCodeAt(j) !== COLON) return null;
    j++;
    if (j < n && text.charCodeAt(j) === COLON) {
      if (groups === tail) return null; // a second "::"
      groups = tail;
      j++;
      if (j === n) break;
    } else if (j === n) {
      return null; // a trailing single ':'
    }
    i = j;
  }
  const count = head.length + tail.length;
  // "::" stands for at least one zero group.
  if (groups === tail ? count > 7 : count !== 8) return null;
  let v = 0n;
  for (const g of head) v = (v << 16n) | BigInt(g);
  v <<= BigInt(16 * (8 - count));
  for (const g of tail) v = (v << 16n) | BigInt(g);
  return v;
}

/** Dotted-decimal IPv4 as a u32 number (no bigint: the data path wants numbers), or null. */
export function tryParseIpv4(text: string): number | null {
  if (typeof text !== 'string') return null;
  const v = scanIpv4(text, 0, text.length);
  return v < 0 ? null : v;
}

/** IPv6 text as a 128-bit value, or null. */
export function tryParseIpv6(text: string): bigint | null {
  return typeof text === 'string' ? scanIpv6(text) : null;
}

/** Either family, or null when `text` is not exactly an address. */
export function tryParseIp(text: string): IpAddress | null {
  if (typeof text !== 'string' || text.length > MAX_IP_TEXT_CHARS) return null;
  if (text.includes(':')) {
    const v6 = scanIpv6(text);
    return v6 === null ? null : { family: 6, value: v6 };
  }
  const v4 = scanIpv4(text, 0, text.length);
  return v4 < 0 ? null : { family: 4, value: BigInt(v4) };
}

/** Either family, or the family asked for; throws IpError ('address' or 'family'). */
export function parseIp(text: string, family?: IpFamily): IpAddress {
  const ip = tryParseIp(text);
  if (ip !== null && (family === undefined || ip.family === family)) return ip;
  const expected = `expected ${family === undefined ? 'an IP address' : `an IPv${family} address`} such as ${ipExamples(family, '10.32.0.1', 'fd00::1')}`;
  if (ip !== null) throw new IpError('family', `${expected}, got the IPv${ip.family} address ${quoteIpText(text)}`);
  throw new IpError('address', `${expected}, got ${quoteIpText(text)}${ipTextHint(text)}`);
}

/** Dotted-decimal IPv4 as a u32 number; throws IpError. */
export function parseIpv4(text: string): number {
  return Number(parseIp(text, 4).value);
}

/** The canonical text of an address, or null when `text` is not one. */
export function canonicalIp(text: string): string | null {
  const ip = tryParseIp(text);
  return ip === null ? null : formatIp(ip);
}

/**
 * The family of canonical text (an address or a CIDR this module printed),
 * without parsing it again: IPv6 text always holds a ':', IPv4 text never.
 */
export function familyOfCanonical(text: string): IpFamily {
  return text.includes(':') ? 6 : 4;
}

// ---------------------------------------------------------------------------
// Values to text

export function formatIpv4(value: number): string {
  return `${(value >>> 24) & 255}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/**
 * RFC 5952 §4: eight 16-bit groups in lower-case hex, the longest run of two or
 * more zero groups compressed to "::" (the first run when tied).
 */
function formatIpv6Groups(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (gs: readonly number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

export function formatIpv6(value: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  return formatIpv6Groups(groups);
}

/** Canonical text. IPv4-mapped IPv6 stays IPv6 (::ffff:102:304); unmapIpv4 first to print it as IPv4. */
export function formatIp(addr: IpAddress): string {
  return addr.family === 4 ? formatIpv4(Number(addr.value)) : formatIpv6(addr.value);
}

// ---------------------------------------------------------------------------
// Bytes (network order): the data path's address tables, DNS records, IPAM messages

/** 4 or 16 bytes. */
export function ipToBytes(addr: IpAddress): Uint8Array {
  const out = new Uint8Array(familyBytes(addr.family));
  writeIpBytes(addr, out, 0);
  return out;
}

/** Writes 4 or 16 bytes at `offset`; RangeError when they do not fit. */
export function writeIpBytes(addr: IpAddress, out: Uint8Array, offset: number): void {
  const n = familyBytes(addr.family);
  if (!Number.isInteger(offset) || offset < 0 || offset + n > out.length) {
    throw new RangeError(`no room for ${n} address bytes at offset ${offset} of ${out.length}`);
  }
  if (addr.family === 4) {
    const v = Number(addr.value);
    out[offset] = v >>> 24;
    out[offset + 1] = (v >>> 16) & 255;
    out[offset + 2] = (v >>> 8) & 255;
    out[offset + 3] = v & 255;
    return;
  }
  let v = addr.value;
  for (let i = offset + 15; i >= offset; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** An address from exactly 4 (IPv4) or 16 (IPv6) bytes; RangeError for any other length. */
export function ipFromBytes(bytes: Uint8Array): IpAddress {
  if (bytes.length === 4) {
    return { family: 4, value: BigInt((((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0)) };
  }
  if (bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, got ${bytes.length}`);
  let v = 0n;
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(bytes[i]!);
  return { family: 6, value: v };
}

const MAPPED_PREFIX = 0xffffn << 32n;

/** RFC 4291 §2.5.5.2: ::ffff:a.b.c.d as the IPv4 address it carries; any other address as it is. */
export function unmapIpv4(addr: IpAddress): IpAddress {
  if (addr.family === 6 && addr.value >> 32n === 0xffffn) return { family: 4, value: addr.value & 0xffff_ffffn };
  return addr;
}

/** IPv4 as the IPv4-mapped IPv6 address (::ffff:a.b.c.d); IPv6 as it is. */
export function mapIpv4(addr: IpAddress): IpAddress {
  return addr.family === 4 ? { family: 6, value: MAPPED_PREFIX | addr.value } : addr;
}

// ---------------------------------------------------------------------------
// Comparison and arithmetic

export function ipEquals(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.value === b.value;
}

/** IPv4 before IPv6, then by value: a sort order. */
export function compareIp(a: IpAddress, b: IpAddress): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** `addr` plus `delta` (negative allowed), or null when that leaves the family's address space. */
export function ipAdd(addr: IpAddress, delta: bigint | number): IpAddress | null {
  const v = addr.value + BigInt(delta);
  return v < 0n || v > familyMax(addr.family) ? null : { family: addr.family, value: v };
}

/** `to` minus `from`, both of one family (RangeError otherwise). */
export function ipDifference(from: IpAddress, to: IpAddress): bigint {
  if (from.family !== to.family) throw new RangeError(`cannot subtract an IPv${from.family} address from an IPv${to.family} one`);
  return to.value - from.value;
}

// ---------------------------------------------------------------------------
// Error text, shared with ip-cidr.ts

/** Example text for "expected ..." messages, of one family or both. */
export function ipExamples(family: IpFamily | undefined, v4: string, v6: string): string {
  return family === 4 ? v4 : family === 6 ? v6 : `${v4} or ${v6}`;
}

/** JSON-quoted, cut short: hostile text must not blow up a log line. */
export function quoteIpText(text: unknown): string {
  if (typeof text !== 'string') return `a ${text === null ? 'null' : typeof text}`;
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}...` : text);
}

/** Why address text was refused, for the usual near misses; empty when there is nothing useful to add. */
export function ipTextHint(text: unknown): string {
  if (typeof text !== 'string') return '';
  if (text.length > MAX_IP_TEXT_CHARS) return ` (${text.length} characters; no address is longer than ${MAX_IP_TEXT_CHARS})`;
  if (text.trim() !== text) return ' (spaces around it)';
  if (text.includes('%')) return ' (zone ids such as %eth0 are not accepted)';
  if (text.startsWith('[')) return ' (no brackets)';
  const dotted = text.slice(text.lastIndexOf(':') + 1);
  if (dotted.includes('.') && /(^|\.)0\d/.test(dotted)) return ' (leading zeros are refused: some tools read them as octal)';
  return '';
}
