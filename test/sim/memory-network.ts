// An in-memory network for simulations: byte streams between Transports on
// named hosts, delivered through one FIFO queue in the order they were sent,
// with partitions that silently eat traffic (as a cut cable would, so
// heartbeats are what notice). Fully deterministic together with ManualClock.

import type { ManualClock } from '../../common/clock';
import { DatagramPort, FramePort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import { VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import type { ByteStream, StreamHandlers, Transport } from '../../router/mesh/transport';

type Delivery = () => void;

export class MemoryNetwork {
  private queue: Delivery[] = [];
  private head = 0;
  private readonly listeners = new Map<string, (stream: ByteStream) => void>();
  private readonly cut = new Set<string>();
  private readonly udpCut = new Set<string>();
  private readonly udpPorts = new Map<string, MemoryDatagramPort>();
  /** Every datagram sent, for tests that replay or tamper with captured traffic. */
  readonly udpCapture: { from: string; to: string; bytes: Buffer }[] = [];
  captureUdp = false;
  private nextEphemeralPort = 40000;
  messagesDelivered = 0;
  bytesDelivered = 0;
  /**
   * One-way delay of stream traffic (chunks and FINs) in simulated ms. At 0
   * everything crosses at the instant it is sent, so only timers take
   * simulated time; a bench that reports convergence time sets a LAN-like delay.
   */
  latencyMs = 0;

  constructor(readonly clock: ManualClock) {}

  transport(host: string): Transport {
    return new MemoryTransport(this, host);
  }

  /** Cuts (or restores) every path between the two groups of hosts. */
  partition(a: readonly string[], b: readonly string[], cut = true): void {
    for (const x of a) for (const y of b) {
      const key = linkKey(x, y);
      if (cut) this.cut.add(key); else this.cut.delete(key);
    }
  }

  healAll(): void {
    this.cut.clear();
    this.udpCut.clear();
  }

  /** Drops UDP (only) between two hosts, both ways, as a firewall would. */
  blockUdp(a: string, b: string, blocked = true): void {
    if (blocked) this.udpCut.add(linkKey(a, b)); else this.udpCut.delete(linkKey(a, b));
  }

  udp(host: string, port: number): MemoryDatagramPort {
    const p = new MemoryDatagramPort(this, host, port);
    this.udpPorts.set(`${host}:${port}`, p);
    return p;
  }

  sendDatagram(fromHost: string, fromPort: number, toHost: string, toPort: number, bytes: Buffer): void {
    if (this.captureUdp) this.udpCapture.push({ from: fromHost, to: `${toHost}:${toPort}`, bytes: Buffer.from(bytes) });
    if (this.isCut(fromHost, toHost) || this.udpCut.has(linkKey(fromHost, toHost))) return;
    const dst = this.udpPorts.get(`${toHost}:${toPort}`);
    if (!dst) return;
    this.enqueue(() => dst.deliver(bytes, fromHost, fromPort));
  }

  /** Injects a datagram as if `fromHost` had sent it (replays, forgeries). */
  injectDatagram(fromHost: string, toAddress: string, bytes: Buffer): void {
    const dst = this.udpPorts.get(toAddress);
    if (dst) this.enqueue(() => dst.deliver(Buffer.from(bytes), fromHost, 6783));
  }

  isCut(a: string, b: string): boolean {
    return this.cut.has(linkKey(a, b));
  }

  enqueue(d: Delivery): void {
    this.queue.push(d);
  }

  /** Queues `d` after the stream latency (at once when there is none); FIFO either way. */
  enqueueStream(d: Delivery): void {
    if (this.latencyMs <= 0) this.queue.push(d);
    else this.clock.setTimer(this.latencyMs, () => this.queue.push(d));
  }

  /** Delivers queued events until none is left (deliveries may queue more). Returns how many ran. */
  drain(limit = 10_000_000): number {
    let n = 0;
    while (this.head < this.queue.length) {
      if (n++ >= limit) throw new Error(`network did not quiesce after ${limit} deliveries`);
      const d = this.queue[this.head]!;
      this.queue[this.head++] = noop;
      d();
      if (this.head > 65536 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
    }
    return n;
  }

  /** Advances simulated time by `ms`, delivering messages between timer firings. */
  run(ms: number): void {
    const target = this.clock.now() + ms;
    for (;;) {
      this.drain();
      const next = this.clock.nextDueMs();
      if (next === null || next > target) break;
      this.clock.advance(next - this.clock.now());
    }
    this.drain();
    this.clock.advance(target - this.clock.now());
  }

  /** Runs in steps of `stepMs` until `done()` holds; returns the simulated time it took, or throws after maxMs. */
  runUntil(done: () => boolean, maxMs: number, stepMs = 100): number {
    const start = this.clock.now();
    while (!done()) {
      if (this.clock.now() - start >= maxMs) throw new Error(`condition not reached within ${maxMs} simulated ms`);
      this.run(stepMs);
    }
    return this.clock.now() - start;
  }

  listen(address: string, onAccept: (stream: ByteStream) => void): void {
    if (this.listeners.has(address)) throw new Error(`address in use: ${address}`);
    this.listeners.set(address, onAccept);
  }

  unlisten(address: string): void {
    this.listeners.delete(address);
  }

  connect(fromHost: string, toHost: string, port: number, done: (error: Error | null, stream: ByteStream | null) => void): void {
    const accept = this.listeners.get(`${toHost}:${port}`);
    this.enqueue(() => {
      if (this.isCut(fromHost, toHost)) { done(new Error('connection timed out'), null); return; }
      if (!accept || !this.listeners.has(`${toHost}:${port}`)) { done(new Error('connection refused'), null); return; }
      const local = new MemoryStream(this, fromHost, toHost, `${toHost}:${port}`);
      const remote = new MemoryStream(this, toHost, fromHost, `${fromHost}:${this.nextEphemeralPort++}`);
      local.peer = remote;
      remote.peer = local;
      accept(remote);
      done(null, local);
    });
  }
}

function noop(): void {}

function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

class MemoryStream implements ByteStream {
  peer: MemoryStream | null = null;
  readonly remoteHost: string;
  private handlers: StreamHandlers | null = null;
  private early: Uint8Array[] = [];
  private closed = false;
  readonly pendingBytes = 0;

  constructor(private readonly net: MemoryNetwork, private readonly localHost: string, remoteHost: string, readonly remoteAddress: string) {
    this.remoteHost = remoteHost;
  }

  start(handlers: StreamHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const c of early) handlers.onData(c);
  }

  write(chunk: Uint8Array): void {
    const peer = this.peer;
    if (this.closed || !peer) return;
    if (this.net.isCut(this.localHost, this.remoteHost)) return;
    const copy = chunk.slice();
    this.net.enqueueStream(() => peer.receive(copy));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const peer = this.peer;
    // A FIN crosses only a working link; across a cut the far end finds out by heartbeat timeout.
    if (peer && !this.net.isCut(this.localHost, this.remoteHost)) this.net.enqueueStream(() => peer.remoteClosed());
  }

  private receive(chunk: Uint8Array): void {
    if (this.closed) return;
    this.net.messagesDelivered++;
    this.net.bytesDelivered += chunk.length;
    if (this.handlers) this.handlers.onData(chunk);
    else this.early.push(chunk);
  }

  private remoteClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.onClose(null);
  }
}

class MemoryTransport implements Transport {
  private listening: string | null = null;

  constructor(private readonly net: MemoryNetwork, private readonly host: string) {}

  listen(port: number, onAccept: (stream: ByteStream) => void): Promise<void> {
    const address = `${this.host}:${port}`;
    this.net.listen(address, onAccept);
    this.listening = address;
    return Promise.resolve();
  }

  dial(host: string, port: number, done: (error: Error | null, stream: ByteStream | null) => void): void {
    this.net.connect(this.host, host, port, done);
  }

  close(): void {
    if (this.listening) this.net.unlisten(this.listening);
    this.listening = null;
  }
}

export class MemoryDatagramPort implements DatagramPort {
  private onDatagram: ((buf: Buffer, off: number, len: number, host: string, port: number) => void) | null = null;
  private onBatchEnd: (() => void) | null = null;
  private closed = false;
  private readonly stage = Buffer.alloc(STAGE_SLOT_BYTES);

  constructor(private readonly net: MemoryNetwork, private readonly host: string, private readonly port: number) {}

  start(onDatagram: (buf: Buffer, off: number, len: number, host: string, port: number) => void, onBatchEnd: () => void): void {
    this.onDatagram = onDatagram;
    this.onBatchEnd = onBatchEnd;
  }

  stageSlab(): Buffer {
    return this.stage;
  }

  stageOffset(): number {
    return 0;
  }

  /** Delivery copies the bytes, so the one stage slot is free again at once. */
  commit(len: number, host: string, port: number): void {
    if (!this.closed) this.net.sendDatagram(this.host, this.port, host, port, Buffer.from(this.stage.subarray(0, len)));
  }

  flush(): void {}

  close(): void {
    this.closed = true;
  }

  deliver(bytes: Buffer, fromHost: string, fromPort: number): void {
    if (this.closed || !this.onDatagram) return;
    this.onDatagram(bytes, 0, bytes.length, fromHost, fromPort);
    this.onBatchEnd?.();
  }
}

/**
 * A bridge that records what the overlay delivers and lets tests inject captured
 * frames; it adds and strips the virtio_net_hdr a real TAP would carry.
 */
export class MemoryBridge implements FramePort {
  readonly delivered: Buffer[] = [];
  private onFrame: ((buf: Buffer, off: number, len: number) => void) | null = null;
  private onBatchEnd: (() => void) | null = null;

  start(onFrame: (buf: Buffer, off: number, len: number) => void, onBatchEnd: () => void): void {
    this.onFrame = onFrame;
    this.onBatchEnd = onBatchEnd;
  }

  write(buf: Buffer, off: number, len: number): void {
    this.delivered.push(Buffer.from(buf.subarray(off + VNET_HDR_BYTES, off + len)));
  }

  close(): void {
    this.onFrame = null;
  }

  /** A frame appears on our bridge (a local container sent it). */
  inject(frame: Buffer): void {
    const withHeader = Buffer.concat([Buffer.alloc(VNET_HDR_BYTES), frame]);
    this.onFrame?.(withHeader, 0, withHeader.length);
    this.onBatchEnd?.();
  }
}
