// Reassembles version 3 sleeve messages (sleeve-segments.ts) whose segments
// arrive one by one: a real NIC without GRO, reordering, loss. Everything here
// runs before authentication, on bytes anyone who can reach UDP 6783 may send,
// so it is strictly bounded:
//   - a fixed pool of slots (each room for one message body), shared by all
//     senders, with at most perSenderSlots partial messages per sender;
//   - a partial message older than maxAgeMs is dead (its slot is free);
//   - when a new message finds no free slot, it takes the sender's own oldest
//     partial if the sender is at its cap, else the oldest of all (counted);
//   - a segment must agree with its message's first segment on count and
//     stride, lands at index * stride (so segments cannot overlap), and a
//     duplicate is dropped (counted).
// The work per segment is one header check, one scan of the slot table and
// one copy of the chunk. The caller authenticates a completed message (one
// AEAD open) and only then applies the replay window; it may reject a counter
// it has already accepted before handing segments here (a read-only check).
//
// The pool is allocated once (allocUnsafeSlow: pages become resident only
// when a slot is used, and go back after a burst: releaseIdle); nothing is
// allocated per segment.

import { SLEEVE_HEADER_BYTES } from './sleeve-codec';
import { MAX_SEGMENTED_BODY_BYTES, MAX_SEGMENTS, readSegment, sameMessage, SEGMENT_HEADER_BYTES, SegmentFields } from './sleeve-segments';

export interface ReassemblyLimits {
  /** Partial messages held at once, all senders together. */
  slots: number;
  perSenderSlots: number;
  maxAgeMs: number;
}

export const DEFAULT_REASSEMBLY_LIMITS: ReassemblyLimits = { slots: 16, perSenderSlots: 4, maxAgeMs: 100 };

/** Why a segment did not complete a message. */
export type SegmentDrop = 'short' | 'version' | 'type' | 'segment' | 'duplicate';

export type ReassemblyCounters = { [K in 'complete' | 'evicted' | 'expired' | SegmentDrop]: number };

/** Bytes per slot: the 16-byte header, then the body. */
const SLOT_BYTES = SLEEVE_HEADER_BYTES + MAX_SEGMENTED_BODY_BYTES;

export class SegmentReassembler {
  /** Slot i's message: header at i * SLOT_BYTES, body right after it. */
  readonly buffer: Buffer;
  readonly counters: ReassemblyCounters = { complete: 0, evicted: 0, expired: 0, short: 0, version: 0, type: 0, segment: 0, duplicate: 0 };
  private readonly owners: (object | null)[];
  private readonly started: Float64Array;
  private readonly count: Uint8Array;
  private readonly stride: Uint16Array;
  private readonly received: Uint8Array;
  private readonly missing: Uint8Array;
  /** Body length once the last segment arrived, else -1. */
  private readonly bodyLen: Int32Array;
  private readonly fields: SegmentFields = { index: 0, count: 0, stride: 0 };

  constructor(private readonly limits: ReassemblyLimits = DEFAULT_REASSEMBLY_LIMITS) {
    if (!Number.isInteger(limits.slots) || limits.slots < 1 || limits.slots > 256 ||
        !Number.isInteger(limits.perSenderSlots) || limits.perSenderSlots < 1 || !(limits.maxAgeMs > 0)) {
      throw new RangeError(`bad reassembly limits ${JSON.stringify(limits)}`);
    }
    this.buffer = Buffer.allocUnsafeSlow(limits.slots * SLOT_BYTES);
    this.owners = new Array<object | null>(limits.slots).fill(null);
    this.started = new Float64Array(limits.slots);
    this.count = new Uint8Array(limits.slots);
    this.stride = new Uint16Array(limits.slots);
    this.received = new Uint8Array(limits.slots * MAX_SEGMENTS);
    this.missing = new Uint8Array(limits.slots);
    this.bodyLen = new Int32Array(limits.slots);
  }

  /** Where slot i's message (16-byte header, then body) starts in `buffer`. */
  messageOffset(slot: number): number {
    return slot * SLOT_BYTES;
  }

  /** Body length of the message add() just completed in `slot`. */
  messageBodyLength(slot: number): number {
    return this.bodyLen[slot]!;
  }

  /** Partial messages held now (for tests and status). */
  get held(): number {
    let n = 0;
    for (const o of this.owners) if (o !== null) n++;
    return n;
  }

  /**
   * Takes one segment from `sender` (the neighbour its header names, looked
   * up by the caller). Returns the slot of a message this segment completed,
   * valid until the next add(); -1 when the message is still partial; or why
   * the segment was dropped (also counted).
   */
  add(sender: object, buf: Uint8Array, off: number, len: number, nowMs: number): number | SegmentDrop {
    const f = this.fields;
    const bad = readSegment(buf, off, len, f);
    if (bad !== null) { this.counters[bad]++; return bad; }
    let slot = this.find(sender, buf, off, nowMs);
    if (slot < 0) slot = this.claim(sender, buf, off, f, nowMs);
    else if (this.count[slot] !== f.count || this.stride[slot] !== f.stride) { this.counters.segment++; return 'segment'; }
    const seen = slot * MAX_SEGMENTS + f.index;
    if (this.received[seen] !== 0) { this.counters.duplicate++; return 'duplicate'; }
    this.received[seen] = 1;
    const chunk = len - SEGMENT_HEADER_BYTES;
    const at = slot * SLOT_BYTES + SLEEVE_HEADER_BYTES + f.index * f.stride;
    this.buffer.set(buf.subarray(off + SEGMENT_HEADER_BYTES, off + len), at);
    if (f.index === f.count - 1) this.bodyLen[slot] = f.index * f.stride + chunk;
    if (--this.missing[slot]! > 0) return -1;
    this.owners[slot] = null;
    this.counters.complete++;
    return slot;
  }

  /**
   * Frees, through `release` (native/memory.c), the pages of every slot that
   * holds no live partial message: a burst leaves the whole pool resident,
   * an idle router needs none of it. Such a slot's bytes are never read
   * before claim() and add() write them again. Returns the bytes freed.
   */
  releaseIdle(nowMs: number, release: (buf: Buffer, off: number, len: number) => number): number {
    let freed = 0;
    for (let i = 0; i < this.limits.slots; i++) {
      if (this.owners[i] !== null && nowMs - this.started[i]! <= this.limits.maxAgeMs) continue;
      freed += release(this.buffer, i * SLOT_BYTES, SLOT_BYTES);
    }
    return freed;
  }

  /** The live slot holding this sender's message with the same 16 header bytes, or -1; frees dead slots on the way. */
  private find(sender: object, buf: Uint8Array, off: number, nowMs: number): number {
    for (let i = 0; i < this.limits.slots; i++) {
      const owner = this.owners[i];
      if (owner === null) continue;
      if (nowMs - this.started[i]! > this.limits.maxAgeMs) {
        this.owners[i] = null;
        this.counters.expired++;
        continue;
      }
      if (owner === sender && sameMessage(this.buffer, i * SLOT_BYTES, buf, off)) return i;
    }
    return -1;
  }

  /** A slot for a new message: free, else the sender's oldest at its cap, else the oldest of all. */
  private claim(sender: object, buf: Uint8Array, off: number, f: SegmentFields, nowMs: number): number {
    let free = -1, own = 0, ownOldest = -1, oldest = -1;
    for (let i = 0; i < this.limits.slots; i++) {
      const owner = this.owners[i];
      if (owner === null) { if (free < 0) free = i; continue; }
      if (oldest < 0 || this.started[i]! < this.started[oldest]!) oldest = i;
      if (owner === sender) {
        own++;
        if (ownOldest < 0 || this.started[i]! < this.started[ownOldest]!) ownOldest = i;
      }
    }
    let slot: number;
    if (own >= this.limits.perSenderSlots) slot = ownOldest;
    else if (free >= 0) slot = free;
    else slot = oldest;
    if (this.owners[slot] !== null) this.counters.evicted++;
    this.owners[slot] = sender;
    this.started[slot] = nowMs;
    this.count[slot] = f.count;
    this.stride[slot] = f.stride;
    this.missing[slot] = f.count;
    this.bodyLen[slot] = -1;
    this.received.fill(0, slot * MAX_SEGMENTS, (slot + 1) * MAX_SEGMENTS);
    this.buffer.set(buf.subarray(off, off + SLEEVE_HEADER_BYTES), slot * SLOT_BYTES);
    return slot;
  }
}
