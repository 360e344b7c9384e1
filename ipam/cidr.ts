// IP addresses and CIDR blocks, IPv4 and IPv6, as plain values. Pure: no
// sockets, no node:net. Addresses are bigints so both families share one code
// path; the ring works on small integer offsets inside an AddressRange, so the
// hot parts (allocation) never touch bigints.
//
// Parsing is strict and its errors are IpamError('config') naming the flag or
// field, since every caller is a user or an API client.

import { MAX_RING_HOST_BITS } from './constants';
import { IpamError } from './errors';
import { formatIpv6Groups } from '../common/ip';

export type IpFamily = 4 | 6;

export function familyBits(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

// ---------------------------------------------------------------------------
// Addresses

function parseIpv4(text: string): bigint | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseIpv6(text: string): bigint | null {
  if (text.length > 45 || text.length < 2) return null;
  let head = text;
  let tail32: bigint | null = null;
  // An embedded IPv4 address in the last 32 bits (::ffff:1.2.3.4).
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail32 = parseIpv4(text.slice(lastColon + 1));
    if (tail32 === null) return null;
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = parseGroups(halves[0] ?? '');
  const right = halves.length === 2 ? parseGroups(halves[1] ?? '') : [];
  if (left === null || right === null) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - left.length - right.length;
    if (missing < 1) return null;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    groups = left;
  }
  if (groups.length !== 8) return null;
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  if (tail32 !== null) v = (v & ~0xffffffffn) | tail32;
  return v;
}

export interface IpAddress {
  family: IpFamily;
  value: bigint;
}

/** Parses a dotted-quad IPv4 or an IPv6 address; null when it is neither. */
export function parseIp(text: string): IpAddress | null {
  const s = text.trim();
  if (s.includes(':')) {
    const v = parseIpv6(s);
    return v === null ? null : { family: 6, value: v };
  }
  const v = parseIpv4(s);
  return v === null ? null : { family: 4, value: v };
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run compressed). */
export function formatIp(family: IpFamily, value: bigint): string {
  if (family === 4) {
    const n = Number(value);
    return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  return formatIpv6Groups(groups);
}

// ---------------------------------------------------------------------------
// CIDR blocks

/** A CIDR block: network address (host bits zero) and prefix length. */
export class Cidr {
  private constructor(readonly family: IpFamily, readonly base: bigint, readonly prefixLen: number) {}

  static of(family: IpFamily, base: bigint, prefixLen: number): Cidr {
    const bits = familyBits(family);
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > bits) throw new RangeError(`prefix length ${prefixLen} for IPv${family}`);
    const hostBits = BigInt(bits - prefixLen);
    return new Cidr(family, (base >> hostBits) << hostBits, prefixLen);
  }

  /**
   * Parses "10.32.0.0/12". Host bits must be zero, because a block written as
   * 10.32.0.5/12 is almost always a typo for an address; the error names the
   * block the user probably meant.
   */
  static parse(text: string, what: string): Cidr {
    const { address, prefixLen } = parseAddressWithPrefix(text, what);
    const block = Cidr.of(address.family, address.value, prefixLen);
    if (block.base !== address.value) {
      throw IpamError.config(`${what}: ${JSON.stringify(text)} has host bits set; did you mean ${block.toString()}?`);
    }
    return block;
  }

  get hostBits(): number {
    return familyBits(this.family) - this.prefixLen;
  }

  /** Number of addresses, as a bigint (an IPv6 /48 has 2^80). */
  get sizeBig(): bigint {
    return 1n << BigInt(this.hostBits);
  }

  get last(): bigint {
    return this.base + this.sizeBig - 1n;
  }

  contains(addr: IpAddress): boolean {
    return addr.family === this.family && addr.value >= this.base && addr.value <= this.last;
  }

  /** True when `other` lies entirely inside this block. */
  covers(other: Cidr): boolean {
    return other.family === this.family && other.base >= this.base && other.last <= this.last;
  }

  overlaps(other: Cidr): boolean {
    return other.family === this.family && other.base <= this.last && this.base <= other.last;
  }

  equals(other: Cidr): boolean {
    return other.family === this.family && other.base === this.base && other.prefixLen === this.prefixLen;
  }

  toString(): string {
    return `${formatIp(this.family, this.base)}/${this.prefixLen}`;
  }
}

/** "10.32.0.5/12" into the address and the prefix length, host bits allowed. */
export function parseAddressWithPrefix(text: string, what: string): { address: IpAddress; prefixLen: number } {
  const s = text.trim();
  const slash = s.indexOf('/');
  if (slash < 0) throw IpamError.config(`${what} must be in CIDR form (address/prefix), got ${JSON.stringify(text)}`);
  const address = parseIp(s.slice(0, slash));
  if (address === null) throw IpamError.config(`${what}: ${JSON.stringify(s.slice(0, slash))} is not an IPv4 or IPv6 address`);
  const lenText = s.slice(slash + 1);
  const bits = familyBits(address.family);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
    throw IpamError.config(`${what}: prefix length must be 0 to ${bits}, got ${JSON.stringify(lenText)}`);
  }
  return { address, prefixLen: Number(lenText) };
}

// ---------------------------------------------------------------------------
// Ring ranges: a CIDR block whose addresses are numbered by offset

/** A half-open interval of offsets [start, end). */
export interface Span {
  start: number;
  end: number;
}

/**
 * The block a ring divides among peers. Offsets 0 .. size-1 number its
 * addresses; at most 2^32 of them, so offsets fit a u32 on the wire and a
 * plain number in memory.
 */
export class AddressRange {
  readonly size: number;

  constructor(readonly cidr: Cidr) {
    if (cidr.hostBits > MAX_RING_HOST_BITS) {
      throw IpamError.config(`range ${cidr.toString()} has ${cidr.hostBits} host bits; a ring holds at most ${MAX_RING_HOST_BITS}`);
    }
    if (cidr.hostBits < 2) throw IpamError.config(`range ${cidr.toString()} is too small; use at least a /${familyBits(cidr.family) - 2}`);
    this.size = Number(cidr.sizeBig);
  }

  static parse(text: string, what: string): AddressRange {
    return new AddressRange(Cidr.parse(text, what));
  }

  get family(): IpFamily {
    return this.cidr.family;
  }

  equals(other: AddressRange): boolean {
    return this.cidr.equals(other.cidr);
  }

  offsetOf(addr: IpAddress): number | null {
    return this.cidr.contains(addr) ? Number(addr.value - this.cidr.base) : null;
  }

  addressAt(offset: number): IpAddress {
    return { family: this.cidr.family, value: this.cidr.base + BigInt(offset) };
  }

  formatOffset(offset: number): string {
    return formatIp(this.cidr.family, this.cidr.base + BigInt(offset));
  }

  /** The offsets of a block inside this range, or null when it is not entirely inside. */
  spanOf(block: Cidr): Span | null {
    if (!this.cidr.covers(block)) return null;
    const start = Number(block.base - this.cidr.base);
    return { start, end: start + Number(block.sizeBig) };
  }

  toString(): string {
    return this.cidr.toString();
  }
}
