// Owns the UDP sleeve keys of one connection as they rotate: the key the
// sleeve seals with (its epoch and the counter under it) and up to two receive
// keys, one per key phase (epoch & 1), so datagrams under the previous epoch
// still open while the two sides switch. key-schedule.ts changes it; the
// overlay's SleeveSession (router/overlay/sleeve-session.ts) reads it on every
// datagram and bumps the send counter. Plain fields on purpose: the hot path
// reads them with no call and no allocation.
//
// Keys are Buffers (sodium-native takes them as they are) allocated here, not
// from Node's shared pool, and zeroed when dropped. The cipher they are for
// was agreed in the handshake and never changes on a connection. A session
// that keeps per-key cipher state (AES-256-GCM contexts) listens through
// onChange, so it drops a context the moment its key is dropped here.

import { sodium } from './sodium';

/** The sleeve's AEAD on one connection (handshake.ts negotiates it, key-derivation.ts derives a key per cipher). */
export type SleeveCipher = 'chacha20-poly1305' | 'aes-256-gcm';

export class SleeveKeyRing {
  sendKey: Buffer;
  sendEpoch = 0;
  /**
   * The next counter under sendKey, in a cell of its own (off the JS heap, so
   * it never moves): the overlay's seal and the native lone-frame lane
   * (native/lane.c) both take counters from it, so there is one counter
   * whichever path seals. A rotation resets it.
   */
  readonly sendCounterCell = new Float64Array(new ArrayBuffer(8));
  /** By key phase (epoch & 1); null when that phase has no key. */
  readonly receiveKeys: [Buffer | null, Buffer | null] = [null, null];
  /** The epoch of each receive key, -1 for none: the sleeve resets its replay window when one changes. */
  readonly receiveEpochs: [number, number] = [-1, -1];

  /** Set once dispose() ran: every key is zero and none may be used. */
  disposed = false;
  /** Called after every change of a key (one listener: the overlay's session for this connection). */
  onChange: (() => void) | null = null;

  get sendCounter(): number {
    return this.sendCounterCell[0]!;
  }

  set sendCounter(counter: number) {
    this.sendCounterCell[0] = counter;
  }

  /** Copies the epoch 0 keys and zeroes the given arrays. */
  constructor(send: Uint8Array, receive: Uint8Array, readonly cipher: SleeveCipher = 'chacha20-poly1305') {
    this.sendKey = takeKey(send);
    this.receiveKeys[0] = takeKey(receive);
    this.receiveEpochs[0] = 0;
  }

  /** Seal under `key` as `epoch` from the next datagram on; zeroes the old key and the given array. */
  rotateSend(epoch: number, key: Uint8Array): void {
    const old = this.sendKey;
    this.sendKey = takeKey(key);
    this.sendEpoch = epoch;
    this.sendCounter = 0;
    sodium().memzero(old);
    this.onChange?.();
  }

  /** Accepts `epoch` in its phase slot, replacing (and zeroing) whatever was there. */
  addReceive(epoch: number, key: Uint8Array): void {
    const phase = (epoch & 1) as 0 | 1;
    const old = this.receiveKeys[phase];
    this.receiveKeys[phase] = takeKey(key);
    this.receiveEpochs[phase] = epoch;
    if (old !== null) sodium().memzero(old);
    this.onChange?.();
  }

  /** Stops accepting `epoch`, if its slot still holds it. */
  dropReceive(epoch: number): void {
    const phase = (epoch & 1) as 0 | 1;
    const old = this.receiveKeys[phase];
    if (old === null || this.receiveEpochs[phase] !== epoch) return;
    this.receiveKeys[phase] = null;
    this.receiveEpochs[phase] = -1;
    sodium().memzero(old);
    this.onChange?.();
  }

  /** Zeroes every key; the overlay drops the neighbour at the same time. */
  dispose(): void {
    this.disposed = true;
    sodium().memzero(this.sendKey);
    for (const phase of [0, 1] as const) {
      const key = this.receiveKeys[phase];
      if (key !== null) sodium().memzero(key);
      this.receiveKeys[phase] = null;
      this.receiveEpochs[phase] = -1;
    }
    this.onChange?.();
  }
}

function takeKey(key: Uint8Array): Buffer {
  const out = Buffer.alloc(key.length);
  out.set(key);
  sodium().memzero(key);
  return out;
}
