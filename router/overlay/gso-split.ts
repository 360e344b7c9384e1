// Splits a TCP super-frame (virtio_net_hdr GSO, TCPv4 or TCPv6) that does not
// fit one sleeve datagram into smaller super-frames, at MSS boundaries, so
// that each piece still crosses the mesh whole and the delivering TAP
// segments it as the kernel would have segmented the original.
//
// Why: a frame that GRO merged elsewhere can reach 64 KiB of IP packet (a
// container's own TCP stays under its veth's gso_max_size, 64000, which fits:
// router/host/container-link.ts), and a datagram or version 3 message
// carries at most MAX_SLEEVE_FRAME_BYTES or a little less. The alternative, capping the TAP's
// gso_max_size, makes the kernel segment everything to the MTU.
//
// Each piece is what tcp_gso_segment would produce for a run of segments:
//   - the headers are copied; IPv4 total length, id (+ segments before the
//     piece) and header checksum, or the IPv6 payload length, are rewritten;
//   - the TCP sequence number advances by the payload before the piece;
//     FIN and PSH stay on the last piece only, CWR on the first only;
//   - the TCP checksum field holds the pseudo-header sum for the piece's own
//     length (what CHECKSUM_PARTIAL expects; the far kernel adds the rest);
//   - a piece of one segment leaves as a plain frame (gso_type none) with its
//     checksum still to finish, as the kernel treats such a frame anyway.
// Pieces get equal numbers of segments (the last takes the rest), so no tiny
// runt follows a full piece.
//
// Input is hostile: only the shapes a TAP with our offloads emits are split
// (Ethernet, optionally one 802.1Q tag, IPv4 without fragmentation or IPv6
// without extension headers, TCP), with every length consistent; anything
// else is refused by reason, never thrown on. Pure and allocation-free per
// call: pieces go into a scratch area owned by the splitter.

import { ETHERNET_HEADER_BYTES, VNET_HDR_BYTES } from './sleeve-codec';
import { VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_GSO_TCPV6 } from './vnet-header';

export type GsoSplitRefusal = 'not-gso' | 'l3' | 'ip' | 'tcp' | 'csum' | 'mss' | 'room';

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const IPPROTO_TCP = 6;
const IPV6_HEADER_BYTES = 40;
const TCP_MIN_HEADER_BYTES = 20;
const TCP_CSUM_OFFSET = 16;
const TCP_FLAG_FIN = 0x01;
const TCP_FLAG_PSH = 0x08;
const TCP_FLAG_CWR = 0x80;

/** The largest input: an IPv6 packet with 64 KiB of payload behind Ethernet, a VLAN tag and the vnet header. */
export const GSO_SPLIT_MAX_INPUT_BYTES = VNET_HDR_BYTES + ETHERNET_HEADER_BYTES + 4 + IPV6_HEADER_BYTES + 65_535;
/** Pieces per frame the scratch area holds (a 64 KiB frame needs 2 at the sleeve's limit). */
export const GSO_SPLIT_MAX_PIECES = 8;

export class GsoSplitter {
  /** Piece i is scratch[offsets[i], offsets[i] + lengths[i]), vnet header first; valid until the next split. */
  readonly scratch: Buffer;
  readonly offsets = new Int32Array(GSO_SPLIT_MAX_PIECES);
  readonly lengths = new Int32Array(GSO_SPLIT_MAX_PIECES);
  /** Refusals by reason, for the metrics. */
  readonly refused: Record<GsoSplitRefusal, number> = { 'not-gso': 0, l3: 0, ip: 0, tcp: 0, csum: 0, mss: 0, room: 0 };

  constructor() {
    // Each piece repeats at most 14 + 4 + 60 + 60 bytes of headers next to its share of the payload.
    this.scratch = Buffer.alloc(GSO_SPLIT_MAX_INPUT_BYTES + GSO_SPLIT_MAX_PIECES * (VNET_HDR_BYTES + 160));
  }

  /**
   * Splits buf[off, off + len) (vnet header included) into pieces of at most
   * maxPieceBytes each (vnet header included). Returns the number of pieces
   * (>= 1), or a refusal reason (also counted in `refused`).
   */
  split(buf: Buffer, off: number, len: number, maxPieceBytes: number): number | GsoSplitRefusal {
    const r = this.trySplit(buf, off, len, maxPieceBytes);
    if (typeof r === 'string') this.refused[r]++;
    return r;
  }

  private trySplit(buf: Buffer, off: number, len: number, maxPieceBytes: number): number | GsoSplitRefusal {
    if (!(off >= 0 && len >= 0 && off + len <= buf.length) || len > GSO_SPLIT_MAX_INPUT_BYTES) return 'l3';
    if (len < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES) return 'l3';
    const gsoType = buf[off + 1]!;
    const v4 = gsoType === VNET_GSO_TCPV4;
    if (!v4 && gsoType !== VNET_GSO_TCPV6) return 'not-gso';
    if (buf[off] !== VNET_F_NEEDS_CSUM) return 'csum';
    const mss = u16le(buf, off + 4);
    const csumStart = u16le(buf, off + 6);
    if (u16le(buf, off + 8) !== TCP_CSUM_OFFSET) return 'csum';

    const eth = off + VNET_HDR_BYTES;
    const end = off + len;
    let l3 = eth + ETHERNET_HEADER_BYTES;
    let ethertype = u16be(buf, eth + 12);
    if (ethertype === ETHERTYPE_VLAN) {
      if (l3 + 4 > end) return 'l3';
      ethertype = u16be(buf, l3 + 2);
      l3 += 4;
    }
    let l4: number;
    if (v4) {
      if (ethertype !== ETHERTYPE_IPV4 || l3 + 20 > end) return 'l3';
      const ihl = (buf[l3]! & 0x0f) * 4;
      if (buf[l3]! >> 4 !== 4 || ihl < 20) return 'ip';
      l4 = l3 + ihl;
      // Any fragment (MF set or an offset) cannot be a TCP super-frame.
      if (u16be(buf, l3 + 2) !== end - l3 || (u16be(buf, l3 + 6) & 0x3fff) !== 0 || buf[l3 + 9] !== IPPROTO_TCP) return 'ip';
    } else {
      if (ethertype !== ETHERTYPE_IPV6 || l3 + IPV6_HEADER_BYTES > end) return 'l3';
      l4 = l3 + IPV6_HEADER_BYTES;
      if (buf[l3]! >> 4 !== 6 || u16be(buf, l3 + 4) !== end - l4 || buf[l3 + 6] !== IPPROTO_TCP) return 'ip';
    }
    if (l4 + TCP_MIN_HEADER_BYTES > end) return 'tcp';
    const tcpHeaderBytes = (buf[l4 + 12]! >> 4) * 4;
    if (tcpHeaderBytes < TCP_MIN_HEADER_BYTES || l4 + tcpHeaderBytes > end) return 'tcp';
    if (csumStart !== l4 - eth) return 'csum';

    const headerBytes = l4 + tcpHeaderBytes - off; // vnet header included
    const payloadBytes = end - (l4 + tcpHeaderBytes);
    if (mss === 0 || payloadBytes === 0) return 'mss';
    const segments = Math.ceil(payloadBytes / mss);
    const maxSegmentsPerPiece = Math.floor((maxPieceBytes - headerBytes) / mss);
    if (maxSegmentsPerPiece < 1) return 'room';
    const pieces = Math.ceil(segments / maxSegmentsPerPiece);
    if (pieces > GSO_SPLIT_MAX_PIECES) return 'room';
    const segmentsPerPiece = Math.ceil(segments / pieces);

    const out = this.scratch;
    const ipId = v4 ? u16be(buf, l3 + 4) : 0;
    const seq = u32be(buf, l4 + 4);
    const tcpFlags = buf[l4 + 13]!;
    const l3Rel = l3 - off;
    const l4Rel = l4 - off;
    let at = 0;
    let payloadAt = l4 + tcpHeaderBytes;
    let count = 0;
    for (let segDone = 0; segDone < segments; segDone += segmentsPerPiece) {
      const pieceSegments = Math.min(segmentsPerPiece, segments - segDone);
      const piecePayload = Math.min(pieceSegments * mss, end - payloadAt);
      const first = segDone === 0;
      const last = segDone + pieceSegments >= segments;
      buf.copy(out, at, off, off + headerBytes);
      buf.copy(out, at + headerBytes, payloadAt, payloadAt + piecePayload);
      const tcpLen = tcpHeaderBytes + piecePayload;
      if (pieceSegments === 1) {
        out[at + 1] = 0; // gso_type none
        out[at + 4] = 0; out[at + 5] = 0;
      }
      putU16le(out, at + 2, headerBytes - VNET_HDR_BYTES);
      const ip = at + l3Rel;
      const th = at + l4Rel;
      let sum: number;
      if (v4) {
        putU16be(out, ip + 2, l4Rel - l3Rel + tcpLen);
        putU16be(out, ip + 4, (ipId + segDone) & 0xffff);
        putU16be(out, ip + 10, 0);
        putU16be(out, ip + 10, ~fold(sumWords(out, ip, l4Rel - l3Rel)) & 0xffff);
        sum = sumWords(out, ip + 12, 8);
      } else {
        putU16be(out, ip + 4, tcpLen);
        sum = sumWords(out, ip + 8, 32);
      }
      putU32be(out, th + 4, (seq + segDone * mss) >>> 0);
      let flags = tcpFlags;
      if (!last) flags &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
      if (!first) flags &= ~TCP_FLAG_CWR;
      out[th + 13] = flags;
      putU16be(out, th + TCP_CSUM_OFFSET, fold(sum + IPPROTO_TCP + tcpLen));
      this.offsets[count] = at;
      this.lengths[count] = headerBytes + piecePayload;
      count++;
      at += headerBytes + piecePayload;
      payloadAt += piecePayload;
    }
    return count;
  }
}

function u16le(b: Uint8Array, i: number): number { return b[i]! | (b[i + 1]! << 8); }
function u16be(b: Uint8Array, i: number): number { return (b[i]! << 8) | b[i + 1]!; }
function u32be(b: Uint8Array, i: number): number { return ((b[i]! << 24) >>> 0) + (b[i + 1]! << 16) + (b[i + 2]! << 8) + b[i + 3]!; }
function putU16le(b: Uint8Array, i: number, v: number): void { b[i] = v & 0xff; b[i + 1] = (v >>> 8) & 0xff; }
function putU16be(b: Uint8Array, i: number, v: number): void { b[i] = (v >>> 8) & 0xff; b[i + 1] = v & 0xff; }
function putU32be(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24; b[i + 1] = (v >>> 16) & 0xff; b[i + 2] = (v >>> 8) & 0xff; b[i + 3] = v & 0xff;
}

/** Sum of the big-endian 16-bit words in b[i, i + n), n even; unfolded (fits a double for any header). */
function sumWords(b: Uint8Array, i: number, n: number): number {
  let s = 0;
  for (let k = 0; k < n; k += 2) s += (b[i + k]! << 8) | b[i + k + 1]!;
  return s;
}

/** One's-complement fold to 16 bits. */
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}
