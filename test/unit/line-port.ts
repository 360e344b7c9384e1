// Test helper: a DatagramPort for data-path tests that wire Overlays in a
// line in memory. commit() and sendFrom() copy what would leave, as the
// kernel does, with where it goes; the test delivers it to the port of the
// node at that address. Shared by the far-path and kernel-relay tests.

import { type DatagramHandler, type DatagramPort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';

export interface Sent { host: string; port: number; bytes: Buffer; seg: number }

export class LinePort implements DatagramPort {
  readonly segmentation = true;
  readonly stage = Buffer.alloc(STAGE_SLOT_BYTES);
  handler: DatagramHandler | null = null;
  batchEnd: (() => void) | null = null;
  readonly out: Sent[] = [];
  start(h: DatagramHandler, end: () => void): void { this.handler = h; this.batchEnd = end; }
  stageSlab(): Buffer { return this.stage; }
  stageOffset(): number { return 0; }
  commit(len: number, host: string, port: number, seg = 0): void { this.out.push({ host, port, bytes: Buffer.from(this.stage.subarray(0, len)), seg }); }
  sendFrom(buf: Buffer, off: number, len: number, host: string, port: number, seg = 0): void {
    this.out.push({ host, port, bytes: Buffer.from(buf.subarray(off, off + len)), seg });
  }
  flush(): void {}
  close(): void {}
}
