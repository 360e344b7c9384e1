// The UDP sleeve, version 3: one sealed message cut into MTU-sized UDP
// datagrams ("segments") that leave in one sendmsg with UDP_SEGMENT (UDP GSO)
// and usually arrive coalesced in one recvmsg (UDP_GRO). Nothing on the
// underlay IP-fragments, and a GSO packet crosses veths and bridges as one
// skb. All integers big-endian.
//
//    0       1       2                       8                     16      17      18      20
//   +-------+-------+-----------------------+---------------------+-------+-------+-------+
//   | ver=3 | type  | sender peer name (6)  | counter (8, < 2^53) | index | count | stride|
//   +-------+-------+-----------------------+---------------------+-------+-------+-------+
//   | chunk `index` of the message body: stride bytes; the last chunk 1..stride bytes     |
//   +-------------------------------------------------------------------------------------+
//
//   The message body is what a version 2 FRAME datagram carries (sleeve-codec.ts):
//   ChaCha20-Poly1305 over the inner frame, tag at the end (plain without a
//   password), sealed ONCE for the whole message with the same nonce as
//   version 2 (00 00 00 02 || counter; the counter space is shared) and the
//   first 16 header bytes as associated data. Those 16 bytes are the same in
//   every segment of a message; index, count and stride are not authenticated
//   but only place chunks: any change to them changes the reassembled body,
//   which then fails to open. type: FRAME, FAR or FAR_KERNEL (probes stay version 2), bit 7
//   the key phase as in version 2. count is 2..MAX_SEGMENTS. A FAR message's
//   hop seal covers only its first 29 body bytes: a changed chunk elsewhere
//   passes the relays and fails the destination's end-to-end open instead.
//
//   Chunk i sits at body offset i * stride, so every segment but the last is
//   exactly SEGMENT_HEADER_BYTES + stride bytes: the shape UDP GSO produces
//   from one buffer with the headers interleaved (spreadSegments), and the
//   shape UDP_GRO hands back (compactSegments).
//
// A sender uses version 3 only towards a neighbour that announced it over
// the authenticated control connection (UDP_STATUS flag bit 3,
// router/mesh/protocol.ts); others get version 2.

import { SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, SLEEVE_TYPE_FAR, SLEEVE_TYPE_FAR_KERNEL, SLEEVE_TYPE_FRAME } from './sleeve-codec';

export const SEGMENTED_SLEEVE_VERSION = 3 as const;
export const SEGMENT_HEADER_BYTES = 20;
/** Most segments per message: the kernel's UDP_MAX_SEGMENTS before 6.9 (later ones allow 128). */
export const MAX_SEGMENTS = 64;
/** Largest UDP payload one GSO send may carry, all segments and their headers together. */
export const MAX_GSO_PAYLOAD_BYTES = 65_507;
/** Largest message body: one GSO send's payload less two segment headers (count >= 2). */
export const MAX_SEGMENTED_BODY_BYTES = MAX_GSO_PAYLOAD_BYTES - 2 * SEGMENT_HEADER_BYTES;

/** Segments needed for a body of bodyLen bytes at `stride` bytes per chunk. */
export function segmentCount(bodyLen: number, stride: number): number {
  return Math.ceil(bodyLen / stride);
}

/** Bytes on the wire (UDP payload, all segments) for a body of bodyLen bytes. */
export function segmentedBytes(bodyLen: number, stride: number): number {
  return bodyLen + segmentCount(bodyLen, stride) * SEGMENT_HEADER_BYTES;
}

/** Whether a body of bodyLen bytes goes as one version 3 message at this stride (else: version 2). */
export function fitsSegmented(bodyLen: number, stride: number): boolean {
  const n = segmentCount(bodyLen, stride);
  return n >= 2 && n <= MAX_SEGMENTS && bodyLen + n * SEGMENT_HEADER_BYTES <= MAX_GSO_PAYLOAD_BYTES;
}

/**
 * The largest inner message (before the tag) that fitsSegmented at this
 * stride, for splitting super-frames so they do: the wire payload is at most
 * MAX_GSO_PAYLOAD_BYTES and MAX_SEGMENTS segments.
 */
export function maxSegmentedBody(stride: number): number {
  let best = 0;
  for (let n = 2; n <= MAX_SEGMENTS; n++) {
    const last = Math.min(stride, MAX_GSO_PAYLOAD_BYTES - n * SEGMENT_HEADER_BYTES - (n - 1) * stride);
    if (last < 1) break;
    best = Math.max(best, (n - 1) * stride + last);
  }
  return best;
}

/**
 * Turns a sealed version 3 message in place into its segments: on entry the
 * 16-byte header (version 3) is at `at` and the body (bodyLen bytes) right
 * after it; on return segment i starts at segAt + i * (stride + 20), where
 * segAt is `at` (a message built in a send slot) or as low as at - 4 (a
 * message compacted in a receive buffer, compactSegments, going out again at
 * the same offset: chunk 0 then stays put). The buffer needs room for
 * segmentedBytes(bodyLen, stride) bytes from segAt. Returns that length.
 * Chunks move last first, each to an offset no lower than its own, so none
 * overwrites one not yet moved; the headers are written after.
 */
export function spreadSegments(buf: Uint8Array, at: number, bodyLen: number, stride: number, segAt = at): number {
  if (segAt > at || segAt < at - (SEGMENT_HEADER_BYTES - SLEEVE_HEADER_BYTES)) throw new RangeError(`segments at ${segAt} for a message at ${at}`);
  const n = segmentCount(bodyLen, stride);
  const segBytes = stride + SEGMENT_HEADER_BYTES;
  for (let i = n - 1; i >= 0; i--) {
    const from = at + SLEEVE_HEADER_BYTES + i * stride;
    const len = i === n - 1 ? bodyLen - i * stride : stride;
    const seg = segAt + i * segBytes;
    if (seg + SEGMENT_HEADER_BYTES !== from) buf.copyWithin(seg + SEGMENT_HEADER_BYTES, from, from + len);
  }
  return stampSegments(buf, at, bodyLen, stride, segAt);
}

/**
 * The header half of spreadSegments, for chunks that already lie in segment
 * order (chunk 0 right after the header at `at`, chunk i >= 1 at
 * segAt + i * (stride + 20) + 20): writes every segment's header. Returns
 * the segments' total length.
 */
export function stampSegments(buf: Uint8Array, at: number, bodyLen: number, stride: number, segAt = at): number {
  const n = segmentCount(bodyLen, stride);
  const segBytes = stride + SEGMENT_HEADER_BYTES;
  if (segAt !== at) buf.copyWithin(segAt, at, at + SLEEVE_HEADER_BYTES);
  for (let i = 0; i < n; i++) {
    const seg = segAt + i * segBytes;
    // 16 bytes by hand: copyWithin's builtin call costs more than the copy, 63 times per message.
    if (i > 0) for (let k = 0; k < SLEEVE_HEADER_BYTES; k++) buf[seg + k] = buf[segAt + k]!;
    buf[seg + 16] = i;
    buf[seg + 17] = n;
    buf[seg + 18] = stride >>> 8;
    buf[seg + 19] = stride & 0xff;
  }
  return bodyLen + n * SEGMENT_HEADER_BYTES;
}

/** A segment's own fields after the checks of readSegment. */
export interface SegmentFields {
  index: number;
  count: number;
  stride: number;
}

export type SegmentParse = 'short' | 'version' | 'type' | 'segment';

/**
 * Checks one segment of len bytes at off (version, type, index < count,
 * 2 <= count <= MAX_SEGMENTS, a chunk of exactly stride bytes but for the
 * last, 1..stride there, and a body no larger than MAX_SEGMENTED_BODY_BYTES)
 * and fills `out`. Nothing is trusted beyond these bounds.
 */
export function readSegment(buf: Uint8Array, off: number, len: number, out: SegmentFields): SegmentParse | null {
  if (len <= SEGMENT_HEADER_BYTES) return 'short';
  if (buf[off] !== SEGMENTED_SLEEVE_VERSION) return 'version';
  const type = buf[off + 1]! & ~SLEEVE_KEY_PHASE_BIT;
  if (type !== SLEEVE_TYPE_FRAME && type !== SLEEVE_TYPE_FAR && type !== SLEEVE_TYPE_FAR_KERNEL) return 'type';
  const index = buf[off + 16]!;
  const count = buf[off + 17]!;
  const stride = (buf[off + 18]! << 8) | buf[off + 19]!;
  const chunk = len - SEGMENT_HEADER_BYTES;
  if (count < 2 || count > MAX_SEGMENTS || index >= count || stride === 0) return 'segment';
  if ((count - 1) * stride >= MAX_SEGMENTED_BODY_BYTES) return 'segment';
  if (index < count - 1 ? chunk !== stride : chunk > stride || index * stride + chunk > MAX_SEGMENTED_BODY_BYTES) return 'segment';
  out.index = index;
  out.count = count;
  out.stride = stride;
  return null;
}

/** Whether the first 16 header bytes of two segments agree (same message). */
export function sameMessage(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  for (let k = 0; k < SLEEVE_HEADER_BYTES; k++) if (a[aOff + k] !== b[bOff + k]) return false;
  return true;
}

const scratchFields: SegmentFields = { index: 0, count: 0, stride: 0 };

/**
 * The checks of the receive fast path: whether buf[off, off+len), coalesced
 * by UDP_GRO at segSize bytes per datagram, is exactly all segments of one
 * message in order. Returns their count, or -1 (then each datagram takes the
 * slow path).
 */
export function wholeSegments(buf: Uint8Array, off: number, len: number, segSize: number): number {
  if (segSize <= SEGMENT_HEADER_BYTES || len <= segSize) return -1;
  const n = Math.ceil(len / segSize);
  const f = scratchFields;
  for (let i = 0; i < n; i++) {
    const seg = off + i * segSize;
    const segLen = i === n - 1 ? len - i * segSize : segSize;
    if (readSegment(buf, seg, segLen, f) !== null || f.index !== i || f.count !== n || f.stride !== segSize - SEGMENT_HEADER_BYTES) return -1;
    if (i > 0 && !sameMessage(buf, off, buf, seg)) return -1;
  }
  return n;
}

/**
 * Puts whole segments (wholeSegments) half together: the 16-byte header
 * moves 4 bytes up, right before chunk 0, so the message's start (header and
 * chunk 0) can be opened where it lies; chunks 1.. stay where they came.
 * Returns the message's offset (off + 4). compactChunks finishes the job.
 */
export function joinHeader(buf: Uint8Array, off: number): number {
  const shift = SEGMENT_HEADER_BYTES - SLEEVE_HEADER_BYTES;
  buf.copyWithin(off + shift, off, off + SLEEVE_HEADER_BYTES);
  return off + shift;
}

/** Moves chunks 1.. of whole segments (after joinHeader) together behind chunk 0; returns the body length. */
export function compactChunks(buf: Uint8Array, off: number, len: number, segSize: number): number {
  const n = Math.ceil(len / segSize);
  const stride = segSize - SEGMENT_HEADER_BYTES;
  for (let i = 1; i < n; i++) {
    const seg = off + i * segSize;
    const segLen = i === n - 1 ? len - i * segSize : segSize;
    buf.copyWithin(off + SEGMENT_HEADER_BYTES + i * stride, seg + SEGMENT_HEADER_BYTES, seg + segLen);
  }
  return len - n * SEGMENT_HEADER_BYTES;
}

/**
 * The receive fast path: when buf[off, off+len) is whole segments
 * (wholeSegments), moves the body together in place behind a 16-byte header
 * at off + 4 and returns the body length. Otherwise returns -1 and leaves the
 * bytes untouched.
 */
export function compactSegments(buf: Uint8Array, off: number, len: number, segSize: number): number {
  if (wholeSegments(buf, off, len, segSize) < 0) return -1;
  joinHeader(buf, off);
  return compactChunks(buf, off, len, segSize);
}
