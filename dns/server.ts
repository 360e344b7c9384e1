// The DNS server's sockets: UDP and TCP on each listen address (the host's
// link-local address on the weave bridge, and loopback), feeding the query
// core and the forwarder and sending what they produce. Adapter: owns sockets
// and per-connection timers, nothing else. UDP goes through a batched
// DatagramPort when the owner gives one (dns/datagram-port.ts: one wakeup and
// one send call per burst of queries), else through node:dgram.
//
// It never becomes an open resolver: it binds only the addresses it is given
// (never a wildcard), and on the overlay address it answers only clients the
// owner vouches for (containers attached on this host), so a neighbour on the
// underlay that routes 169.254.0.0/16 to us gets silence.
//
// TCP slots are a shared resource a container could try to hold: connections
// are capped in total and per client address, and a connection lives only as
// long as it sends whole queries (dns/tcp-deadline.ts), so trickled bytes keep
// nothing open.

import dgram from 'node:dgram';
import net from 'node:net';
import { SystemClock } from '../common/clock';
import { assertNever } from '../common/errors';
import type { Logger } from '../common/logger';
import { familyOfCanonical } from '../common/ip';
import type { AnswerKind, QueryOutcome, Transport } from './answer';
import { servfail } from './answer';
import type { CacheHit } from './answer-cache';
import type { DnsCounters } from './api-types';
import { MAX_TCP_CONNECTIONS, MAX_TCP_CONNECTIONS_PER_CLIENT, MAX_TCP_UNREAD_BYTES, TCP_IDLE_TIMEOUT_MS, TCP_QUERY_RECEIVE_TIMEOUT_MS } from './constants';
import type { DatagramBatch, DatagramPort, OpenDatagramPort } from './datagram-port';
import type { Forwarder } from './forwarder';
import { TcpDeadline } from './tcp-deadline';

export interface ListenAddress {
  host: string;
  /** 53 in the daemon; 0 (ephemeral) in tests. */
  port: number;
  /** Only clients for which `isAllowedClient` says yes get an answer. */
  restricted: boolean;
}

export interface DnsServerDeps {
  /** `cacheTried`: answerUdpFromCache missed with these bytes just before. */
  resolve(bytes: Uint8Array, transport: Transport, cacheTried?: boolean): QueryOutcome;
  /**
   * Batched UDP's hit path, nothing allocated: writes the cached reply to the
   * query at query[at, at + length) into out[outAt, ...) (at most outCapacity
   * bytes) and returns its length, its kind in `hit`; -1 when it must be
   * resolved. Absent: every query goes to resolve.
   */
  answerUdpFromCache?(query: Uint8Array, at: number, length: number, out: Uint8Array, outAt: number, outCapacity: number, hit: CacheHit): number;
  forwarder: Forwarder;
  logger: Logger;
  counters: DnsCounters;
  isAllowedClient(address: string): boolean;
  /** Batched UDP; when absent, or when it cannot bind, node:dgram. */
  openDatagrams?: OpenDatagramPort;
}

export interface DnsServerOptions {
  listen: ListenAddress[];
  maxTcpConnections?: number;
  maxTcpConnectionsPerClient?: number;
  /** Counted from the last complete query or answer, not from the last byte. */
  tcpIdleTimeoutMs?: number;
  /** Cap on receiving one query once its first bytes are in. */
  tcpQueryTimeoutMs?: number;
}

/** Where the reply to a forwarded query goes once the upstream has answered; asked at once, `ref` as the caller passed it. */
interface ReplyRoute {
  later(ref: number): (reply: Buffer) => void;
}

interface Listener {
  addr: ListenAddress;
  udp: dgram.Socket | DatagramPort;
  tcp: net.Server;
  /** Bound host:port (the port is known only after binding when it was 0). */
  bound: string;
}

export class DnsServer {
  private readonly listeners: Listener[] = [];
  private readonly connections = new Set<net.Socket>();
  /** Open TCP connections per client address. */
  private readonly perClient = new Map<string, number>();
  private readonly clock = new SystemClock();
  private readonly maxTcp: number;
  private readonly maxTcpPerClient: number;
  private readonly idleMs: number;
  private readonly queryMs: number;
  private closed = false;
  /** answerUdpFromCache's out-parameter, one for all queries. */
  private readonly hit: CacheHit = { kind: 'answer' };

  constructor(private readonly deps: DnsServerDeps, private readonly opts: DnsServerOptions) {
    this.maxTcp = opts.maxTcpConnections ?? MAX_TCP_CONNECTIONS;
    this.maxTcpPerClient = opts.maxTcpConnectionsPerClient ?? MAX_TCP_CONNECTIONS_PER_CLIENT;
    this.idleMs = opts.tcpIdleTimeoutMs ?? TCP_IDLE_TIMEOUT_MS;
    this.queryMs = opts.tcpQueryTimeoutMs ?? TCP_QUERY_RECEIVE_TIMEOUT_MS;
  }

  /** Binds every address; one that fails is reported in the returned warnings, not thrown (DNS must not stop the router). */
  async start(): Promise<string[]> {
    const warnings: string[] = [];
    for (const addr of this.opts.listen) {
      try {
        this.listeners.push(await this.bind(addr));
      } catch (err) {
        const msg = `cannot listen for DNS on ${hostPort(addr.host, addr.port)}: ${(err as Error).message}`;
        this.deps.logger.warn(msg);
        warnings.push(msg);
      }
    }
    return warnings;
  }

  /** host:port actually bound, UDP and TCP alike. */
  addresses(): string[] {
    return this.listeners.map((l) => l.bound);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.connections) c.destroy();
    this.connections.clear();
    await Promise.all(this.listeners.map((l) => new Promise<void>((resolve) => {
      l.udp.close();
      l.tcp.close(() => resolve());
    })));
    this.listeners.length = 0;
  }

  // -------------------------------------------------------------------------

  private async bind(addr: ListenAddress): Promise<Listener> {
    const udp = this.openBatched(addr) ?? await this.openDgram(addr);
    const port = udp instanceof dgram.Socket ? udp.address().port : udp.port;
    const tcp = net.createServer((sock) => this.onTcp(addr, sock));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        // The same port as UDP, so an ephemeral port in tests is one number.
        tcp.listen({ host: addr.host, port, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      throw err;
    }
    tcp.on('error', (err) => this.deps.logger.warn('dns tcp server error', { addr: addr.host, error: err.message }));
    return { addr, udp, tcp, bound: hostPort(addr.host, port) };
  }

  private openBatched(addr: ListenAddress): DatagramPort | null {
    if (this.deps.openDatagrams === undefined) return null;
    let port: DatagramPort;
    try {
      port = this.deps.openDatagrams(addr.host, addr.port);
    } catch (err) {
      this.deps.logger.info('dns: batched UDP unavailable, using node:dgram', { addr: addr.host, error: err instanceof Error ? err.message : String(err) });
      return null;
    }
    let current: DatagramBatch | null = null;
    // One route per socket, not a closure per query: only a forwarded query takes its sender.
    const route: ReplyRoute = {
      later: (i) => {
        const to = (current as DatagramBatch).sender(i);
        return (bytes) => {
          if (!this.closed) port.sendTo(to, bytes);
        };
      },
    };
    port.start((batch) => {
      current = batch;
      this.onBatch(addr, batch, route);
    });
    return port;
  }

  private async openDgram(addr: ListenAddress): Promise<dgram.Socket> {
    const udp = dgram.createSocket({ type: familyOfCanonical(addr.host) === 6 ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(addr.port, addr.host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', (err) => this.deps.logger.warn('dns udp socket error', { addr: addr.host, error: err.message }));
    udp.on('message', (msg, rinfo) => this.onUdp(addr, udp, msg, rinfo));
    return udp;
  }

  private allowed(addr: ListenAddress, client: string): boolean {
    if (!addr.restricted || this.deps.isAllowedClient(client.replace(/^::ffff:/, ''))) return true;
    this.deps.counters.clientsRefused++;
    return false;
  }

  private onUdp(addr: ListenAddress, udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed || !this.allowed(addr, rinfo.address)) return;
    const send = (bytes: Buffer): void => {
      if (!this.closed) udp.send(bytes, rinfo.port, rinfo.address);
    };
    const reply = this.dispatch(msg, 'udp', { later: () => send }, 0);
    if (reply !== null) send(reply);
  }

  /** `route` takes datagram i's sender while the batch is valid, for a reply after the upstream has answered. */
  private onBatch(addr: ListenAddress, batch: DatagramBatch, route: ReplyRoute): void {
    const deps = this.deps;
    const fromCache = deps.answerUdpFromCache !== undefined;
    for (let i = 0; i < batch.count; i++) {
      if (this.closed) return;
      if (addr.restricted && !this.allowed(addr, batch.sourceAddress(i))) continue;
      if (fromCache) {
        // A repeated question: its reply goes straight from the cache into the send buffer.
        const n = (deps.answerUdpFromCache as NonNullable<DnsServerDeps['answerUdpFromCache']>)(
          batch.input, batch.offset(i), batch.length(i), batch.output, batch.replyAt(), batch.replyCapacity, this.hit);
        if (n >= 0) {
          deps.counters.queries++;
          this.countReply(this.hit.kind, false);
          batch.commit(i, n);
          continue;
        }
      }
      const reply = this.dispatch(batch.datagram(i), 'udp', route, i, fromCache);
      if (reply !== null) batch.reply(i, reply);
    }
  }

  private onTcp(addr: ListenAddress, sock: net.Socket): void {
    const client = sock.remoteAddress ?? '';
    const fromClient = this.perClient.get(client) ?? 0;
    if (this.closed || this.connections.size >= this.maxTcp || fromClient >= this.maxTcpPerClient || !this.allowed(addr, client)) {
      sock.destroy();
      return;
    }
    this.connections.add(sock);
    this.perClient.set(client, fromClient + 1);
    const deadline = new TcpDeadline(this.clock, this.idleMs, this.queryMs, () => sock.destroy());
    sock.on('close', () => {
      deadline.stop();
      this.connections.delete(sock);
      const n = (this.perClient.get(client) ?? 1) - 1;
      if (n > 0) this.perClient.set(client, n);
      else this.perClient.delete(client);
    });
    sock.on('error', () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    const send = (bytes: Buffer): void => {
      if (sock.destroyed) return;
      deadline.answered();
      // A client that pipelines queries and never reads its answers would grow this buffer without end.
      if (sock.writableLength > MAX_TCP_UNREAD_BYTES) {
        sock.destroy();
        return;
      }
      const frame = Buffer.alloc(bytes.length + 2);
      frame.writeUInt16BE(bytes.length, 0);
      bytes.copy(frame, 2);
      sock.write(frame);
    };
    const route: ReplyRoute = { later: () => send };
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      // RFC 7766: several queries may arrive back to back; each is answered on its own.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len === 0) {
          sock.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        deadline.queryComplete();
        const reply = this.dispatch(Buffer.from(msg), 'tcp', route, 0);
        if (reply !== null) send(reply);
      }
      // Bytes of an unfinished query start its receive cap; they never extend the idle time.
      if (buf.length > 0) deadline.partial();
    });
  }

  /**
   * Answers one query: returns the reply to send now, or null for nothing
   * now. A forwarded query asks `route.later(ref)` (at once) for where its reply goes once
   * the upstream has answered (SERVFAIL when forwarding fails). `msg` may be a
   * view into a receive buffer that is reused once this returns.
   */
  private dispatch(msg: Uint8Array, transport: Transport, route: ReplyRoute, ref: number, cacheTried = false): Buffer | null {
    const c = this.deps.counters;
    c.queries++;
    let outcome: QueryOutcome;
    try {
      outcome = this.deps.resolve(msg, transport, cacheTried);
    } catch (err) {
      // The core should never throw; if it does, one query is lost, not the daemon.
      c.dropped++;
      this.deps.logger.error('dns query handling failed', { error: err instanceof Error ? err.message : String(err) });
      return null;
    }
    switch (outcome.kind) {
      case 'drop':
        c.dropped++;
        return null;
      case 'reply':
        this.countReply(outcome.answerKind, outcome.truncated);
        return outcome.bytes;
      case 'forward': {
        const q = outcome.query;
        c.forwarded++;
        const send = route.later(ref);
        // A copy: msg may be a view into a receive buffer, and the forwarder reads it again for the next upstream.
        try {
          this.deps.forwarder.forwardThen(q, Buffer.from(msg), transport, (reply) => {
            if (reply !== null) {
              send(reply);
              return;
            }
            c.forwardFailed++;
            send(servfail(q, transport));
          });
          return null;
        } catch (err) {
          c.forwardFailed++;
          this.deps.logger.warn('dns forwarding failed', { error: err instanceof Error ? err.message : String(err) });
          return servfail(q, transport);
        }
      }
      default:
        assertNever(outcome);
    }
  }

  private countReply(kind: AnswerKind, truncated: boolean): void {
    const c = this.deps.counters;
    switch (kind) {
      case 'answer': c.answered++; break;
      case 'nodata': c.nodata++; break;
      case 'nxdomain': c.nxdomain++; break;
      case 'formerr': c.formerr++; break;
      case 'notimp': case 'badvers': c.notimp++; break;
      case 'refused': c.refused++; break;
      default: assertNever(kind);
    }
    if (truncated) c.truncated++;
  }
}

function hostPort(host: string, port: number): string {
  return familyOfCanonical(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A zeroed counters record; the owner shares one between server, forwarder and mDNS. */
export function newCounters(): DnsCounters {
  return {
    queries: 0, answered: 0, nodata: 0, nxdomain: 0, formerr: 0, notimp: 0, refused: 0, truncated: 0,
    forwarded: 0, forwardFailed: 0, dropped: 0, clientsRefused: 0, mdnsQueries: 0, mdnsAnswered: 0, mdnsLegacyAnswered: 0,
  };
}

