// The pooled UDP sockets forwarded queries go out on: per upstream, up to a few
// sockets, each connected to that upstream (so the kernel gives it a random
// ephemeral port and delivers only datagrams from the upstream's address and
// port), each retired after a short life and replaced on a fresh port
// (dns/upstream-pool-policy.ts decides which socket and when). Adapter: owns
// the sockets and the queries waiting on them. Several queries share a socket;
// an answer goes to the query whose id and question (0x20 casing, qtype, qclass:
// dns/upstream-query.ts) it repeats byte for byte, and anything else is dropped
// while the queries keep waiting. A new query never shares (id, question) with
// one in flight on the same socket: it gets another id, so no answer can be
// ambiguous. A retired socket is closed once its last query is answered,
// cancelled or failed.

import dgram from 'node:dgram';
import type { Logger } from '../common/logger';
import { familyOfCanonical } from '../common/ip';
import type { Upstream } from './resolv-conf';
import type { RandomBuffer } from './random-buffer';
import { formatUpstream } from './resolv-conf';
import type { AnswerCheck, UpstreamExpectation } from './upstream-query';
import { checkAnswer } from './upstream-query';
import type { PoolPolicyOptions, PoolSlot } from './upstream-pool-policy';
import { DEFAULT_POOL_POLICY, PoolPolicy } from './upstream-pool-policy';

/** Called once: the accepted answer, or null when the socket failed. */
export type Deliver = (reply: Buffer | null) => void;

interface Pending {
  readonly exp: UpstreamExpectation;
  readonly deliver: Deliver;
}

interface Slot extends PoolSlot {
  readonly upstream: Upstream;
  readonly key: string;
  readonly sock: dgram.Socket;
  /** Queries sent before connect() completed, sent when it does. */
  queue: Array<{ out: Buffer; entry: Pending }> | null;
  readonly pending: Map<number, Pending[]>;
  inFlight: number;
  closed: boolean;
  ageTimer: NodeJS.Timeout | null;
}

export class UdpUpstreamPool {
  private readonly pools = new Map<string, PoolPolicy<Slot>>();
  private readonly slots = new Set<Slot>();

  constructor(
    private readonly logger: Logger,
    private readonly random: RandomBuffer,
    private readonly opts: PoolPolicyOptions = DEFAULT_POOL_POLICY,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Sends `out` (whose id and question are `exp`'s) to the upstream on a pooled
   * socket. If the id is already in flight with the same question on that
   * socket, a new id is drawn and written into both. Returns the canceller
   * (timeout or abort): it forgets the query and closes a drained retired socket.
   */
  send(u: Upstream, exp: UpstreamExpectation, out: Buffer, deliver: Deliver): () => void {
    const policy = this.policyFor(u);
    const { slot: picked, retired } = policy.pick();
    for (const s of retired) this.closeIfDrained(s);
    const slot = picked ?? this.open(u, policy);
    while (slot.pending.get(exp.id)?.some((p) => p.exp.question.length === exp.question.length && Buffer.compare(p.exp.question, exp.question) === 0) === true) {
      exp.id = this.random.int(0x10000);
      out.writeUInt16BE(exp.id, 0);
    }
    const entry: Pending = { exp, deliver };
    const list = slot.pending.get(exp.id);
    if (list === undefined) slot.pending.set(exp.id, [entry]);
    else list.push(entry);
    slot.inFlight++;
    policy.used(slot);
    if (slot.queue !== null) slot.queue.push({ out, entry });
    else this.transmit(slot, out, entry);
    return () => {
      this.forget(slot, entry);
      this.closeIfDrained(slot);
    };
  }

  /** Closes every socket; queries still waiting get null. */
  close(): void {
    for (const s of [...this.slots]) this.fail(s, null);
    this.pools.clear();
  }

  /** Open sockets, live and draining (for tests and status). */
  openSockets(): number {
    return this.slots.size;
  }

  // -------------------------------------------------------------------------

  private policyFor(u: Upstream): PoolPolicy<Slot> {
    const key = formatUpstream(u);
    let p = this.pools.get(key);
    if (p === undefined) {
      p = new PoolPolicy<Slot>(this.opts, this.now, (n) => this.random.int(n));
      this.pools.set(key, p);
    }
    return p;
  }

  private open(u: Upstream, policy: PoolPolicy<Slot>): Slot {
    const sock = dgram.createSocket(familyOfCanonical(u.host) === 6 ? 'udp6' : 'udp4');
    const slot: Slot = {
      upstream: u, key: formatUpstream(u), sock, openedAt: this.now(), queries: 0, retired: false,
      queue: [], pending: new Map(), inFlight: 0, closed: false, ageTimer: null,
    };
    this.slots.add(slot);
    policy.add(slot);
    slot.ageTimer = setTimeout(() => {
      slot.ageTimer = null;
      policy.retire(slot);
      this.closeIfDrained(slot);
    }, policy.lifetimeMs());
    slot.ageTimer.unref();
    sock.on('error', (err) => {
      this.logger.debug('dns upstream socket error', { upstream: slot.key, error: err.message });
      this.fail(slot, null);
    });
    sock.on('message', (msg, rinfo) => this.onMessage(slot, msg, rinfo));
    // connect() binds to a fresh ephemeral port chosen by the kernel at random.
    sock.connect(u.port, u.host, (connectErr?: Error) => {
      // A failed connect leaves the socket unconnected: send() would then throw.
      if (connectErr) {
        this.logger.debug('dns upstream unreachable', { upstream: slot.key, error: connectErr.message });
        this.fail(slot, null);
        return;
      }
      const queued = slot.queue ?? [];
      slot.queue = null;
      // Those cancelled meanwhile are gone from `pending`: not sent.
      for (const { out, entry } of queued) if (slot.pending.get(entry.exp.id)?.includes(entry) === true) this.transmit(slot, out, entry);
    });
    return slot;
  }

  private transmit(slot: Slot, out: Buffer, entry: Pending): void {
    if (slot.closed) return;
    slot.sock.send(out, (err) => {
      if (err === null || err === undefined) return;
      this.logger.debug('dns upstream send failed', { upstream: slot.key, error: err.message });
      if (this.forget(slot, entry)) entry.deliver(null);
      this.closeIfDrained(slot);
    });
  }

  private onMessage(slot: Slot, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const u = slot.upstream;
    // The connected socket already filters by source; checked again so a
    // change in how the socket is set up cannot silently drop the rule.
    if (rinfo.address !== u.host || rinfo.port !== u.port) {
      this.dropped(slot, 'wrong-source');
      return;
    }
    const list = msg.length >= 2 ? slot.pending.get(msg.readUInt16BE(0)) : undefined;
    let verdict: AnswerCheck = 'wrong-id';
    if (list === undefined) {
      // No query has this id: still say why it fails, for the debug log.
      verdict = checkAnswer(msg, { id: msg.length >= 2 ? msg.readUInt16BE(0) ^ 1 : 0, question: new Uint8Array(0) });
    } else {
      for (const p of list) {
        verdict = checkAnswer(msg, p.exp);
        if (verdict !== 'ok') continue;
        this.forget(slot, p);
        p.deliver(msg);
        this.closeIfDrained(slot);
        return;
      }
    }
    this.dropped(slot, verdict);
  }

  /** Quietly: spoofing attempts must not flood the log. */
  private dropped(slot: Slot, why: string): void {
    if (this.logger.enabled('debug')) this.logger.debug('dns upstream answer dropped', { upstream: slot.key, why });
  }

  /** Removes a waiting query; false when it was gone already. */
  private forget(slot: Slot, entry: Pending): boolean {
    const list = slot.pending.get(entry.exp.id);
    const i = list?.indexOf(entry) ?? -1;
    if (list === undefined || i < 0) return false;
    if (list.length === 1) slot.pending.delete(entry.exp.id);
    else list.splice(i, 1);
    slot.inFlight--;
    return true;
  }

  private closeIfDrained(slot: Slot): void {
    if (slot.retired && slot.inFlight === 0) this.shut(slot);
  }

  /** Retires and closes the socket; every query on it gets `reply`. */
  private fail(slot: Slot, reply: null): void {
    const waiting = [...slot.pending.values()].flat();
    slot.pending.clear();
    slot.inFlight = 0;
    this.shut(slot);
    for (const p of waiting) p.deliver(reply);
  }

  private shut(slot: Slot): void {
    this.pools.get(slot.key)?.retire(slot);
    if (slot.closed) return;
    slot.closed = true;
    this.slots.delete(slot);
    if (slot.ageTimer !== null) clearTimeout(slot.ageTimer);
    slot.ageTimer = null;
    try {
      slot.sock.close();
    } catch {
      // Already closed after an error: nothing left to release.
    }
    const policy = this.pools.get(slot.key);
    if (policy !== undefined && policy.liveSlots().length === 0) this.pools.delete(slot.key);
  }
}
