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
//
// Through a kernel relay (kernel-relay.ts) the same far message goes as sleeve
// type 4 straight to the port the relay granted, with nothing sealed per hop;
// it arrives from the relay's partner port and is opened here the same way.

import type { FarKeySink } from '../mesh/far-keys';
import type { PeerName } from '../mesh/peer-name';
import { allocFarFrameMessage } from '../mesh/protocol';
import { AEAD_TAG_BYTES } from './frame-aead';
import { FAR_HEADER_BYTES, FAR_KIND_FRAME, FAR_KIND_PATH_PROBE, FarSessions } from './far-session';
import { type KernelPath, type KernelRelayDeps, KernelRelays } from './kernel-relay';
import type { DropReason, RouteView } from './forwarder';
import type { LaneEntries } from './lane-entries';
import type { DatagramPort } from './ports';
import { relayInPlace } from './relay-in-place';
import {
  INNER_HEADER_BYTES, MAX_HOPS, MIN_ETHERNET_FRAME_BYTES, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FAR, SLEEVE_TYPE_FAR_KERNEL, SLEEVE_VERSION,
  VNET_HDR_BYTES, writeHopsLeft, writeInnerHeader,
} from './sleeve-codec';
import {
  compactChunks, fitsSegmented, MAX_GSO_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES, SEGMENTED_SLEEVE_VERSION, spreadSegments,
} from './sleeve-segments';
import { copyToStage, sealStaged } from './sleeve-send';
import type { Link } from './udp-probes';

/** The part each hop seals: inner header and far header. */
export const FAR_HOP_BYTES = INNER_HEADER_BYTES + FAR_HEADER_BYTES;
/** Sleeve header, hop-sealed part, hop tag: where the far body starts. */
export const FAR_BODY_AT = SLEEVE_HEADER_BYTES + FAR_HOP_BYTES + AEAD_TAG_BYTES;
/** The least a far message can be: a minimal frame sealed end to end. */
const MIN_FAR_MESSAGE = FAR_BODY_AT + VNET_HDR_BYTES + MIN_ETHERNET_FRAME_BYTES + AEAD_TAG_BYTES;
/** The least a type 4 message can be: a probe's one byte of flags, sealed. */
const MIN_KERNEL_MESSAGE = FAR_BODY_AT + 1 + AEAD_TAG_BYTES;

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
  /** Kernel relay paths (kernel-relay.ts), set by the overlay; null without. */
  kernel: KernelRelays | null = null;

  constructor(readonly sessions: FarSessions, private readonly deps: FarPathDeps) {
    // The lane may hold a key that just went: its entries go with it.
    sessions.onKeysChanged = () => deps.lane?.clear();
  }

  /**
   * Takes kernel relays from now on (and grants them when `rules` is set).
   * Only a port that sends segments may: a relay's rules pass no IP fragment,
   * so every type 4 datagram must fit the underlay whole.
   */
  enableKernelRelay(deps: Pick<KernelRelayDeps, 'clock' | 'logger' | 'rules' | 'changed'> & { udpTimeoutMs: number }): void {
    this.kernel = new KernelRelays({
      ...deps, links: this.deps.links, routes: this.deps.routes, self: this.deps.self, takes: () => this.source !== null && this.deps.stride > 0,
      farDestinations: () => this.sessions.sendPeers(), want: (p) => this.source?.want(p), timings: { udpTimeoutMs: deps.udpTimeoutMs },
    });
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
    if (this.source === null) return false;
    // In use only while the routes say two hops through its relay (checked on every probe tick).
    const kernel = this.kernel?.sendPath(dst);
    if (kernel !== undefined && this.sendKernel(kernel, selfBytes, dstBytes, frame, off, len, FAR_KIND_FRAME)) {
      this.deps.traffic.framesSentKernelRelay!++;
      return true;
    }
    if (!link.far || !link.peerHearsUs || this.deps.routes().hops?.(dst) !== 2) return false;
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
      const r = this.open(src, buf, io, sealedLen);
      if (r < 0) return;
      // Probes go only by a kernel path (type 4).
      if (FarSessions.kind(buf, io + INNER_HEADER_BYTES) !== FAR_KIND_FRAME) { drops.type++; return; }
      traffic.framesReceivedFar!++;
      const delivered = traffic.framesToBridge;
      this.deliverOpened(buf, off, io, r);
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

  /** Opens the far body of a message whose inner header is at `io`; the body's length, or -1 (counted). */
  private open(src: PeerName, buf: Buffer, io: number, sealedLen: number): number {
    const hdr = io + INNER_HEADER_BYTES;
    const r = this.sessions.open(src, buf, io, buf, hdr, sealedLen);
    if (r === 'far-key') {
      this.deps.drops['far-key']++;
      this.source?.unknownKey(src, FarSessions.keyId(buf, hdr));
      return -1;
    }
    if (typeof r === 'string') { this.deps.drops[r]++; return -1; }
    return r;
  }

  /** Delivers an opened far frame of `len` bytes: the inner header moves next to it (over the spent hop tag), as hop-by-hop frames arrive. */
  private deliverOpened(buf: Buffer, off: number, io: number, len: number): void {
    const innerAt = off + FAR_BODY_AT - INNER_HEADER_BYTES;
    buf.copyWithin(innerAt, io, io + INNER_HEADER_BYTES);
    this.deps.deliver(buf, innerAt, INNER_HEADER_BYTES + len);
  }

  /**
   * Builds a type 4 message in the send slot (a frame, or a probe's body)
   * and sends it to the kernel path's port: as one datagram or, when it is
   * bigger than a segment, as version 3 segments (the far end set bit 5,
   * which only peers that reassemble version 3 do). False: no key or too big.
   */
  private sendKernel(p: KernelPath, selfBytes: Uint8Array, dstBytes: Uint8Array, frame: Buffer | null, off: number, len: number, kind: number): boolean {
    const { udp, stride, traffic } = this.deps;
    const body = FAR_HOP_BYTES + AEAD_TAG_BYTES + len + AEAD_TAG_BYTES;
    const segmented = stride > 0 && fitsSegmented(body, stride);
    if (!segmented && SLEEVE_HEADER_BYTES + body > MAX_GSO_PAYLOAD_BYTES) return false;
    const slab = udp.stageSlab();
    const at = udp.stageOffset();
    const io = at + SLEEVE_HEADER_BYTES;
    writeInnerHeader(slab, io, selfBytes, dstBytes, MAX_HOPS);
    if (frame !== null) copyToStage(udp, slab, at + FAR_BODY_AT, frame, off, len);
    const hdr = io + INNER_HEADER_BYTES;
    if (this.sessions.seal(p.far, slab, io, slab, hdr, len, kind) < 0) return false;
    // Nothing is sealed per hop: the hop tag's place stays zero, so the layout stays type 3's.
    // By hand: Buffer.fill is a call into C++ per frame for 16 bytes.
    for (let i = hdr + FAR_HEADER_BYTES; i < hdr + FAR_HEADER_BYTES + AEAD_TAG_BYTES; i++) slab[i] = 0;
    slab[at] = segmented ? SEGMENTED_SLEEVE_VERSION : SLEEVE_VERSION;
    slab[at + 1] = SLEEVE_TYPE_FAR_KERNEL;
    slab.set(selfBytes, at + 2);
    // The far counter names the message for the far end's reassembly.
    for (let i = 0; i < 8; i++) slab[at + 8 + i] = slab[hdr + 8 + i]!;
    const n = segmented ? spreadSegments(slab, at, body, stride) : SLEEVE_HEADER_BYTES + body;
    udp.commit(n, p.host, p.port, segmented ? stride + SEGMENT_HEADER_BYTES : 0);
    if (segmented) traffic.framesSentSegmented!++;
    traffic.framesSentUdp!++;
    traffic.bytesSentUdp! += n;
    return true;
  }

  /**
   * A probe through a kernel path: one byte of flags (bit 0: we hear the far
   * end) padded to a segment's body, so a path that passes small datagrams
   * but not full ones never carries frames. Without a send key yet, none.
   */
  probeKernel(p: KernelPath, hearing: boolean, selfBytes: Uint8Array, farBytes: Uint8Array): void {
    if (!this.sessions.hasSend(p.far)) { this.source?.want(p.far); return; }
    const { udp, stride } = this.deps;
    const len = stride > 0 ? stride - FAR_HOP_BYTES - 2 * AEAD_TAG_BYTES : 1;
    const slab = udp.stageSlab();
    const bodyAt = udp.stageOffset() + FAR_BODY_AT;
    slab.fill(0, bodyAt, bodyAt + len);
    slab[bodyAt] = hearing ? 1 : 0;
    if (this.sendKernel(p, selfBytes, farBytes, null, 0, len, FAR_KIND_PATH_PROBE)) this.deps.traffic.kernelProbesSent!++;
  }

  /** A type 4 message (whole; span and spread as in receive()) from host:port: opened only when a kernel path expects it there. */
  receiveKernel(buf: Buffer, off: number, len: number, spanOff: number, spanLen: number, spreadSegSize: number, host: string, port: number): void {
    const { drops, traffic } = this.deps;
    if (this.kernel === null || this.source === null) { drops.type++; return; }
    if (len < MIN_KERNEL_MESSAGE) { drops.short++; return; }
    const io = off + SLEEVE_HEADER_BYTES;
    const src = this.deps.readName(buf, io);
    const p = this.kernel.receivePath(src, host, port);
    // The sleeve header's sender must be the origin too: segments were put together by it.
    if (p === undefined || this.deps.readName(buf, off + 2) !== src || this.deps.readName(buf, io + 6) !== this.deps.self) {
      drops['kernel-source']++;
      return;
    }
    if (spreadSegSize > 0) compactChunks(buf, spanOff, spanLen, spreadSegSize);
    const r = this.open(src, buf, io, len - FAR_BODY_AT);
    if (r < 0) return;
    traffic.bytesReceivedUdp! += len;
    if (FarSessions.kind(buf, io + INNER_HEADER_BYTES) === FAR_KIND_PATH_PROBE) {
      this.kernel.heard(p, r > 0 ? buf[off + FAR_BODY_AT]! : 0);
      traffic.kernelProbesReceived!++;
      return;
    }
    this.kernel.heard(p, -1);
    traffic.framesReceivedUdp!++;
    traffic.framesReceivedKernelRelay!++;
    this.deliverOpened(buf, off, io, r);
  }
}
