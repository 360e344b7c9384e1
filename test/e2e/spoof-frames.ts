// Frames a container that wants to speak for another would send, built byte
// by byte for the port-security test (port-security.test.ts) to write into a
// TAP inside the spoofer: ARP announcements, IPv4 echo requests and IPv6
// neighbour adverts, with whatever source it likes. Plain Ethernet frames
// (the TAP has no vnet header).

import { tryParseIpv4, tryParseIpv6 } from '../../common/ip';

export const BROADCAST = 'ff:ff:ff:ff:ff:ff';
/** IPv6 all-nodes ff02::1 and its Ethernet group. */
const ALL_NODES_V6 = 'ff02::1';
const ALL_NODES_MAC = '33:33:00:00:00:01';

export function macBytes(text: string): Buffer {
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

function v4Bytes(text: string): Buffer {
  const v = tryParseIpv4(text);
  if (v === null) throw new Error(`not IPv4: ${text}`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

function v6Bytes(text: string): Buffer {
  const v = tryParseIpv6(text);
  if (v === null) throw new Error(`not IPv6: ${text}`);
  return Buffer.from(v.toString(16).padStart(32, '0'), 'hex');
}

/** The Internet checksum (RFC 1071) over the parts in turn. */
export function checksum(...parts: Buffer[]): number {
  const b = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2 === 1) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ethernet(dst: string, src: string, type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(14);
  macBytes(dst).copy(head, 0);
  macBytes(src).copy(head, 6);
  head.writeUInt16BE(type, 12);
  return Buffer.concat([head, payload]);
}

/** A gratuitous ARP reply (RFC 5227 announcement): "`senderIp` is at `senderMac`", broadcast from `etherSrc`. */
export function arpAnnouncement(etherSrc: string, senderMac: string, senderIp: string): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0); // Ethernet
  arp.writeUInt16BE(0x0800, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(2, 6); // reply
  macBytes(senderMac).copy(arp, 8);
  v4Bytes(senderIp).copy(arp, 14);
  macBytes(BROADCAST).copy(arp, 18);
  v4Bytes(senderIp).copy(arp, 24);
  return ethernet(BROADCAST, etherSrc, 0x0806, arp);
}

/** An IPv4 packet holding an ICMP echo request, `payloadBytes` of `fill`. */
export function ipv4Echo(srcIp: string, dstIp: string, id: number, seq: number, payloadBytes: number, fill: number): Buffer {
  const ip = Buffer.alloc(20 + 8 + payloadBytes);
  ip[0] = 0x45;
  ip.writeUInt16BE(ip.length, 2);
  ip[8] = 64;
  ip[9] = 1;
  v4Bytes(srcIp).copy(ip, 12);
  v4Bytes(dstIp).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip.subarray(0, 20)), 10);
  ip[20] = 8;
  ip.writeUInt16BE(id, 24);
  ip.writeUInt16BE(seq, 26);
  ip.fill(fill, 28);
  ip.writeUInt16BE(checksum(ip.subarray(20)), 22);
  return ip;
}

/** An ICMP echo request from `srcIp` (whoever holds it) to `dstIp` at `dstMac`. */
export function echoRequestV4(etherSrc: string, dstMac: string, srcIp: string, dstIp: string): Buffer {
  return ethernet(dstMac, etherSrc, 0x0800, ipv4Echo(srcIp, dstIp, 0x5053, 0, 16, 0x70));
}

/**
 * An unsolicited neighbour advert (RFC 4861 4.4, override set) to all nodes:
 * "`target` is at `targetMac`", from `srcIp` and `etherSrc`.
 */
export function neighborAdvert(etherSrc: string, srcIp: string, target: string, targetMac: string): Buffer {
  const icmp = Buffer.alloc(24 + 8);
  icmp[0] = 136;
  icmp.writeUInt32BE(0x20000000, 4); // O (override)
  v6Bytes(target).copy(icmp, 8);
  icmp[24] = 2; // target link-layer address option
  icmp[25] = 1;
  macBytes(targetMac).copy(icmp, 26);
  const src = v6Bytes(srcIp);
  const dst = v6Bytes(ALL_NODES_V6);
  const pseudo = Buffer.alloc(8);
  pseudo.writeUInt32BE(icmp.length, 0);
  pseudo[7] = 58;
  icmp.writeUInt16BE(checksum(src, dst, pseudo, icmp), 2);
  const ip6 = Buffer.alloc(40);
  ip6.writeUInt32BE(0x60000000, 0);
  ip6.writeUInt16BE(icmp.length, 4);
  ip6[6] = 58;
  ip6[7] = 255;
  src.copy(ip6, 8);
  dst.copy(ip6, 24);
  return ethernet(ALL_NODES_MAC, etherSrc, 0x86dd, Buffer.concat([ip6, icmp]));
}
