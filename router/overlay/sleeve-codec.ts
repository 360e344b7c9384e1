// The UDP sleeve datagram, version 2. All integers big-endian.
//
//    0       1       2                       8                              16
//   +-------+-------+-----------------------+-------------------------------+
//   | ver=2 | type  | sender peer name (6)  | counter (8 bytes, < 2^53)     |
//   +-------+-------+-----------------------+-------------------------------+
//   | body: ChaCha20-Poly1305 ciphertext + 16-byte tag (plain when the mesh  |
//   | has no password)                                                       |
//   +-----------------------------------------------------------------------+
//   nonce = 00 00 00 02 || counter; associated data = the 16 header bytes.
//   type byte: bit 7 = key phase (the sender's key epoch & 1, so the receiver
//   picks the right key while a rekey switches; router/mesh/key-schedule.ts),
//   bits 0-6 = the type below. Version 1 had no phase bit.
//
//   type 1 FRAME: body = inner frame (below)
//   type 2 PROBE: body empty; an authenticated probe proves the UDP path in one
//                 direction (the receiver reports it back over TCP).
//                 Without a password, a probe may carry an 8-byte challenge
//                 instead, which the receiver echoes in UDP_STATUS over TCP
//                 (udp-endpoint.ts). Older receivers ignore a probe's body.
//   type 3 FAR:   body = inner header, far header, hop tag, a frame sealed end
//                 to end by its origin (far-session.ts); the hop's AEAD covers
//                 only the first 29 body bytes. Only with a password, to
//                 neighbours that set UDP_STATUS bit 4; older peers refuse it
//                 as an unknown type.
//   type 4 FAR_KERNEL: a far message that a relay's kernel forwards
//                 (kernel-relay.ts): type 3's layout, but nothing in it is
//                 sealed per hop (the hop tag's 16 bytes are zero); the far
//                 AEAD covers its source, destination and far header. The
//                 counter field is the far counter (only segments use it, to
//                 find each other). Taken only from the relay address and port
//                 a grant named for that origin, and only by peers that set
//                 UDP_STATUS bit 5.
//
// Inner frame, shared with the TCP fallback (control message FRAME):
//
//    0                       6                      12      13               23
//   +-----------------------+-----------------------+-------+----------------+------------------+
//   | source peer (6):      | destination peer (6): | hops  | virtio_net_hdr | Ethernet frame   |
//   | the capturing peer    | ff:..:ff = broadcast  | left  | (10 bytes)     | (up to ~32 KiB)  |
//   +-----------------------+-----------------------+-------+----------------+------------------+
//
// Relays read only the inner header, never MACs. "hops left" ends any loop
// that inconsistent routes could cause while the topology settles.
// The virtio_net_hdr travels with the frame as the capturing TAP gave it
// (IFF_VNET_HDR): a TCP super-frame (GSO) crosses the mesh whole, in one
// datagram, and the delivering TAP segments it or fixes its checksum only
// at the far end, as the kernel would between two local ports.
//
// Version 3 (sleeve-segments.ts) carries the same 16-byte header, with ver=3,
// in each of a message's MTU-sized segments; a reassembled version 3 message
// is opened and read as a version 2 one.

import { writeCounter } from '../mesh/control-session';
import { PEER_NAME_BYTES, PeerName, peerNameFromBytes, peerNameToBytes } from '../mesh/peer-name';

export const SLEEVE_VERSION = 2;
/** sleeve-segments.ts's SEGMENTED_SLEEVE_VERSION (that file imports this one). */
const SEGMENTED_VERSION = 3;
/** Bit 7 of the type byte: the key phase. */
export const SLEEVE_KEY_PHASE_BIT = 0x80;
export const SLEEVE_TYPE_FRAME = 1;
export const SLEEVE_TYPE_PROBE = 2;
export const SLEEVE_TYPE_FAR = 3;
export const SLEEVE_TYPE_FAR_KERNEL = 4;
export const SLEEVE_HEADER_BYTES = 16;
/** The body of a challenge probe (plaintext meshes only). */
export const CHALLENGE_BYTES = 8;
export const INNER_HEADER_BYTES = 13;
export const BROADCAST_PEER = 'ff:ff:ff:ff:ff:ff' as PeerName;
/** Mesh diameter we never expect to exceed. */
export const MAX_HOPS = 32;
export const ETHERNET_HEADER_BYTES = 14;
/** virtio_net_hdr without the mergeable-buffers count (TUNSETVNETHDRSZ 10). */
export const VNET_HDR_BYTES = 10;
/** virtio_net_hdr gso_type: a plain frame, not a super-frame. */
export const VNET_GSO_NONE = 0;
/** Largest frame (vnet header included) a sleeve datagram can carry: 64 KiB less IP, UDP and our headers and tag. */
export const MAX_SLEEVE_FRAME_BYTES = 65_507 - 16 - 13 - 16;
/** An Ethernet header plus room for one VLAN tag. */
export const MAX_ETHERNET_OVERHEAD_BYTES = 18;
export const MIN_ETHERNET_FRAME_BYTES = 14;

/** What a full-MTU frame costs on the underlay beyond its IP packet: IPv4, UDP, our headers, vnet header, tag, Ethernet header. */
export const SLEEVE_OVERHEAD_BYTES = 20 + 8 + SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES + VNET_HDR_BYTES + 16 + ETHERNET_HEADER_BYTES;

export interface SleeveHeader {
  type: number;
  sender: PeerName;
  counter: number;
}

/** Writes the header at `off`. */
export function writeSleeveHeader(buf: Uint8Array, off: number, type: number, sender: Uint8Array, counter: number, version = SLEEVE_VERSION): void {
  buf[off] = version;
  buf[off + 1] = type;
  buf.set(sender, off + 2);
  writeCounter(buf, off + 8, counter);
}

export type SleeveParse = SleeveHeader | 'short' | 'version' | 'type';

/** Reads the 6-byte peer name at off: peerNameFromBytes, or a PeerNameReader's cached read (peer-name-reader.ts). */
export type PeerNameRead = (buf: Uint8Array, off: number) => PeerName;

/**
 * Cheap checks before any crypto: length, version (2, or 3 for a segment's or
 * a reassembled message's first 16 bytes), type. Counter above 2^53 reads as
 * 'short' never; it is capped by the replay window.
 */
export function readSleeveHeader(buf: Uint8Array, off: number, len: number, readName: PeerNameRead = peerNameFromBytes): SleeveParse {
  const h: SleeveHeader = { type: 0, sender: BROADCAST_PEER, counter: 0 };
  return readSleeveHeaderInto(buf, off, len, h, readName) ?? h;
}

/** readSleeveHeader for the frame path: fills `out` (the caller's, reused) instead of a fresh object; null when it parsed. */
export function readSleeveHeaderInto(buf: Uint8Array, off: number, len: number, out: SleeveHeader, readName: PeerNameRead = peerNameFromBytes): 'short' | 'version' | 'type' | null {
  if (len < SLEEVE_HEADER_BYTES) return 'short';
  if (buf[off] !== SLEEVE_VERSION && buf[off] !== SEGMENTED_VERSION) return 'version';
  const type = buf[off + 1]! & ~SLEEVE_KEY_PHASE_BIT;
  if (type !== SLEEVE_TYPE_FRAME && type !== SLEEVE_TYPE_PROBE && type !== SLEEVE_TYPE_FAR && type !== SLEEVE_TYPE_FAR_KERNEL) return 'type';
  out.type = type;
  out.sender = readName(buf, off + 2);
  out.counter = readCounter(buf, off + 8);
  return null;
}

/** The 8-byte big-endian counter at off (below 2^53 wherever it is used). */
export function readCounter(buf: Uint8Array, off: number): number {
  const hi = ((buf[off]! << 24) >>> 0) + (buf[off + 1]! << 16) + (buf[off + 2]! << 8) + buf[off + 3]!;
  const lo = ((buf[off + 4]! << 24) >>> 0) + (buf[off + 5]! << 16) + (buf[off + 6]! << 8) + buf[off + 7]!;
  return hi === 0 ? lo : hi * 0x100000000 + lo;
}

export function writeInnerHeader(buf: Uint8Array, off: number, src: Uint8Array, dst: Uint8Array, hopsLeft: number): void {
  buf.set(src, off);
  buf.set(dst, off + PEER_NAME_BYTES);
  buf[off + 12] = hopsLeft;
}

/** Rewrites only the hops-left byte of an inner header at `off` (a relay passing a frame on in place). */
export function writeHopsLeft(buf: Uint8Array, off: number, hopsLeft: number): void {
  buf[off + 12] = hopsLeft;
}

export interface InnerHeader {
  src: PeerName;
  dst: PeerName;
  hopsLeft: number;
}

export function readInnerHeader(buf: Uint8Array, off: number, len: number, readName: PeerNameRead = peerNameFromBytes): InnerHeader | null {
  const h: InnerHeader = { src: BROADCAST_PEER, dst: BROADCAST_PEER, hopsLeft: 0 };
  return readInnerHeaderInto(buf, off, len, h, readName) ? h : null;
}

/** readInnerHeader for the frame path: fills `out` (the caller's, reused); false when too short. */
export function readInnerHeaderInto(buf: Uint8Array, off: number, len: number, out: InnerHeader, readName: PeerNameRead = peerNameFromBytes): boolean {
  if (len < INNER_HEADER_BYTES + VNET_HDR_BYTES + MIN_ETHERNET_FRAME_BYTES) return false;
  out.src = readName(buf, off);
  out.dst = readName(buf, off + 6);
  out.hopsLeft = buf[off + 12]!;
  return true;
}

/** Peer names as bytes, cached: the hot path writes them into every datagram. */
export function peerNameBytes(name: PeerName): Uint8Array {
  return peerNameToBytes(name);
}
