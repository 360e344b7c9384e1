// The UDP sleeve's protection towards one neighbour: a send counter and key,
// a receive key and replay window. Keys come from that neighbour's control
// handshake (one per direction), so a new connection means fresh keys and
// fresh counters. Works in place on caller-owned buffers; returns drop
// reasons instead of throwing.

import { CHANNEL_UDP_SLEEVE, MAX_SEND_COUNTER, writeNonce } from '../mesh/control-session';
import { AEAD_TAG_BYTES, FrameAead } from './frame-aead';
import { ReplayWindow } from './replay-window';
import { SLEEVE_HEADER_BYTES, writeSleeveHeader } from './sleeve-codec';

export type OpenResult = number | 'auth' | 'replay';

export class SleeveSession {
  private sendCounter = 0;
  private readonly window = new ReplayWindow();
  private readonly nonce = Buffer.alloc(12);
  private readonly sendKey: Buffer | null;
  private readonly receiveKey: Buffer | null;

  constructor(private readonly aead: FrameAead, keys: { send: Uint8Array; receive: Uint8Array } | null, private readonly senderBytes: Uint8Array) {
    this.sendKey = keys ? Buffer.from(keys.send) : null;
    this.receiveKey = keys ? Buffer.from(keys.receive) : null;
  }

  get encrypted(): boolean {
    return this.sendKey !== null;
  }

  /** Per-datagram bytes this session adds after the body. */
  get trailerBytes(): number {
    return this.sendKey ? AEAD_TAG_BYTES : 0;
  }

  /**
   * Writes the header at `off` and seals the body that the caller placed at
   * off+16 (bodyLen bytes, with room for the tag after it). Returns the datagram length, or -1 once the counter is exhausted.
   */
  seal(buf: Buffer, off: number, type: number, bodyLen: number): number {
    if (this.sendCounter >= MAX_SEND_COUNTER) return -1;
    const counter = this.sendCounter++;
    writeSleeveHeader(buf, off, type, this.senderBytes, counter);
    if (!this.sendKey) return SLEEVE_HEADER_BYTES + bodyLen;
    writeNonce(this.nonce, CHANNEL_UDP_SLEEVE, counter);
    const header = buf.subarray(off, off + SLEEVE_HEADER_BYTES);
    return SLEEVE_HEADER_BYTES + this.aead.sealInPlace(buf, off + SLEEVE_HEADER_BYTES, bodyLen, header, this.nonce, this.sendKey);
  }

  /**
   * Opens the body of a datagram at `off` (length len) whose header was already
   * checked. Returns the body length. The replay check comes only after the
   * datagram authenticated, so forged counters cannot poison the window.
   */
  open(buf: Buffer, off: number, len: number, counter: number): OpenResult {
    const bodyLen = len - SLEEVE_HEADER_BYTES;
    if (this.receiveKey) {
      writeNonce(this.nonce, CHANNEL_UDP_SLEEVE, counter);
      const header = buf.subarray(off, off + SLEEVE_HEADER_BYTES);
      const plainLen = this.aead.openInPlace(buf, off + SLEEVE_HEADER_BYTES, bodyLen, header, this.nonce, this.receiveKey);
      if (plainLen < 0) return 'auth';
      if (!this.window.accept(counter)) return 'replay';
      return plainLen;
    }
    return bodyLen;
  }
}
