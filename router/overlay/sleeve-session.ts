// The UDP sleeve's protection towards one neighbour: seals with the current
// send key and counter, opens with the receive key of the datagram's key
// phase, and keeps a replay window per phase. The keys live in the
// connection's SleeveKeyRing (router/mesh/sleeve-keys.ts), which the mesh
// rotates (router/mesh/key-schedule.ts); this session only reads it, and
// resets a phase's window when that phase gets a new key, as each epoch's
// counters start again at 0. Works in place on caller-owned buffers; returns
// drop reasons instead of throwing.

import { CHANNEL_UDP_SLEEVE, MAX_SEND_COUNTER, writeNonce } from '../mesh/control-session';
import type { SleeveKeyRing } from '../mesh/sleeve-keys';
import { AEAD_TAG_BYTES, FrameAead } from './frame-aead';
import { REJECT_AFTER_COUNTER, ReplayWindow } from './replay-window';
import { SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, writeSleeveHeader } from './sleeve-codec';

export type OpenResult = number | 'auth' | 'replay';

export class SleeveSession {
  /** Counter of a plaintext mesh (no ring); with keys the ring holds it. */
  private plainCounter = 0;
  private readonly windows: [ReplayWindow, ReplayWindow] = [new ReplayWindow(), new ReplayWindow()];
  /** The epoch each window has seen counters of; -1 before any. */
  private readonly windowEpochs: [number, number] = [-1, -1];
  private readonly nonce = Buffer.alloc(12);

  constructor(private readonly aead: FrameAead, private readonly keys: SleeveKeyRing | null, private readonly senderBytes: Uint8Array) {}

  get encrypted(): boolean {
    return this.keys !== null;
  }

  /** The epoch datagrams are sealed under now (0 for plaintext). */
  get sendEpoch(): number {
    return this.keys?.sendEpoch ?? 0;
  }

  /** Per-datagram bytes this session adds after the body. */
  get trailerBytes(): number {
    return this.keys ? AEAD_TAG_BYTES : 0;
  }

  /**
   * Writes the header at `off` and seals the body that the caller placed at
   * off+16 (bodyLen bytes, with room for the tag after it). Returns the
   * datagram length, or -1 once the counter is exhausted (the mesh rekeys
   * long before).
   */
  seal(buf: Buffer, off: number, type: number, bodyLen: number): number {
    const ring = this.keys;
    if (ring === null) {
      if (this.plainCounter >= MAX_SEND_COUNTER) return -1;
      writeSleeveHeader(buf, off, type, this.senderBytes, this.plainCounter++);
      return SLEEVE_HEADER_BYTES + bodyLen;
    }
    // The receiver refuses counters from REJECT_AFTER_COUNTER on: never send one.
    if (ring.sendCounter >= REJECT_AFTER_COUNTER) return -1;
    const counter = ring.sendCounter++;
    writeSleeveHeader(buf, off, (ring.sendEpoch & 1) === 1 ? type | SLEEVE_KEY_PHASE_BIT : type, this.senderBytes, counter);
    writeNonce(this.nonce, CHANNEL_UDP_SLEEVE, counter);
    const header = buf.subarray(off, off + SLEEVE_HEADER_BYTES);
    return SLEEVE_HEADER_BYTES + this.aead.sealInPlace(buf, off + SLEEVE_HEADER_BYTES, bodyLen, header, this.nonce, ring.sendKey);
  }

  /**
   * Opens the body of a datagram at `off` (length len) whose header was already
   * checked. Returns the body length. The replay check comes only after the
   * datagram authenticated, so forged counters cannot poison the window.
   */
  open(buf: Buffer, off: number, len: number, counter: number): OpenResult {
    const bodyLen = len - SLEEVE_HEADER_BYTES;
    const ring = this.keys;
    if (ring === null) return bodyLen;
    const phase = (buf[off + 1]! & SLEEVE_KEY_PHASE_BIT) === 0 ? 0 : 1;
    const key = ring.receiveKeys[phase];
    if (key === null) return 'auth';
    writeNonce(this.nonce, CHANNEL_UDP_SLEEVE, counter);
    const header = buf.subarray(off, off + SLEEVE_HEADER_BYTES);
    const plainLen = this.aead.openInPlace(buf, off + SLEEVE_HEADER_BYTES, bodyLen, header, this.nonce, key);
    if (plainLen < 0) return 'auth';
    const epoch = ring.receiveEpochs[phase];
    if (this.windowEpochs[phase] !== epoch) {
      // A new key in this phase: its counters start again.
      this.windows[phase].reset();
      this.windowEpochs[phase] = epoch;
    }
    if (!this.windows[phase].accept(counter)) return 'replay';
    return plainLen;
  }
}
