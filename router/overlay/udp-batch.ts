// UdpBatchSocket: batched UDP for the sleeve, an adapter over the native
// addon's sendmmsg/recvmmsg. One bound socket, a preallocated receive slab,
// one handler call per received batch, one syscall per sent batch (per 64).
//
// Addresses travel in a UdpAddressTable: 16 bytes per entry in IPv6 form
// (IPv4 as ::ffff:a.b.c.d) plus a port, so a batch needs no objects. Received
// datagrams and their sources are valid only until the handler returns.
//
// UDP GSO both ways (UDP_SEGMENT on send, UDP_GRO on receive) when asked. Not here yet: PMTU errors (IP_RECVERR).

import { formatIp, formatIpv4, ipFromBytes, IpAddress, mapIpv4, parseIp, writeIpBytes } from '../../common/ip';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import { NativeReader } from './native-reader';
import { type LaneHandle, loadNative, nativeError, NATIVE_MAX_BATCH, type UdpHandle, type WeaveNative } from './native';

export const DEFAULT_UDP_BATCH_COUNT = 64;
/** Largest UDP payload over IPv4 is 65507 bytes; a slot that size never truncates. */
export const DEFAULT_UDP_DATAGRAM_CAPACITY_BYTES = 65536;

/** An address from text, either family; RouterError('config') with common/ip's message. */
function parseAddress(text: string): IpAddress {
  try {
    return parseIp(text);
  } catch (err) {
    throw RouterError.config(errorMessage(err));
  }
}

/** Parses an IPv4 or IPv6 address (no zone) into 16 bytes, IPv4 mapped. Throws RouterError('config'). */
export function parseIPToBytes(text: string, out: Uint8Array, offset: number): void {
  writeIpBytes(mapIpv4(parseAddress(text)), out, offset);
}

function isMappedIPv4(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 10; i++) if (b[o + i] !== 0) return false;
  return b[o + 10] === 0xff && b[o + 11] === 0xff;
}

function readMappedIPv4(b: Uint8Array, o: number): number {
  return (((b[o + 12] ?? 0) << 24) | ((b[o + 13] ?? 0) << 16) | ((b[o + 14] ?? 0) << 8) | (b[o + 15] ?? 0)) >>> 0;
}

/**
 * Formats 16 bytes: IPv4-mapped as dotted quad, others as RFC 5952 text. It
 * runs once per received datagram (its source), so IPv4 takes the u32 path and
 * only IPv6 sources pay for common/ip's bigint value.
 */
export function formatIPBytes(bytes: Uint8Array, offset: number): string {
  if (isMappedIPv4(bytes, offset)) return formatIpv4(readMappedIPv4(bytes, offset));
  return formatIp(ipFromBytes(bytes.subarray(offset, offset + 16)));
}

/** A flat table of UDP endpoints, the shape the addon reads and writes. */
export class UdpAddressTable {
  /** 16 bytes per entry, IPv6 form, IPv4 as ::ffff:a.b.c.d. */
  readonly ips: Uint8Array;
  /** Host byte order. */
  readonly ports: Uint16Array;

  constructor(readonly count: number) {
    if (!Number.isInteger(count) || count < 1 || count > 1 << 20) {
      throw RouterError.config(`address table size must be 1..${1 << 20}, got ${count}`);
    }
    this.ips = new Uint8Array(16 * count);
    this.ports = new Uint16Array(count);
  }

  /** Hot-path setter: `ipv4` as an unsigned 32-bit number. */
  setIPv4(i: number, ipv4: number, port: number): void {
    const o = 16 * i;
    const b = this.ips;
    for (let k = 0; k < 10; k++) b[o + k] = 0;
    b[o + 10] = 0xff;
    b[o + 11] = 0xff;
    b[o + 12] = ipv4 >>> 24;
    b[o + 13] = (ipv4 >>> 16) & 255;
    b[o + 14] = (ipv4 >>> 8) & 255;
    b[o + 15] = ipv4 & 255;
    this.ports[i] = port;
  }

  /** Parses text (IPv4 or IPv6); for setup, not per packet. */
  set(i: number, address: string, port: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw RouterError.config(`entry ${i} out of range`);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw RouterError.config(`bad port ${port}`);
    parseIPToBytes(address, this.ips, 16 * i);
    this.ports[i] = port;
  }

  /** Copies entry j of `from` into entry i, e.g. to answer a datagram's source. */
  copyFrom(i: number, from: UdpAddressTable, j: number): void {
    const o = 16 * i;
    const p = 16 * j;
    for (let k = 0; k < 16; k++) this.ips[o + k] = from.ips[p + k] ?? 0;
    this.ports[i] = from.ports[j] ?? 0;
  }

  /** The IPv4 address of entry i as an unsigned number, or -1 if it is IPv6. */
  ipv4(i: number): number {
    return isMappedIPv4(this.ips, 16 * i) ? readMappedIPv4(this.ips, 16 * i) : -1;
  }

  port(i: number): number {
    return this.ports[i] ?? 0;
  }

  /** Text form of entry i's address (allocates; for logs and tests). */
  address(i: number): string {
    return formatIPBytes(this.ips, 16 * i);
  }
}

export interface UdpBindOptions {
  /** Local address, e.g. '0.0.0.0', '127.0.0.1', '::'. */
  address: string;
  /** 0 picks a free port; see localPort. */
  port: number;
  /** SO_RCVBUF / SO_SNDBUF (forced past rmem_max when root). Default: kernel default. */
  recvBufferBytes?: number;
  sendBufferBytes?: number;
  /** Datagrams per receive batch, 1..256. Default 64. */
  maxBatchCount?: number;
  /** Bytes per receive slot; larger datagrams are dropped and counted. Default 65536. */
  datagramCapacityBytes?: number;
  /** Free bytes kept in front of every receive slot. Default 0. */
  headroomBytes?: number;
  /** Connects the socket to this peer (same family): only its datagrams arrive; send to port 0 to reach it. */
  peer?: { address: string; port: number };
  /**
   * Asks for UDP_GRO: a slot may then hold several datagrams of one size
   * (segSizes[i], the last one shorter) that the kernel coalesced.
   */
  gro?: boolean;
}

/**
 * `sources` entry i is the sender of datagram i. With UDP_GRO (UdpBindOptions.gro)
 * segSizes[i] > 0 says slot i holds datagrams of that many bytes back to
 * back (the last may be shorter); otherwise segSizes is null or 0 there.
 * lengths[i] is -1 for a datagram the socket's lane relayed itself
 * (native/lane-relay.c): there is nothing left to read in slot i.
 * Everything is valid only until the handler returns.
 */
export type DatagramsHandler = (slab: Buffer, offsets: Int32Array, lengths: Int32Array,
  sources: UdpAddressTable, count: number, segSizes: Uint16Array | null) => void;

function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw RouterError.config(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

export class UdpBatchSocket extends NativeReader<UdpHandle> {
  readonly family: 4 | 6;
  readonly localAddress: string;
  readonly localPort: number;
  readonly maxBatchCount: number;
  readonly datagramCapacityBytes: number;
  /** Receive slab and tables: datagram i is slab[offsets[i], +lengths[i]) from sources entry i. */
  readonly slab: Buffer;
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly sources: UdpAddressTable;
  /** Per slot, the coalesced datagrams' size (UDP_GRO), or null when not asked for. */
  readonly segSizes: Uint16Array | null;
  /** Whether the kernel took UDP_GRO (known once reading started). */
  groEnabled = false;

  private datagramsHandler: DatagramsHandler | null = null;
  private socketErrorHandler: ((errno: number) => void) | null = null;
  private readonly onNativeBatch = (count: number, errno: number): void => this.handleBatch(count, errno);

  private constructor(native: WeaveNative, handle: UdpHandle, family: 4 | 6, maxBatchCount: number,
    datagramCapacityBytes: number, headroomBytes: number, gro: boolean) {
    super(native, handle);
    this.family = family;
    const local = native.localAddress(handle);
    this.localAddress = local.address;
    this.localPort = local.port;
    this.maxBatchCount = maxBatchCount;
    this.datagramCapacityBytes = datagramCapacityBytes;
    const strideBytes = (headroomBytes + datagramCapacityBytes + 7) & ~7;
    this.slab = Buffer.alloc(strideBytes * maxBatchCount);
    this.offsets = new Int32Array(maxBatchCount);
    for (let i = 0; i < maxBatchCount; i++) this.offsets[i] = i * strideBytes + headroomBytes;
    this.lengths = new Int32Array(maxBatchCount);
    this.sources = new UdpAddressTable(maxBatchCount);
    this.segSizes = gro ? new Uint16Array(maxBatchCount) : null;
  }

  /** Creates and binds the socket. Throws RouterError: 'config' for bad options, 'io' (EADDRINUSE...) from the kernel. */
  static open(opts: UdpBindOptions): UdpBatchSocket {
    const family = parseAddress(opts.address).family;
    const port = checkInt('port', opts.port, 0, 65535);
    const recvBufferBytes = checkInt('recvBufferBytes', opts.recvBufferBytes ?? 0, 0, 1 << 30);
    const sendBufferBytes = checkInt('sendBufferBytes', opts.sendBufferBytes ?? 0, 0, 1 << 30);
    const maxBatchCount = checkInt('maxBatchCount', opts.maxBatchCount ?? DEFAULT_UDP_BATCH_COUNT, 1, NATIVE_MAX_BATCH);
    const capacity = checkInt('datagramCapacityBytes',
      opts.datagramCapacityBytes ?? DEFAULT_UDP_DATAGRAM_CAPACITY_BYTES, 1, 1 << 20);
    const headroomBytes = checkInt('headroomBytes', opts.headroomBytes ?? 0, 0, 4096);
    const native = loadNative();
    let handle: UdpHandle;
    try {
      handle = opts.peer === undefined
        ? native.udpOpen(family, opts.address, port, recvBufferBytes, sendBufferBytes)
        : native.udpOpen(family, opts.address, port, recvBufferBytes, sendBufferBytes, opts.peer.address, checkInt('peer port', opts.peer.port, 1, 65535));
    } catch (err) {
      throw nativeError(`cannot bind UDP ${opts.address}:${port}`, err);
    }
    try {
      return new UdpBatchSocket(native, handle, family, maxBatchCount, capacity, headroomBytes, opts.gro === true);
    } catch (err) {
      native.close(handle);
      throw nativeError(`cannot bind UDP ${opts.address}:${port}`, err);
    }
  }

  /** A lone-frame lane sending on this socket (native-lane.ts wraps it). */
  openLane(maxFrameBytes: number, rejectAfterCounter: number): LaneHandle {
    try {
      return this.native.laneNew(this.handle, maxFrameBytes, rejectAfterCounter);
    } catch (err) {
      throw nativeError(`cannot open a lane on UDP port ${this.localPort}`, err);
    }
  }

  /** Sets the batch handler and starts receiving (once; later calls only swap the handler). */
  onDatagrams(handler: DatagramsHandler): void {
    if (this.isClosed) throw new RouterError('closed', `UDP socket ${this.localPort} is closed`);
    this.datagramsHandler = handler;
    if (this.reading) return;
    try {
      this.groEnabled = this.native.readStart(this.handle, this.slab, this.offsets, this.lengths, this.datagramCapacityBytes,
        this.maxBatchCount, this.sources.ips, this.sources.ports, this.onNativeBatch, this.segSizes);
    } catch (err) {
      throw nativeError(`cannot receive on UDP port ${this.localPort}`, err);
    }
    this.reading = true;
  }

  /**
   * Sends without UDP checksums from now on (IPv4 only; returns whether it
   * took). Only for datagrams that are authenticated end to end anyway.
   */
  omitChecksums(): boolean {
    if (this.isClosed) return false;
    return this.native.udpNoChecksum(this.handle);
  }

  /**
   * Sends datagrams i < count: slab[offsets[i], +lengths[i]) to dests entry i.
   * Returns how many the kernel took; drops and errors are counted in stats().
   * An IPv4 socket throws RouterError('config') for an IPv6 destination.
   * segSizes: datagram i longer than a non-zero segSizes[i] leaves as UDP GSO
   * segments of that size in one sendmsg (UDP_SEGMENT; not with omitChecksums).
   */
  sendBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, dests: UdpAddressTable, count: number,
    segSizes: Uint16Array | null = null): number {
    if (this.isClosed) return 0;
    try {
      return this.native.udpSend(this.handle, slab, offsets, lengths, dests.ips, dests.ports, count, segSizes);
    } catch (err) {
      throw nativeError(`UDP port ${this.localPort} sendBatch`, err);
    }
  }

  /**
   * Errors the kernel reports on the socket while it keeps receiving, as a
   * positive errno: for a connected socket, ECONNREFUSED means its peer sent
   * ICMP port unreachable. An unconnected socket sees none of them.
   */
  onSocketError(handler: (errno: number) => void): void {
    this.socketErrorHandler = handler;
  }

  private handleBatch(count: number, errno: number): void {
    if (count > 0 && this.datagramsHandler !== null) {
      this.datagramsHandler(this.slab, this.offsets, this.lengths, this.sources, count, this.segSizes);
    }
    if (errno < 0) {
      if (!this.isClosed) this.socketErrorHandler?.(-errno);
      return;
    }
    // The message is built only when it is needed: a string per batch otherwise.
    if (errno > 0) this.reportStopped(errno, `UDP port ${this.localPort}: receiving stopped`);
  }
}
