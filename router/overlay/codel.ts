// CoDel (RFC 8289) for the one queue the kernel cannot manage for us: the
// TAP's ring in front of the router, plus the batch the router is working on.
//
// Why here and not a qdisc: tun never stops its transmit queue; when its ring
// (txqueuelen frames) is full it drops the frame (measured on 6.18: with
// txqueuelen 4 a pfifo on the TAP never held a byte while the device counted
// thousands of tx drops). So a qdisc on the TAP (fq_codel, codel) never sees
// a backlog, and TCP Small Queues stop at the TAP too (tun orphans the skb).
// Meanwhile we drop nothing, a container's TCP grows its flight to the
// receive window, and the excess waits for the router: ~4 ms at the rates we
// reach, in frames of up to 64 KiB, so a ring sized in frames bounds nothing
// useful (txqueuelen 64 is still 4 MiB) and a smaller one only tail-drops.
//
// What is measured: the router reads the ring in batches and sends a batch's
// datagrams at its end, so every frame of a batch waited at least from the
// batch's start to its flush. That is a lower bound of each frame's sojourn
// (the time in the ring comes on top), which is what CoDel needs: it acts
// only when the queue has not drained below `target` for a whole `interval`,
// then signals at intervals shrinking with 1/sqrt(count), and stops as soon as
// a batch is quick again. A batch of one frame is never "above" (RFC 8289's
// "queue no longer than one packet" rule), so a slow router alone is not a
// queue. One signal at most per batch.
//
// Pure: times come in as arguments (milliseconds, any monotonic origin).

export interface CodelParams {
  /** Acceptable standing queue delay. */
  targetMs: number;
  /** How long the delay must stay above target before we act; about a round trip of the flows we carry. */
  intervalMs: number;
}

export class Codel {
  /** When the delay, above target since then, becomes a standing queue; NaN while below target. */
  private firstAboveMs = NaN;
  private dropping = false;
  private count = 0;
  private lastCount = 0;
  private dropNextMs = 0;
  private owed = false;

  constructor(private readonly params: CodelParams) {
    if (!(params.targetMs > 0 && params.intervalMs > params.targetMs)) throw new RangeError(`CoDel needs 0 < target < interval, got ${params.targetMs}/${params.intervalMs}`);
  }

  /** Whether the controller is in its signalling state (for tests and status). */
  get active(): boolean {
    return this.dropping;
  }

  /** After a batch of `frames` frames: the least time any of them waited (ms), and the time now. */
  onBatch(sojournMs: number, frames: number, nowMs: number): void {
    const { targetMs, intervalMs } = this.params;
    if (!(sojournMs >= targetMs) || frames <= 1) {
      this.firstAboveMs = NaN;
      this.dropping = false;
      this.owed = false;
      return;
    }
    if (!this.dropping) {
      if (Number.isNaN(this.firstAboveMs)) {
        this.firstAboveMs = nowMs + intervalMs;
        return;
      }
      if (nowMs < this.firstAboveMs) return;
      // Entering the signalling state: resume near the last rate if we left it only recently (RFC 8289, section 5.5).
      this.dropping = true;
      const delta = this.count - this.lastCount;
      this.count = delta > 1 && nowMs - this.dropNextMs < 16 * intervalMs ? delta : 1;
      this.lastCount = this.count;
      this.dropNextMs = this.controlLaw(nowMs);
      this.owed = true;
      return;
    }
    if (nowMs >= this.dropNextMs) {
      this.count++;
      this.dropNextMs = this.controlLaw(this.dropNextMs);
      this.owed = true;
    }
  }

  /** Whether the next frame that can carry a congestion signal should: true once per signal. */
  take(): boolean {
    if (!this.owed) return false;
    this.owed = false;
    return true;
  }

  private controlLaw(fromMs: number): number {
    return fromMs + this.params.intervalMs / Math.sqrt(this.count);
  }
}
