// The UDP sleeve's protection towards one neighbour: seals with the current
// send key and counter, opens with the receive key of the datagram's key
// phase, and keeps a replay window per phase. The keys live in the
// connection's SleeveKeyRing (router/mesh/sleeve-keys.ts), which the mesh
// rotates (router/mesh/key-schedule.ts); this session only reads it, and
// resets a phase's window when that phase gets a new key, as each epoch's
// counters start again at 0. Works in place on caller-owned buffers; returns
// drop reasons instead of throwing.
//
// The cipher is the ring's, agreed in the handshake: ChaCha20-Poly1305
// (frame-aead.ts, keyed per call) or AES-256-GCM (aes-gcm.ts, one OpenSSL
// context per key). The session holds one keyed sealer and one opener per
// phase, rebuilt when the ring tells it a key changed, so a dropped key's
// AES context is freed at once and the per-datagram path allocates nothing.
// A datagram sealed under the other cipher simply fails to authenticate.

import { RouterError } from '../mesh/errors';
import { CHANNEL_UDP_SLEEVE, MAX_SEND_COUNTER, writeNonce } from '../mesh/control-session';
import type { SleeveKeyRing } from '../mesh/sleeve-keys';
import type { AeadHandle, AesGcm } from './aes-gcm';
import { AEAD_TAG_BYTES, FrameAead } from './frame-aead';
import type { LaneKeyCells, LaneOpenerCells } from './ports';
import { REJECT_AFTER_COUNTER, ReplayWindow } from './replay-window';
import { SLEEVE_HEADER_BYTES, SLEEVE_KEY_PHASE_BIT, SLEEVE_VERSION, writeSleeveHeader } from './sleeve-codec';

export type OpenResult = number | 'auth' | 'replay';

/** One key in one direction, whatever the cipher keeps for it (AesGcmKey is one). */
interface KeyedAead {
  /** Seals or opens buf[off, off+len) in place (see FrameAead); -1 when it fails. */
  run(buf: Buffer, off: number, len: number, ad: Buffer, nonce: Buffer): number;
  /** The addon's context, when the key lives there (AES-256-GCM). */
  readonly nativeHandle?: AeadHandle | null;
  dispose(): void;
}

/** What the lone-frame lane needs to seal as this session would (lane-entries.ts). */
export interface LaneKey extends LaneKeyCells {
  /** The type byte's key phase bit for the current send key. */
  phaseBit: number;
}

/** What it needs to open a key phase's datagrams as this session would: the key and that phase's replay window. */
export type LaneOpener = LaneOpenerCells;

/** ChaCha20-Poly1305 keys by reference: the ring owns, and zeroes, the bytes. */
class ChachaKey implements KeyedAead {
  constructor(private readonly aead: FrameAead, private readonly key: Buffer, private readonly seal: boolean) {}
  run(buf: Buffer, off: number, len: number, ad: Buffer, nonce: Buffer): number {
    return this.seal ? this.aead.sealInPlace(buf, off, len, ad, nonce, this.key) : this.aead.openInPlace(buf, off, len, ad, nonce, this.key);
  }
  dispose(): void {}
}

export class SleeveSession {
  /** Counter of a plaintext mesh (no ring); with keys the ring holds it. */
  private plainCounter = 0;
  private readonly windows: [ReplayWindow, ReplayWindow] = [new ReplayWindow(), new ReplayWindow()];
  /** The epoch each window has seen counters of; -1 before any. */
  private readonly windowEpochs: [number, number] = [-1, -1];
  private readonly nonce = Buffer.alloc(12);
  /** The header, copied: the associated data, without a view allocated per datagram. */
  private readonly ad = Buffer.alloc(SLEEVE_HEADER_BYTES);
  private sealer: KeyedAead | null = null;
  private sealerKey: Buffer | null = null;
  private readonly openers: [KeyedAead | null, KeyedAead | null] = [null, null];
  private readonly openerKeys: [Buffer | null, Buffer | null] = [null, null];
  private readonly listener = (): void => this.syncKeys();
  /** Called after any key changed or the session closed: what a lane holds of it is stale (lane-entries.ts). */
  onKeysChanged: (() => void) | null = null;

  /** `aes` is needed when the ring's cipher is AES-256-GCM (the router offers it only when the data plane has it). */
  constructor(private readonly aead: FrameAead, private readonly keys: SleeveKeyRing | null, private readonly senderBytes: Uint8Array,
    private readonly aes: AesGcm | null = null) {
    if (keys === null) return;
    if (keys.cipher === 'aes-256-gcm' && aes === null) throw RouterError.config('the connection agreed on AES-256-GCM but this data plane has none');
    keys.onChange = this.listener;
    this.syncKeys();
  }

  /** Frees the per-key cipher state now; the session seals and opens nothing after. */
  close(): void {
    const ring = this.keys;
    if (ring === null) return;
    if (ring.onChange === this.listener) ring.onChange = null;
    this.sealer?.dispose();
    this.sealer = null;
    this.sealerKey = null;
    for (const phase of [0, 1] as const) {
      this.openers[phase]?.dispose();
      this.openers[phase] = null;
      this.openerKeys[phase] = null;
    }
    this.onKeysChanged?.();
  }

  /** The current send key as the lone-frame lane can use it, or null: plaintext, ChaCha20-Poly1305 (keyed per call in JS), no key. */
  laneKey(): LaneKey | null {
    const ring = this.keys;
    const sealer = this.sealer?.nativeHandle ?? null;
    if (ring === null || sealer === null || ring.disposed) return null;
    return { sealer, counter: ring.sendCounterCell, phaseBit: (ring.sendEpoch & 1) === 1 ? SLEEVE_KEY_PHASE_BIT : 0 };
  }

  /** The cipher of this session's datagrams; null when plaintext. */
  get cipher(): SleeveKeyRing['cipher'] | null {
    return this.keys?.cipher ?? null;
  }

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
  seal(buf: Buffer, off: number, type: number, bodyLen: number, version = SLEEVE_VERSION): number {
    const ring = this.keys;
    if (ring === null) {
      if (this.plainCounter >= MAX_SEND_COUNTER) return -1;
      writeSleeveHeader(buf, off, type, this.senderBytes, this.plainCounter++, version);
      return SLEEVE_HEADER_BYTES + bodyLen;
    }
    // The receiver refuses counters from REJECT_AFTER_COUNTER on: never send one.
    const cell = ring.sendCounterCell;
    const counter = cell[0]!;
    if (counter >= REJECT_AFTER_COUNTER) return -1;
    const sealer = this.sealer;
    if (sealer === null) return -1;
    cell[0] = counter + 1;
    // The header is the AD: written there first, then set whole into the datagram (Buffer.copy from a
    // range makes a view per call; a byte loop gets optimized early, paging in TurboFan: +3.5 MB RSS).
    writeSleeveHeader(this.ad, 0, (ring.sendEpoch & 1) === 1 ? type | SLEEVE_KEY_PHASE_BIT : type, this.senderBytes, counter, version);
    buf.set(this.ad, off);
    writeNonce(this.nonce, CHANNEL_UDP_SLEEVE, counter);
    const sealedLen = sealer.run(buf, off + SLEEVE_HEADER_BYTES, bodyLen, this.ad, this.nonce);
    return sealedLen < 0 ? -1 : SLEEVE_HEADER_BYTES + sealedLen;
  }

  /**
   * The opening key and replay window of this type byte's key phase as the
   * lone-frame lane can use them, or null: no native key, or the window is not
   * yet the current key's (the next datagram JS opens resets it).
   */
  laneOpener(typeByte: number): LaneOpener | null {
    const ring = this.keys;
    if (ring === null || ring.disposed) return null;
    const phase = (typeByte & SLEEVE_KEY_PHASE_BIT) === 0 ? 0 : 1;
    const opener = this.openers[phase]?.nativeHandle ?? null;
    if (opener === null || this.windowEpochs[phase] !== ring.receiveEpochs[phase]) return null;
    const window = this.windows[phase];
    return { opener, ring: window.ring, highest: window.highestCell };
  }

  /**
   * Read-only: whether a counter with this type byte's phase was already
   * accepted (or is too old) under the phase's current key, so its segments
   * need no reassembly. Changes nothing, so a forged header cannot harm.
   */
  stale(typeByte: number, counter: number): boolean {
    const ring = this.keys;
    if (ring === null) return false;
    const phase = (typeByte & SLEEVE_KEY_PHASE_BIT) === 0 ? 0 : 1;
    return this.windowEpochs[phase] === ring.receiveEpochs[phase] && !this.windows[phase].wouldAccept(counter);
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
    const opener = this.openers[phase];
    if (opener === null) return 'auth';
    writeNonce(this.nonce, CHANNEL_UDP_SLEEVE, counter);
    // By hand: Buffer.copy makes a view of the source per call.
    for (let i = 0; i < SLEEVE_HEADER_BYTES; i++) this.ad[i] = buf[off + i]!;
    const plainLen = opener.run(buf, off + SLEEVE_HEADER_BYTES, bodyLen, this.ad, this.nonce);
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

  /** Follows the ring: a keyed sealer or opener per key it holds, each dropped (and freed) with its key. */
  private syncKeys(): void {
    const ring = this.keys!;
    const send = ring.disposed ? null : ring.sendKey;
    if (send !== this.sealerKey) {
      this.sealer?.dispose();
      this.sealer = send === null ? null : this.keyed(send, true);
      this.sealerKey = send;
    }
    for (const phase of [0, 1] as const) {
      const key = ring.receiveKeys[phase];
      if (key === this.openerKeys[phase]) continue;
      this.openers[phase]?.dispose();
      this.openers[phase] = key === null ? null : this.keyed(key, false);
      this.openerKeys[phase] = key;
    }
    this.onKeysChanged?.();
  }

  private keyed(key: Buffer, seal: boolean): KeyedAead {
    return this.keys!.cipher === 'chacha20-poly1305' ? new ChachaKey(this.aead, key, seal) : this.aes!.key(key, seal);
  }
}
