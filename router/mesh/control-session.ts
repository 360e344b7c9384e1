// Owns the protection of control messages on one TCP connection once the
// handshake (router/mesh/handshake.ts) is done: sealing outgoing payloads and
// opening incoming ones, strictly in order. The connection layer frames each
// payload with its own u32 length prefix; this file only produces and consumes
// payloads, and never touches a socket, a timer or a logger.
//
// Sealed payload layout (one per control message), protocol version 2:
//
//    0       1                   9
//   +-------+-------------------+---------------------------------+------------+
//   | key   | counter (8 bytes, | chacha20poly1305-ietf ciphertext| tag        |
//   | phase | big-endian, <2^53)| (same length as the plaintext)  | (16 bytes) |
//   +-------+-------------------+---------------------------------+------------+
//
//   key phase         = the sender's key epoch mod 256 (key-schedule.ts)
//   nonce (12 bytes)  = 0x00 0x00 0x00 channel || counter (8 bytes, big-endian)
//   associated data   = the 9 header bytes
//
// Why this shape: each direction has its own key per epoch (key-derivation.ts),
// so a counter only has to be unique per key, and restarts at 0 with each
// epoch; the channel byte additionally keeps the TCP control nonces apart from
// the UDP sleeve nonces should a key ever be shared between them by mistake
// (weaveworks/mesh builds its nonces the same way: sequence number plus
// direction and transport bits). TCP delivers in order, so the receiver
// demands exactly the next counter; the sliding window in
// router/overlay/replay-window.ts is for the UDP sleeve, which may reorder.
//
// Rekeying (key-schedule.ts): the receiver holds the current key and, once a
// rekey has reached it, the next one; the phase byte says which one a message
// is under. The first authentic message under the next key promotes it and
// zeroes the old one: TCP is in order, so nothing under the old key can follow.
//
// The counter is carried in the clear (and authenticated as associated data)
// rather than implied, so that a dropped or replayed message is reported as
// 'replay' with both counters instead of an opaque authentication failure.

import { MeshReader } from './peer-name';
import { RouterError } from './errors';
import { sodium } from './sodium';

/** Nonce channel byte for control messages on a TCP connection. */
export const CHANNEL_TCP_CONTROL = 1;
/** Nonce channel byte for data frames on the UDP sleeve (router/overlay/sleeve-codec.ts, sleeve-session.ts). */
export const CHANNEL_UDP_SLEEVE = 2;
export type NonceChannel = typeof CHANNEL_TCP_CONTROL | typeof CHANNEL_UDP_SLEEVE;

export const PHASE_BYTES = 1;
export const COUNTER_BYTES = 8;
export const HEADER_BYTES = PHASE_BYTES + COUNTER_BYTES;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SESSION_KEY_BYTES = 32;
/** Smallest valid sealed payload: a counter and the tag of an empty plaintext. */
export const SEALED_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES;
/**
 * The highest counter a sender may use. Counters stay exact doubles below 2^53
 * (no BigInt per message); past this a sender refuses to seal rather than
 * reuse a nonce. Keys rotate long before (key-schedule.ts rekeys on time and
 * at a counter threshold far below this), so this is a last line of defence.
 */
export const MAX_SEND_COUNTER = Number.MAX_SAFE_INTEGER;

/** Per-connection message protection, plaintext or sealed. */
export interface ControlSession {
  readonly encrypted: boolean;
  /** Returns the payload to frame and send. */
  seal(plain: Uint8Array): Uint8Array;
  /** Returns the plaintext of a received payload; throws RouterError and leaves state unchanged on failure. */
  open(payload: Uint8Array): Uint8Array;
}

/** A mesh without a password: payloads pass through untouched (status reports this loudly). */
export class PlaintextSession implements ControlSession {
  readonly encrypted = false;
  seal(plain: Uint8Array): Uint8Array { return plain; }
  open(payload: Uint8Array): Uint8Array { return payload; }
}

/** Writes a big-endian counter below 2^53 into 8 bytes at `off`. */
export function writeCounter(out: Uint8Array, off: number, counter: number): void {
  // The test spares unoptimized code (a lightly used router's) a heap number per call for the division.
  const hi = counter > 0xffffffff ? Math.floor(counter / 0x100000000) : 0;
  const lo = counter >>> 0;
  out[off] = hi >>> 24; out[off + 1] = (hi >>> 16) & 0xff; out[off + 2] = (hi >>> 8) & 0xff; out[off + 3] = hi & 0xff;
  out[off + 4] = lo >>> 24; out[off + 5] = (lo >>> 16) & 0xff; out[off + 6] = (lo >>> 8) & 0xff; out[off + 7] = lo & 0xff;
}

/**
 * Fills a 12-byte nonce: three zero bytes, the channel byte, then the counter.
 * Exported so the sleeve builds its nonces the same way and they can never
 * coincide with control nonces.
 */
export function writeNonce(out: Uint8Array, channel: NonceChannel, counter: number): void {
  out[0] = 0; out[1] = 0; out[2] = 0; out[3] = channel;
  writeCounter(out, 4, counter);
}

/**
 * ChaCha20-Poly1305 with one key per direction and epoch and an in-order
 * counter per key. Starts at epoch 0; key-schedule.ts moves it on.
 */
export class SealedSession implements ControlSession {
  readonly encrypted = true;
  private sendKey: Uint8Array;
  private sendEpochValue = 0;
  private nextSendCounter = 0;
  private receiveKey: Uint8Array;
  private receiveEpochValue = 0;
  private nextReceiveCounter = 0;
  /** The next epoch's receive key, once a rekey reached us; promoted by its first message. */
  private pending: { epoch: number; key: Uint8Array } | null = null;
  // Reused: seal/open are synchronous, so one scratch nonce per session suffices.
  private readonly nonce = new Uint8Array(NONCE_BYTES);

  constructor(sendKey: Uint8Array, receiveKey: Uint8Array) {
    checkKey(sendKey);
    checkKey(receiveKey);
    this.sendKey = sendKey;
    this.receiveKey = receiveKey;
  }

  /** Counters of the next message to send and to receive under the current keys (for status and the rekey threshold). */
  get counters(): { send: number; receive: number } {
    return { send: this.nextSendCounter, receive: this.nextReceiveCounter };
  }

  get sendEpoch(): number { return this.sendEpochValue; }
  get receiveEpoch(): number { return this.receiveEpochValue; }

  /** From the next message on, seal under `key` as `epoch`; the old key is zeroed. Takes ownership of `key`. */
  rotateSend(epoch: number, key: Uint8Array): void {
    checkKey(key);
    sodium().memzero(this.sendKey);
    this.sendKey = key;
    this.sendEpochValue = epoch;
    this.nextSendCounter = 0;
  }

  /** Accepts messages under `key` as `epoch` from now on, besides the current key until the first such message. Takes ownership. */
  expectReceive(epoch: number, key: Uint8Array): void {
    checkKey(key);
    if ((epoch & 0xff) === (this.receiveEpochValue & 0xff)) throw new Error(`control session: epoch ${epoch} has the phase of the current ${this.receiveEpochValue}`);
    if (this.pending !== null) sodium().memzero(this.pending.key);
    this.pending = { epoch, key };
  }

  /** Zeroes every key; the session is unusable afterwards. */
  dispose(): void {
    const na = sodium();
    na.memzero(this.sendKey);
    na.memzero(this.receiveKey);
    if (this.pending !== null) na.memzero(this.pending.key);
    this.pending = null;
  }

  seal(plain: Uint8Array): Uint8Array {
    const counter = this.nextSendCounter;
    if (counter > MAX_SEND_COUNTER) {
      // Unreachable in practice (the rekey threshold is far lower); refusing beats reusing a nonce.
      throw RouterError.limit('control send counter', counter, MAX_SEND_COUNTER);
    }
    const out = new Uint8Array(HEADER_BYTES + plain.length + TAG_BYTES);
    out[0] = this.sendEpochValue & 0xff;
    writeCounter(out, PHASE_BYTES, counter);
    writeNonce(this.nonce, CHANNEL_TCP_CONTROL, counter);
    const ad = out.subarray(0, HEADER_BYTES);
    const sealed = sodium().crypto_aead_chacha20poly1305_ietf_encrypt(plain, ad, null, this.nonce, this.sendKey);
    out.set(sealed, HEADER_BYTES);
    this.nextSendCounter = counter + 1;
    return out;
  }

  open(payload: Uint8Array): Uint8Array {
    // Cheap checks before any crypto.
    if (payload.length < SEALED_OVERHEAD_BYTES) {
      throw RouterError.decode('sealed control message', `${payload.length} bytes is shorter than the minimum of ${SEALED_OVERHEAD_BYTES}`);
    }
    const r = new MeshReader(payload, 'sealed control message');
    const phase = r.u8('key phase');
    const counter = r.u53('counter');
    const pending = this.pending;
    const next = pending !== null && phase === (pending.epoch & 0xff);
    if (!next && phase !== (this.receiveEpochValue & 0xff)) {
      throw new RouterError('auth', `sealed control message under key phase ${phase}, expected ${this.receiveEpochValue & 0xff}`);
    }
    const ad = payload.subarray(0, HEADER_BYTES);
    writeNonce(this.nonce, CHANNEL_TCP_CONTROL, counter);
    let plain: Uint8Array;
    try {
      plain = sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, payload.subarray(HEADER_BYTES), ad, this.nonce, next ? pending.key : this.receiveKey);
    } catch (err) {
      throw new RouterError('auth', 'sealed control message failed authentication', { cause: err });
    }
    // Only an authentic counter is worth comparing: an attacker cannot forge one.
    const expected = next ? 0 : this.nextReceiveCounter;
    if (counter !== expected) {
      throw new RouterError('replay', `replayed or reordered control message: expected counter ${expected}, got ${counter}`);
    }
    if (next) {
      sodium().memzero(this.receiveKey);
      this.receiveKey = pending.key;
      this.receiveEpochValue = pending.epoch;
      this.pending = null;
    }
    this.nextReceiveCounter = counter + 1;
    return plain;
  }
}

function checkKey(key: Uint8Array): void {
  if (key.length !== SESSION_KEY_BYTES) throw RouterError.config(`session keys must be ${SESSION_KEY_BYTES} bytes, got ${key.length}`);
}
