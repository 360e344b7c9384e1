// DNS's batched UDP (dns/datagram-port.ts) over the addon's recvmmsg/sendmmsg
// (router/overlay/udp-batch.ts): one wakeup reads up to a batch of queries,
// the server answers them all, and the answers leave in one sendmmsg. Wired by
// cli/daemon.ts; dns/ never sees the data plane. Replies are copied into a
// preallocated send slab; one larger than a slot (a forwarded answer for a
// client that asked for more than 1232 bytes) is sent on its own. Answers to
// forwarded queries (sendTo, after the upstream answered) are queued the same
// way and leave together once the answers of one upstream read are all in.
//
// The forwarder's upstream sockets (UpstreamSocket) go the same way: each is
// connected to its upstream (the kernel picks a random port and delivers only
// that upstream's datagrams), the queries of a burst leave in one sendmmsg per
// socket, and answers are read by recvmmsg.

import { constants as osConstants } from 'node:os';
import type { DatagramBatch, DatagramPort, DatagramSender, OpenUpstreamSocket, UpstreamSocket, UpstreamSocketEvents } from '../dns/datagram-port';
import { EDNS_MAX_UDP_BYTES } from '../dns/constants';
import { familyOfCanonical } from '../common/ip';
import { openDgramUpstreamSocket } from '../dns/upstream-dgram';
import { loadNative } from '../router/overlay/native';
import { UdpAddressTable, UdpBatchSocket } from '../router/overlay/udp-batch';
import { ReplyGroups } from './dns-reply-groups';

/**
 * Queries read per wakeup. The addon sets up every slot's message header
 * before each recvmmsg, so the batch costs in proportion to this, not to what
 * arrived: under dnsperf at ~130k q/s a wakeup brings 8-16 queries, and 256
 * slots were ~3.2% of the router's time in that setup against ~1.3% with 64
 * (perf). A burst beyond 64 is read on the next turn of the loop, at once.
 */
const BATCH = 64;
/** Queries larger than this are dropped by the kernel read (counted by the addon); real ones are far smaller. */
const QUERY_CAPACITY_BYTES = 4096;
const SOCKET_BUFFER_BYTES = 4 << 20;
/** Answers read per wakeup on an upstream socket. */
const UPSTREAM_BATCH = 16;
/** Forwarded queries ask for at most EDNS_MAX_UDP_BYTES; room for an upstream that ignores it (larger ones are dropped, counted). */
const UPSTREAM_ANSWER_CAPACITY_BYTES = 4096;
/** Queued queries per upstream socket before they are sent at once. */
const UPSTREAM_SEND_BATCH = 64;
const UPSTREAM_SEND_SLAB_BYTES = 16 * 1024;

/** Sockets with something queued, flushed together once the synchronous work that queued it is done. */
const dirty: Array<{ flush(): void }> = [];
let flushScheduled = false;

function flushDirty(): void {
  flushScheduled = false;
  // A flush may queue nothing new; the list is taken whole so a later queue schedules its own.
  const list = dirty.splice(0);
  for (const s of list) s.flush();
}

function scheduleFlush(s: { flush(): void }): void {
  dirty.push(s);
  if (flushScheduled) return;
  flushScheduled = true;
  queueMicrotask(flushDirty);
}

/** Where a datagram came from, kept as four 32-bit words (no typed array per forwarded query); the text form only when asked for (logs). */
class NativeSender implements DatagramSender {
  private readonly w0: number;
  private readonly w1: number;
  private readonly w2: number;
  private readonly w3: number;

  constructor(from: UdpAddressTable, i: number, readonly port: number) {
    const b = from.ips;
    const o = 16 * i;
    this.w0 = word(b, o);
    this.w1 = word(b, o + 4);
    this.w2 = word(b, o + 8);
    this.w3 = word(b, o + 12);
  }

  get address(): string {
    const t = new UdpAddressTable(1);
    this.writeTo(t, 0);
    return t.address(0);
  }

  writeTo(table: UdpAddressTable, i: number): void {
    const b = table.ips;
    const o = 16 * i;
    putWord(b, o, this.w0);
    putWord(b, o + 4, this.w1);
    putWord(b, o + 8, this.w2);
    putWord(b, o + 12, this.w3);
    table.ports[i] = this.port;
  }
}

function word(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

function putWord(b: Uint8Array, o: number, w: number): void {
  b[o] = w >>> 24;
  b[o + 1] = (w >>> 16) & 255;
  b[o + 2] = (w >>> 8) & 255;
  b[o + 3] = w & 255;
}

class NativeDatagramPort implements DatagramPort, DatagramBatch {
  readonly port: number;
  count = 0;
  readonly input: Buffer;
  readonly output: Buffer = Buffer.alloc(BATCH * EDNS_MAX_UDP_BYTES);
  readonly replyCapacity = EDNS_MAX_UDP_BYTES;
  private readonly out = this.output;
  private readonly outOffsets = new Int32Array(BATCH);
  private readonly outLengths = new Int32Array(BATCH);
  private readonly dests = new UdpAddressTable(BATCH);
  private readonly one = new UdpAddressTable(1);
  private readonly oneOffset = new Int32Array(1);
  private readonly oneLength = new Int32Array(1);
  private pending = 0;
  private readonly flusher = { flush: (): void => this.flush() };
  /** Replies to one client socket of one length leave as one GSO send; null once the kernel refused one. */
  private groups: ReplyGroups | null = new ReplyGroups(BATCH, EDNS_MAX_UDP_BYTES, new UdpAddressTable(BATCH));
  /**
   * The socket's send error count as last read. It grows only in a send
   * that takes fewer datagrams than it was given, so stats() (an object
   * built by the addon, ~5% of a local answer's cost when read per burst)
   * is read only after such a send.
   */
  private txErrors = 0;

  constructor(private readonly sock: UdpBatchSocket) {
    this.port = sock.localPort;
    this.input = sock.slab;
    for (let i = 0; i < BATCH; i++) this.outOffsets[i] = i * EDNS_MAX_UDP_BYTES;
  }

  start(onBatch: (batch: DatagramBatch) => void): void {
    this.sock.onDatagrams((_slab, _offsets, _lengths, _sources, count) => {
      this.count = count;
      this.pending = 0;
      try {
        onBatch(this);
      } finally {
        this.flush();
      }
    });
  }

  offset(i: number): number {
    return this.sock.offsets[i] as number;
  }

  length(i: number): number {
    return this.sock.lengths[i] as number;
  }

  datagram(i: number): Uint8Array {
    const at = this.sock.offsets[i] as number;
    return this.sock.slab.subarray(at, at + (this.sock.lengths[i] as number));
  }

  sourceAddress(i: number): string {
    return this.sock.sources.address(i);
  }

  sender(i: number): DatagramSender {
    return new NativeSender(this.sock.sources, i, this.sock.sources.port(i));
  }

  reply(i: number, bytes: Uint8Array): void {
    if (bytes.length > EDNS_MAX_UDP_BYTES) {
      this.sendTo(this.sender(i), bytes);
      return;
    }
    this.out.set(bytes, this.replyAt());
    this.commit(i, bytes.length);
  }

  replyAt(): number {
    if (this.pending >= BATCH) this.flush();
    return this.outOffsets[this.pending] as number;
  }

  commit(i: number, length: number): void {
    const n = this.pending++;
    this.outLengths[n] = length;
    this.dests.copyFrom(n, this.sock.sources, i);
  }

  /** Queued like reply(); leaves with the next flush (one per burst of upstream answers). */
  sendTo(to: DatagramSender, bytes: Uint8Array): void {
    if (bytes.length > EDNS_MAX_UDP_BYTES || !(to instanceof NativeSender)) {
      if (to instanceof NativeSender) to.writeTo(this.one, 0);
      else this.one.set(0, to.address, to.port);
      this.oneLength[0] = bytes.length;
      this.sent(this.sock.sendBatch(bytes, this.oneOffset, this.oneLength, this.one, 1), 1);
      return;
    }
    if (this.pending >= BATCH) this.flush();
    const n = this.pending++;
    this.out.set(bytes, this.outOffsets[n] as number);
    this.outLengths[n] = bytes.length;
    to.writeTo(this.dests, n);
    if (n === 0) scheduleFlush(this.flusher);
  }

  close(): void {
    this.sock.close();
  }

  private flush(): void {
    const n = this.pending;
    if (n === 0) return;
    this.pending = 0;
    const g = this.groups;
    const count = g === null ? n : g.pack(this.out, this.outOffsets, this.outLengths, this.dests, n);
    if (g === null || count === n) {
      this.sent(this.sock.sendBatch(this.out, this.outOffsets, this.outLengths, this.dests, n), n);
      return;
    }
    if (this.sent(this.sock.sendBatch(g.slab, g.offsets, g.lengths, g.dests, count, g.segSizes), count)) {
      // A kernel without UDP GSO (or one that refuses it here): single datagrams from now on.
      this.groups = null;
    }
  }

  /** After a send of `count` that took `taken`: whether it had errors (a full send buffer drops without one). */
  private sent(taken: number, count: number): boolean {
    if (taken >= count) return false;
    const before = this.txErrors;
    this.txErrors = this.sock.stats().txErrors;
    return this.txErrors !== before;
  }
}

/** Binds a batched UDP socket for DNS; throws (RouterError) when the addon is missing or the address is taken. */
export function openDnsDatagramPort(host: string, port: number): DatagramPort {
  return new NativeDatagramPort(UdpBatchSocket.open({
    address: host, port, maxBatchCount: BATCH, datagramCapacityBytes: QUERY_CAPACITY_BYTES,
    recvBufferBytes: SOCKET_BUFFER_BYTES, sendBufferBytes: SOCKET_BUFFER_BYTES,
  }));
}

function describeSocketErrno(errno: number): string {
  return `errno ${errno}${errno === osConstants.errno.ECONNREFUSED ? ' (connection refused)' : ''}`;
}

class NativeUpstreamSocket implements UpstreamSocket {
  /** The upstream as the socket's address table writes it, to name a datagram's source without formatting it each time. */
  private readonly peer = new UdpAddressTable(1);
  private readonly out = Buffer.allocUnsafe(UPSTREAM_SEND_SLAB_BYTES);
  private readonly offsets = new Int32Array(UPSTREAM_SEND_BATCH);
  private readonly lengths = new Int32Array(UPSTREAM_SEND_BATCH);
  /** Port 0 everywhere: the connected upstream. */
  private readonly dests = new UdpAddressTable(UPSTREAM_SEND_BATCH);
  private readonly flusher = { flush: (): void => this.flush() };
  private queued = 0;
  private used = 0;
  private txErrors = 0;
  private closed = false;

  constructor(private readonly sock: UdpBatchSocket, host: string, private readonly events: UpstreamSocketEvents) {
    this.peer.set(0, host, 0);
    sock.onError((err) => this.fail(err));
    // A dead upstream answers ICMP port unreachable: give up on it now, so
    // the forwarder asks the next one instead of waiting for its timeout.
    sock.onSocketError((errno) => this.fail(new Error(`the upstream is not answering: ${describeSocketErrno(errno)}`)));
    sock.onDatagrams((slab, offsets, lengths, sources, count) => {
      for (let i = 0; i < count && !this.closed; i++) {
        const at = offsets[i] as number;
        events.message(slab.subarray(at, at + (lengths[i] as number)), this.isPeer(sources, i) ? host : sources.address(i), sources.port(i));
      }
    });
  }

  /** Whether datagram i came from the upstream's address (its port is passed on as it is). */
  private isPeer(sources: UdpAddressTable, i: number): boolean {
    const a = sources.ips;
    const p = this.peer.ips;
    for (let k = 0; k < 16; k++) if (a[16 * i + k] !== p[k]) return false;
    return true;
  }

  send(bytes: Uint8Array): void {
    if (this.closed) return;
    if (this.queued >= UPSTREAM_SEND_BATCH || this.used + bytes.length > this.out.length) this.flush();
    if (bytes.length > this.out.length) {
      this.transmit(bytes, 0, bytes.length);
      return;
    }
    const n = this.queued++;
    this.out.set(bytes, this.used);
    this.offsets[n] = this.used;
    this.lengths[n] = bytes.length;
    this.used += bytes.length;
    if (n === 0) scheduleFlush(this.flusher);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued = 0;
    this.sock.close();
  }

  flush(): void {
    const n = this.queued;
    this.queued = 0;
    this.used = 0;
    if (n === 0 || this.closed) return;
    const sent = this.sock.sendBatch(this.out, this.offsets, this.lengths, this.dests, n);
    if (sent < n) this.checkSendErrors();
  }

  private transmit(bytes: Uint8Array, offset: number, length: number): void {
    const offsets = Int32Array.of(offset);
    const lengths = Int32Array.of(length);
    if (this.sock.sendBatch(bytes, offsets, lengths, this.dests, 1) < 1) this.checkSendErrors();
  }

  /** A full send queue drops (those queries time out); any other error (ICMP refused, no route) means the upstream is not there. */
  private checkSendErrors(): void {
    const st = this.sock.stats();
    if (st.txErrors === this.txErrors) return;
    this.txErrors = st.txErrors;
    this.fail(new Error(`send to the upstream failed: ${describeSocketErrno(st.lastTxErrno)}`));
  }

  private fail(err: Error): void {
    if (!this.closed) this.events.error(err);
  }
}

/** A batched UDP socket connected to an upstream DNS server, on a kernel-random port; throws when the socket cannot be made. */
const openNativeUpstreamSocket: OpenUpstreamSocket = (host, port, events) => new NativeUpstreamSocket(UdpBatchSocket.open({
  address: familyOfCanonical(host) === 6 ? '::' : '0.0.0.0', port: 0, peer: { address: host, port },
  maxBatchCount: UPSTREAM_BATCH, datagramCapacityBytes: UPSTREAM_ANSWER_CAPACITY_BYTES,
}), host, events);

/** The forwarder's upstream sockets: batched through the addon, or node:dgram ones when the addon cannot be loaded (asked once). */
export function dnsUpstreamSocketOpener(): OpenUpstreamSocket {
  try {
    loadNative();
    return openNativeUpstreamSocket;
  } catch {
    return openDgramUpstreamSocket;
  }
}
