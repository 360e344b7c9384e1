// Which lone frames the native lane (ports.ts LoneFrameLane, native/lane.c)
// may send or deliver without JS, and keeping that true.
//
// After the overlay itself sent a plain frame from our bridge straight to the
// neighbour that owns its destination MAC, over UDP, it offers the frame
// here: its (destination, source) MAC pair gets an entry holding exactly what
// that send used, the header bytes, the link's AES-256-GCM sealing context
// and send counter cell, and its endpoint. From then on a TAP wakeup that
// brings one frame of that pair is sealed and sent in C, the same datagram
// byte for byte.
//
// Every entry goes at once when anything such a decision rests on changes: a
// MAC that moved or went (mac-table.ts onChange), the routes, the links, a
// key (sleeve-session.ts onKeysChanged), a link's endpoint or whether its
// peer hears our UDP. The overlay calls clear() at those events; verify(),
// on every probe tick, checks each entry against the live state too, so an
// event it missed costs one probe interval at most. refresh() keeps the
// source MACs of the lane's frames learnt, as JS's own frames would.
//
// Receiving mirrors it: after the overlay delivered to our bridge a plain
// frame that a neighbour sent straight to us in one version 2 datagram, it
// offers that here (offerReceive); the neighbour, its endpoint, the
// datagram's key phase and the frame's MAC pair get a receive entry with the
// phase's opening context and replay window, and the lane delivers the next
// such datagram that arrives alone without JS.
//
// Relaying too: after far-path.ts relayed a far message in place from one
// neighbour to the next over UDP, the overlay offers it here (offerRelay);
// the sender, its endpoint, the datagram's key phase and the inner source
// and destination get a relaying entry with the incoming phase's opening
// context and window and the next link's sealing context, counter cell,
// endpoint and stride, and the lane relays the next such messages itself
// (native/lane-relay.c).
//
// And at the two ends of such a relayed path (native/lane-far.c): after
// far-path.ts sent a lone plain frame end to end as one version 2 message
// (offerFar), or delivered one from such a message for us (offerFarReceive),
// the pair gets a far entry: the hop's context, counter or window as above,
// plus the far key's (far-session.ts). A far key going clears the lane too
// (FarSessions.onKeysChanged), and verify() checks those keys as well.

import { PEER_NAME_BYTES, peerNameFromBytes, type PeerName } from '../mesh/peer-name';
import type { AeadHandle } from './aes-gcm';
import { FAR_BODY_AT } from './far-path';
import { FAR_OVERHEAD_BYTES, FAR_VERSION, FarSessions } from './far-session';
import type { RouteView } from './forwarder';
import { AEAD_TAG_BYTES } from './frame-aead';
import type { MacTable } from './mac-table';
import type { PeerNameBytes } from './peer-name-reader';
import { LANE_ENTRIES, LANE_SEEN_BYTES, type LoneFrameLane, RELAY_ENTRIES, SEEN_RECORD_BYTES } from './ports';
import {
  ETHERNET_HEADER_BYTES, INNER_HEADER_BYTES, MAX_HOPS, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FAR, SLEEVE_TYPE_FRAME, SLEEVE_VERSION, VNET_GSO_NONE,
  VNET_HDR_BYTES, writeInnerHeader, writeSleeveHeader,
} from './sleeve-codec';
import type { Link } from './udp-probes';

const PAIR_BYTES = 12;

/** Whether a frame's MAC pair at buf[m] is `macs`. */
function samePair(macs: Uint8Array, buf: Uint8Array, m: number): boolean {
  for (let k = 0; k < PAIR_BYTES; k++) if (macs[k] !== buf[m + k]) return false;
  return true;
}

/** An installed entry as it was made, to match frames and to check it against the live state. */
interface Made {
  /** The frame's destination then source MAC (12 bytes, its own copy): compared byte for byte, so a frame's check makes no number. */
  macs: Uint8Array;
  link: Link;
  /** The link's neighbour. */
  via: PeerName;
  /** Whose MAC the pair's far end is (destination or source): `via` itself, or for a far entry the peer two hops away. */
  peer: PeerName;
  host: string;
  port: number;
  /** The context the entry holds: the sealer of a sending entry, the opener of a receiving one. */
  key: AeadHandle;
  /** Sending: the key phase bit it seals under. Receiving: the type byte it takes. */
  type: number;
  /** A far entry's end-to-end context (sealer or opener) and key id; null for a direct one. */
  far: { key: AeadHandle; keyId: number } | null;
}

/** A relaying entry as it was made: the message's way in and out, to match offers and to check it against the live state. */
interface Relaying {
  from: Link;
  fromPeer: PeerName;
  fromHost: string;
  fromPort: number;
  type: number;
  opener: AeadHandle;
  src: PeerName;
  dst: PeerName;
  to: Link;
  toPeer: PeerName;
  toHost: string;
  toPort: number;
  sealer: AeadHandle;
  outType: number;
  outStride: number;
}

export class LaneEntries {
  /** Sending entries, then receiving ones, mirroring the lane's tables. */
  private readonly sending: Made[] = [];
  private readonly receiving: Made[] = [];
  private readonly relaying: Relaying[] = [];
  private readonly pair = Buffer.alloc(PAIR_BYTES);
  private readonly head = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  /** The neighbour's name, then ours: a receive entry's inner header. */
  private readonly names = Buffer.alloc(2 * PEER_NAME_BYTES);
  private readonly seen = Buffer.alloc(LANE_SEEN_BYTES);
  /** A far entry's far header bytes 0..7: version, zeros, key id. */
  private readonly farHead = Buffer.alloc(8);

  /** maxFrameBytes: the largest frame (vnet header included) JS sends as one unsegmented datagram; the lane takes no more. */
  /** stride: body bytes per version 3 segment on our links (0: none); nameBytes: the overlay's cache of names as bytes. */
  constructor(private readonly lane: LoneFrameLane, private readonly self: PeerName, private readonly selfBytes: Uint8Array,
    readonly maxFrameBytes: number, private readonly stride: number, private readonly nameBytes: PeerNameBytes) {}

  /**
   * The overlay just sent frame[off, off+len) (vnet header first) to `peer`,
   * its destination MAC's owner and a neighbour, over `link`. Installs the
   * pair unless it is there, the frame is a super-frame or too big, the link
   * is on TCP, or its key is not one the lane can use.
   */
  offer(frame: Buffer, off: number, len: number, link: Link, peer: PeerName, peerBytes: Uint8Array): void {
    const sending = this.sending;
    if (frame[off + 1] !== VNET_GSO_NONE || len > this.maxFrameBytes || !link.peerHearsUs || sending.length >= LANE_ENTRIES) return;
    const m = off + VNET_HDR_BYTES;
    for (let i = 0; i < sending.length; i++) if (samePair(sending[i]!.macs, frame, m)) return;
    const key = link.session.laneKey();
    if (key === null) return;
    frame.copy(this.pair, 0, m, m + PAIR_BYTES);
    writeSleeveHeader(this.head, 0, SLEEVE_TYPE_FRAME | key.phaseBit, this.selfBytes, 0);
    writeInnerHeader(this.head, SLEEVE_HEADER_BYTES, this.selfBytes, peerBytes, MAX_HOPS);
    const { host, port } = link.udp;
    if (this.lane.set(this.pair, this.head, key.sealer, key.counter, host, port)) {
      sending.push({ macs: Buffer.from(this.pair), link, via: peer, peer, host, port, key: key.sealer, type: key.phaseBit, far: null });
    }
  }

  /**
   * far-path.ts just sent frame[off, off+len) to `dst`, two hops away, end
   * to end over `link` as one version 2 message. Installs a far entry for
   * the pair unless there is an entry for it already, the frame is a
   * super-frame or too big for version 2 with the far overhead, or either
   * key is not one the lane can use.
   */
  offerFar(frame: Buffer, off: number, len: number, link: Link, dst: PeerName, dstBytes: Uint8Array, keys: FarSessions): void {
    const sending = this.sending;
    if (frame[off + 1] !== VNET_GSO_NONE || len + FAR_OVERHEAD_BYTES > this.maxFrameBytes || sending.length >= LANE_ENTRIES) return;
    const m = off + VNET_HDR_BYTES;
    for (let i = 0; i < sending.length; i++) if (samePair(sending[i]!.macs, frame, m)) return;
    const key = link.session.laneKey();
    const far = keys.laneSend(dst);
    if (key === null || far === null) return;
    frame.copy(this.pair, 0, m, m + PAIR_BYTES);
    writeSleeveHeader(this.head, 0, SLEEVE_TYPE_FAR | key.phaseBit, this.selfBytes, 0);
    writeInnerHeader(this.head, SLEEVE_HEADER_BYTES, this.selfBytes, dstBytes, MAX_HOPS);
    this.farHead.fill(0);
    this.farHead[0] = FAR_VERSION;
    this.farHead.writeUInt32BE(far.keyId, 4);
    const { host, port } = link.udp;
    if (this.lane.setFar(this.pair, this.head, key, this.farHead, far, host, port)) {
      sending.push({
        macs: Buffer.from(this.pair), link, via: link.n.name, peer: dst, host, port, key: key.sealer, type: key.phaseBit,
        far: { key: far.sealer, keyId: far.keyId },
      });
    }
  }

  /**
   * The overlay just opened the datagram at buf[at] (its body, bodyLen bytes,
   * now plaintext after the 16-byte header) from `link`'s neighbour (named
   * peerBytes on the wire) at host:port and delivered its frame to our
   * bridge. Installs a receive entry unless it is there, or the datagram is
   * not version 2, not from that neighbour to us, or its frame is not plain
   * (any virtio_net_hdr field set), too big, to a group address, or the key
   * is not one the lane can use.
   */
  offerReceive(buf: Buffer, at: number, bodyLen: number, link: Link, peerBytes: Uint8Array, host: string, port: number): void {
    const inner = at + SLEEVE_HEADER_BYTES;
    const off = inner + INNER_HEADER_BYTES;
    const len = bodyLen - INNER_HEADER_BYTES;
    const receiving = this.receiving;
    if (buf[at] !== SLEEVE_VERSION || len > this.maxFrameBytes || len < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES || receiving.length >= LANE_ENTRIES) return;
    // The vnet header first: it turns away every super-frame of a bulk transfer.
    for (let k = 0; k < VNET_HDR_BYTES; k++) if (buf[off + k] !== 0) return;
    for (let k = 0; k < PEER_NAME_BYTES; k++) if (buf[inner + k] !== peerBytes[k] || buf[inner + PEER_NAME_BYTES + k] !== this.selfBytes[k]) return;
    const m = off + VNET_HDR_BYTES;
    if ((buf[m]! & 1) !== 0) return;
    const type = buf[at + 1]!;
    const peer = link.n.name;
    for (let i = 0; i < receiving.length; i++) {
      const made = receiving[i]!;
      if (made.far === null && made.peer === peer && made.type === type && samePair(made.macs, buf, m)) return;
    }
    const key = link.session.laneOpener(type);
    if (key === null) return;
    buf.copy(this.pair, 0, m, m + PAIR_BYTES);
    this.names.set(peerBytes, 0);
    this.names.set(this.selfBytes, PEER_NAME_BYTES);
    if (this.lane.setReceive(type, this.names, this.pair, key.opener, key.ring, key.highest, host, port)) {
      receiving.push({ macs: Buffer.from(this.pair), link, via: peer, peer, host, port, key: key.opener, type, far: null });
    }
  }

  /**
   * far-path.ts just opened the far message at buf[at, at+len) from
   * `origin`, which `link`'s neighbour at host:port passed on to us, and
   * delivered its frame to our bridge. Installs a far receive entry unless
   * there is one under that far key, or the message is not version 2, its
   * frame is not plain, too big or to a group address, or either key is not
   * one the lane can use.
   */
  offerFarReceive(buf: Buffer, at: number, len: number, link: Link, origin: PeerName, host: string, port: number, keys: FarSessions): void {
    const off = at + FAR_BODY_AT;
    const frameLen = len - FAR_BODY_AT - AEAD_TAG_BYTES;
    const receiving = this.receiving;
    if (buf[at] !== SLEEVE_VERSION || frameLen > this.maxFrameBytes || frameLen < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES ||
      receiving.length >= LANE_ENTRIES) return;
    for (let k = 0; k < VNET_HDR_BYTES; k++) if (buf[off + k] !== 0) return;
    const m = off + VNET_HDR_BYTES;
    if ((buf[m]! & 1) !== 0) return;
    const type = buf[at + 1]!;
    const via = link.n.name;
    const keyId = FarSessions.keyId(buf, at + SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
    // The pair's entry under an older far key is replaced (the lane replaces it too): the origin rekeyed.
    let replaces = -1;
    for (let i = 0; i < receiving.length && replaces < 0; i++) {
      const made = receiving[i]!;
      if (made.far !== null && made.via === via && made.peer === origin && made.type === type && samePair(made.macs, buf, m)) {
        if (made.far.keyId === keyId) return;
        replaces = i;
      }
    }
    const hop = link.session.laneOpener(type);
    const far = keys.laneOpener(origin, keyId);
    if (hop === null || far === null) return;
    buf.copy(this.pair, 0, m, m + PAIR_BYTES);
    this.names.set(this.nameBytes.of(via), 0);
    this.names.set(this.selfBytes, PEER_NAME_BYTES);
    if (this.lane.setFarReceive(type, this.names, this.nameBytes.of(origin), this.pair, hop, keyId, far, host, port)) {
      const made = { macs: Buffer.from(this.pair), link, via, peer: origin, host, port, key: hop.opener, type, far: { key: far.opener, keyId } };
      if (replaces < 0) receiving.push(made); else receiving[replaces] = made;
    }
  }

  /**
   * far-path.ts just relayed, in place over UDP, a far message from `from`'s
   * neighbour at host:port with type byte `type`, from `src` to `dst`, on
   * over `to`. Installs a relaying entry unless there is one, or either
   * link's key is not one the lane can use.
   */
  offerRelay(from: Link, type: number, host: string, port: number, to: Link, src: PeerName, dst: PeerName): void {
    const relaying = this.relaying;
    const fromPeer = from.n.name;
    for (let i = 0; i < relaying.length; i++) {
      const r = relaying[i]!;
      if (r.src === src && r.dst === dst && r.fromPeer === fromPeer && r.type === type) return;
    }
    if (relaying.length >= RELAY_ENTRIES || !to.peerHearsUs || !to.far) return;
    const opener = from.session.laneOpener(type);
    const key = to.session.laneKey();
    if (opener === null || key === null) return;
    const inHead = Buffer.alloc(1 + PEER_NAME_BYTES);
    inHead[0] = type;
    inHead.set(this.nameBytes.of(fromPeer), 1);
    const outHead = Buffer.alloc(1 + PEER_NAME_BYTES);
    outHead[0] = SLEEVE_TYPE_FAR | key.phaseBit;
    outHead.set(this.selfBytes, 1);
    const names = Buffer.alloc(2 * PEER_NAME_BYTES);
    names.set(this.nameBytes.of(src), 0);
    names.set(this.nameBytes.of(dst), PEER_NAME_BYTES);
    const { host: toHost, port: toPort } = to.udp;
    const outStride = to.segmented ? this.stride : 0;
    if (this.lane.setRelay({
      inHead, names, opener: opener.opener, ring: opener.ring, highest: opener.highest, fromHost: host, fromPort: port, outHead,
      sealer: key.sealer, counter: key.counter, toHost, toPort, outStride,
    })) {
      relaying.push({
        from, fromPeer, fromHost: host, fromPort: port, type, opener: opener.opener, src, dst, to, toPeer: to.n.name, toHost, toPort,
        sealer: key.sealer, outType: outHead[0]!, outStride,
      });
    }
  }

  /** Forgets every entry, here and in the lane. */
  clear(): void {
    if (this.sending.length === 0 && this.receiving.length === 0 && this.relaying.length === 0) return;
    this.sending.length = 0;
    this.receiving.length = 0;
    this.relaying.length = 0;
    this.lane.clear();
  }

  /** The source MACs of the lane's frames since the last call, seen now: ours, or the sending neighbour's, as JS learns them. */
  refresh(macs: MacTable, nowMs: number): void {
    const n = this.lane.takeSeen(this.seen);
    for (let i = 0; i < n; i++) {
      const at = i * SEEN_RECORD_BYTES;
      const from = this.seen.subarray(at + PAIR_BYTES, at + SEEN_RECORD_BYTES);
      const peer = from.every((b) => b === 0) ? this.self : peerNameFromBytes(from);
      macs.learnAt(this.seen, at + 6, peer, nowMs);
    }
  }

  /** The lane's frames in the overlay's totals they belong to (`traffic`), and on their own. */
  counters(traffic: Readonly<Record<string, number>>): Record<string, number> {
    const s = this.lane.stats();
    const t = (name: string): number => traffic[name] ?? 0;
    return {
      framesFromBridge: t('framesFromBridge') + s.frames, framesSentUdp: t('framesSentUdp') + s.frames + s.relayFrames,
      bytesSentUdp: t('bytesSentUdp') + s.bytes + s.relayBytes, framesReceivedUdp: t('framesReceivedUdp') + s.rxFrames + s.relayFrames + s.relayErrors,
      bytesReceivedUdp: t('bytesReceivedUdp') + s.rxBytes + s.relayBytes, framesRelayed: t('framesRelayed') + s.relayFrames,
      framesRelayedFar: t('framesRelayedFar') + s.relayFrames + s.relayErrors, framesSentFar: t('framesSentFar') + s.farFrames,
      framesReceivedFar: t('framesReceivedFar') + s.farRxFrames,
      framesToBridge: t('framesToBridge') + s.rxFrames, framesSentLane: s.frames, bytesSentLane: s.bytes, framesReceivedLane: s.rxFrames,
      bytesReceivedLane: s.rxBytes, laneDroppedAgain: s.txDroppedAgain, laneSendErrors: s.txErrors, laneWriteErrors: s.rxWriteErrors,
      laneEntries: s.entries, framesRelayedLane: s.relayFrames, bytesRelayedLane: s.relayBytes, laneRelayErrors: s.relayErrors,
      framesSentFarLane: s.farFrames, framesReceivedFarLane: s.farRxFrames,
    };
  }

  /** Clears everything unless each entry still matches the links, routes, keys and MAC table as they are. */
  verify(links: ReadonlyMap<PeerName, Link>, routes: RouteView, macs: MacTable, nowMs: number, keys: FarSessions | null): void {
    const same = (made: Made): boolean =>
      links.get(made.via) === made.link && made.link.udp.host === made.host && made.link.udp.port === made.port;
    const sendingLive = this.sending.every((made) => {
      const key = made.link.session.laneKey();
      const far = made.far === null ? null : keys?.laneSend(made.peer);
      const way = made.far === null ? made.via === made.peer :
        far?.sealer === made.far.key && far.keyId === made.far.keyId && made.link.far && routes.hops?.(made.peer) === 2;
      return way && same(made) && made.link.peerHearsUs && key?.sealer === made.key && key.phaseBit === made.type &&
        routes.nextHop(made.peer) === made.via && macs.lookupAt(made.macs, 0, nowMs) === made.peer &&
        macs.lookupAt(made.macs, 6, nowMs) === this.self;
    });
    const receivingLive = this.receiving.every((made) =>
      same(made) && made.link.session.laneOpener(made.type)?.opener === made.key && macs.lookupAt(made.macs, 6, nowMs) === made.peer &&
      (made.far === null || keys?.laneOpener(made.peer, made.far.keyId)?.opener === made.far.key));
    const relayingLive = this.relaying.every((r) => {
      const key = r.to.session.laneKey();
      return links.get(r.fromPeer) === r.from && r.from.udp.host === r.fromHost && r.from.udp.port === r.fromPort &&
        r.from.session.laneOpener(r.type)?.opener === r.opener && links.get(r.toPeer) === r.to && r.to.udp.host === r.toHost &&
        r.to.udp.port === r.toPort && r.to.peerHearsUs && r.to.far && (r.to.segmented ? this.stride : 0) === r.outStride &&
        key?.sealer === r.sealer && (SLEEVE_TYPE_FAR | key.phaseBit) === r.outType && routes.nextHop(r.dst) === r.toPeer;
    });
    if (!sendingLive || !receivingLive || !relayingLive) this.clear();
  }
}
