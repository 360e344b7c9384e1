// The virtio_net_hdr in front of every frame, checked before a frame from the
// wire reaches our TAP. The header came from the capturing peer's TAP, but on
// the way it is only as trustworthy as that peer (or, in a plaintext mesh,
// anyone who can send us a datagram), and the kernel acts on it: it segments
// by gso_size, finishes a checksum at csum_start + csum_offset, and trusts
// hdr_len as the linear header. So we accept only what a TAP opened with our
// offloads (TAP_OFFLOAD_GSO: CSUM, TSO4, TSO6; no ECN, no UFO/USO) emits, with
// every offset inside the frame. Pure: bytes in, verdict out, no allocation.
//
//    0       1          2            4             6             8             10
//   +-------+----------+------------+-------------+-------------+-------------+
//   | flags | gso_type | hdr_len    | gso_size    | csum_start  | csum_offset |
//   +-------+----------+------------+-------------+-------------+-------------+
//   u16 fields little-endian: without TUNSETVNETLE the TAP uses the host's byte
//   order, and every host we run on (x86-64, arm64) is little-endian.

import { ETHERNET_HEADER_BYTES, MAX_SLEEVE_FRAME_BYTES, VNET_GSO_NONE, VNET_HDR_BYTES } from './sleeve-codec';

export const VNET_F_NEEDS_CSUM = 0x01;
/** The TAP sets it on frames whose checksum the kernel already verified. */
export const VNET_F_DATA_VALID = 0x02;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_TCPV6 = 4;
/** Where the checksum sits in a TCP header. */
const TCP_CSUM_OFFSET = 16;
/** ... and in a UDP header (the only other checksum a non-GSO frame hands over unfinished). */
const UDP_CSUM_OFFSET = 6;

export type VnetVerdict = 'ok' | 'flags' | 'gso-type' | 'gso-size' | 'hdr-len' | 'csum' | 'size';

/**
 * Checks the header at `off` of a frame of `len` bytes (header included).
 * Frame sizes are checked against what a sleeve datagram can carry, not our
 * MTU: peers may run different MTUs, and the bridge drops what does not fit.
 */
export function checkVnetHeader(buf: Uint8Array, off: number, len: number): VnetVerdict {
  if (len < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES || len > MAX_SLEEVE_FRAME_BYTES) return 'size';
  const frameLen = len - VNET_HDR_BYTES;
  const flags = buf[off]!;
  const gsoType = buf[off + 1]!;
  const hdrLen = buf[off + 2]! | (buf[off + 3]! << 8);
  const gsoSize = buf[off + 4]! | (buf[off + 5]! << 8);
  const csumStart = buf[off + 6]! | (buf[off + 7]! << 8);
  const csumOffset = buf[off + 8]! | (buf[off + 9]! << 8);
  if ((flags & ~(VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) !== 0) return 'flags';
  if ((flags & VNET_F_NEEDS_CSUM) !== 0 && (flags & VNET_F_DATA_VALID) !== 0) return 'flags';
  if (hdrLen > frameLen) return 'hdr-len';
  if (gsoType === VNET_GSO_NONE) {
    if (gsoSize !== 0) return 'gso-size';
  } else {
    if (gsoType !== VNET_GSO_TCPV4 && gsoType !== VNET_GSO_TCPV6) return 'gso-type';
    // A super-frame always leaves its TCP checksum to the far end.
    if ((flags & VNET_F_NEEDS_CSUM) === 0) return 'flags';
    if (csumOffset !== TCP_CSUM_OFFSET) return 'csum';
    if (gsoSize === 0 || gsoSize > frameLen) return 'gso-size';
  }
  if ((flags & VNET_F_NEEDS_CSUM) !== 0) {
    if (csumOffset !== TCP_CSUM_OFFSET && csumOffset !== UDP_CSUM_OFFSET) return 'csum';
    if (csumStart < ETHERNET_HEADER_BYTES || csumStart + csumOffset + 2 > frameLen) return 'csum';
  } else if (csumStart !== 0 || csumOffset !== 0) {
    return 'csum';
  }
  return 'ok';
}
