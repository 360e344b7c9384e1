// Which lone frames the native lane (ports.ts LoneFrameLane, native/lane.c)
// may send without JS, and keeping that true.
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
// source MACs of the lane's frames learnt, as JS's own sends would.

import type { PeerName } from '../mesh/peer-name';
import type { AeadHandle } from './aes-gcm';
import type { RouteView } from './forwarder';
import { MacTable, readMac } from './mac-table';
import { LANE_ENTRIES, type LoneFrameLane } from './ports';
import { INNER_HEADER_BYTES, MAX_HOPS, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, VNET_GSO_NONE, VNET_HDR_BYTES, writeInnerHeader, writeSleeveHeader } from './sleeve-codec';
import type { Link } from './udp-probes';

const PAIR_BYTES = 12;

export class LaneEntries {
  private count = 0;
  private readonly dstMacs = new Float64Array(LANE_ENTRIES);
  private readonly srcMacs = new Float64Array(LANE_ENTRIES);
  /** What each entry was made from, to check it against the live state. */
  private readonly made: Array<{ link: Link; peer: PeerName; host: string; port: number; sealer: AeadHandle; phaseBit: number } | null> =
    new Array<null>(LANE_ENTRIES).fill(null);
  private readonly pair = Buffer.alloc(PAIR_BYTES);
  private readonly head = Buffer.alloc(SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES);
  private readonly seen = Buffer.alloc(LANE_ENTRIES * PAIR_BYTES);

  /** maxFrameBytes: the largest frame (vnet header included) JS sends as one unsegmented datagram; the lane takes no more. */
  constructor(private readonly lane: LoneFrameLane, private readonly self: PeerName, private readonly selfBytes: Uint8Array,
    readonly maxFrameBytes: number) {}

  get size(): number {
    return this.count;
  }

  /**
   * The overlay just sent frame[off, off+len) (vnet header first) to `peer`,
   * its destination MAC's owner and a neighbour, over `link`. Installs the
   * pair unless it is there, the frame is a super-frame or too big, the link
   * is on TCP, or its key is not one the lane can use.
   */
  offer(frame: Buffer, off: number, len: number, link: Link, peer: PeerName, peerBytes: Uint8Array): void {
    if (frame[off + 1] !== VNET_GSO_NONE || len > this.maxFrameBytes || !link.peerHearsUs || this.count >= LANE_ENTRIES) return;
    const m = off + VNET_HDR_BYTES;
    const dst = readMac(frame, m);
    const src = readMac(frame, m + 6);
    for (let i = 0; i < this.count; i++) if (this.dstMacs[i] === dst && this.srcMacs[i] === src) return;
    const key = link.session.laneKey();
    if (key === null) return;
    frame.copy(this.pair, 0, m, m + PAIR_BYTES);
    writeSleeveHeader(this.head, 0, SLEEVE_TYPE_FRAME | key.phaseBit, this.selfBytes, 0);
    writeInnerHeader(this.head, SLEEVE_HEADER_BYTES, this.selfBytes, peerBytes, MAX_HOPS);
    const { host, port } = link.udp;
    if (!this.lane.set(this.pair, this.head, key.sealer, key.counter, host, port)) return;
    const i = this.count++;
    this.dstMacs[i] = dst;
    this.srcMacs[i] = src;
    this.made[i] = { link, peer, host, port, sealer: key.sealer, phaseBit: key.phaseBit };
  }

  /** Forgets every entry, here and in the lane. */
  clear(): void {
    if (this.count === 0) return;
    this.count = 0;
    this.made.fill(null);
    this.lane.clear();
  }

  /** The source MACs of pairs the lane carried since the last call are ours, seen now: learnt as JS's sends learn them. */
  refresh(macs: MacTable, nowMs: number): void {
    const n = this.lane.takeSeen(this.seen);
    for (let i = 0; i < n; i++) macs.learn(readMac(this.seen, i * PAIR_BYTES + 6), this.self, nowMs);
  }

  /** The lane's frames in the overlay's totals they belong to (`traffic`), and on their own. */
  counters(traffic: Readonly<Record<string, number>>): Record<string, number> {
    const s = this.lane.stats();
    return {
      framesFromBridge: (traffic['framesFromBridge'] ?? 0) + s.frames, framesSentUdp: (traffic['framesSentUdp'] ?? 0) + s.frames,
      bytesSentUdp: (traffic['bytesSentUdp'] ?? 0) + s.bytes, framesSentLane: s.frames, bytesSentLane: s.bytes,
      laneDroppedAgain: s.txDroppedAgain, laneSendErrors: s.txErrors, laneEntries: s.entries,
    };
  }

  /** Clears everything unless each entry still matches the links, routes and MAC table as they are. */
  verify(links: ReadonlyMap<PeerName, Link>, routes: RouteView, macs: MacTable, nowMs: number): void {
    for (let i = 0; i < this.count; i++) {
      const made = this.made[i]!;
      const { link, peer } = made;
      const key = link.session.laneKey();
      const live = links.get(peer) === link && link.peerHearsUs && link.udp.host === made.host && link.udp.port === made.port &&
        key !== null && key.sealer === made.sealer && key.phaseBit === made.phaseBit && routes.nextHop(peer) === peer &&
        macs.lookup(this.dstMacs[i]!, nowMs) === peer && macs.lookup(this.srcMacs[i]!, nowMs) === this.self;
      if (!live) {
        this.clear();
        return;
      }
    }
  }
}
