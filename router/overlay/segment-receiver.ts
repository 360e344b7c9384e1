// Turns what the UDP port hands over into whole sleeve messages: a slot may
// hold one datagram, or several of one size that UDP_GRO coalesced (a
// version 3 message, or a run of version 2 datagrams from one sender). A
// version 3 message that came whole and in order is compacted in place
// (sleeve-segments.ts); a lone segment goes, once its sender is known and its
// counter not already accepted, to the bounded reassembler
// (segment-reassembly.ts). Every whole message goes to the sink, which
// authenticates it; nothing here trusts a length before checking it, and the
// work per slot is bounded by MAX_SEGMENTS. A message that lies in the port's
// receive buffer comes with the span it arrived in (a relay may reseal it
// there and send it from there); one from the reassembler with none. A
// message that came whole is only half put together (its header next to
// chunk 0, which holds all a relay reads: a far message's hop part, a
// plaintext frame's headers): a relay passes it on without moving its chunks
// at all; whoever needs the whole body (a sealed frame's open, a delivery,
// a copy) moves them first (overlay.ts, far-path.ts).

import type { DropReason } from './forwarder';
import { DEFAULT_REASSEMBLY_LIMITS, SegmentReassembler } from './segment-reassembly';
import { BROADCAST_PEER, readSleeveHeaderInto, SLEEVE_HEADER_BYTES, type SleeveHeader } from './sleeve-codec';
import { compactChunks, joinHeader, MAX_SEGMENTS, SEGMENT_HEADER_BYTES, SEGMENTED_SLEEVE_VERSION, wholeSegments } from './sleeve-segments';
import type { PeerName } from '../mesh/peer-name';

/**
 * The least stride at which chunks may stay spread: chunk 0 then holds a far
 * message's hop part (45 bytes) and a plaintext frame's inner, vnet,
 * Ethernet and IP headers (CoDel reads and marks those), all a hop reads
 * before it knows whether the body must come together.
 */
export const MIN_SPREAD_STRIDE = 256;

export interface SegmentSink {
  /** The neighbour's replay check (SleeveSession.stale), or null for a stranger. */
  neighbour(name: PeerName): { session: { stale(typeByte: number, counter: number): boolean } } | null;
  /**
   * One whole sleeve message: a version 2 datagram, or a version 3 message put
   * back together. spanLen > 0: buf[spanOff, spanOff+spanLen) is the received
   * datagram (or coalesced segments) the message was made from, in the port's
   * receive buffer, free to be rewritten until the batch ends; 0: the message
   * lies elsewhere (the reassembler's pool). spreadSegSize > 0: only the
   * header and chunk 0 are in place; chunks 1.. still lie in the span as
   * whole segments of that size (compactChunks(buf, spanOff, spanLen,
   * spreadSegSize) puts them behind chunk 0).
   */
  message(buf: Buffer, off: number, len: number, host: string, port: number, spanOff: number, spanLen: number, spreadSegSize: number): void;
  drop(reason: DropReason): void;
  nowMs(): number;
}

export class SegmentReceiver {
  readonly reassembler = new SegmentReassembler(DEFAULT_REASSEMBLY_LIMITS);
  /** Version 3 messages that arrived whole in one slot and were opened in place. */
  coalesced = 0;
  /** The segment being read (no object per segment). */
  private readonly header: SleeveHeader = { type: 0, sender: BROADCAST_PEER, counter: 0 };

  constructor(private readonly sink: SegmentSink) {}

  /** A received slot: one datagram, or several of segSize bytes each that UDP_GRO coalesced. */
  slot(buf: Buffer, off: number, len: number, host: string, port: number, segSize: number | undefined): void {
    // Segments sent whole (the sender's kernel refused their size, then IP
    // fragments) arrive without the cmsg: their first header tells the size.
    if ((segSize === undefined || segSize <= 0) && buf[off] === SEGMENTED_SLEEVE_VERSION && len > SEGMENT_HEADER_BYTES) {
      segSize = SEGMENT_HEADER_BYTES + ((buf[off + 18]! << 8) | buf[off + 19]!);
    }
    if (segSize === undefined || segSize <= 0 || len <= segSize) { this.datagram(buf, off, len, host, port); return; }
    // No sender of ours puts more in one send (and GRO coalesces no more): a bound on the work per slot.
    if (len > MAX_SEGMENTS * segSize) { this.sink.drop('segment'); return; }
    if (buf[off] === SEGMENTED_SLEEVE_VERSION) {
      // Usually one whole message, in order: its body moves together in place behind its header.
      const n = wholeSegments(buf, off, len, segSize);
      if (n >= 0) {
        this.coalesced++;
        const at = joinHeader(buf, off);
        const body = len - n * SEGMENT_HEADER_BYTES;
        const spread = segSize - SEGMENT_HEADER_BYTES >= MIN_SPREAD_STRIDE;
        if (!spread) compactChunks(buf, off, len, segSize);
        this.sink.message(buf, at, SLEEVE_HEADER_BYTES + body, host, port, off, len, spread ? segSize : 0);
        return;
      }
    }
    for (let at = off; at < off + len; at += segSize) this.datagram(buf, at, Math.min(segSize, off + len - at), host, port);
  }

  private datagram(buf: Buffer, off: number, len: number, host: string, port: number): void {
    if (buf[off] !== SEGMENTED_SLEEVE_VERSION) { this.sink.message(buf, off, len, host, port, off, len, 0); return; }
    // A segment alone: reassemble before any crypto, within the reassembler's bounds.
    const bad = readSleeveHeaderInto(buf, off, len, this.header);
    if (bad !== null) { this.sink.drop(bad); return; }
    const link = this.sink.neighbour(this.header.sender);
    if (link === null) { this.sink.drop('unknown-sender'); return; }
    if (link.session.stale(buf[off + 1]!, this.header.counter)) { this.sink.drop('replay'); return; }
    const slot = this.reassembler.add(link, buf, off, len, this.sink.nowMs());
    if (typeof slot === 'string') { this.sink.drop(slot); return; }
    if (slot < 0) return;
    const r = this.reassembler;
    this.sink.message(r.buffer, r.messageOffset(slot), SLEEVE_HEADER_BYTES + r.messageBodyLength(slot), host, port, 0, 0, 0);
  }
}
