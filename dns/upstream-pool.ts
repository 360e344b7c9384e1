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
// cancelled or failed. The sockets themselves come from an OpenUpstreamSocket
// (dns/datagram-port.ts): batched through the addon in the daemon, node:dgram
// otherwise.

import type { Logger } from '../common/logger';
import type { OpenUpstreamSocket, UpstreamSocket } from './datagram-port';
import type { Upstream } from './resolv-conf';
import type { RandomBuffer } from './random-buffer';
import { formatUpstream } from './resolv-conf';
import type { AnswerCheck, UpstreamExpectation } from './upstream-query';
import { checkAnswer } from './upstream-query';
import type { PoolPolicyOptions, PoolSlot } from './upstream-pool-policy';
import { DEFAULT_POOL_POLICY, PoolPolicy } from './upstream-pool-policy';
import { openDgramUpstreamSocket } from './upstream-dgram';

/** A query waiting on a pooled socket (the forwarder's record of it: no closure per query). */
export interface UpstreamWaiter {
  /** What the answer must repeat; its id may be redrawn by send(). */
  readonly exp: UpstreamExpectation;
  /** Called once, never from inside send(): the accepted answer (a view valid only during the call), or null when the socket failed. */
  answered(reply: Uint8Array | null): void;
}

type Pending = UpstreamWaiter;

/** Which socket a query went out on, for cancel(). */
export type PoolTicket = object;

interface Slot extends PoolSlot {
  readonly upstream: Upstream;
  readonly key: string;
  sock: UpstreamSocket | null;
  readonly pending: Map<number, Pending[]>;
  inFlight: number;
  closed: boolean;
  ageTimer: NodeJS.Timeout | null;
}

export class UdpUpstreamPool {
  private readonly pools = new Map<string, PoolPolicy<Slot>>();
  private readonly slots = new Set<Slot>();
  private readonly byUpstream = new WeakMap<Upstream, { key: string; policy: PoolPolicy<Slot> }>();
  private closed = false;

  constructor(
    private readonly logger: Logger,
    private readonly random: RandomBuffer,
    private readonly opts: PoolPolicyOptions = DEFAULT_POOL_POLICY,
    private readonly now: () => number = Date.now,
    private readonly openSocket: OpenUpstreamSocket = openDgramUpstreamSocket,
  ) {}

  /**
   * Sends `out` (whose id and question are the waiter's `exp`) to the upstream
   * on a pooled socket. If the id is already in flight with the same question
   * on that socket, a new id is drawn and written into both. Returns the ticket
   * for cancel() (timeout or abort).
   */
  send(u: Upstream, waiter: UpstreamWaiter, out: Buffer): PoolTicket {
    if (this.closed) {
      queueMicrotask(() => waiter.answered(null));
      return CLOSED_TICKET;
    }
    const exp = waiter.exp;
    const policy = this.policyFor(u);
    const { slot: picked, retired } = policy.pick();
    for (const s of retired) this.closeIfDrained(s);
    const slot = picked ?? this.open(u, policy);
    while (slot.pending.get(exp.id)?.some((p) => p.exp.question.length === exp.question.length && Buffer.compare(p.exp.question, exp.question) === 0) === true) {
      exp.id = this.random.int(0x10000);
      out.writeUInt16BE(exp.id, 0);
    }
    const list = slot.pending.get(exp.id);
    if (list === undefined) slot.pending.set(exp.id, [waiter]);
    else list.push(waiter);
    slot.inFlight++;
    policy.used(slot);
    slot.sock?.send(out);
    return slot;
  }

  /** Forgets a waiting query (it gets no call) and closes its socket if that was retired and is now drained. */
  cancel(ticket: PoolTicket, waiter: UpstreamWaiter): void {
    if (ticket === CLOSED_TICKET) return;
    const slot = ticket as Slot;
    this.forget(slot, waiter);
    this.closeIfDrained(slot);
  }

  /** Closes every socket; queries still waiting get null. */
  close(): void {
    this.closed = true;
    for (const s of [...this.slots]) this.fail(s, null);
    this.pools.clear();
  }

  /** Open sockets, live and draining (for tests and status). */
  openSockets(): number {
    return this.slots.size;
  }

  // -------------------------------------------------------------------------

  private policyFor(u: Upstream): PoolPolicy<Slot> {
    // The upstream list hands out the same objects until it changes: no key string per query.
    const known = this.byUpstream.get(u);
    if (known !== undefined && this.pools.get(known.key) === known.policy) return known.policy;
    const key = formatUpstream(u);
    let p = this.pools.get(key);
    if (p === undefined) {
      p = new PoolPolicy<Slot>(this.opts, this.now, (n) => this.random.int(n));
      this.pools.set(key, p);
    }
    this.byUpstream.set(u, { key, policy: p });
    return p;
  }

  private open(u: Upstream, policy: PoolPolicy<Slot>): Slot {
    const slot: Slot = {
      upstream: u, key: formatUpstream(u), sock: null, openedAt: this.now(), queries: 0, retired: false,
      pending: new Map(), inFlight: 0, closed: false, ageTimer: null,
    };
    this.slots.add(slot);
    policy.add(slot);
    slot.ageTimer = setTimeout(() => {
      slot.ageTimer = null;
      policy.retire(slot);
      this.closeIfDrained(slot);
    }, policy.lifetimeMs());
    slot.ageTimer.unref();
    const failed = (err: Error): void => {
      this.logger.debug('dns upstream socket failed', { upstream: slot.key, error: err.message });
      // Later: the caller is still putting its query on this slot.
      queueMicrotask(() => this.fail(slot, null));
    };
    try {
      slot.sock = this.openSocket(u.host, u.port, {
        message: (msg, address, port) => this.onMessage(slot, msg, address, port),
        error: failed,
      });
    } catch (err) {
      failed(err instanceof Error ? err : new Error(String(err)));
    }
    return slot;
  }

  private onMessage(slot: Slot, msg: Uint8Array, address: string, port: number): void {
    const u = slot.upstream;
    // The connected socket already filters by source; checked again so a
    // change in how the socket is set up cannot silently drop the rule.
    if (address !== u.host || port !== u.port) {
      this.dropped(slot, 'wrong-source');
      return;
    }
    const id = msg.length >= 2 ? ((msg[0] as number) << 8) | (msg[1] as number) : -1;
    const list = id >= 0 ? slot.pending.get(id) : undefined;
    let verdict: AnswerCheck = 'wrong-id';
    if (list === undefined) {
      // No query has this id: still say why it fails, for the debug log.
      verdict = checkAnswer(msg, { id: id < 0 ? 0 : id ^ 1, question: new Uint8Array(0) });
    } else {
      for (const p of list) {
        verdict = checkAnswer(msg, p.exp);
        if (verdict !== 'ok') continue;
        this.forget(slot, p);
        p.answered(msg);
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
    for (const p of waiting) p.answered(reply);
  }

  private shut(slot: Slot): void {
    this.pools.get(slot.key)?.retire(slot);
    if (slot.closed) return;
    slot.closed = true;
    this.slots.delete(slot);
    if (slot.ageTimer !== null) clearTimeout(slot.ageTimer);
    slot.ageTimer = null;
    slot.sock?.close();
    slot.sock = null;
    const policy = this.pools.get(slot.key);
    if (policy !== undefined && policy.liveSlots().length === 0) this.pools.delete(slot.key);
  }
}

/** The ticket of a query sent after close(): nothing to cancel. */
const CLOSED_TICKET: PoolTicket = Object.freeze({});
