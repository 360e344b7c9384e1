// An in-memory DatagramPort for unit tests of two Overlays: what one side
// commits reaches the other side's handler at flush, one batch per datagram,
// as if from this port's host on port 6783.

import { DatagramHandler, DatagramPort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';

export class PairPort implements DatagramPort {
  readonly stage = Buffer.alloc(STAGE_SLOT_BYTES);
  other: PairPort | null = null;
  /** Every datagram flushed, as sent (before the other side opens it in place). */
  readonly sent: Buffer[] = [];
  private handler: DatagramHandler | null = null;
  private batchEnd: (() => void) | null = null;
  private readonly queued: Buffer[] = [];
  readonly released: number[] = [];
  constructor(readonly host: string) {}
  start(h: DatagramHandler, end: () => void): void { this.handler = h; this.batchEnd = end; }
  stageSlab(): Buffer { return this.stage; }
  stageOffset(): number { return 0; }
  commit(len: number): void { this.queued.push(Buffer.from(this.stage.subarray(0, len))); }
  flush(): void {
    for (const d of this.queued.splice(0)) {
      this.sent.push(Buffer.from(d));
      this.other!.handler!(d, 0, d.length, this.host, 6783, 0);
      this.other!.batchEnd!();
    }
  }
  releaseIdle(keepBytes: number): number { this.released.push(keepBytes); return 1000; }
  close(): void {}
}

/** Two ports joined to each other. */
export function pairPorts(hostA: string, hostB: string): [PairPort, PairPort] {
  const a = new PairPort(hostA);
  const b = new PairPort(hostB);
  a.other = b;
  b.other = a;
  return [a, b];
}
