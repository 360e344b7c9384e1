// DatagramPort over the native batched UDP socket: the overlay builds and
// seals each datagram in place in a slot of a preallocated stage slab; staged
// datagrams leave in one sendmmsg per batch (flush), a segmented one as UDP
// GSO; receives arrive one callback per recvmmsg batch, coalesced segments
// (UDP_GRO, when the socket asked for it) with their size. A relayed message
// resealed in the receive slab leaves from there (sendFrom), in a second
// sendmmsg after the staged ones at the same flush.

import { tryParseIpv4 } from '../../common/ip';
import { DatagramHandler, DatagramPort, STAGE_SLOT_BYTES } from './ports';
import { UdpAddressTable, UdpBatchSocket } from './udp-batch';

const STAGE_COUNT = 64;
/**
 * Datagrams up to this long go first in a batch: sealed pings, ACKs, ARP and
 * DNS (a sealed 98-byte ping is about 160 bytes), never a bulk super-frame.
 * A TCP segment this small that carries data could overtake its own flow's
 * larger frames of the same batch; bulk flows rarely send one.
 */
export const SMALL_DATAGRAM_BYTES = 320;
const MAX_CACHED_HOSTS = 4096;

export class UdpBatchPort implements DatagramPort {
  private readonly stage = Buffer.alloc(STAGE_COUNT * STAGE_SLOT_BYTES);
  private readonly offsets = new Int32Array(STAGE_COUNT);
  private readonly lengths = new Int32Array(STAGE_COUNT);
  private readonly dests = new UdpAddressTable(STAGE_COUNT);
  private readonly segSizes = new Uint16Array(STAGE_COUNT);
  private staged = 0;
  /** Datagrams queued by sendFrom: all in one caller's buffer (the receive slab), sent at flush. */
  private borrowedSlab: Buffer | null = null;
  private readonly borrowedOffsets = new Int32Array(STAGE_COUNT);
  private readonly borrowedLengths = new Int32Array(STAGE_COUNT);
  private readonly borrowedDests = new UdpAddressTable(STAGE_COUNT);
  private readonly borrowedSegSizes = new Uint16Array(STAGE_COUNT);
  private borrowed = 0;
  readonly segmentation = true;
  /** Destination text to IPv4 number: the overlay sends to a handful of neighbours, so parse each once. */
  private readonly ipv4Cache = new Map<string, number>();
  /** Source IPv4 number to text, the other way: every received datagram names its source, mostly one of a few neighbours. */
  private readonly sourceText = new Map<number, string>();

  constructor(private readonly socket: UdpBatchSocket) {
    for (let i = 0; i < STAGE_COUNT; i++) this.offsets[i] = i * STAGE_SLOT_BYTES;
  }

  start(onDatagram: DatagramHandler, onBatchEnd: () => void, onSmallDone?: () => void): void {
    this.socket.onDatagrams((slab, offsets, lengths, sources, count, segSizes) => {
      let small = 0;
      let big = 0;
      for (let i = 0; i < count; i++) {
        const len = lengths[i]!;
        if (len > SMALL_DATAGRAM_BYTES) { big++; continue; }
        // -1: the lane relayed it (native/lane-relay.c).
        if (len < 0) continue;
        small++;
        onDatagram(slab, offsets[i]!, len, this.sourceHost(sources, i), sources.port(i), segSizes?.[i] ?? 0);
      }
      if (small > 0 && big > 0) onSmallDone?.();
      for (let i = 0; big > 0 && i < count; i++) {
        if (lengths[i]! <= SMALL_DATAGRAM_BYTES) continue;
        onDatagram(slab, offsets[i]!, lengths[i]!, this.sourceHost(sources, i), sources.port(i), segSizes?.[i] ?? 0);
      }
      onBatchEnd();
    });
  }

  /** Entry i's address as text, IPv4 from the cache (no string built per datagram). */
  private sourceHost(sources: UdpAddressTable, i: number): string {
    const ip = sources.ipv4(i);
    if (ip < 0) return sources.address(i);
    let text = this.sourceText.get(ip);
    if (text === undefined) {
      text = sources.address(i);
      if (this.sourceText.size >= MAX_CACHED_HOSTS) this.sourceText.clear();
      this.sourceText.set(ip, text);
    }
    return text;
  }

  stageSlab(): Buffer {
    return this.stage;
  }

  stageOffset(): number {
    if (this.staged === STAGE_COUNT) this.flush();
    return this.offsets[this.staged]!;
  }

  commit(len: number, host: string, port: number, segSize = 0): void {
    // stageOffset() made room; a commit without it (a caller bug) is dropped rather than misrouted.
    if (len > STAGE_SLOT_BYTES || this.staged === STAGE_COUNT) return;
    const i = this.staged++;
    this.lengths[i] = len;
    this.segSizes[i] = segSize;
    this.setDest(this.dests, i, host, port);
  }

  sendFrom(buf: Buffer, off: number, len: number, host: string, port: number, segSize = 0): void {
    if (this.borrowed > 0 && (this.borrowedSlab !== buf || this.borrowed === STAGE_COUNT)) this.flushBorrowed();
    this.borrowedSlab = buf;
    const i = this.borrowed++;
    this.borrowedOffsets[i] = off;
    this.borrowedLengths[i] = len;
    this.borrowedSegSizes[i] = segSize;
    this.setDest(this.borrowedDests, i, host, port);
  }

  flush(): void {
    if (this.staged > 0) {
      const n = this.staged;
      this.staged = 0;
      this.socket.sendBatch(this.stage, this.offsets, this.lengths, this.dests, n, this.segSizes);
    }
    if (this.borrowed > 0) this.flushBorrowed();
  }

  private flushBorrowed(): void {
    const n = this.borrowed;
    const slab = this.borrowedSlab!;
    this.borrowed = 0;
    this.borrowedSlab = null;
    this.socket.sendBatch(slab, this.borrowedOffsets, this.borrowedLengths, this.borrowedDests, n, this.borrowedSegSizes);
  }

  private setDest(table: UdpAddressTable, i: number, host: string, port: number): void {
    let ip = this.ipv4Cache.get(host);
    if (ip === undefined) {
      const parsed = tryParseIpv4(host);
      if (parsed !== null) {
        ip = parsed;
        if (this.ipv4Cache.size >= MAX_CACHED_HOSTS) this.ipv4Cache.clear();
        this.ipv4Cache.set(host, ip);
      }
    }
    if (ip !== undefined) table.setIPv4(i, ip, port);
    else table.set(i, host, port);
  }

  omitChecksums(): void {
    this.socket.omitChecksums();
  }

  stageCopy(src: Buffer, srcOff: number, len: number, at: number): void {
    this.socket.copyBytes(this.stage, at, src, srcOff, len);
  }

  releaseIdle(keepBytes: number): number {
    if (this.staged > 0 || this.borrowed > 0 || this.socket.closed) return 0;
    return this.socket.releaseIdle(keepBytes) + this.socket.releaseFrom(this.stage, keepBytes);
  }

  close(): void {
    this.socket.close();
  }
}
