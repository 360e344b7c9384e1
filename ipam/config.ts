// IPAM settings from the command line, validated once into typed values:
// --ipalloc-range, --ipalloc-default-subnet, --ipalloc-range-v6 and
// --ipalloc-init. Every problem is an IpamError('config') naming the flag.

import type { Cidr } from '../common/ip-cidr';
import { isPeerName, PeerName } from '../router/mesh/peer-name';
import { AddressRange, parseIpamCidr } from './address-range';
import { DEFAULT_IPALLOC_RANGE, MAX_SEED_PEERS } from './constants';
import { IpamError } from './errors';

/**
 * How the range is first divided:
 * - consensus: the first `peerCount` peers agree (Paxos, quorum floor(N/2)+1);
 * - seed: the listed peers split it at once, no agreement needed (all must be given the same list);
 * - observer: never part of the initial split; gets space from others when it needs some.
 */
export type IpamInit =
  | { mode: 'consensus'; peerCount: number }
  | { mode: 'seed'; peers: PeerName[] }
  | { mode: 'observer' };

export interface IpamConfig {
  range: AddressRange;
  /** Where allocations without a subnet go; inside `range`. */
  defaultSubnet: Cidr;
  /** Dual stack: each container's IPv4 offset is also its offset in this IPv6 block. */
  rangeV6: Cidr | null;
  init: IpamInit;
}

export interface IpamFlags {
  range?: string | undefined;
  defaultSubnet?: string | undefined;
  rangeV6?: string | undefined;
  init?: string | undefined;
  /**
   * The default N of `consensus` without `=N`: the peers given on the command
   * line plus ourselves, as Weave Net does.
   */
  initialPeerCount: number;
}

export function parseIpallocInit(text: string | undefined, defaultPeerCount: number): IpamInit {
  const s = (text ?? 'consensus').trim();
  if (s === 'observer') return { mode: 'observer' };
  if (s === 'consensus') {
    if (!Number.isInteger(defaultPeerCount) || defaultPeerCount < 1) throw IpamError.config(`--ipalloc-init consensus: peer count ${defaultPeerCount} is not a positive integer`);
    return { mode: 'consensus', peerCount: defaultPeerCount };
  }
  const m = /^consensus=(\d{1,5})$/.exec(s);
  if (m) {
    const n = Number(m[1]);
    if (n < 1 || n > MAX_SEED_PEERS) throw IpamError.config(`--ipalloc-init consensus=N: N must be 1 to ${MAX_SEED_PEERS}, got ${n}`);
    return { mode: 'consensus', peerCount: n };
  }
  if (s.startsWith('seed=')) {
    const names = s.slice(5).split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '');
    if (names.length === 0) throw IpamError.config('--ipalloc-init seed= needs at least one peer name (aa:bb:cc:dd:ee:ff)');
    if (names.length > MAX_SEED_PEERS) throw IpamError.config(`--ipalloc-init seed= lists ${names.length} peers, over the limit of ${MAX_SEED_PEERS}`);
    for (const n of names) {
      if (!isPeerName(n)) throw IpamError.config(`--ipalloc-init seed=: ${JSON.stringify(n)} is not a peer name (aa:bb:cc:dd:ee:ff; see weave status peers)`);
    }
    return { mode: 'seed', peers: [...new Set(names as PeerName[])].sort() };
  }
  throw IpamError.config(`--ipalloc-init must be consensus, consensus=N, seed=PEER,... or observer; got ${JSON.stringify(s)}`);
}

export function parseIpamConfig(flags: IpamFlags): IpamConfig {
  const range = AddressRange.parse(flags.range ?? DEFAULT_IPALLOC_RANGE, '--ipalloc-range');
  if (range.family !== 4) throw IpamError.config(`--ipalloc-range must be an IPv4 block; use --ipalloc-range-v6 for IPv6 (got ${range.toString()})`);
  const defaultSubnet = flags.defaultSubnet !== undefined ? parseIpamCidr(flags.defaultSubnet, '--ipalloc-default-subnet') : range.cidr;
  if (!range.cidr.covers(defaultSubnet)) {
    throw IpamError.config(`--ipalloc-default-subnet ${defaultSubnet.toString()} is not inside --ipalloc-range ${range.toString()}`);
  }
  if (defaultSubnet.hostBits < 2) throw IpamError.config(`--ipalloc-default-subnet ${defaultSubnet.toString()} is too small; use at least a /30`);
  let rangeV6: Cidr | null = null;
  if (flags.rangeV6 !== undefined && flags.rangeV6 !== '') {
    rangeV6 = parseIpamCidr(flags.rangeV6, '--ipalloc-range-v6');
    if (rangeV6.family !== 6) throw IpamError.config(`--ipalloc-range-v6 must be an IPv6 block such as fd00:1234:5678::/48, got ${rangeV6.toString()}`);
    if (rangeV6.hostBits < range.cidr.hostBits) {
      throw IpamError.config(
        `--ipalloc-range-v6 ${rangeV6.toString()} has ${rangeV6.hostBits} host bits, fewer than the ${range.cidr.hostBits} of --ipalloc-range ${range.toString()}`,
      );
    }
  }
  return { range, defaultSubnet, rangeV6, init: parseIpallocInit(flags.init, flags.initialPeerCount) };
}
