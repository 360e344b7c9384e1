// Addresses for containers' ethwe and for the host (weave expose), as text
// from users, IPAM and the state file: attach CIDRs of either family (refusing
// what can never be a unicast host address), route CIDRs normalised to their
// network, the family of a CIDR, and the checks on a request's list of
// addresses. The text itself is read by common/ip, so an address means here
// what it means to IPAM, DNS and the data path; this file adds what an
// interface address may not be, and says so in the words the attach and
// expose commands have always used.
//
// Pure: no I/O, no state. It must never hand out an address in a form other
// than the canonical one (IPv6 per RFC 5952), since records, IPAM and `ip`
// output are compared as text.

import { RouterError } from '../mesh/errors';
import { assertNever } from '../../common/errors';
import { canonicalIp, familyOfCanonical, formatIp, IpError, IpFamily } from '../../common/ip';
import { Cidr, IpWithPrefix, parseIpWithPrefix } from '../../common/ip-cidr';

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

const EXAMPLE_CIDR: Record<IpFamily, string> = { 4: '10.32.0.1/12', 6: 'fd00:77:1::5/48' };
/** The prefix length suggested when a user gave a bare address. */
const EXAMPLE_PREFIX_LEN: Record<IpFamily, number> = { 4: 12, 6: 64 };

/**
 * `address/len` of one family, host bits allowed, as common/ip reads it
 * (leading zeros refused in the address and in the length: iproute2 reads
 * "/010" as /8). Errors become RouterError config errors that start with
 * `what` and keep the messages the attach and expose commands have printed.
 */
function parseAddressWithPrefix(text: string, what: string, family: IpFamily): IpWithPrefix {
  const s = typeof text === 'string' ? text.trim() : text;
  try {
    return parseIpWithPrefix(s, family);
  } catch (err) {
    if (!(err instanceof IpError)) throw err;
    const quoted = JSON.stringify(text);
    const expected = `${what} must be an IPv${family} CIDR such as ${EXAMPLE_CIDR[family]}, got ${quoted}`;
    switch (err.code) {
      case 'family':
        if (family === 4) throw RouterError.config(`${what} ${quoted}: IPv6 is not supported here, use an IPv4 CIDR such as ${EXAMPLE_CIDR[4]}`);
        throw RouterError.config(expected);
      case 'prefix': {
        const slash = s.indexOf('/');
        if (slash < 0) throw RouterError.config(`${what} ${quoted} needs a prefix length, e.g. ${s}/${EXAMPLE_PREFIX_LEN[family]}`);
        const leadingZero = /^0\d/.test(s.slice(slash + 1));
        throw RouterError.config(`${expected}${leadingZero ? ' (leading zeros are refused: some tools read them as octal)' : ''}`);
      }
      case 'address':
      case 'host-bits':
        throw RouterError.config(`${what}: ${err.message}`);
      default:
        return assertNever(err.code);
    }
  }
}

/**
 * An IPv4 address for a container's ethwe (or the host, weave expose): a host
 * address with its prefix. Refuses IPv6 (see parseAttachAddress), the network
 * and broadcast addresses of the subnet (for prefixes up to /30) and addresses
 * that can never be a unicast host address.
 */
export function parseAttachCidr(text: string): Ipv4Cidr {
  const { address: ip, prefixLen } = parseAddressWithPrefix(text, 'address', 4);
  const first = Number(ip.value >> 24n);
  if (prefixLen === 0) throw RouterError.config(`address ${text}: prefix length 0 would claim the whole Internet`);
  if (first === 0) throw RouterError.config(`address ${text} is in 0.0.0.0/8, which is not a host address`);
  if (first === 127) throw RouterError.config(`address ${text} is a loopback address`);
  if (first >= 224 && first <= 239) throw RouterError.config(`address ${text} is a multicast address`);
  if (first >= 240) throw RouterError.config(`address ${text} is in the reserved range 240.0.0.0/4`);
  if (prefixLen <= 30) {
    const subnet = Cidr.containing(ip, prefixLen);
    if (ip.value === subnet.base) throw RouterError.config(`address ${text} is the network address of ${subnet.toString()}; pick a host address`);
    if (ip.value === subnet.last) throw RouterError.config(`address ${text} is the broadcast address of ${subnet.toString()}; pick a host address`);
  }
  const address = formatIp(ip);
  return { address, prefixLen, cidr: `${address}/${prefixLen}` };
}

/** Blocks no container address may be in, with what they are. */
const V6_REFUSED: readonly (readonly [Cidr, string])[] = [
  [Cidr.of(6, 0n, 128), 'the unspecified address'],
  [Cidr.of(6, 1n, 128), 'the loopback address'],
  [Cidr.of(6, 0xffffn << 32n, 96), 'an IPv4-mapped address (::ffff:0:0/96)'],
  [Cidr.of(6, 0xfe80n << 112n, 10), 'a link-local address (fe80::/10); ethwe has its own'],
  [Cidr.of(6, 0xffn << 120n, 8), 'a multicast address'],
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
  const { address: ip, prefixLen } = parseAddressWithPrefix(s, 'address', 6);
  if (prefixLen === 0) throw RouterError.config(`address ${text}: prefix length 0 would claim the whole Internet`);
  for (const [block, what] of V6_REFUSED) {
    if (block.contains(ip)) throw RouterError.config(`address ${text} is ${what}`);
  }
  if (prefixLen <= 126) {
    const subnet = Cidr.containing(ip, prefixLen);
    if (ip.value === subnet.base) {
      throw RouterError.config(`address ${text} is the subnet-router anycast address of ${subnet.toString()}; pick a host address`);
    }
  }
  const address = formatIp(ip);
  return { family: 6, address, prefixLen, cidr: `${address}/${prefixLen}` };
}

/** A route destination, either family: normalised to its network address (10.32.1.0/12 -> 10.32.0.0/12). */
export function parseRouteCidr(text: string): string {
  const family: IpFamily = typeof text === 'string' && text.includes(':') ? 6 : 4;
  const { address, prefixLen } = parseAddressWithPrefix(text, 'overlay route', family);
  return Cidr.containing(address, prefixLen).toString();
}

/**
 * The address part of a normalised CIDR; text without a prefix is taken as
 * the address itself ("10.32.0.1/12" and "10.32.0.1" name one address).
 */
export function ipOf(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

/** True when any of the normalised CIDRs is IPv6. */
export function hasV6(cidrs: readonly string[]): boolean {
  return cidrs.some((c) => familyOfCanonical(c) === 6);
}

/**
 * One address of a detach request. `weave attach` prints bare addresses, so a
 * bare address is accepted: detach matches on the address alone, whatever the
 * prefix, so the host-length prefix added here only makes it a valid CIDR.
 * `ip:CIDR` (attach's claim form) means the same address; `net:` names a
 * subnet to allocate in and has no meaning for detach.
 */
export function parseDetachCidr(word: string): AttachCidr {
  if (word.startsWith('net:')) {
    throw RouterError.config(`weave detach takes the container's addresses, not ${JSON.stringify(word)} ` +
      '(net: is for allocating with weave attach); leave the addresses out to detach the container completely');
  }
  const text = word.startsWith('ip:') ? word.slice(3) : word;
  if (!text.includes('/')) {
    const ip = canonicalIp(text);
    if (ip === null) {
      throw RouterError.config(`${JSON.stringify(word)} is not an address: give one as weave attach printed it (10.32.0.5), or as a CIDR (10.32.0.5/12)`);
    }
    return parseAttachAddress(`${ip}/${ip.includes(':') ? 128 : 32}`);
  }
  if (text.includes(':') && canonicalIp(text.slice(0, text.indexOf('/'))) === null) {
    throw RouterError.config(`${JSON.stringify(word)} is not an address: use 10.32.0.5, 10.32.0.5/12, ip:10.32.0.5/12 or an IPv6 CIDR such as fd00:77:1::5/48`);
  }
  return parseAttachAddress(text);
}

/**
 * The address words `weave attach` takes before its container: a CIDR or
 * ip:CIDR (an address to claim) is checked here; net:CIDR and net:default
 * (where IPAM allocates) are IPAM's to read. The API checks a request with
 * this before anything else, so a typo gets the same message whether the CLI
 * or the router finds it (cli/container-commands.ts leaves it to the router).
 */
export function checkAttachWords(words: readonly string[]): void {
  for (const w of words) {
    if (w.startsWith('net:')) continue;
    parseAttachAddress(w.startsWith('ip:') ? w.slice(3) : w);
  }
}

/**
 * A request's list of addresses, each checked by `parse` (parseAttachAddress
 * for attach, parseDetachCidr for detach); at most MAX_ADDRESSES_PER_REQUEST,
 * at least one when `required`. The same address twice is folded into one,
 * but not with two different prefixes.
 */
export function parseAttachAddresses(cidrs: unknown, required: boolean, parse: (text: string) => AttachCidr = parseAttachAddress): AttachCidr[] {
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
    const parsed = parse(c);
    const dup = out.find((o) => o.address === parsed.address);
    if (dup !== undefined && dup.cidr !== parsed.cidr) {
      throw RouterError.config(`address ${parsed.address} given twice with different prefixes (${dup.cidr}, ${parsed.cidr})`);
    }
    if (dup === undefined) out.push(parsed);
  }
  return out;
}
