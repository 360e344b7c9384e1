// ECN for the router's CoDel (codel.ts): a frame whose IP packet says its
// transport understands ECN (ECT(0) or ECT(1), RFC 3168) gets Congestion
// Experienced instead of being dropped, so the sender slows down without
// losing and retransmitting anything. A super-frame keeps the mark through
// segmentation (every segment inherits the IP header), and TCP reacts once
// per round trip however many segments carry it.
//
// Input is a frame as the TAP hands it (virtio_net_hdr, Ethernet, optionally
// one 802.1Q tag, then IPv4 or IPv6) and is hostile: anything short or not IP
// is 'not-ect' and left untouched. An IPv4 header checksum is updated
// incrementally (RFC 1624), so a header that was wrong stays wrong rather than
// being made valid by us.

import { ETHERNET_HEADER_BYTES, VNET_HDR_BYTES } from './sleeve-codec';

export type EcnResult = 'marked' | 'not-ect';

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ECN_MASK = 0x03;
const ECN_CE = 0x03;
const ECN_NOT_ECT = 0x00;

/** Sets CE on buf[off, off + len) (vnet header first) if its IP packet is ECN-capable; 'marked' also when it already carried CE. */
export function markCongestion(buf: Uint8Array, off: number, len: number): EcnResult {
  const end = off + len;
  if (!(off >= 0 && len >= 0 && end <= buf.length)) return 'not-ect';
  const eth = off + VNET_HDR_BYTES;
  let l3 = eth + ETHERNET_HEADER_BYTES;
  if (l3 + 2 > end) return 'not-ect';
  let ethertype = (buf[eth + 12]! << 8) | buf[eth + 13]!;
  if (ethertype === ETHERTYPE_VLAN) {
    ethertype = (buf[l3 + 2]! << 8) | buf[l3 + 3]!;
    l3 += 4;
  }
  if (ethertype === ETHERTYPE_IPV4) {
    if (l3 + 20 > end || buf[l3]! >> 4 !== 4) return 'not-ect';
    const tos = buf[l3 + 1]!;
    const ecn = tos & ECN_MASK;
    if (ecn === ECN_NOT_ECT) return 'not-ect';
    if (ecn === ECN_CE) return 'marked';
    const before = (buf[l3]! << 8) | tos;
    buf[l3 + 1] = tos | ECN_CE;
    const after = (buf[l3]! << 8) | buf[l3 + 1]!;
    // RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')
    let sum = (~((buf[l3 + 10]! << 8) | buf[l3 + 11]!) & 0xffff) + (~before & 0xffff) + after;
    sum = (sum & 0xffff) + (sum >>> 16);
    sum = (sum & 0xffff) + (sum >>> 16);
    const check = ~sum & 0xffff;
    buf[l3 + 10] = check >> 8;
    buf[l3 + 11] = check & 0xff;
    return 'marked';
  }
  if (ethertype === ETHERTYPE_IPV6) {
    // Traffic class straddles bytes 0 and 1; its ECN bits are bits 4-5 of byte 1.
    if (l3 + 40 > end || buf[l3]! >> 4 !== 6) return 'not-ect';
    const ecn = (buf[l3 + 1]! >> 4) & ECN_MASK;
    if (ecn === ECN_NOT_ECT) return 'not-ect';
    buf[l3 + 1] = buf[l3 + 1]! | (ECN_CE << 4);
    return 'marked';
  }
  return 'not-ect';
}
