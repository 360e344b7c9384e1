// CIDR blocks, IPv4 and IPv6, on top of common/ip.ts: reading "10.32.0.0/12"
// (a block, host bits refused) and "10.32.0.5/12" (an address with its
// prefix, host bits allowed), and the prefix math IPAM, containers and routes
// need: network and last address, size, containment, overlap, and addresses
// by offset. Pure, like ip.ts; failures are IpError ('address', 'family',
// 'prefix', 'host-bits').

import {
  familyBits, familyMax, formatIp, IpAddress, IpError, ipExamples, IpFamily, ipTextHint, MAX_IP_TEXT_CHARS, quoteIpText, tryParseIp,
} from './ip';

/** An address plus "/128". */
export const MAX_CIDR_TEXT_CHARS = MAX_IP_TEXT_CHARS + 4;

/** A block of addresses: the network address (host bits zero) and the prefix length. */
export class Cidr {
  private constructor(readonly family: IpFamily, readonly base: bigint, readonly prefixLen: number) {}

  /** The block of `prefixLen` bits around `value`: host bits are cleared. RangeError for a bad prefix or value. */
  static of(family: IpFamily, value: bigint, prefixLen: number): Cidr {
    const bits = familyBits(family);
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > bits) throw new RangeError(`prefix length ${prefixLen} for IPv${family}`);
    if (value < 0n || value > familyMax(family)) throw new RangeError(`value ${value} is not an IPv${family} address`);
    const hostBits = BigInt(bits - prefixLen);
    return new Cidr(family, (value >> hostBits) << hostBits, prefixLen);
  }

  /** The block of `prefixLen` bits that holds `addr`. */
  static containing(addr: IpAddress, prefixLen: number): Cidr {
    return Cidr.of(addr.family, addr.value, prefixLen);
  }

  get hostBits(): number {
    return familyBits(this.family) - this.prefixLen;
  }

  /** Number of addresses, as a bigint (an IPv6 /48 has 2^80). */
  get size(): bigint {
    return 1n << BigInt(this.hostBits);
  }

  /** The value of the last address (the IPv4 broadcast address). */
  get last(): bigint {
    return this.base + this.size - 1n;
  }

  get network(): IpAddress {
    return { family: this.family, value: this.base };
  }

  get lastAddress(): IpAddress {
    return { family: this.family, value: this.last };
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

  /** The address `offset` places past the network address; RangeError outside the block. */
  at(offset: bigint | number): IpAddress {
    const o = BigInt(offset);
    if (o < 0n || o >= this.size) throw new RangeError(`offset ${o} is outside ${this.toString()}`);
    return { family: this.family, value: this.base + o };
  }

  /** How far `addr` lies past the network address, or null when it is outside the block. */
  offsetOf(addr: IpAddress): bigint | null {
    return this.contains(addr) ? addr.value - this.base : null;
  }

  toString(): string {
    return `${formatIp(this.network)}/${this.prefixLen}`;
  }
}

/** An address with a prefix length, host bits allowed: an interface address such as 10.32.0.5/12. */
export interface IpWithPrefix {
  address: IpAddress;
  prefixLen: number;
}

/** "10.32.0.5/12" into the address and the prefix length, host bits allowed. Throws IpError. */
export function parseIpWithPrefix(text: string, family?: IpFamily): IpWithPrefix {
  return splitPrefix(text, family, true);
}

/**
 * "10.32.0.0/12" into a block. Host bits must be zero ('host-bits'): a block
 * written as 10.32.0.5/12 is almost always a typo for an address, so the error
 * names the block the writer probably meant.
 */
export function parseCidr(text: string, family?: IpFamily): Cidr {
  const { address, prefixLen } = splitPrefix(text, family, false);
  const block = Cidr.containing(address, prefixLen);
  if (block.base !== address.value) {
    throw new IpError('host-bits', `${quoteIpText(text)} has host bits set; did you mean ${block.toString()}?`);
  }
  return block;
}

function splitPrefix(text: string, family: IpFamily | undefined, hostBitsAllowed: boolean): IpWithPrefix {
  const what = family === undefined ? 'a CIDR' : `an IPv${family} CIDR`;
  const expected = `expected ${what} such as ${hostBitsAllowed ? ipExamples(family, '10.32.0.1/12', 'fd00::1/64') : ipExamples(family, '10.32.0.0/12', 'fd00::/64')}`;
  if (typeof text !== 'string' || text.length > MAX_CIDR_TEXT_CHARS) throw new IpError('address', `${expected}, got ${quoteIpText(text)}${ipTextHint(text)}`);
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const ip = tryParseIp(addrText);
  if (ip === null) throw new IpError('address', `${expected}, got ${quoteIpText(text)}${ipTextHint(addrText)}`);
  if (family !== undefined && ip.family !== family) throw new IpError('family', `${expected}, got IPv${ip.family} ${quoteIpText(text)}`);
  const bits = familyBits(ip.family);
  if (slash < 0) throw new IpError('prefix', `${expected}, got ${quoteIpText(text)} without a prefix length`);
  const lenText = text.slice(slash + 1);
  // Digits only, no leading zeros, at most the family's bit count.
  if (!/^(0|[1-9]\d{0,2})$/.test(lenText) || Number(lenText) > bits) {
    throw new IpError('prefix', `prefix length must be 0 to ${bits} for IPv${ip.family}, got ${quoteIpText(lenText)} in ${quoteIpText(text)}`);
  }
  return { address: ip, prefixLen: Number(lenText) };
}
