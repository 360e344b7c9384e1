// The data plane: carries Ethernet frames between our bridge (FramePort) and
// our neighbours, over the encrypted UDP sleeve (DatagramPort) or, when UDP
// does not get through, over the neighbour's TCP control connection.
//
// Path choice per neighbour (udp-probes.ts): we send UDP probes every probe interval, and the
// neighbour tells us over TCP whether it hears them (UDP_STATUS). We use UDP
// towards it only while it says it does; otherwise frames go over TCP, and go
// back to UDP as soon as the probes get through again. Each direction decides
// for itself, so a one-way UDP block degrades only that direction.
//
// Frames on both edges start with a virtio_net_hdr (sleeve-codec.ts explains why);
// one from the overlay reaches our TAP only if vnet-header.ts passes it.
// Where a neighbour's datagrams go, and what may move that address (a datagram
// that authenticated with a password; without one, only a challenge echoed
// over TCP), is udp-endpoint.ts's decision.
// Towards a neighbour that accepts it (UDP_STATUS bit 3) a frame larger than
// one underlay datagram goes as sleeve version 3: sealed once, cut into
// MTU-sized segments sent as one UDP GSO datagram (sleeve-segments.ts), so
// the underlay never IP-fragments it; segments that arrive apart are put back
// together by segment-reassembly.ts before the one AEAD open.
// With the kernel fast path (fastdp.ts) a neighbour's unicast frames may skip
// us altogether (VXLAN); we still carry its broadcasts, and all its frames
// whenever the fast path is not in use.
// With a password, a unicast frame to a peer two hops away may go sealed end
// to end instead (far-path.ts, far-session.ts), so the relay between opens
// only its header; the mesh exchanges the keys (router/mesh/far-keys.ts), and
// a relay may forward them in its kernel instead (kernel-relay.ts).
// Decisions (where a frame goes) are the Forwarder's; this file moves bytes
// (out through sleeve-send.ts), opens them, and counts drops by reason. It
// never throws per frame.

import type { Clock } from '../../common/clock';
import type { AesGcm } from './aes-gcm';
import { AEAD_TAG_BYTES, type FrameAead } from './frame-aead';
import { Forwarder, RouteView } from './forwarder';
import type { Logger } from '../../common/logger';
import { MacTable } from './mac-table';
import type { DatagramPort, FramePort, LoneFrameLane } from './ports';
import { LaneEntries } from './lane-entries';
import { SegmentReceiver } from './segment-receiver';
import { compactChunks, maxSegmentedBody, SEGMENT_HEADER_BYTES } from './sleeve-segments';
import type { DataPlane, LinkStatus, OverlayNeighbour } from '../mesh/data-plane';
import { FarPath } from './far-path';
import { FarSessions } from './far-session';
import type { PeerName } from '../mesh/peer-name';
import type { RouterStatus } from '../mesh/status';
import { NO_KERNEL_RELAY, type UdpStatusReport } from '../mesh/protocol';
import type { KernelRelayMessage } from '../mesh/kernel-relay-messages';
import type { KernelRelayRulesPort } from './kernel-relay';
import type { Fastdp } from './fastdp';
import {
  BROADCAST_PEER, CHALLENGE_BYTES, ETHERNET_HEADER_BYTES, INNER_HEADER_BYTES, MAX_ETHERNET_OVERHEAD_BYTES, MAX_HOPS, MAX_SLEEVE_FRAME_BYTES,
  VNET_GSO_NONE, VNET_HDR_BYTES, peerNameBytes, readInnerHeaderInto, readSleeveHeaderInto, type InnerHeader, type SleeveHeader,
  SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FAR, SLEEVE_TYPE_FAR_KERNEL, SLEEVE_TYPE_FRAME, SLEEVE_TYPE_PROBE,
} from './sleeve-codec';
import { SleeveSession } from './sleeve-session';
import { checkVnetHeader } from './vnet-header';
import { relayInPlace } from './relay-in-place';
import { PeerNameBytes, PeerNameReader } from './peer-name-reader';
import { sendInner } from './sleeve-send';
import { GsoSplitter } from './gso-split';
import { BatchAqm } from './batch-aqm';
import { BatchClock } from './batch-clock';
import { Link, LinkProbes, OverlayTimings } from './udp-probes';
import { IdleMemory, type PageRelease, releaseBurstBuffers } from './idle-memory';
import { counterTable, newDropCounters, newTrafficCounters, type OverlayCounters } from './overlay-counters';

export { DEFAULT_OVERLAY_TIMINGS, FAST_OVERLAY_TIMINGS, type OverlayTimings } from './udp-probes';


const MAX_MAC_ENTRIES = 65_536;

export class Overlay implements DataPlane {
  private readonly traffic = newTrafficCounters();
  readonly drops = newDropCounters();
  private readonly links = new Map<PeerName, Link>();
  private readonly forwarder: Forwarder;
  private readonly splitter = new GsoSplitter();
  /** CoDel on the two queues we drain: the TAP ring (frames from our bridge) and the UDP socket (batch-aqm.ts). */
  private readonly fromBridgeAqm: BatchAqm;
  private readonly fromUnderlayAqm: BatchAqm;
  private readonly receiver = new SegmentReceiver({
    neighbour: (name) => this.links.get(name) ?? this.far?.kernel?.segmentSender(name) ?? null,
    message: (buf, off, len, host, port, spanOff, spanLen, spread) => this.handleMessage(buf, off, len, host, port, spanOff, spanLen, spread),
    drop: (reason) => { this.drops[reason]++; },
    nowMs: () => this.frameClock.now(),
  });
  /** Body bytes per version 3 segment; 0 when the port cannot send segments. */
  private readonly stride: number;
  /** Largest frame (vnet header included) one version 3 message carries; bigger super-frames are split to it. */
  private readonly segmentedFrameMax: number;
  private routes: RouteView = { nextHop: () => null, broadcastChildren: () => [] };
  private readonly selfBytes: Uint8Array;
  private readonly broadcastBytes = peerNameBytes(BROADCAST_PEER);
  /** Sender, source and destination names from headers, one string per peer rather than per datagram. */
  private readonly names = new PeerNameReader();
  /** Scratch for the datagram and frame being read: the frame path makes no object per frame. */
  private readonly header: SleeveHeader = { type: 0, sender: BROADCAST_PEER, counter: 0 };
  private readonly inner: InnerHeader = { src: BROADCAST_PEER, dst: BROADCAST_PEER, hopsLeft: 0 };
  /** Peer names as wire bytes, so the per-frame path allocates nothing for them. */
  private readonly nameBytes = new PeerNameBytes();
  /** The wall clock for the frame path, read once per batch (batch-clock.ts). */
  private readonly frameClock: BatchClock;
  /** Probes, UDP_STATUS reports, the version 3 count (udp-probes.ts). */
  private readonly probes: LinkProbes;
  /**
   * A frame went to our bridge in this UDP batch (or over TCP since the last
   * one: one needless read at worst); only then may the TAP hold an answer to drain early.
   */
  private wroteToBridge = false;
  private readonly idleMemory: IdleMemory;
  /** Lone frames the native lane sends without us (lane-entries.ts); null without one. */
  private readonly lane: LaneEntries | null;
  /**
   * The far path (far-path.ts); null without AES-256-GCM, the one cipher of far messages. The mesh's far
   * key exchange keys it (it is the FarKeySink) and, once set as its source, frames may take it.
   */
  readonly far: FarPath | null;

  constructor(
    /**
     * aes: AES-256-GCM for the sleeve when this machine has it (aes-gcm.ts probeAesGcm()); the router then offers it.
     * monoMs: monotonic milliseconds, sub-millisecond (default performance.now), for the queue management (batch-aqm.ts).
     * memory: frees pages and trims malloc's heap (the addon's releasePages, trimHeap), with the ports' buffers after a burst (idle-memory.ts).
     * lane: opens the lone-frame lane between bridge and udp for frames up to maxFrameBytes (native-lane.ts).
     */
    private readonly deps: {
      clock: Clock; logger: Logger; aead: FrameAead; aes?: AesGcm | null; bridge: FramePort; udp: DatagramPort; fastdp?: Fastdp; monoMs?: () => number;
      memory?: PageRelease; lane?: (maxFrameBytes: number) => LoneFrameLane;
      /** Kernel relays (kernel-relay.ts): absent, off; rules null, we use them but grant none. */
      kernelRelay?: { rules: KernelRelayRulesPort | null };
    },
    /** segmentBytes: the UDP payload one underlay datagram may carry unfragmented; 0 sends no version 3. */
    private readonly opts: { localPeer: PeerName; mtu: number; bridgeName: string; timings: OverlayTimings; segmentBytes?: number },
  ) {
    this.frameClock = new BatchClock(deps.clock);
    this.selfBytes = peerNameBytes(opts.localPeer);
    const segmentBytes = deps.udp.segmentation === true ? opts.segmentBytes ?? 0 : 0;
    this.stride = segmentBytes > SEGMENT_HEADER_BYTES + 256 ? Math.min(0xffff, segmentBytes - SEGMENT_HEADER_BYTES) : 0;
    // The tag is there only with a password; reserving it always keeps one limit for both. The far path's
    // 32 bytes more are not reserved: a frame too big for them goes hop by hop (far-path.ts), which only a
    // container's largest super-frame at the smallest overlay MTU (952) is (test/unit/container-gso).
    this.segmentedFrameMax = this.stride === 0 ? 0 : Math.min(MAX_SLEEVE_FRAME_BYTES, maxSegmentedBody(this.stride) - INNER_HEADER_BYTES - AEAD_TAG_BYTES);
    this.forwarder = new Forwarder(opts.localPeer, new MacTable(opts.timings.macMaxAgeMs, MAX_MAC_ENTRIES));
    // The lane sends what JS would send as one version 2 datagram: no bigger than the MTU allows, nor than a segment.
    const laneMax = Math.min(VNET_HDR_BYTES + opts.mtu + MAX_ETHERNET_OVERHEAD_BYTES, MAX_SLEEVE_FRAME_BYTES,
      this.stride === 0 ? Infinity : this.stride - INNER_HEADER_BYTES - AEAD_TAG_BYTES);
    this.lane = deps.lane ? new LaneEntries(deps.lane(laneMax), opts.localPeer, this.selfBytes, laneMax, this.stride, this.nameBytes) : null;
    this.forwarder.macs.onChange = () => this.lane?.clear();
    // The global `performance` is a lazy getter: taken once, not at every batch.
    const perf = performance;
    const monoMs = deps.monoMs ?? (() => perf.now());
    this.fromBridgeAqm = new BatchAqm(monoMs);
    this.fromUnderlayAqm = new BatchAqm(monoMs);
    this.probes = new LinkProbes(this.links, {
      clock: deps.clock, logger: deps.logger, udp: deps.udp, ...(deps.fastdp ? { fastdp: deps.fastdp } : {}), timings: opts.timings, stride: this.stride,
      tick: (now) => this.tick(now), far: () => this.far?.source != null, kernel: () => this.far?.kernel?.flags() ?? NO_KERNEL_RELAY,
    });
    this.idleMemory = new IdleMemory(opts.timings.idleReleaseMs, () => {
      const freed = releaseBurstBuffers([deps.bridge, deps.udp], this.receiver.reassembler, deps.memory ?? null, deps.clock.now());
      this.traffic.memoryReleasedBytes! += freed;
      deps.logger.debug('data plane idle: burst buffers released', { bytes: freed });
    });
    this.far = deps.aes == null ? null : new FarPath(new FarSessions(deps.aes), {
      udp: deps.udp, links: this.links, routes: () => this.routes, self: opts.localPeer, stride: this.stride, traffic: this.traffic, drops: this.drops,
      nowMs: () => deps.clock.now(), readName: this.names.read, lane: this.lane,
      deliver: (buf, off, len) => {
        if (this.admit(this.fromUnderlayAqm, buf, off + INNER_HEADER_BYTES, len - INNER_HEADER_BYTES)) this.handleInner(buf, off, len, 0, 0);
      },
    });
    const { clock, logger, kernelRelay } = deps;
    if (kernelRelay) this.far?.enableKernelRelay({ clock, logger, rules: kernelRelay.rules, changed: () => this.lane?.clear(), udpTimeoutMs: opts.timings.udpTimeoutMs });
  }

  private tick(nowMs: number): void {
    this.far?.kernel?.probeTick(nowMs, (p, hearing) => this.far!.probeKernel(p, hearing, this.selfBytes, this.nameBytes.of(p.far)));
    this.deps.udp.flush();
    this.frameClock.endBatch();
    this.lane?.refresh(this.forwarder.macs, nowMs);
    this.forwarder.macs.tick(nowMs);
    this.lane?.verify(this.links, this.routes, this.forwarder.macs, nowMs, this.far?.sessions ?? null);
    // With the lane's bytes (its frames pass through the same buffers): a transfer it carries alone is a burst too.
    const t = this.lane?.counters(this.traffic) ?? this.traffic;
    this.idleMemory.tick(nowMs, t.bytesSentUdp! + t.bytesReceivedUdp! + this.traffic.bytesSentTcp! + this.traffic.bytesReceivedTcp!);
  }

  /** Traffic counters plus drops labelled by reason, in the form the metrics renderer labels. */
  get counters(): OverlayCounters {
    const r = this.receiver.reassembler.counters;
    return counterTable(this.traffic, this.drops, this.lane?.counters(this.traffic), this.deps.fastdp?.counters, this.far?.source?.counters, this.far?.kernel?.counters, {
      framesReceivedCoalesced: this.receiver.coalesced, messagesReassembled: r.complete, reassemblyEvicted: r.evicted, reassemblyExpired: r.expired,
    });
  }

  get aesGcm(): boolean {
    return (this.deps.aes ?? null) !== null;
  }

  statusSummary(): NonNullable<RouterStatus['dataPlane']> {
    const aead = this.aesGcm ? `${this.deps.aead.backend}, AES-256-GCM (OpenSSL)` : this.deps.aead.backend;
    const summary = { mtu: this.opts.mtu, bridge: this.opts.bridgeName, aead, macs: this.forwarder.macs.size };
    const kernelRelay = this.far?.kernel?.summary();
    return { ...summary, ...(this.deps.fastdp ? { fastdp: this.deps.fastdp.summary() } : {}), ...(kernelRelay ? { kernelRelay } : {}) };
  }

  start(): void {
    this.deps.bridge.start((buf, off, len) => this.handleBridgeFrame(buf, off, len), () => {
      this.deps.udp.flush();
      this.fromBridgeAqm.endBatch();
      this.frameClock.endBatch();
    });
    this.deps.udp.start((buf, off, len, host, port, segSize) => this.receiver.slot(buf, off, len, host, port, segSize), () => {
      this.deps.udp.flush();
      this.fromUnderlayAqm.endBatch();
      this.wroteToBridge = false;
      this.frameClock.endBatch();
    }, () => {
      // A ping delivered from this batch's small datagrams has its answer waiting in the TAP by now
      // (the kernel answers while we write): read and send it before the batch's bulk is opened.
      // Relayed small ones (a relayed flow's ACKs) leave now too. Nothing written to our bridge,
      // nothing to answer: a relay with no containers of its own skips the empty TAP read.
      this.deps.udp.flush();
      if (this.wroteToBridge) this.deps.bridge.drainNow?.();
      this.wroteToBridge = false;
    });
    this.deps.fastdp?.start(this.forwarder.macs);
    this.probes.start();
  }

  close(): void {
    this.probes.close();
    this.deps.fastdp?.close();
    this.deps.bridge.close();
    this.deps.udp.close();
    this.far?.sessions.close();
    this.far?.kernel?.close();
  }

  setRoutes(routes: RouteView): void {
    this.routes = routes;
    this.lane?.clear();
  }

  addNeighbour(n: OverlayNeighbour): void {
    const session = new SleeveSession(this.deps.aead, n.keys, this.selfBytes, this.deps.aes ?? null);
    session.onKeysChanged = () => this.lane?.clear();
    this.probes.add(n, session);
    this.deps.fastdp?.addPeer(n.name, n.host, n.keys !== null);
  }

  removeNeighbour(name: PeerName): void {
    this.probes.remove(name);
    this.deps.fastdp?.removePeer(name);
    this.forwarder.macs.forgetPeer(name);
    this.far?.kernel?.removeNeighbour(name);
  }

  linkStatus(name: PeerName): LinkStatus | null {
    const l = this.links.get(name);
    return l ? this.probes.status(l) : null;
  }

  macTable(): { mac: string; peer: PeerName; lastSeenMs: number }[] {
    return this.forwarder.macs.snapshot();
  }

  /** A FRAME control message (TCP fallback) from a neighbour. */
  handleTcpFrame(from: PeerName, inner: Uint8Array): void {
    if (!this.links.has(from)) { this.drops['unknown-sender']++; return; }
    const buf = Buffer.from(inner.buffer, inner.byteOffset, inner.byteLength);
    this.traffic.framesReceivedTcp!++;
    this.traffic.bytesReceivedTcp! += inner.byteLength;
    this.handleInner(buf, 0, inner.byteLength, 0, 0);
    this.deps.udp.flush();
    this.frameClock.endBatch();
  }

  /** A FAR_FRAME control message: a far message relayed to us over TCP, laid out as on UDP. */
  handleTcpFar(from: PeerName, message: Uint8Array): void {
    const link = this.links.get(from);
    if (!link) { this.drops['unknown-sender']++; return; }
    if (this.far?.source == null || !link.session.encrypted) { this.drops.type++; return; }
    if (FarPath.hopBytes(message.byteLength) < 0) { this.drops.short++; return; }
    this.traffic.framesReceivedTcp!++;
    this.traffic.bytesReceivedTcp! += message.byteLength;
    this.far.receive(Buffer.from(message.buffer, message.byteOffset, message.byteLength), 0, message.byteLength, 0, 0, 0, null, '', 0);
    this.deps.udp.flush();
    this.frameClock.endBatch();
  }

  handleKernelRelay(from: PeerName, msg: KernelRelayMessage): void {
    this.far?.kernel?.handle(from, msg);
  }

  /** A UDP_STATUS control message: whether the neighbour hears our probes, and the last challenge it heard. */
  handleUdpStatus(from: PeerName, report: UdpStatusReport): void {
    const l = this.links.get(from);
    if (!l) return;
    const { peerHearsUs, udp: { host, port } } = l;
    this.probes.handleUdpStatus(l, report);
    if (l.peerHearsUs !== peerHearsUs || l.udp.host !== host || l.udp.port !== port) this.lane?.clear();
  }

  // ---- bridge -> overlay ----

  private handleBridgeFrame(buf: Buffer, off: number, len: number): void {
    this.traffic.framesFromBridge!++;
    if (len < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES) { this.drops.short++; return; }
    if (!this.admit(this.fromBridgeAqm, buf, off, len)) return;
    // A plain frame must fit the MTU; a super-frame (GSO) only one sleeve datagram.
    // A bigger super-frame leaves as several (gso-split.ts).
    if (buf[off + 1] === VNET_GSO_NONE) {
      if (len > VNET_HDR_BYTES + this.opts.mtu + MAX_ETHERNET_OVERHEAD_BYTES) { this.drops['too-big']++; return; }
    } else if (len > MAX_SLEEVE_FRAME_BYTES || (this.probes.segmentedLinks > 0 && len > this.segmentedFrameMax)) {
      const pieces = this.splitter.split(buf, off, len, this.probes.segmentedLinks > 0 ? this.segmentedFrameMax : MAX_SLEEVE_FRAME_BYTES);
      if (typeof pieces === 'string') {
        // Only TCP splits; anything else that fits one version 2 datagram goes whole as that.
        if (len > MAX_SLEEVE_FRAME_BYTES) { this.drops['too-big']++; return; }
        this.captureFrame(buf, off, len);
        return;
      }
      this.traffic.framesSplit!++;
      const { scratch, offsets, lengths } = this.splitter;
      for (let i = 0; i < pieces; i++) this.captureFrame(scratch, offsets[i]!, lengths[i]!);
      return;
    }
    this.captureFrame(buf, off, len);
  }

  private captureFrame(buf: Buffer, off: number, len: number): void {
    const d = this.forwarder.fromBridge(buf, off + VNET_HDR_BYTES, this.routes, this.frameClock.now());
    switch (d.kind) {
      case 'drop': this.drops[d.reason]++; return;
      case 'unicast': {
        const link = this.links.get(d.via);
        if (!link) { this.drops['no-route']++; return; }
        const dstBytes = this.nameBytes.of(d.dst);
        if (d.dst !== d.via && this.far !== null && this.far.send(link, d.dst, this.selfBytes, dstBytes, buf, off, len)) return;
        this.sendFrame(link, this.selfBytes, dstBytes, MAX_HOPS, buf, off, len);
        if (d.dst === d.via) this.lane?.offer(buf, off, len, link, d.dst, dstBytes);
        return;
      }
      case 'broadcast':
        for (const via of d.via) {
          const link = this.links.get(via);
          if (link) this.sendFrame(link, this.selfBytes, this.broadcastBytes, MAX_HOPS, buf, off, len);
        }
        return;
    }
  }

  private sendFrame(link: Link, src: Uint8Array, dst: Uint8Array, hopsLeft: number, frame: Buffer, off: number, len: number): void {
    sendInner(this.deps.udp, link, this.stride, this.traffic, src, dst, hopsLeft, frame, off, len);
  }

  // ---- underlay -> overlay ----

  /** One whole sleeve message: a version 2 datagram, or a version 3 message put back together; span and spread as in SegmentSink. */
  private handleMessage(buf: Buffer, off: number, len: number, host: string, port: number, spanOff: number, spanLen: number, spread: number): void {
    const h = this.header;
    const bad = readSleeveHeaderInto(buf, off, len, h, this.names.read);
    if (bad !== null) { this.drops[bad]++; return; }
    // Taken out at once: the scratch header is the next datagram's.
    const { type, sender, counter } = h;
    // Forwarded by a relay's kernel: from no neighbour, authenticated end to end only (far-path.ts).
    if (type === SLEEVE_TYPE_FAR_KERNEL) {
      if (this.far === null) this.drops.type++;
      else this.far.receiveKernel(buf, off, len, spanOff, spanLen, spread, host, port);
      return;
    }
    const link = this.links.get(sender);
    if (!link) { this.drops['unknown-sender']++; return; }
    // A far message: only its hop part is this link's to open (far-path.ts), and only where we take them.
    const far = type === SLEEVE_TYPE_FAR;
    if (far && (this.far?.source == null || !link.session.encrypted)) { this.drops.type++; return; }
    // A sealed frame opens whole: its chunks come together first (segment-receiver.ts).
    if (spread > 0 && !far && link.session.encrypted) { compactChunks(buf, spanOff, spanLen, spread); spread = 0; }
    const hopLen = far ? FarPath.hopBytes(len) : len;
    if (hopLen < 0) { this.drops.short++; return; }
    const bodyLen = link.session.open(buf, off, hopLen, counter);
    if (typeof bodyLen === 'string') { this.drops[bodyLen]++; return; }
    const challenged = type === SLEEVE_TYPE_PROBE && bodyLen === CHALLENGE_BYTES && !link.udp.authenticated;
    const source = link.udp.onDatagram(host, port);
    if (source === 'moved') this.lane?.clear();
    if (challenged) link.udp.heardChallenge(buf.subarray(off + SLEEVE_HEADER_BYTES, off + SLEEVE_HEADER_BYTES + CHALLENGE_BYTES), source === 'pinned');
    if (source === 'unexpected') {
      // Plaintext: anyone can name this neighbour, so the source proves nothing (udp-endpoint.ts).
      this.probes.challenge(link, host, port);
      this.drops.source++;
      return;
    }
    link.lastUdpRxMs = this.frameClock.now();
    this.traffic.bytesReceivedUdp! += len;
    if (type === SLEEVE_TYPE_PROBE) return;
    this.traffic.framesReceivedUdp!++;
    if (far) { this.far!.receive(buf, off, len, spanOff, spanLen, spread, link, host, port); return; }
    if (!this.admit(this.fromUnderlayAqm, buf, off + SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES, bodyLen - INNER_HEADER_BYTES)) return;
    const delivered = this.traffic.framesToBridge;
    this.handleInner(buf, off + SLEEVE_HEADER_BYTES, bodyLen, spanOff, spanLen, spread);
    if (this.traffic.framesToBridge !== delivered && spread === 0) this.lane?.offerReceive(buf, off, bodyLen, link, this.nameBytes.of(sender), host, port);
  }

  /** The queue's CoDel verdict on a frame (vnet header first): false when it is dropped. */
  private admit(aqm: BatchAqm, buf: Buffer, off: number, len: number): boolean {
    const verdict = aqm.admit(buf, off, len);
    if (verdict === 'drop') { this.drops.congestion++; return false; }
    if (verdict === 'marked') this.traffic.framesMarkedCe!++;
    return true;
  }

  /** An inner frame (inner header first) from a neighbour; spanLen > 0: it lies in the UDP receive buffer, at most spanOff+spanLen; spread as in SegmentSink. */
  private handleInner(buf: Buffer, off: number, len: number, spanOff: number, spanLen: number, spread = 0): void {
    if (!readInnerHeaderInto(buf, off, len, this.inner, this.names.read)) { this.drops.short++; return; }
    const { src, dst, hopsLeft } = this.inner;
    const frameOff = off + INNER_HEADER_BYTES;
    const frameLen = len - INNER_HEADER_BYTES;
    if (checkVnetHeader(buf, frameOff, frameLen) !== 'ok') { this.drops.vnet++; return; }
    const d = this.forwarder.fromOverlay(src, dst, hopsLeft, buf, frameOff + VNET_HDR_BYTES, this.routes, this.frameClock.now());
    if (d.drop) { this.drops[d.drop]++; return; }
    const inPlace = d.via.length === 1 && !d.deliver && spanLen > 0 ? this.links.get(d.via[0]!) : undefined;
    // Spread chunks (plaintext) may stay put only when relayed in place (relayInPlace decides); anything else reads the whole frame.
    if (spread > 0 && inPlace === undefined) compactChunks(buf, spanOff, spanLen, spread);
    if (d.deliver) {
      this.deps.bridge.write(buf, frameOff, frameLen);
      this.traffic.framesToBridge!++;
      this.wroteToBridge = true;
    }
    if (d.via.length === 0) return;
    // False: the frame is whole again, to be copied.
    if (inPlace !== undefined && relayInPlace(this.deps.udp, inPlace, this.stride, this.traffic, buf, off, len, hopsLeft - 1, spanOff, spanOff + spanLen, SLEEVE_TYPE_FRAME, 0, spread)) return;
    // The frame sits in a receive buffer and is relayed into the port's send
    // slots (or a fresh TCP message): it can be read in place, no copy needed.
    const hops = hopsLeft - 1;
    const srcBytes = buf.subarray(off, off + 6);
    const dstBytes = buf.subarray(off + 6, off + 12);
    for (const via of d.via) {
      const link = this.links.get(via);
      if (!link) { this.drops['no-route']++; continue; }
      this.sendFrame(link, srcBytes, dstBytes, hops, buf, frameOff, frameLen);
      this.traffic.framesRelayed!++;
    }
  }
}
