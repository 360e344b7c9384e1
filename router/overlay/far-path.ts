// The far sleeve path of the Overlay (overlay.ts): unicast frames to a peer
// two hops away leave sealed end to end (far-session.ts has the format), the
// relay between reseals only their 29 header bytes, and the destination opens
// them once. Everything else, and any frame this path declines, goes hop by
// hop as before: the caller falls back whenever send() returns false.
//
// When a frame takes it (all must hold, else hop by hop):
//  - we have a far send key for the destination (far-keys.ts; without one we
//    ask for it and this frame goes hop by hop);
//  - the destination is exactly two hops away and our next hop announced
//    UDP_STATUS bit 4 (it relays far messages) and hears our UDP: the one
//    relay is then a neighbour of both ends, and it checks in turn that the
//    destination announced bit 4 and hears its UDP. Longer paths would need
//    every relay's support known to the origin, which the topology does not
//    carry; they stay hop by hop;
//  - the message fits one datagram (version 3 segments or version 2).
// A relay passes a far message on over TCP (FAR_FRAME, router/mesh/protocol.ts)
// when its link to the destination is on TCP; one that cannot pass it on at
// all (routes changed under it, a next hop without bit 4) drops it as
// no-route, as for any frame it cannot route, while the origin's view lags.

import type { FarKeySink } from '../mesh/far-keys';
import type { PeerName } from '../mesh/peer-name';
import { allocFarFrameMessage } from '../mesh/protocol';
import { AEAD_TAG_BYTES } from './frame-aead';
import { FAR_HEADER_BYTES, FarSessions } from './far-session';
import type { DropReason, RouteView } from './forwarder';
import type { LaneEntries } from './lane-entries';
import type { DatagramPort } from './ports';
import { relayInPlace } from './relay-in-place';
import {
  INNER_HEADER_BYTES, MAX_HOPS, MIN_ETHERNET_FRAME_BYTES, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FAR, VNET_HDR_BYTES, writeHopsLeft,
  writeInnerHeader,
} from './sleeve-codec';
import { compactChunks, fitsSegmented, MAX_GSO_PAYLOAD_BYTES } from './sleeve-segments';
import { copyToStage, sealStaged } from './sleeve-send';
import type { Link } from './udp-probes';

/** The part each hop seals: inner header and far header. */
export const FAR_HOP_BYTES = INNER_HEADER_BYTES + FAR_HEADER_BYTES;
/** Sleeve header, hop-sealed part, hop tag: where the far body starts. */
export const FAR_BODY_AT = SLEEVE_HEADER_BYTES + FAR_HOP_BYTES + AEAD_TAG_BYTES;
/** The least a far message can be: a minimal frame sealed end to end. */
const MIN_FAR_MESSAGE = FAR_BODY_AT + VNET_HDR_BYTES + MIN_ETHERNET_FRAME_BYTES + AEAD_TAG_BYTES;

/** The far key exchange, as the data plane drives it (router/mesh/far-keys.ts implements it). */
export interface FarKeySource {
  want(dst: PeerName): void;
  unknownKey(origin: PeerName, keyId: number): void;
  /** Shown with the overlay's counters. */
  readonly counters?: Record<string, number>;
}

export interface FarPathDeps {
  udp: DatagramPort;
  links: ReadonlyMap<PeerName, Link>;
  routes: () => RouteView;
  self: PeerName;
  /** Body bytes per version 3 segment, 0 for none. */
  stride: number;
  traffic: Record<string, number>;
  drops: Record<DropReason, number>;
  nowMs(): number;
  /** The peer name at buf[off, off+6): one string per peer, not per message (peer-name-reader.ts). */
  readName(buf: Uint8Array, off: number): PeerName;
  /** An opened frame for us: inner header first, then the frame; not in the receive span any more. */
  deliver(buf: Buffer, off: number, len: number): void;
  /** The lone-frame lane's entries (lane-entries.ts), offered what this path sent, delivered and relayed; null without a lane. */
  lane: LaneEntries | null;
}

export class FarPath implements FarKeySink {
  /** Set once the mesh runs far key exchanges (a password and AES-256-GCM): we then announce UDP_STATUS bit 4. */
  source: FarKeySource | null = null;

  constructor(readonly sessions: FarSessions, private readonly deps: FarPathDeps) {
    // The lane may hold a key that just went: its entries go with it.
    sessions.onKeysChanged = () => deps.lane?.clear();
  }

  farSendKey(dst: PeerName, keyId: number, key: Uint8Array | null): void {
    this.sessions.setSend(dst, keyId, key);
  }

  farReceiveKey(origin: PeerName, keyId: number, key: Uint8Array): boolean {
    return this.sessions.addReceive(origin, keyId, key, this.deps.nowMs());
  }

  farForget(peer: PeerName): void {
    this.sessions.forget(peer);
  }

  /** Sends one captured frame end to end if it may (see above); false: the caller sends it hop by hop. */
  send(link: Link, dst: PeerName, selfBytes: Uint8Array, dstBytes: Uint8Array, frame: Buffer, off: number, len: number): boolean {
    if (this.source === null || !link.far || !link.peerHearsUs || this.deps.routes().hops?.(dst) !== 2) return false;
    if (!this.sessions.hasSend(dst)) { this.source.want(dst); return false; }
    const { udp, stride } = this.deps;
    const body = FAR_HOP_BYTES + AEAD_TAG_BYTES + len + AEAD_TAG_BYTES;
    const segmented = link.segmented && fitsSegmented(body, stride);
    if (!segmented && SLEEVE_HEADER_BYTES + body > MAX_GSO_PAYLOAD_BYTES) return false;
    const slab = udp.stageSlab();
    const at = udp.stageOffset();
    writeInnerHeader(slab, at + SLEEVE_HEADER_BYTES, selfBytes, dstBytes, MAX_HOPS);
    copyToStage(udp, slab, at + FAR_BODY_AT, frame, off, len);
    if (this.sessions.seal(dst, slab, at + SLEEVE_HEADER_BYTES, slab, at + SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, len) < 0) return false;
    // A spent hop counter drops the frame, as a hop-by-hop send would.
    if (sealStaged(udp, link, stride, this.deps.traffic, at, SLEEVE_TYPE_FAR, FAR_HOP_BYTES, len + AEAD_TAG_BYTES, segmented)) {
      this.deps.traffic.framesSentFar!++;
      if (!segmented) this.deps.lane?.offerFar(frame, off, len, link, dst, dstBytes, this.sessions);
    }
    return true;
  }

  /** Bytes of a far message the hop opens (header, hop-sealed part, hop tag); a shorter message is dropped before. */
  static hopBytes(len: number): number {
    return len < MIN_FAR_MESSAGE ? -1 : FAR_BODY_AT;
  }

  /**
   * A far message whose hop part a link's session just opened (len: the
   * whole message at off; span as in relayInPlace, spanLen 0 when
   * reassembled; spreadSegSize as in SegmentSink: chunks 1.. not yet behind
   * chunk 0): opened and delivered when it is for us, else passed on.
   * `from`: the link whose session opened it over UDP, from host:port (null:
   * over TCP; not an object, which would be one per message); the lane is
   * then offered what was delivered or relayed in place.
   */
  receive(buf: Buffer, off: number, len: number, spanOff: number, spanLen: number, spreadSegSize: number, from: Link | null, host: string,
    port: number): void {
    const io = off + SLEEVE_HEADER_BYTES;
    const src = this.deps.readName(buf, io);
    const dst = this.deps.readName(buf, io + 6);
    const { drops, traffic } = this.deps;
    if (src === this.deps.self) { drops.loop++; return; }
    const sealedLen = len - FAR_BODY_AT;
    if (dst === this.deps.self) {
      if (spreadSegSize > 0) compactChunks(buf, spanOff, spanLen, spreadSegSize);
      const hdr = io + INNER_HEADER_BYTES;
      const r = this.sessions.open(src, buf, io, buf, hdr, sealedLen);
      if (r === 'far-key') {
        drops['far-key']++;
        this.source?.unknownKey(src, FarSessions.keyId(buf, hdr));
        return;
      }
      if (typeof r === 'string') { drops[r]++; return; }
      traffic.framesReceivedFar!++;
      // The inner header moves next to the frame (over the spent hop tag), as hop-by-hop frames arrive.
      const innerAt = off + FAR_BODY_AT - INNER_HEADER_BYTES;
      buf.copyWithin(innerAt, io, io + INNER_HEADER_BYTES);
      const delivered = traffic.framesToBridge;
      this.deps.deliver(buf, innerAt, INNER_HEADER_BYTES + r);
      if (from !== null && spreadSegSize === 0 && traffic.framesToBridge !== delivered) {
        this.deps.lane?.offerFarReceive(buf, off, len, from, src, host, port, this.sessions);
      }
      return;
    }
    const hops = buf[io + 12]!;
    if (hops <= 1) { drops.hops++; return; }
    const via = this.deps.routes().nextHop(dst);
    const link = via === null ? undefined : this.deps.links.get(via);
    if (link === undefined || !link.far || !link.session.encrypted) { drops['no-route']++; return; }
    traffic.framesRelayedFar!++;
    if (!link.peerHearsUs) {
      if (spreadSegSize > 0) compactChunks(buf, spanOff, spanLen, spreadSegSize);
      // Over TCP, laid out as on UDP (the control session protects it there).
      const msg = allocFarFrameMessage(len);
      msg.set(buf.subarray(off + SLEEVE_HEADER_BYTES, off + len), 1 + SLEEVE_HEADER_BYTES);
      writeHopsLeft(msg, 1 + SLEEVE_HEADER_BYTES, hops - 1);
      link.n.sendControl(msg);
      traffic.framesSentTcp!++;
      traffic.bytesSentTcp! += msg.byteLength;
      traffic.framesRelayed!++;
      return;
    }
    const { udp, stride } = this.deps;
    // False: the message is whole again (its chunks together), to be copied.
    const typeByte = buf[off + 1]!;
    if (spanLen > 0 && relayInPlace(udp, link, stride, traffic, buf, io, FAR_HOP_BYTES, hops - 1, spanOff, spanOff + spanLen, SLEEVE_TYPE_FAR, sealedLen, spreadSegSize)) {
      if (from !== null) this.deps.lane?.offerRelay(from, typeByte, host, port, link, src, dst);
      return;
    }
    // Reassembled (or it would not fit where it came): copied into a send slot, resealed there.
    const body = len - SLEEVE_HEADER_BYTES;
    const segmented = link.segmented && fitsSegmented(body, stride);
    if (!segmented && len > MAX_GSO_PAYLOAD_BYTES) { drops['too-big']++; return; }
    const slab = udp.stageSlab();
    const at = udp.stageOffset();
    copyToStage(udp, slab, at, buf, off, len);
    writeHopsLeft(slab, at + SLEEVE_HEADER_BYTES, hops - 1);
    if (sealStaged(udp, link, stride, traffic, at, SLEEVE_TYPE_FAR, FAR_HOP_BYTES, sealedLen, segmented)) traffic.framesRelayed!++;
    return;
  }
}
