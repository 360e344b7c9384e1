// Loads the data plane's N-API addon (native/*.c, built by node-gyp into
// build/Release/weave_native.node when `npm install` runs) and gives it a typed
// face. Only the adapters tap-device.ts and udp-batch.ts beside it call it;
// everything else uses those classes.
//
// The addon checks every argument itself and throws TypeError/RangeError on
// misuse, so a bug here is an exception, never a crash. Handles are opaque
// branded objects: only values the addon returned can be passed back.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { AeadHandle } from './aes-gcm';

/** Must equal WEAVE_NATIVE_ABI in native/weave_native.h; a mismatch means build/ is stale. */
export const NATIVE_ABI_VERSION = 9;
/** WN_MAX_BATCH in native/weave_native.h: most packets per wakeup or per send call chunk. */
export const NATIVE_MAX_BATCH = 256;

const ADDON_FILE = 'weave_native.node';

declare const handleKind: unique symbol;
/** An fd owned by the addon. Opaque: the brand keeps TAP and UDP handles apart. */
export interface TapHandle { readonly [handleKind]: 'tap'; readonly name: string }
export interface UdpHandle { readonly [handleKind]: 'udp' }
export type NativeHandle = TapHandle | UdpHandle;
declare const laneKind: unique symbol;
/** The lone-frame lane (native/lane.c): sends a TAP wakeup's one small frame over a UDP socket without JS. */
export interface LaneHandle { readonly [laneKind]: 'lane' }

/** The lane's own counters since it was made. */
export interface LaneStats {
  frames: number;
  bytes: number;
  txDroppedAgain: number;
  txErrors: number;
  /** Entries installed now, sending and receiving. */
  entries: number;
  /** Datagrams it delivered to the TAP, their bytes on the wire, and TAP writes that failed. */
  rxFrames: number;
  rxBytes: number;
  rxWriteErrors: number;
  /** (ABI 7) Far messages it relayed, their bytes (the same in and out), and sends that failed. */
  relayFrames: number;
  relayBytes: number;
  relayErrors: number;
  /** (ABI 9) Of frames and rxFrames: those sealed or opened end to end (far entries). */
  farFrames: number;
  farRxFrames: number;
}

/** Counters kept in C, summed per batch. Numbers are exact up to 2^53. */
export interface NativeStats {
  rxBatches: number;
  rxPackets: number;
  rxBytes: number;
  /** Packets dropped on read: larger than the slot (truncated) or refused by the kernel. */
  rxErrors: number;
  /** POLLERR wakeups; the reader re-arms after each. */
  pollErrors: number;
  txPackets: number;
  txBytes: number;
  /** Dropped because the kernel queue was full (EAGAIN/ENOBUFS). */
  txDroppedAgain: number;
  /** Any other per-packet send error (unreachable, too big, device down...). */
  txErrors: number;
  lastRxErrno: number;
  lastTxErrno: number;
}

/**
 * Called once per batch. `count` packets are in the slots; `errno` is 0, or a
 * positive errno after which the addon has stopped reading (buffers detached,
 * device deleted). Both can be set: packets read before the error come first.
 * A UDP socket also reports an error that leaves it reading (a connected
 * socket's ICMP port unreachable) as a negative errno.
 */
export type NativeReadCallback = (count: number, errno: number) => void;

export interface LocalAddress { family: 4 | 6; address: string; port: number }

export interface WeaveNative {
  readonly abiVersion: number;
  /** Opens (creating if missing) a TAP with IFF_NO_PI, non-blocking. vnetHdrBytes 0 = no IFF_VNET_HDR. */
  tapOpen(name: string, persist: boolean, vnetHdrBytes: 0 | 10 | 12, offloadFlags: number): TapHandle;
  /** Writes frames i < count from slab[offsets[i], +lengths[i]); returns how many the kernel took. */
  tapWrite(h: TapHandle, slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  tapWriteOne(h: TapHandle, buf: Uint8Array, offset: number, length: number): boolean;
  /**
   * Creates a non-blocking UDP socket bound to address:port, connected to the
   * peer when one is given (ABI 2). Buffer sizes of 0 keep the kernel default.
   */
  udpOpen(family: 4 | 6, address: string, port: number, rcvbufBytes: number, sndbufBytes: number,
    peerAddress?: string, peerPort?: number): UdpHandle;
  /**
   * sendmmsg of datagrams i < count to addrs[16i..16i+16) (IPv6 form, IPv4 mapped) : ports[i]; port 0: the connected peer.
   * With segSizes (ABI 3), datagram i longer than a non-zero segSizes[i] leaves as UDP GSO segments of that size.
   */
  udpSend(h: UdpHandle, slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, addrs: Uint8Array,
    ports: Uint16Array, count: number, segSizes?: Uint16Array | null): number;
  localAddress(h: UdpHandle): LocalAddress;
  /** SO_NO_CHECK on an IPv4 socket (datagrams leave with UDP checksum 0); false on IPv6, which requires it. */
  udpNoChecksum(h: UdpHandle): boolean;
  /**
   * Starts the uv_poll reader: each wakeup fills up to maxBatch slots, slot i at
   * slab[offsets[i], +capacityBytes), lengths[i] set, and for UDP the source in
   * addrs/ports; then one callback. All arrays stay referenced until close.
   * A UDP reader given segSizes (ABI 3) asks for UDP_GRO: slot i may then
   * hold several datagrams of segSizes[i] bytes (the last shorter), 0 when
   * not coalesced. Returns whether the kernel took UDP_GRO.
   */
  readStart(h: TapHandle, slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, capacityBytes: number,
    maxBatch: number, addrs: null, ports: null, cb: NativeReadCallback): boolean;
  readStart(h: UdpHandle, slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, capacityBytes: number,
    maxBatch: number, addrs: Uint8Array, ports: Uint16Array, cb: NativeReadCallback, segSizes?: Uint16Array | null): boolean;
  /** (ABI 4) One batch read at once into the readStart buffers, delivered by the caller; 0 when not reading. */
  readNow(h: NativeHandle): number;
  readPause(h: NativeHandle): void;
  readResume(h: NativeHandle): void;
  /** false: an active reader no longer keeps the process alive. */
  setRef(h: NativeHandle, ref: boolean): void;
  /** Idempotent; stops the reader and closes the fd at once. No callback follows. */
  close(h: NativeHandle): void;
  stats(h: NativeHandle): NativeStats;
  /** A positive errno as text, e.g. 77 -> 'EBADFD: File descriptor in bad state'. */
  describeErrno(errno: number): string;
  /**
   * (ABI 5) Frees the whole pages inside buf[offset, +length) (MADV_DONTNEED; they read back as zeros) and
   * returns how many bytes that was. Throws RangeError when the range leaves the buffer.
   */
  releasePages(buf: Uint8Array, offset: number, length: number): number;
  /** (ABI 5) malloc_trim(0): free heap pages back to the kernel; whether any were. */
  trimHeap(): boolean;
  /**
   * (ABI 8) memmove of src[srcOffset, +length) to dst[dstOffset]: Buffer.copy of a part of a buffer makes a
   * Uint8Array view per call in Node 20, this makes no JS object. Throws RangeError when a range leaves its buffer.
   */
  copyBytes(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void;
  /**
   * (ABI 6) A lone-frame lane sending over `udp`: frames (vnet header included) up to maxFrameBytes, counters
   * below rejectAfterCounter. Entries come from laneSet; tapSetLane lets a TAP's one-frame wakeups use it.
   */
  laneNew(udp: UdpHandle, maxFrameBytes: number, rejectAfterCounter: number): LaneHandle;
  /**
   * (ABI 6) For frames whose first 12 bytes (after the vnet header) are `macs`: the 29 header bytes (sleeve
   * header, its counter bytes rewritten per frame, and inner header), the sealing context, the send counter's
   * cell, and the endpoint (16 bytes, IPv4 mapped). Replaces the pair's entry; false when the table is full.
   */
  laneSet(lane: LaneHandle, macs: Uint8Array, head: Uint8Array, sealer: AeadHandle, counter: Float64Array, addr16: Uint8Array, port: number): boolean;
  /**
   * (ABI 6) For `type` FRAME datagrams from the neighbour names[0, 6) at addr16:port whose frame has the MAC pair
   * `macs`: the opening context and that key phase's replay window (replay-window.ts's ring and highest counter).
   * names[6, 12) is us. Replaces the entry for the same neighbour, type and pair; false when the table is full.
   */
  laneSetReceive(lane: LaneHandle, type: number, names: Uint8Array, macs: Uint8Array, opener: AeadHandle, ring: Int32Array,
    highest: Float64Array, addr16: Uint8Array, port: number): boolean;
  /**
   * (ABI 7) For far messages with header bytes 1..7 `inHead` (type byte: FAR and the key phase; sender) from
   * fromAddr16:fromPort whose inner header names `names` (source, destination): the incoming phase's opening context
   * and replay window, and how to pass them on: header bytes 1..7 `outHead` (FAR with our key phase; our name), the
   * next link's sealing context and counter cell, its endpoint, and the body bytes per segment it takes (0: none).
   * Replaces the entry for the same sender, endpoint, type and names; false when the table is full.
   */
  laneSetRelay(lane: LaneHandle, inHead: Uint8Array, names: Uint8Array, opener: AeadHandle, ring: Int32Array, highest: Float64Array,
    fromAddr16: Uint8Array, fromPort: number, outHead: Uint8Array, sealer: AeadHandle, counter: Float64Array, toAddr16: Uint8Array,
    toPort: number, outStride: number): boolean;
  /**
   * (ABI 9) laneSet for frames to a peer two hops away (native/lane-far.c): `head` is a version 2 FAR sleeve
   * header and the inner header to that peer, sealed by the next hop's `hopSealer` on `hopCounter`; the frame is
   * sealed end to end first, behind far header bytes 0..7 `farHead` (version, key id), by `farSealer` on `farCounter`.
   */
  laneSetFar(lane: LaneHandle, macs: Uint8Array, head: Uint8Array, hopSealer: AeadHandle, hopCounter: Float64Array, farHead: Uint8Array,
    farSealer: AeadHandle, farCounter: Float64Array, addr16: Uint8Array, port: number): boolean;
  /**
   * (ABI 9) laneSetReceive for far messages the neighbour names[0, 6) passes on to us from `origin`, sealed end to
   * end under far key `farKeyId`: `type` is FAR with the hop's key phase, whose opening context and window come
   * first, then the far key's. Replaces the entry for the same neighbour, type and pair.
   */
  laneSetFarReceive(lane: LaneHandle, type: number, names: Uint8Array, origin: Uint8Array, macs: Uint8Array, hopOpener: AeadHandle,
    ring: Int32Array, highest: Float64Array, farKeyId: number, farOpener: AeadHandle, farRing: Int32Array, farHighest: Float64Array,
    addr16: Uint8Array, port: number): boolean;
  laneClear(lane: LaneHandle): void;
  /**
   * (ABI 6) Writes 18-byte records (a MAC pair, then the peer it came from (the origin of a far one), zeros for a pair we sent) of the
   * entries that carried frames since the last call into out (2 x 32 x 18 bytes); returns how many.
   */
  laneTakeSeen(lane: LaneHandle, out: Uint8Array): number;
  laneStats(lane: LaneHandle): LaneStats;
  /** (ABI 6) The lane this TAP's one-frame wakeups may use, or null for none. */
  tapSetLane(tap: TapHandle, lane: LaneHandle | null): void;
}

const REQUIRED_FUNCTIONS: ReadonlyArray<keyof WeaveNative> = [
  'tapOpen', 'tapWrite', 'tapWriteOne', 'udpOpen', 'udpSend', 'localAddress', 'udpNoChecksum',
  'readStart', 'readNow', 'readPause', 'readResume', 'setRef', 'close', 'stats', 'describeErrno', 'releasePages', 'trimHeap', 'copyBytes',
  'laneNew', 'laneSet', 'laneSetReceive', 'laneSetRelay', 'laneSetFar', 'laneSetFarReceive', 'laneClear', 'laneTakeSeen', 'laneStats', 'tapSetLane',
];

let loaded: WeaveNative | null = null;

/** Where the addon may be: next to the sources (router/overlay/) or the compiled output (dist/router/overlay/). */
function candidatePaths(): string[] {
  return [
    path.resolve(__dirname, '..', '..', 'build', 'Release', ADDON_FILE),
    path.resolve(__dirname, '..', '..', '..', 'build', 'Release', ADDON_FILE),
  ];
}

function missing(detail: string, cause?: unknown): RouterError {
  return new RouterError('io',
    `the native data-path addon (build/Release/${ADDON_FILE}) is missing or unusable: ${detail}. ` +
    'Build it from the project root with `npm install` (runs node-gyp) or `npx node-gyp rebuild`; ' +
    'that needs make, a C compiler and the Node headers.',
    cause === undefined ? undefined : { cause });
}

function checkShape(mod: unknown, file: string): WeaveNative {
  if (typeof mod !== 'object' || mod === null) throw missing(`${file} exports no object`);
  const record = mod as Record<string, unknown>;
  if (record['abiVersion'] !== NATIVE_ABI_VERSION) {
    throw missing(`${file} has interface version ${String(record['abiVersion'])}, ` +
      `this code needs ${NATIVE_ABI_VERSION} (stale build?)`);
  }
  for (const name of REQUIRED_FUNCTIONS) {
    if (typeof record[name] !== 'function') throw missing(`${file} lacks the function ${name} (stale build?)`);
  }
  return mod as WeaveNative;
}

/** The addon, loaded once. Throws RouterError('io') saying how to build it when it cannot load. */
export function loadNative(): WeaveNative {
  if (loaded !== null) return loaded;
  const candidates = candidatePaths();
  const file = candidates.find((p) => fs.existsSync(p));
  if (file === undefined) throw missing(`not found at ${candidates.join(' or ')}`);
  let mod: unknown;
  try {
    mod = require(file) as unknown;
  } catch (err) {
    throw missing(`loading ${file} failed: ${errorMessage(err)}`, err);
  }
  loaded = checkShape(mod, file);
  return loaded;
}

/**
 * Turns an exception from the addon into a RouterError: bad arguments are
 * 'config', a closed handle 'closed', kernel failures 'io'. The original is
 * kept as `cause` (it carries `code`, `errno` and `syscall` for system errors).
 */
export function nativeError(context: string, err: unknown): RouterError {
  if (err instanceof RouterError) return err;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  const kind = err instanceof TypeError || err instanceof RangeError ? 'config'
    : code === 'ERR_CLOSED' ? 'closed' : 'io';
  return new RouterError(kind, `${context}: ${errorMessage(err)}`, { cause: err });
}
