// The block an IPAM ring divides among peers, with its addresses numbered by
// offset, and IPAM's side of reading addresses from users and API clients.
// The reading itself is common/ip's and common/ip-cidr's (strict, one set of rules for the whole
// project); here its errors become IpamError('config') naming the flag or
// field. The ring works on small integer offsets inside an AddressRange, so
// the hot parts (allocation) never touch bigints.

import { familyBits, formatIp, IpAddress, IpError, IpFamily } from '../common/ip';
import { Cidr, IpWithPrefix, parseCidr, parseIpWithPrefix } from '../common/ip-cidr';
import { MAX_RING_HOST_BITS } from './constants';
import { IpamError } from './errors';

function asConfigError(err: unknown, what: string): unknown {
  return err instanceof IpError ? new IpamError('config', `${what}: ${err.message}`, { cause: err }) : err;
}

/**
 * A block such as "10.32.0.0/12" (spaces around it ignored). Host bits must be
 * zero: the error names the block the user probably meant.
 */
export function parseIpamCidr(text: string, what: string): Cidr {
  try {
    return parseCidr(typeof text === 'string' ? text.trim() : text);
  } catch (err) {
    throw asConfigError(err, what);
  }
}

/** "10.32.0.5/12" into the address and the prefix length, host bits allowed (spaces around it ignored). */
export function parseAddressWithPrefix(text: string, what: string): IpWithPrefix {
  try {
    return parseIpWithPrefix(typeof text === 'string' ? text.trim() : text);
  } catch (err) {
    throw asConfigError(err, what);
  }
}

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
    this.size = Number(cidr.size);
  }

  static parse(text: string, what: string): AddressRange {
    return new AddressRange(parseIpamCidr(text, what));
  }

  get family(): IpFamily {
    return this.cidr.family;
  }

  equals(other: AddressRange): boolean {
    return this.cidr.equals(other.cidr);
  }

  offsetOf(addr: IpAddress): number | null {
    const offset = this.cidr.offsetOf(addr);
    return offset === null ? null : Number(offset);
  }

  /**
   * No bounds check, on purpose: error messages format tokens from peers
   * before they are validated, and must not fail while doing it.
   */
  addressAt(offset: number): IpAddress {
    return { family: this.cidr.family, value: this.cidr.base + BigInt(offset) };
  }

  formatOffset(offset: number): string {
    return formatIp(this.addressAt(offset));
  }

  /** The offsets of a block inside this range, or null when it is not entirely inside. */
  spanOf(block: Cidr): Span | null {
    if (!this.cidr.covers(block)) return null;
    const start = Number(block.base - this.cidr.base);
    return { start, end: start + Number(block.size) };
  }

  toString(): string {
    return this.cidr.toString();
  }
}
