// Where a host's DNS server listens on the overlay: a link-local address on
// the weave bridge derived from the peer name, so it is stable across restarts
// without any coordination, and distinct per host with high probability
// (254 x 254 values; dns/daemon.ts warns when two known peers collide).
// Pure.

import type { PeerName } from '../router/mesh/peer-name';
import { LINK_LOCAL_PREFIX } from './constants';

/** FNV-1a, 32 bits: tiny, stable, no dependency; this is spreading, not security. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** 169.254.x.y with x and y in 1..254 (RFC 3927 reserves the first and last /24). */
export function linkLocalAddressFor(peer: PeerName): string {
  const h = fnv1a(peer);
  const x = 1 + ((h >>> 16) % 254);
  const y = 1 + ((h & 0xffff) % 254);
  return `${LINK_LOCAL_PREFIX}.${x}.${y}`;
}
