// The lone-frame lane over the addon (native/lane.c): what ports.ts's
// LoneFrameLane asks, as calls on one lane handle. It sends on a
// UdpBatchSocket and serves a TapDevice's one-frame wakeups; the composition
// (cli/data-plane.ts) joins the three with NativeLane.open.

import { RouterError } from '../mesh/errors';
import type { AeadHandle } from './aes-gcm';
import type { LaneHandle, LaneStats, WeaveNative } from './native';
import type { LaneKeyCells, LaneOpenerCells, LoneFrameLane, RelayEntry } from './ports';
import type { TapDevice } from './tap-device';
import { parseIPToBytes, type UdpBatchSocket } from './udp-batch';

export class NativeLane implements LoneFrameLane {
  private readonly addr = Buffer.alloc(16);
  private readonly toAddr = Buffer.alloc(16);

  private constructor(private readonly native: WeaveNative, private readonly handle: LaneHandle) {}

  /** A lane sending on `udp`, for `tap`'s frames up to maxFrameBytes (vnet header included). */
  static open(native: WeaveNative, tap: TapDevice, udp: UdpBatchSocket, maxFrameBytes: number, rejectAfterCounter: number): NativeLane {
    const lane = new NativeLane(native, udp.openLane(maxFrameBytes, rejectAfterCounter));
    tap.setLane(lane.handle);
    return lane;
  }

  set(macs: Uint8Array, head: Uint8Array, sealer: AeadHandle, counter: Float64Array, host: string, port: number): boolean {
    parseIPToBytes(host, this.addr, 0);
    try {
      return this.native.laneSet(this.handle, macs, head, sealer, counter, this.addr, port);
    } catch (err) {
      // The link's key was freed between the overlay's check and here, or the socket cannot reach
      // that family: no entry, JS keeps sending these frames.
      if (err instanceof RangeError || (err as { code?: unknown }).code === 'ERR_CLOSED') return false;
      throw RouterError.config(`lone-frame lane: ${String(err)}`);
    }
  }

  setReceive(type: number, names: Uint8Array, macs: Uint8Array, opener: AeadHandle, ring: Int32Array, highest: Float64Array,
    host: string, port: number): boolean {
    parseIPToBytes(host, this.addr, 0);
    try {
      return this.native.laneSetReceive(this.handle, type, names, macs, opener, ring, highest, this.addr, port);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_CLOSED') return false;
      throw RouterError.config(`lone-frame lane: ${String(err)}`);
    }
  }

  setRelay(r: RelayEntry): boolean {
    parseIPToBytes(r.fromHost, this.addr, 0);
    parseIPToBytes(r.toHost, this.toAddr, 0);
    try {
      return this.native.laneSetRelay(this.handle, r.inHead, r.names, r.opener, r.ring, r.highest, this.addr, r.fromPort, r.outHead, r.sealer,
        r.counter, this.toAddr, r.toPort, r.outStride);
    } catch (err) {
      // As set(): a key freed meanwhile, or another family: no entry, JS keeps relaying them.
      if (err instanceof RangeError || (err as { code?: unknown }).code === 'ERR_CLOSED') return false;
      throw RouterError.config(`lone-frame lane: ${String(err)}`);
    }
  }

  setFar(macs: Uint8Array, head: Uint8Array, hop: LaneKeyCells, farHead: Uint8Array, far: LaneKeyCells, host: string, port: number): boolean {
    parseIPToBytes(host, this.addr, 0);
    try {
      return this.native.laneSetFar(this.handle, macs, head, hop.sealer, hop.counter, farHead, far.sealer, far.counter, this.addr, port);
    } catch (err) {
      // As set().
      if (err instanceof RangeError || (err as { code?: unknown }).code === 'ERR_CLOSED') return false;
      throw RouterError.config(`lone-frame lane: ${String(err)}`);
    }
  }

  setFarReceive(type: number, names: Uint8Array, origin: Uint8Array, macs: Uint8Array, hop: LaneOpenerCells, farKeyId: number,
    far: LaneOpenerCells, host: string, port: number): boolean {
    parseIPToBytes(host, this.addr, 0);
    try {
      return this.native.laneSetFarReceive(this.handle, type, names, origin, macs, hop.opener, hop.ring, hop.highest, farKeyId, far.opener,
        far.ring, far.highest, this.addr, port);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_CLOSED') return false;
      throw RouterError.config(`lone-frame lane: ${String(err)}`);
    }
  }

  clear(): void {
    this.native.laneClear(this.handle);
  }

  takeSeen(out: Uint8Array): number {
    return this.native.laneTakeSeen(this.handle, out);
  }

  stats(): LaneStats {
    return this.native.laneStats(this.handle);
  }
}
