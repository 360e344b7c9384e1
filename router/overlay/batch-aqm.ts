// Active queue management for a queue the router drains in batches (the TAP
// ring from our bridge, the UDP socket from the underlay; codel.ts says why
// it lives in the router): times each batch, feeds CoDel, and applies its
// signals to TCP super-frames only (virtio_net_hdr gso_type set). Those are
// bulk TCP flows by construction, which react to a signal, while pings, ACKs,
// DNS and ARP never wait behind a decision to drop them. The signal is an ECN
// mark when the packet is ECN-capable, else a drop of the whole super-frame,
// as a qdisc drops a whole GSO skb.
//
// The clock is monotonic milliseconds with sub-millisecond resolution
// (performance.now in the daemon), injected for tests.

import { Codel, type CodelParams } from './codel';
import { markCongestion } from './ecn-mark';
import { VNET_GSO_NONE } from './sleeve-codec';

/**
 * Target 1 ms of standing delay over a 10 ms interval. The delay measured is
 * a lower bound (codel.ts): ring time comes on top, so frames see about twice
 * it. fq_codel's 5/100 ms are for Internet paths; between weave hosts round
 * trips are about a millisecond, and the router is the bottleneck only at
 * rates (over 1 Gbit/s) that long paths rarely reach with one TCP flow. A flow
 * with a round trip much longer than the interval, through a router that is
 * its bottleneck, gets more signals than it needs and loses some throughput.
 */
export const ROUTER_CODEL: CodelParams = { targetMs: 1, intervalMs: 10 };

export type AqmVerdict = 'pass' | 'marked' | 'drop';

export class BatchAqm {
  private readonly codel: Codel;
  private batchStartMs = NaN;
  private batchFrames = 0;

  constructor(private readonly nowMs: () => number, params: CodelParams = ROUTER_CODEL) {
    this.codel = new Codel(params);
  }

  /** Whether CoDel is signalling (for tests). */
  get signalling(): boolean {
    return this.codel.active;
  }

  /**
   * For each frame of a batch (vnet header first), before it is sent on:
   * pass it, or it now carries CE (pass it too), or drop it.
   */
  admit(buf: Uint8Array, off: number, len: number): AqmVerdict {
    if (this.batchFrames++ === 0) this.batchStartMs = this.nowMs();
    if (len < 2 || buf[off + 1] === VNET_GSO_NONE || !this.codel.take()) return 'pass';
    return markCongestion(buf, off, len) === 'marked' ? 'marked' : 'drop';
  }

  /** Once the batch has left (sends flushed, frames written): each of its frames waited at least this long. */
  endBatch(): void {
    if (this.batchFrames === 0) return;
    // CoDel judges no one-frame batch by its times (codel.ts): a lone frame costs no second clock read.
    const now = this.batchFrames === 1 ? this.batchStartMs : this.nowMs();
    this.codel.onBatch(now - this.batchStartMs, this.batchFrames, now);
    this.batchFrames = 0;
  }
}
