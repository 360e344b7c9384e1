// End-to-end ("far") protection of unicast frames between two peers that are
// not neighbours: the origin seals the frame once under a key only it and the
// destination hold (router/mesh/far-keys.ts exchanges them), relays pass it on
// without opening it, and the destination opens it once and runs a replay
// window on its far counter. This file keeps those keys and does the sealing
// and opening, in place, allocating nothing per frame.
//
// A far sleeve message (sleeve type 3, sleeve-codec.ts; built and relayed by
// far-path.ts):
//
//   +----------------+------------------+----------------+------------+------------------+----------+
//   | sleeve header  | inner header 13  | far header 16  | hop tag 16 | far body:        | far tag  |
//   | 16 (per hop)   | src, dst, hops   |                | (per hop)  | vnet hdr + frame | 16       |
//   +----------------+------------------+----------------+------------+------------------+----------+
//                    '--- sealed by each hop's SleeveSession ---'
//   far header: | ver=1 | kind | 0 0 | key id u32 | far counter u64 (< 2^53) |
//   kind 0: a frame; 1: a kernel path probe (kernel-relay.ts; only in sleeve
//   type 4, whose body is then one byte of flags). Both are in the AD, so
//   nobody in between can turn one into the other.
//   far AEAD: AES-256-GCM under the key of `key id` (origin -> destination),
//   nonce = 00 00 00 03 || far counter, associated data = src (6) || dst (6)
//   || far header (16): the hops byte, which relays rewrite, is left out.
//
// Each hop's own session still seals the 29 bytes of inner and far header
// (the hop tag), so a stranger can neither inject nor replay at any hop, and
// a relay learns where a frame goes but not what it says. The destination
// keeps up to FAR_SLOTS keys per origin (a rekey's old and new ones, and room
// for a replayed exchange: slots never used are evicted first).

import { writeCounter } from '../mesh/control-session';
import type { PeerName } from '../mesh/peer-name';
import type { AesGcm, AesGcmKey } from './aes-gcm';
import { AEAD_TAG_BYTES } from './frame-aead';
import type { LaneKeyCells, LaneOpenerCells } from './ports';
import { REJECT_AFTER_COUNTER, ReplayWindow } from './replay-window';

export const FAR_HEADER_BYTES = 16;
export const FAR_VERSION = 1;
/** What a far message adds to a hop-by-hop one: the far header and the far tag. */
export const FAR_OVERHEAD_BYTES = FAR_HEADER_BYTES + AEAD_TAG_BYTES;
export const FAR_KIND_FRAME = 0;
export const FAR_KIND_PATH_PROBE = 1;
const FAR_SLOTS = 4;
const FAR_NONCE_CHANNEL = 3;

export type FarOpen = number | 'auth' | 'replay' | 'far-key';

/** The counter lives in a cell off the JS heap: the lane (native/lane-far.c) seals on it too. */
interface SendKey { keyId: number; key: AesGcmKey; counter: Float64Array }
interface Slot { keyId: number; key: AesGcmKey; window: ReplayWindow; used: boolean; installedMs: number }

export class FarSessions {
  private readonly sends = new Map<PeerName, SendKey>();
  private readonly receives = new Map<PeerName, Slot[]>();
  private readonly nonce = Buffer.alloc(12);
  private readonly ad = Buffer.alloc(12 + FAR_HEADER_BYTES);
  /** Called when a key the lane may hold goes (lane-entries.ts then forgets its far entries). */
  onKeysChanged: (() => void) | null = null;

  constructor(private readonly aes: AesGcm) {
    this.nonce[3] = FAR_NONCE_CHANNEL;
  }

  /** Seal to `dst` under this key from now on (the old one is freed); null: seal nothing end to end to it. */
  setSend(dst: PeerName, keyId: number, key: Uint8Array | null): void {
    const old = this.sends.get(dst);
    if (old !== undefined) {
      old.key.dispose();
      this.sends.delete(dst);
      this.onKeysChanged?.();
    }
    if (key !== null) this.sends.set(dst, { keyId, key: this.aes.key(key, true), counter: new Float64Array(new ArrayBuffer(8)) });
  }

  hasSend(dst: PeerName): boolean {
    return this.sends.has(dst);
  }

  /** The peers we hold a send key to. */
  sendPeers(): IterableIterator<PeerName> {
    return this.sends.keys();
  }

  /** Opens far messages from `origin` under `keyId` too; false when that id is held already. */
  addReceive(origin: PeerName, keyId: number, key: Uint8Array, nowMs: number): boolean {
    let slots = this.receives.get(origin);
    if (slots === undefined) { slots = []; this.receives.set(origin, slots); }
    if (slots.some((s) => s.keyId === keyId)) return false;
    if (slots.length >= FAR_SLOTS) {
      // Never-used slots go first (a replayed exchange), then the oldest.
      let victim = 0;
      for (let i = 1; i < slots.length; i++) {
        const a = slots[i]!, b = slots[victim]!;
        if (a.used !== b.used ? !a.used : a.installedMs < b.installedMs) victim = i;
      }
      slots[victim]!.key.dispose();
      slots.splice(victim, 1);
      this.onKeysChanged?.();
    }
    slots.push({ keyId, key: this.aes.key(key, false), window: new ReplayWindow(), used: false, installedMs: nowMs });
    return true;
  }

  /** Frees every key shared with `peer`. */
  forget(peer: PeerName): void {
    this.setSend(peer, 0, null);
    const slots = this.receives.get(peer);
    if (slots === undefined) return;
    for (const s of slots) s.key.dispose();
    this.receives.delete(peer);
    this.onKeysChanged?.();
  }

  /** The send key to `dst` as the lane can use it (its context, counter cell and id); null without one. */
  laneSend(dst: PeerName): (LaneKeyCells & { keyId: number }) | null {
    const s = this.sends.get(dst);
    const sealer = s?.key.nativeHandle ?? null;
    return s === undefined || sealer === null ? null : { sealer, counter: s.counter, keyId: s.keyId };
  }

  /** The opening context and replay window of `origin`'s key `keyId` as the lane can use them; null when not held. */
  laneOpener(origin: PeerName, keyId: number): LaneOpenerCells | null {
    const slot = this.receives.get(origin)?.find((s) => s.keyId === keyId);
    const opener = slot?.key.nativeHandle ?? null;
    return slot === undefined || opener === null ? null : { opener, ring: slot.window.ring, highest: slot.window.highestCell };
  }

  close(): void {
    for (const peer of [...this.sends.keys(), ...this.receives.keys()]) this.forget(peer);
  }

  /**
   * Writes the far header at `hdr` and seals buf[hdr+32, +len) (the hop tag's
   * 16 bytes lie between) for `dst`; `names` = src || dst (12 bytes). Returns
   * the sealed body length (len + 16), or -1 without a usable key.
   */
  seal(dst: PeerName, names: Uint8Array, namesOff: number, buf: Buffer, hdr: number, len: number, kind = FAR_KIND_FRAME): number {
    const s = this.sends.get(dst);
    const counter = s?.counter[0] ?? REJECT_AFTER_COUNTER;
    if (s === undefined || counter >= REJECT_AFTER_COUNTER) return -1;
    s.counter[0] = counter + 1;
    buf[hdr] = FAR_VERSION; buf[hdr + 1] = kind; buf[hdr + 2] = 0; buf[hdr + 3] = 0;
    buf.writeUInt32BE(s.keyId, hdr + 4);
    writeCounter(buf, hdr + 8, counter);
    this.prepare(names, namesOff, buf, hdr, counter);
    return s.key.seal(buf, hdr + FAR_HEADER_BYTES + AEAD_TAG_BYTES, len, this.ad, this.nonce);
  }

  /** The far header at `hdr` (read after the hop opened it), and the sealed body after the hop tag (`len` with its tag): opens in place. */
  open(origin: PeerName, names: Uint8Array, namesOff: number, buf: Buffer, hdr: number, len: number): FarOpen {
    if (buf[hdr] !== FAR_VERSION) return 'auth';
    const slots = this.receives.get(origin);
    const keyId = buf.readUInt32BE(hdr + 4);
    let slot: Slot | undefined;
    if (slots !== undefined) for (const s of slots) if (s.keyId === keyId) { slot = s; break; }
    if (slot === undefined) return 'far-key';
    const counter = buf.readUInt32BE(hdr + 8) * 0x100000000 + buf.readUInt32BE(hdr + 12);
    this.prepare(names, namesOff, buf, hdr, counter);
    const n = slot.key.open(buf, hdr + FAR_HEADER_BYTES + AEAD_TAG_BYTES, len, this.ad, this.nonce);
    if (n < 0) return 'auth';
    // Only after it authenticated, so forged counters cannot move the window.
    if (!slot.window.accept(counter)) return 'replay';
    slot.used = true;
    return n;
  }

  /** The kind of an opened far message (FAR_KIND_*). */
  static kind(buf: Buffer, hdr: number): number {
    return buf[hdr + 1]!;
  }

  /** The key id of a far header (for telling its origin we lack it). */
  static keyId(buf: Buffer, hdr: number): number {
    return buf.readUInt32BE(hdr + 4);
  }

  private prepare(names: Uint8Array, namesOff: number, buf: Buffer, hdr: number, counter: number): void {
    // By hand, as sleeve-session.ts: Buffer.copy makes a view of the source per call.
    for (let i = 0; i < 12; i++) this.ad[i] = names[namesOff + i]!;
    for (let i = 0; i < FAR_HEADER_BYTES; i++) this.ad[12 + i] = buf[hdr + i]!;
    writeCounter(this.nonce, 4, counter);
  }
}
