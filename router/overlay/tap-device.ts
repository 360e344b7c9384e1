// TapDevice: the router's end of the TAP on the weave bridge. An adapter over
// the native addon: it owns one TAP fd, a preallocated read slab, and hands
// frames to one handler per batch as (slab, offsets, lengths, count).
//
// It never allocates per frame, never interprets frames, and never changes
// link state (MTU, up/down, addresses belong to the netlink plumbing).
//
// Frames in the slab are valid only until the handler returns: the next batch
// reuses the same slots. Copy what you keep. With a vnet header every frame
// starts with it (vnetHdrBytes bytes), on read and on write.

import { RouterError } from '../mesh/errors';
import { NativeReader } from './native-reader';
import { type LaneHandle, loadNative, nativeError, NATIVE_MAX_BATCH, type TapHandle, type WeaveNative } from './native';

/** TUNSETOFFLOAD flags (linux/if_tun.h). They need a vnet header. */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
/** Checksum offload plus TCP segmentation: reads return GSO super-frames (the biggest lever; README, benchmark). */
export const TAP_OFFLOAD_GSO = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

/** struct virtio_net_hdr; 12 is virtio_net_hdr_mrg_rxbuf (adds num_buffers). */
export type VnetHdrBytes = 10 | 12;

/** Measured sweet spot for frames per wakeup. */
export const DEFAULT_TAP_BATCH_COUNT = 64;
/**
 * Room per frame: a GSO super-frame is at most 64 KiB plus Ethernet and vnet
 * headers. Must exceed the largest frame: a read that fills its slot is
 * dropped as truncated.
 */
export const DEFAULT_TAP_FRAME_CAPACITY_BYTES = 65536 + 256;

const IFNAMSIZ = 16;

export interface TapOpenOptions {
  /** Keep the device after close (TUNSETPERSIST). Default false: it vanishes with the fd. */
  persist?: boolean;
  /** IFF_VNET_HDR: frames carry a virtio_net_hdr in front. Default false. */
  vnetHdr?: boolean;
  /** Size of that header. Default 10. Set explicitly, since a persistent TAP remembers old values. */
  vnetHdrBytes?: VnetHdrBytes;
  /** TUN_F_* flags; always applied, 0 by default. Non-zero needs vnetHdr. See TAP_OFFLOAD_GSO. */
  offloadFlags?: number;
  /** Frames per read batch, 1..256. Default 64. */
  maxBatchCount?: number;
  /** Bytes per read slot (vnet header included). Default 65536 + 256. */
  frameCapacityBytes?: number;
  /** Free bytes kept in front of every read slot, e.g. for an encapsulation header. Default 0. */
  headroomBytes?: number;
}

export type FramesHandler = (slab: Buffer, offsets: Int32Array, lengths: Int32Array, count: number) => void;

function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw RouterError.config(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

export class TapDevice extends NativeReader<TapHandle> {
  /** The kernel's name for the device (differs from the request if that held %d). */
  readonly name: string;
  /** Bytes of virtio_net_hdr in front of every frame; 0 without IFF_VNET_HDR. */
  readonly vnetHdrBytes: number;
  readonly maxBatchCount: number;
  readonly frameCapacityBytes: number;
  readonly headroomBytes: number;
  /** The read slab: frame i of a batch is slab[offsets[i], offsets[i] + lengths[i]). */
  readonly slab: Buffer;
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;

  private framesHandler: FramesHandler | null = null;
  // Bound once: the addon keeps this one function for the life of the reader.
  private readonly onNativeBatch = (count: number, errno: number): void => this.handleBatch(count, errno);

  private constructor(native: WeaveNative, handle: TapHandle, vnetHdrBytes: number, maxBatchCount: number,
    frameCapacityBytes: number, headroomBytes: number) {
    super(native, handle);
    this.name = handle.name;
    this.vnetHdrBytes = vnetHdrBytes;
    this.maxBatchCount = maxBatchCount;
    this.frameCapacityBytes = frameCapacityBytes;
    this.headroomBytes = headroomBytes;
    // 8-byte aligned slots so headers can be read with aligned views if ever wanted.
    const strideBytes = (headroomBytes + frameCapacityBytes + 7) & ~7;
    this.slab = Buffer.alloc(strideBytes * maxBatchCount);
    this.offsets = new Int32Array(maxBatchCount);
    for (let i = 0; i < maxBatchCount; i++) this.offsets[i] = i * strideBytes + headroomBytes;
    this.lengths = new Int32Array(maxBatchCount);
  }

  /**
   * Opens the TAP `name`, creating it if missing. Throws RouterError: 'config'
   * for bad options or names, 'io' when the kernel refuses (EBUSY: another fd
   * has it; EPERM: not root) or the addon is not built.
   */
  static open(name: string, opts: TapOpenOptions = {}): TapDevice {
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) >= IFNAMSIZ) {
      throw RouterError.config(`TAP device name must be 1..${IFNAMSIZ - 1} bytes, got ${JSON.stringify(name)}`);
    }
    const vnetHdr = opts.vnetHdr ?? false;
    const vnetHdrBytes: 0 | VnetHdrBytes = vnetHdr ? (opts.vnetHdrBytes ?? 10) : 0;
    if (vnetHdrBytes !== 0 && vnetHdrBytes !== 10 && vnetHdrBytes !== 12) {
      throw RouterError.config(`vnetHdrBytes must be 10 or 12, got ${String(vnetHdrBytes)}`);
    }
    const offloadFlags = checkInt('offloadFlags', opts.offloadFlags ?? 0, 0, 0x7f);
    if (offloadFlags !== 0 && !vnetHdr) throw RouterError.config('offloadFlags need vnetHdr: true');
    const maxBatchCount = checkInt('maxBatchCount', opts.maxBatchCount ?? DEFAULT_TAP_BATCH_COUNT, 1, NATIVE_MAX_BATCH);
    const frameCapacityBytes = checkInt('frameCapacityBytes',
      opts.frameCapacityBytes ?? DEFAULT_TAP_FRAME_CAPACITY_BYTES, vnetHdrBytes + 64, 1 << 20);
    const headroomBytes = checkInt('headroomBytes', opts.headroomBytes ?? 0, 0, 4096);
    const native = loadNative();
    let handle: TapHandle;
    try {
      handle = native.tapOpen(name, opts.persist ?? false, vnetHdrBytes, offloadFlags);
    } catch (err) {
      throw nativeError(`cannot open TAP ${name}`, err);
    }
    return new TapDevice(native, handle, vnetHdrBytes, maxBatchCount, frameCapacityBytes, headroomBytes);
  }

  /**
   * Sets the batch handler and starts reading (once; later calls only swap
   * the handler). An exception from the handler surfaces as an uncaught
   * exception, as it would from an event listener.
   */
  onFrames(handler: FramesHandler): void {
    if (this.isClosed) throw new RouterError('closed', `TAP ${this.name} is closed`);
    this.framesHandler = handler;
    if (this.reading) return;
    try {
      this.native.readStart(this.handle, this.slab, this.offsets, this.lengths, this.frameCapacityBytes,
        this.maxBatchCount, null, null, this.onNativeBatch);
    } catch (err) {
      throw nativeError(`cannot read TAP ${this.name}`, err);
    }
    this.reading = true;
  }

  /** Writes frames i < count; returns how many the kernel took. Kernel drops are counted in stats(), not thrown. */
  writeBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number {
    if (this.isClosed) return 0;
    try {
      return this.native.tapWrite(this.handle, slab, offsets, lengths, count);
    } catch (err) {
      throw nativeError(`TAP ${this.name} writeBatch`, err);
    }
  }

  writeFrame(buf: Uint8Array, offset: number, length: number): boolean {
    if (this.isClosed) return false;
    try {
      return this.native.tapWriteOne(this.handle, buf, offset, length);
    } catch (err) {
      throw nativeError(`TAP ${this.name} writeFrame`, err);
    }
  }

  /** The lane (native/lane.c) that may send a wakeup's one frame without JS; null: every frame comes here. */
  setLane(lane: LaneHandle | null): void {
    if (this.isClosed) return;
    try {
      this.native.tapSetLane(this.handle, lane);
    } catch (err) {
      throw nativeError(`TAP ${this.name} setLane`, err);
    }
  }

  /**
   * Reads and delivers one batch now, if frames are waiting, instead of at
   * the reader's next wakeup. Not from inside this device's own handler.
   */
  drainNow(): void {
    if (!this.reading || this.isClosed) return;
    const count = this.native.readNow(this.handle);
    if (count > 0) this.handleBatch(count, 0);
  }

  private handleBatch(count: number, errno: number): void {
    if (count > 0 && this.framesHandler !== null) this.framesHandler(this.slab, this.offsets, this.lengths, count);
    // The device was deleted under us: reading has stopped; the owner decides whether to close.
    // (The message is built only then: a string per batch otherwise.)
    if (errno !== 0) this.reportStopped(errno, `TAP ${this.name}: reading stopped`);
  }
}
