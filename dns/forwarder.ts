// Forwarding queries outside our domain to the upstream servers, in order, each
// with a timeout; the caller answers SERVFAIL when this gives up. Adapter: owns
// the queries in flight and the pool of upstream sockets (dns/upstream-pool.ts).
// Queries go upstream over UDP; a truncated reply is passed to a UDP client as
// is (it then asks us over TCP), and for a TCP client the query is repeated
// upstream over TCP.
//
// Against off-path spoofing (a container, or anyone on the path's far side,
// racing the upstream with forged answers): UDP attempts go out on a small pool
// of sockets per upstream, each connected to it, so the kernel gives each a
// random source port and delivers only that upstream's datagrams; each socket
// is retired after a few hundred queries or a few seconds and replaced on a
// fresh port (the trade against a socket per query is argued in
// docs/architecture.md). The id comes from the CSPRNG; the question name's
// letters are in random case (0x20). A datagram counts only if it comes from the
// address and port we asked and repeats the id and question of a query in
// flight on that socket byte for byte (dns/upstream-query.ts); anything else is
// dropped and we keep waiting. TCP fallback runs the same checks on each
// message, on a connection of its own. `maxInFlight` bounds the client queries
// being forwarded, so a container that floods us with queries for silent names
// gets SERVFAIL, not our memory; sockets are bounded by the pool size per
// upstream plus retired ones still draining.
//
// A UDP query goes upstream with its EDNS size lowered to what we accept from
// clients (EDNS_MAX_UDP_BYTES, as dnsmasq's edns-packet-max does): larger
// answers come back truncated and the client asks again over TCP, so no
// answer we take is fragmented on the way (forged fragments are a known way
// round ids and 0x20), and the upstream sockets' receive slots stay small.

import net from 'node:net';
import type { Logger } from '../common/logger';
import type { Transport } from './answer';
import { EDNS_MAX_UDP_BYTES, FORWARD_TIMEOUT_MS, MAX_FORWARDS_IN_FLIGHT } from './constants';
import type { OpenUpstreamSocket } from './datagram-port';
import type { ParsedQuery } from './message';
import type { Upstream } from './resolv-conf';
import { formatUpstream } from './resolv-conf';
import type { UpstreamSource } from './upstreams';
import type { UpstreamExpectation } from './upstream-query';
import { checkAnswer, clientAnswer, randomiseCase, upstreamQuery } from './upstream-query';
import { RandomBuffer } from './random-buffer';
import type { DeadlineWaiter } from './deadline-queue';
import { DeadlineQueue } from './deadline-queue';
import { UdpUpstreamPool } from './upstream-pool';
import type { PoolTicket, UpstreamWaiter } from './upstream-pool';
import type { PoolPolicyOptions } from './upstream-pool-policy';
import { DEFAULT_POOL_POLICY } from './upstream-pool-policy';

export interface ForwarderDeps {
  logger: Logger;
  upstreams: UpstreamSource;
  /** Upstream UDP sockets; node:dgram ones when absent. */
  openUpstreamSocket?: OpenUpstreamSocket;
}

export interface ForwarderOptions {
  timeoutMs: number;
  maxInFlight: number;
  /** Upstream UDP sockets: how many per upstream and how long each lives. */
  pool: PoolPolicyOptions;
}

export const DEFAULT_FORWARDER_OPTIONS: ForwarderOptions = {
  timeoutMs: FORWARD_TIMEOUT_MS, maxInFlight: MAX_FORWARDS_IN_FLIGHT, pool: DEFAULT_POOL_POLICY,
};

/** RCODEs after which the next upstream is worth a try (glibc does the same). */
const TRY_NEXT_RCODES = new Set([2, 4, 5]);
const FLAG_TC = 0x02;

export class Forwarder {
  private readonly opts: ForwarderOptions;
  private readonly pool: UdpUpstreamPool;
  private readonly random = new RandomBuffer();
  /** Client queries being forwarded; close() aborts them. */
  private readonly jobs = new Set<Forwarding>();
  /** Aborts every TCP attempt in flight (cancels it, resolves null); for close(). */
  private readonly aborts = new Set<() => void>();
  /** What a Forwarding needs of us, made once. */
  private readonly context: ForwardingContext;
  /** The timeouts of the UDP attempts in flight, under one timer. */
  private readonly deadlines: DeadlineQueue;
  private inFlight = 0;
  private closed = false;

  constructor(private readonly deps: ForwarderDeps, opts: Partial<ForwarderOptions> = {}) {
    this.opts = { ...DEFAULT_FORWARDER_OPTIONS, ...opts };
    this.pool = new UdpUpstreamPool(deps.logger, this.random, this.opts.pool, Date.now, deps.openUpstreamSocket);
    this.deadlines = new DeadlineQueue(this.opts.timeoutMs);
    this.context = {
      pool: this.pool, logger: deps.logger, deadlines: this.deadlines,
      closed: () => this.closed,
      expectation: (q) => this.expectation(q),
      viaTcp: (u, q, raw, then) => this.viaTcp(u, q, raw, then),
      finished: (job) => {
        this.jobs.delete(job);
        this.inFlight--;
      },
    };
  }

  upstreams(): Upstream[] {
    return this.deps.upstreams.current();
  }

  /** The upstream's reply with the client's id and question, or null when every upstream failed, none is set or too many are in flight. */
  forward(q: ParsedQuery, raw: Uint8Array, transport: Transport): Promise<Buffer | null> {
    return new Promise((resolve) => this.forwardThen(q, raw, transport, resolve));
  }

  /**
   * forward() without a promise (the server's UDP path: a burst of queries
   * costs no promise chain each): `done` gets the reply or null, once, never
   * synchronously. `raw` is read again for each upstream tried: not a view into
   * a buffer that will be reused.
   */
  forwardThen(q: ParsedQuery, raw: Uint8Array, transport: Transport, done: (reply: Buffer | null) => void): void {
    const list = this.closed || this.inFlight >= this.opts.maxInFlight ? [] : this.deps.upstreams.current();
    if (list.length === 0) {
      queueMicrotask(() => done(null));
      return;
    }
    this.inFlight++;
    const job = new Forwarding(this.context, q, raw, transport, list, done);
    this.jobs.add(job);
    job.tryNext();
  }

  close(): void {
    this.closed = true;
    for (const job of [...this.jobs]) job.abort();
    for (const abort of [...this.aborts]) abort();
    this.aborts.clear();
    this.deadlines.clear();
    this.pool.close();
  }

  /** Upstream UDP sockets open, live and draining (for tests). */
  openSockets(): number {
    return this.pool.openSockets();
  }

  // -------------------------------------------------------------------------

  /** A fresh id and a freshly randomised question for one attempt. */
  private expectation(q: ParsedQuery): UpstreamExpectation {
    return { id: this.random.int(0x10000), question: randomiseCase(q.questionBytes, (n) => this.random.bytes(n)) };
  }

  /**
   * Runs one attempt: `start` sends the query and returns its canceller; the
   * attempt ends with the first accepted answer (already in the client's id
   * and casing), an error, the timeout or close().
   */
  private attempt(u: Upstream, start: (accept: (reply: Buffer | null) => void) => () => void, then: (reply: Buffer | null) => void): void {
    if (this.closed) {
      queueMicrotask(() => then(null));
      return;
    }
    let done = false;
    let closeSocket: (() => void) | null = null;
    const finish = (reply: Buffer | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.aborts.delete(abort);
      closeSocket?.();
      // Never synchronously: start() may fail at once, and callers expect to have returned first.
      queueMicrotask(() => then(reply));
    };
    const abort = (): void => finish(null);
    const timer = setTimeout(() => {
      this.deps.logger.debug('dns upstream timed out', { upstream: formatUpstream(u) });
      finish(null);
    }, this.opts.timeoutMs);
    this.aborts.add(abort);
    const closer = start(finish);
    if (done) closer();
    else closeSocket = closer;
  }

  /** Whether a message is the answer; logs what was dropped (quietly: spoofing attempts must not flood the log). */
  private accepts(u: Upstream, msg: Uint8Array, exp: UpstreamExpectation): boolean {
    const verdict = checkAnswer(msg, exp);
    if (verdict === 'ok') return true;
    if (this.deps.logger.enabled('debug')) this.deps.logger.debug('dns upstream answer dropped', { upstream: formatUpstream(u), why: verdict });
    return false;
  }

  private viaTcp(u: Upstream, q: ParsedQuery, raw: Uint8Array, then: (reply: Buffer | null) => void): void {
    const exp = this.expectation(q);
    const query = upstreamQuery(raw, exp);
    const out = Buffer.alloc(query.length + 2);
    out.writeUInt16BE(query.length, 0);
    query.copy(out, 2);
    this.attempt(u, (finish) => {
      let buf: Buffer = Buffer.alloc(0);
      const sock = net.connect({ host: u.host, port: u.port });
      sock.on('connect', () => sock.write(out));
      sock.on('data', (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        // RFC 7766 framing; a message that is not our answer is skipped and the next awaited.
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          if (this.accepts(u, msg, exp)) {
            finish(clientAnswer(msg, q.id, q.questionBytes));
            return;
          }
        }
      });
      sock.on('error', () => finish(null));
      sock.on('close', () => finish(null));
      return () => sock.destroy();
    }, then);
  }
}

interface ForwardingContext {
  readonly pool: UdpUpstreamPool;
  readonly logger: Logger;
  readonly deadlines: DeadlineQueue;
  closed(): boolean;
  expectation(q: ParsedQuery): UpstreamExpectation;
  viaTcp(u: Upstream, q: ParsedQuery, raw: Uint8Array, then: (reply: Buffer | null) => void): void;
  finished(job: Forwarding): void;
}

const NO_EXPECTATION: UpstreamExpectation = { id: -1, question: new Uint8Array(0) };

/**
 * One client query on its way through the upstreams, with its UDP attempt in
 * flight: the whole state in one object, so a forwarded query costs a few
 * allocations rather than closures and a timer callback per step. What lives
 * across an upstream round trip is copied by every scavenge, and the router
 * runs with a small young generation.
 */
class Forwarding implements UpstreamWaiter, DeadlineWaiter {
  exp: UpstreamExpectation = NO_EXPECTATION;
  /** The UDP attempt's place among the forwarder's deadlines (dns/deadline-queue.ts). */
  deadlinePrev: DeadlineWaiter | null = null;
  deadlineNext: DeadlineWaiter | null = null;
  deadlineAt = -1;
  private next = 0;
  private fallback: Buffer | null = null;
  /** The UDP attempt waiting: the pool's ticket; null between attempts. */
  private ticket: PoolTicket | null = null;
  private upstream: Upstream | null = null;
  private ended = false;

  constructor(
    private readonly ctx: ForwardingContext,
    private readonly q: ParsedQuery,
    private readonly raw: Uint8Array,
    private readonly transport: Transport,
    private readonly list: readonly Upstream[],
    private readonly done: (reply: Buffer | null) => void,
  ) {}

  /** The next upstream, or the end: the first reply worth keeping, else the last fallback. */
  tryNext(): void {
    const u = this.list[this.next++];
    if (this.ctx.closed()) this.end(null);
    else if (u === undefined) this.end(this.fallback);
    else this.viaUdp(u);
  }

  /** The UDP attempt timed out. */
  expired(): void {
    if (this.upstream !== null) this.ctx.logger.debug('dns upstream timed out', { upstream: formatUpstream(this.upstream) });
    this.stopAttempt();
    this.tried(null);
  }

  /** From the pool: the accepted answer (a view into a receive buffer, copied now) or null. */
  answered(reply: Uint8Array | null): void {
    if (this.ticket === null) return;
    this.ticket = null;
    this.ctx.deadlines.remove(this);
    const u = this.upstream as Upstream;
    const out = reply === null ? null : clientAnswer(reply, this.q.id, this.q.questionBytes);
    // UDP first, whatever the client used; TCP when the answer did not fit and the
    // client can take more (it came by TCP). A UDP client gets the TC reply and asks us by TCP.
    if (out !== null && this.transport === 'tcp' && ((out[2] as number) & FLAG_TC) !== 0) this.ctx.viaTcp(u, this.q, this.raw, (r) => this.tried(r ?? out));
    else this.tried(out);
  }

  /** close(): the client gets null. */
  abort(): void {
    this.stopAttempt();
    this.end(null);
  }

  private viaUdp(u: Upstream): void {
    this.upstream = u;
    this.exp = this.ctx.expectation(this.q);
    const out = upstreamQuery(this.raw, this.exp);
    const edns = this.q.edns;
    if (edns !== null && edns.udpPayloadBytes > EDNS_MAX_UDP_BYTES) out.writeUInt16BE(EDNS_MAX_UDP_BYTES, edns.sizeOffset);
    this.ctx.deadlines.add(this);
    this.ticket = this.ctx.pool.send(u, this, out);
  }

  private tried(reply: Buffer | null): void {
    if (this.ended) return;
    if (reply !== null) {
      if (!TRY_NEXT_RCODES.has((reply[3] as number) & 0xf)) {
        this.end(reply);
        return;
      }
      this.fallback = reply;
    }
    this.tryNext();
  }

  private stopAttempt(): void {
    this.ctx.deadlines.remove(this);
    if (this.ticket !== null) this.ctx.pool.cancel(this.ticket, this);
    this.ticket = null;
  }

  private end(reply: Buffer | null): void {
    if (this.ended) return;
    this.ended = true;
    this.ctx.finished(this);
    this.done(reply);
  }
}
