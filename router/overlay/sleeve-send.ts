// Sending from the port's send slot, for the Overlay (overlay.ts) and the far
// path (far-path.ts): a frame, a far message or a relayed copy is built at
// stageOffset() + 16, sealed there under the link's session (as version 3
// when it goes segmented, then cut into segments in place,
// sleeve-segments.ts), committed and counted. An inner frame to a neighbour
// whose UDP does not hear us goes as a FRAME control message over its TCP
// connection instead. Per frame: one copy of the frame into the slot
// (copyToStage), one seal, no allocation on the UDP path.

import { allocFrameMessage } from '../mesh/protocol';
import type { DatagramPort } from './ports';
import { INNER_HEADER_BYTES, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, SLEEVE_VERSION, writeInnerHeader } from './sleeve-codec';
import { fitsSegmented, SEGMENT_HEADER_BYTES, SEGMENTED_SLEEVE_VERSION, spreadSegments } from './sleeve-segments';
import type { Link } from './udp-probes';

/**
 * Seals the first `sealLen` body bytes of the message staged in the send slot
 * at `at` (stageOffset(); its `tail` bytes after the tag go as they are) and
 * commits it to `link`,
 * segmented or not as the caller chose. False when a spent counter dropped
 * it (the mesh rekeys long before). Counts into `traffic`.
 */
export function sealStaged(
  udp: DatagramPort, link: Link, stride: number, traffic: Record<string, number>,
  at: number, type: number, sealLen: number, tail: number, segmented: boolean,
): boolean {
  const slab = udp.stageSlab();
  const sealed = link.session.seal(slab, at, type, sealLen, segmented ? SEGMENTED_SLEEVE_VERSION : SLEEVE_VERSION);
  if (sealed < 0) return false;
  const n = segmented ? spreadSegments(slab, at, sealed - SLEEVE_HEADER_BYTES + tail, stride) : sealed + tail;
  udp.commit(n, link.udp.host, link.udp.port, segmented ? stride + SEGMENT_HEADER_BYTES : 0);
  if (segmented) traffic.framesSentSegmented!++;
  traffic.framesSentUdp!++;
  traffic.bytesSentUdp! += n;
  return true;
}

/** Copies src[off, +len) into the port's stage slab at `at`, without a view per call where the port can (ports.ts). */
export function copyToStage(udp: DatagramPort, slab: Buffer, at: number, src: Buffer, off: number, len: number): void {
  if (udp.stageCopy !== undefined) udp.stageCopy(src, off, len, at);
  else src.copy(slab, at, off, off + len);
}

/** Sends one inner frame (inner header from src, dst, hopsLeft; then frame[off, off+len)) to a neighbour over its current path. */
export function sendInner(
  udp: DatagramPort, link: Link, stride: number, traffic: Record<string, number>,
  src: Uint8Array, dst: Uint8Array, hopsLeft: number, frame: Buffer, off: number, len: number,
): void {
  if (link.peerHearsUs) {
    const slab = udp.stageSlab();
    const at = udp.stageOffset();
    const bodyOff = at + SLEEVE_HEADER_BYTES;
    writeInnerHeader(slab, bodyOff, src, dst, hopsLeft);
    copyToStage(udp, slab, bodyOff + INNER_HEADER_BYTES, frame, off, len);
    const segmented = link.segmented && fitsSegmented(INNER_HEADER_BYTES + len + link.session.trailerBytes, stride);
    sealStaged(udp, link, stride, traffic, at, SLEEVE_TYPE_FRAME, INNER_HEADER_BYTES + len, 0, segmented);
    return;
  }
  const msg = allocFrameMessage(INNER_HEADER_BYTES + len);
  writeInnerHeader(msg, 1, src, dst, hopsLeft);
  msg.set(frame.subarray(off, off + len), 1 + INNER_HEADER_BYTES);
  link.n.sendControl(msg);
  traffic.framesSentTcp!++;
  traffic.bytesSentTcp! += msg.byteLength;
}
