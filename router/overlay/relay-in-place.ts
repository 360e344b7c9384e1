// Relaying a unicast message where it arrived, for the Overlay (overlay.ts):
// the inner frame, in the UDP receive buffer with its sleeve header 16 bytes
// before it, is resealed there under the next link's key and leaves from
// there (DatagramPort.sendFrom), as version 3 segments in the span the
// segments came in, or as one version 2 datagram. That spares the copy into a
// send slot and, with equal strides, the moves of chunk 0. Per frame: no
// allocation, one reseal, one queued send. A far message (far-session.ts) is
// relayed the same way: only its first `len` bytes (inner and far header) are
// resealed; the `tail` after the hop tag (the far body) goes on untouched.
// A message whose chunks were never moved together (segment-receiver.ts: a
// far message, a plaintext frame) leaves, when the next hop takes the same
// stride, as the very segments it came in: only their headers are written;
// otherwise its chunks are put together first.

import type { DatagramPort } from './ports';
import { SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, SLEEVE_VERSION, writeHopsLeft } from './sleeve-codec';
import { compactChunks, fitsSegmented, SEGMENT_HEADER_BYTES, SEGMENTED_SLEEVE_VERSION, segmentedBytes, spreadSegments, stampSegments } from './sleeve-segments';
import type { Link } from './udp-probes';

/**
 * Relays the inner frame at `off` (`len` bytes, inner header first, `hops`
 * already decremented) over `link`, inside the receive span [spanOff,
 * spanEnd). False when it cannot (then the caller copies): the port cannot
 * send from a receive buffer, the link's UDP is not heard, or the result
 * would not fit the span (another stride, another tag size). True also when
 * a spent counter dropped the frame, as a copying send would. Counts into
 * `traffic` (the Overlay's counters). `type` and `tail` as above;
 * `spread` as SegmentSink's spreadSegSize: chunks that can leave as the very
 * segments they came in stay put; otherwise they are put together here, so
 * on a false return the message is always whole.
 */
export function relayInPlace(
  udp: DatagramPort, link: Link, stride: number, traffic: Record<string, number>,
  buf: Buffer, off: number, len: number, hops: number, spanOff: number, spanEnd: number, type = SLEEVE_TYPE_FRAME, tail = 0, spread = 0,
): boolean {
  const at = off - SLEEVE_HEADER_BYTES;
  const sealedBody = len + link.session.trailerBytes + tail;
  const segmented = link.segmented && fitsSegmented(sealedBody, stride);
  // Version 3 leaves from as low as 4 bytes before the header (where compacted segments began); version 2 from the header.
  const from = segmented ? Math.max(spanOff, at - (SEGMENT_HEADER_BYTES - SLEEVE_HEADER_BYTES)) : at;
  const wire = segmented ? segmentedBytes(sealedBody, stride) : SLEEVE_HEADER_BYTES + sealedBody;
  const possible = udp.sendFrom !== undefined && link.peerHearsUs && at >= spanOff && from + wire <= spanEnd;
  const unmoved = possible && spread > 0 && segmented && spread === stride + SEGMENT_HEADER_BYTES && from === spanOff && from + wire === spanEnd;
  if (spread > 0 && !unmoved) compactChunks(buf, spanOff, spanEnd - spanOff, spread);
  if (!possible) return false;
  writeHopsLeft(buf, off, hops);
  const sealed = link.session.seal(buf, at, type, len, segmented ? SEGMENTED_SLEEVE_VERSION : SLEEVE_VERSION);
  // A spent counter (the mesh rekeys long before) drops the frame, as sendFrame does.
  if (sealed < 0) return true;
  const bodyLen = sealed - SLEEVE_HEADER_BYTES + tail;
  const n = !segmented ? sealed + tail : unmoved ? stampSegments(buf, at, bodyLen, stride, from) : spreadSegments(buf, at, bodyLen, stride, from);
  udp.sendFrom!(buf, from, n, link.udp.host, link.udp.port, segmented ? stride + SEGMENT_HEADER_BYTES : 0);
  if (segmented) traffic.framesSentSegmented!++;
  traffic.framesSentUdp!++;
  traffic.framesRelayed!++;
  traffic.framesRelayedInPlace!++;
  if (unmoved) traffic.framesRelayedUnmoved!++;
  traffic.bytesSentUdp! += n;
  return true;
}
