// The data plane's two edges, as small interfaces so the overlay runs the
// same over the native addon (TAP, batched UDP), over node:dgram, and over
// in-memory ports in simulations.

import type { AeadHandle } from './aes-gcm';
import type { LaneStats } from './native';

/** The local bridge side: whole Ethernet frames, each preceded by a 10-byte virtio_net_hdr. */
export interface FramePort {
  /** Starts delivery: onFrame per frame, then onBatchEnd once per batch (to flush staged sends). */
  start(onFrame: (buf: Buffer, off: number, len: number) => void, onBatchEnd: () => void): void;
  /** Delivers at once a batch of what waits to be read, through start()'s callbacks; not from inside this port's own batch. */
  drainNow?(): void;
  /** Writes one frame to the bridge; the bytes may be reused once it returns. */
  write(buf: Buffer, off: number, len: number): void;
  /** Frees its burst-sized buffers but the first keepBytes of where one frame lands; bytes freed (idle-memory.ts). */
  releaseIdle?(keepBytes: number): number;
  close(): void;
}

/**
 * One received datagram. segSize > 0: the port got several datagrams of that
 * size coalesced back to back (UDP_GRO; the last may be shorter).
 */
export type DatagramHandler = (buf: Buffer, off: number, len: number, host: string, port: number, segSize?: number) => void;

/** The underlay side: UDP datagrams. */
export interface DatagramPort {
  /**
   * onSmallDone: a port that delivers a batch's small datagrams first (udp-batch-port.ts) calls it
   * between them and the rest, when there were any.
   */
  start(onDatagram: DatagramHandler, onBatchEnd: () => void, onSmallDone?: () => void): void;
  /** Whether commit() takes a segment size (UDP GSO); a port without it sends every datagram whole. */
  readonly segmentation?: boolean;
  /**
   * Where to build the next datagram: stageSlab() at stageOffset(), up to
   * STAGE_SLOT_BYTES. Building in place spares the per-frame copy a send(buf)
   * would need. stageOffset() may flush first to make room.
   */
  stageSlab(): Buffer;
  stageOffset(): number;
  /**
   * Queues the datagram built at stageOffset() (len bytes) for host:port.
   * segSize > 0 (ports with `segmentation` only): it leaves as datagrams of
   * segSize bytes, the last shorter, in one send (UDP_SEGMENT).
   */
  commit(len: number, host: string, port: number, segSize?: number): void;
  /**
   * Copies src[srcOff, +len) into stageSlab() at `at`. Ports without it get
   * Buffer.copy, which in Node 20 makes a Uint8Array view of the source per
   * call: a captured frame's copy into the stage is the one copy per frame.
   */
  stageCopy?(src: Buffer, srcOff: number, len: number, at: number): void;
  /**
   * Queues a datagram that already sits in `buf`, the buffer this port handed
   * to the receive handler of the batch being delivered (a relayed message,
   * resealed where it arrived), to leave at the next flush, which the overlay
   * calls at the end of that batch, before the port reuses the buffer. Spares
   * the copy into a stage slot. segSize as for commit(). Ports without it
   * get every datagram through stageSlab() and commit().
   */
  sendFrom?(buf: Buffer, off: number, len: number, host: string, port: number, segSize?: number): void;
  /** Sends whatever is staged or queued. */
  flush(): void;
  /**
   * From now on datagrams may leave without a UDP checksum (IPv4; a no-op
   * where the port cannot). The overlay asks once its datagrams are all
   * sealed: the AEAD's tag then catches corruption as well as forgery.
   */
  omitChecksums?(): void;
  /** As FramePort.releaseIdle, for its receive and send buffers; 0 while anything is staged or queued. */
  releaseIdle?(keepBytes: number): number;
  close(): void;
}

/**
 * The lone-frame lane (native/lane.c behind native-lane.ts): a TAP wakeup
 * that brings one small frame whose (destination, source) MAC pair has an
 * entry is sealed and sent without JS. The overlay installs entries after
 * its own sends and clears them all whenever what they rest on changes
 * (lane-entries.ts).
 */
export interface LoneFrameLane {
  /**
   * For frames whose first 12 bytes are `macs`: the 29 header bytes JS wrote
   * (sleeve header, its counter rewritten per frame, and inner header), the
   * link's sealing context, its send counter's cell, and its endpoint. False
   * when the table is full.
   */
  set(macs: Uint8Array, head: Uint8Array, sealer: AeadHandle, counter: Float64Array, host: string, port: number): boolean;
  /**
   * For datagrams of type byte `type` from the neighbour names[0, 6) at
   * host:port whose frame has the MAC pair `macs`: the key phase's opening
   * context and replay window; names[6, 12) is us. False when full.
   */
  setReceive(type: number, names: Uint8Array, macs: Uint8Array, opener: AeadHandle, ring: Int32Array, highest: Float64Array,
    host: string, port: number): boolean;
  /**
   * For far messages to relay (native/lane-relay.c), as JS just relayed one
   * in place: from the neighbour `inHead`[1, 7) at fromHost:fromPort with
   * type byte inHead[0], inner source and destination `names`, opened with
   * `opener` and that phase's window; on with header bytes `outHead` (type
   * byte, our name) sealed by `sealer` with the next link's counter cell,
   * to toHost:toPort, whose segments carry outStride body bytes (0: none).
   * False when full.
   */
  setRelay(relay: RelayEntry): boolean;
  /**
   * For frames whose first 12 bytes are `macs`, to a peer two hops away
   * (native/lane-far.c): set()'s arguments for the hop, with a version 2
   * FAR header in `head`, and the end-to-end key: far header bytes 0..7,
   * sealing context and counter cell. False when full.
   */
  setFar(macs: Uint8Array, head: Uint8Array, hop: LaneKeyCells, farHead: Uint8Array, far: LaneKeyCells, host: string, port: number): boolean;
  /**
   * For far messages of type byte `type` that the neighbour names[0, 6) at
   * host:port passes on to us (names[6, 12)) from `origin`, whose frame has
   * the MAC pair `macs`: the hop's opening context and window, and far key
   * `farKeyId`'s. False when full.
   */
  setFarReceive(type: number, names: Uint8Array, origin: Uint8Array, macs: Uint8Array, hop: LaneOpenerCells, farKeyId: number,
    far: LaneOpenerCells, host: string, port: number): boolean;
  clear(): void;
  /** SEEN_RECORD_BYTES records (MAC pair, neighbour or zeros) of entries used since the last call, into out (LANE_SEEN_BYTES); how many. */
  takeSeen(out: Uint8Array): number;
  stats(): LaneStats;
}

/** A sealing context and the counter cell it seals on, shared by JS and the lane. */
export interface LaneKeyCells { sealer: AeadHandle; counter: Float64Array }
/** An opening context and its replay window (replay-window.ts), shared by JS and the lane. */
export interface LaneOpenerCells { opener: AeadHandle; ring: Int32Array; highest: Float64Array }

/** What a relaying entry names (LoneFrameLane.setRelay). */
export interface RelayEntry {
  inHead: Uint8Array;
  names: Uint8Array;
  opener: AeadHandle;
  ring: Int32Array;
  highest: Float64Array;
  fromHost: string;
  fromPort: number;
  outHead: Uint8Array;
  sealer: AeadHandle;
  counter: Float64Array;
  toHost: string;
  toPort: number;
  outStride: number;
}

/** Entries a lane holds at most, each way (LANE_ENTRIES in native/lane.h), and relaying entries (RELAY_ENTRIES). */
export const LANE_ENTRIES = 32;
export const RELAY_ENTRIES = 32;
/** A takeSeen record: a MAC pair, then the peer it came from (a far one's origin; zeros: a pair we sent). */
export const SEEN_RECORD_BYTES = 18;
/** Room for every entry's record, sending and receiving. */
export const LANE_SEEN_BYTES = 2 * LANE_ENTRIES * SEEN_RECORD_BYTES;

/** Room for the largest datagram a port must stage (a UDP payload is at most 65,507 bytes). */
export const STAGE_SLOT_BYTES = 65_536;
