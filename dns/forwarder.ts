// Forwarding queries outside our domain to the upstream servers, in order, each
// with a timeout; the caller answers SERVFAIL when this gives up. Adapter: owns
// one UDP socket per address family (bound to an ephemeral port, never a
// listening service) and short-lived TCP connections. Queries go upstream over
// UDP; a truncated reply is passed to a UDP client as is (it then asks us over
// TCP), and for a TCP client the query is repeated upstream over TCP.
//
// Each upstream query gets a fresh random id; a reply counts only if it comes
// from the server and port we asked, with that id, and repeats our question.
// The client's id is put back before the reply goes out.

import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../common/logger';
import type { Rng } from '../common/rng';
import { randomInt } from '../common/rng';
import { familyOfCanonical } from '../common/ip';
import type { Transport } from './answer';
import { FORWARD_TIMEOUT_MS, MAX_FORWARDS_IN_FLIGHT } from './constants';
import type { ParsedQuery } from './message';
import { readName } from './message';
import type { Upstream } from './resolv-conf';
import { formatUpstream } from './resolv-conf';
import type { UpstreamSource } from './upstreams';

export interface ForwarderDeps {
  logger: Logger;
  rng: Rng;
  upstreams: UpstreamSource;
}

export interface ForwarderOptions {
  timeoutMs: number;
  maxInFlight: number;
}

export const DEFAULT_FORWARDER_OPTIONS: ForwarderOptions = { timeoutMs: FORWARD_TIMEOUT_MS, maxInFlight: MAX_FORWARDS_IN_FLIGHT };

interface Pending {
  question: Uint8Array;
  resolve: (reply: Buffer | null) => void;
  timer: NodeJS.Timeout;
}

/** RCODEs after which the next upstream is worth a try (glibc does the same). */
const TRY_NEXT_RCODES = new Set([2, 4, 5]);

export class Forwarder {
  private readonly opts: ForwarderOptions;
  private readonly sockets = new Map<4 | 6, dgram.Socket>();
  private readonly pending = new Map<string, Pending>();
  private inFlight = 0;
  private closed = false;

  constructor(private readonly deps: ForwarderDeps, opts: Partial<ForwarderOptions> = {}) {
    this.opts = { ...DEFAULT_FORWARDER_OPTIONS, ...opts };
  }

  upstreams(): Upstream[] {
    return this.deps.upstreams.current();
  }

  /** The upstream's reply with the client's id, or null when every upstream failed or none is set. */
  async forward(q: ParsedQuery, raw: Uint8Array, transport: Transport): Promise<Buffer | null> {
    if (this.closed || this.inFlight >= this.opts.maxInFlight) return null;
    const list = this.deps.upstreams.current();
    if (list.length === 0) return null;
    this.inFlight++;
    try {
      let fallback: Buffer | null = null;
      for (const u of list) {
        // UDP first, whatever the client used; TCP when the answer did not fit and the
        // client can take more (it came by TCP). A UDP client gets the TC reply and asks us by TCP.
        let reply = await this.viaUdp(u, q, raw);
        if (reply !== null && transport === 'tcp' && ((reply[2] as number) & 0x02) !== 0) reply = (await this.viaTcp(u, q, raw)) ?? reply;
        if (reply === null) continue;
        reply = Buffer.from(reply);
        reply.writeUInt16BE(q.id, 0);
        if (!TRY_NEXT_RCODES.has((reply[3] as number) & 0xf)) return reply;
        fallback = reply;
      }
      return fallback;
    } finally {
      this.inFlight--;
    }
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.resolve(null);
    }
    this.pending.clear();
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }

  // -------------------------------------------------------------------------

  private socket(family: 4 | 6): dgram.Socket {
    let s = this.sockets.get(family);
    if (s !== undefined) return s;
    s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.on('message', (msg, rinfo) => this.onUdpReply(msg, rinfo));
    s.on('error', (err) => this.deps.logger.warn('dns forwarder socket error', { error: err.message }));
    s.unref();
    this.sockets.set(family, s);
    return s;
  }

  private viaUdp(u: Upstream, q: ParsedQuery, raw: Uint8Array): Promise<Buffer | null> {
    const family = familyOfCanonical(u.host);
    let id = 0;
    let key = '';
    for (let tries = 0; tries < 8; tries++) {
      id = randomInt(this.deps.rng, 0x10000);
      key = `${u.host}|${u.port}|${id}`;
      if (!this.pending.has(key)) break;
    }
    if (this.pending.has(key)) return Promise.resolve(null);
    const out = Buffer.from(raw);
    out.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        this.deps.logger.debug('dns upstream timed out', { upstream: formatUpstream(u) });
        resolve(null);
      }, this.opts.timeoutMs);
      this.pending.set(key, { question: q.questionBytes, resolve, timer });
      this.socket(family).send(out, u.port, u.host, (err) => {
        if (err === null || err === undefined) return;
        clearTimeout(timer);
        this.pending.delete(key);
        this.deps.logger.debug('dns upstream send failed', { upstream: formatUpstream(u), error: err.message });
        resolve(null);
      });
    });
  }

  private onUdpReply(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12 || (msg[2]! & 0x80) === 0) return;
    const host = rinfo.family === 'IPv6' ? rinfo.address.replace(/%.*$/, '') : rinfo.address;
    const key = `${host}|${rinfo.port}|${msg.readUInt16BE(0)}`;
    const p = this.pending.get(key);
    if (p === undefined || !sameQuestion(msg, p.question)) return;
    this.pending.delete(key);
    clearTimeout(p.timer);
    p.resolve(msg);
  }

  private viaTcp(u: Upstream, q: ParsedQuery, raw: Uint8Array): Promise<Buffer | null> {
    const out = Buffer.alloc(raw.length + 2);
    out.writeUInt16BE(raw.length, 0);
    out.set(raw, 2);
    const id = randomInt(this.deps.rng, 0x10000);
    out.writeUInt16BE(id, 2);
    return new Promise((resolve) => {
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (reply: Buffer | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve(reply);
      };
      const sock = net.connect({ host: u.host, port: u.port });
      const timer = setTimeout(() => finish(null), this.opts.timeoutMs);
      sock.on('connect', () => sock.write(out));
      sock.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) return;
        const reply = buf.subarray(2, 2 + len);
        finish(reply.length >= 12 && reply.readUInt16BE(0) === id && (reply[2]! & 0x80) !== 0 && sameQuestion(reply, q.questionBytes) ? Buffer.from(reply) : null);
      });
      sock.on('error', () => finish(null));
      sock.on('close', () => finish(null));
    });
  }
}

/** The reply's first question equals ours, ignoring ASCII case (servers may normalise it). */
function sameQuestion(reply: Uint8Array, question: Uint8Array): boolean {
  if (reply.length < 12 + question.length || ((reply[4]! << 8) | reply[5]!) !== 1) return false;
  try {
    const { end } = readName(reply, 12, false);
    if (end + 4 - 12 !== question.length) return false;
  } catch {
    return false;
  }
  const nameBytes = question.length - 4;
  for (let i = 0; i < question.length; i++) {
    if (i >= nameBytes) {
      if (reply[12 + i] !== question[i]) return false;
      continue;
    }
    let a = reply[12 + i] as number;
    let b = question[i] as number;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}
