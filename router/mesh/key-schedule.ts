// Owns the keys of one encrypted connection after its handshake: the chain
// key, the current epoch's control session and sleeve keys, and the rekey
// exchange that moves both to the next epoch on time (default every two
// minutes, as WireGuard's REKEY_AFTER_TIME) and long before a counter runs out.
// A pure state machine, (state, input, now) -> messages to send: the
// connection calls tick() from its heartbeat timer and handle() for REKEY
// messages, seals and sends what comes back, and closes on a throw. Never a
// socket, a timer or a logger; randomness is injected.
//
// The exchange (rekey-messages.ts), inside the sealed control session:
//
//     I (initiator)                          R (responder)
//     | -- INIT(e+1, E_i) under e ----------> |  R derives epoch e+1, accepts it
//     |                                       |  (control and sleeve), still sends e
//     | <--------- ACK(e+1, E_r) under e ---- |
//     |  I derives e+1, sends under it from   |
//     |  now on (control and sleeve)          |
//     | -- DONE(e+1) under e+1 -------------> |  R sends under e+1 from now on
//
//   chain[e+1] = KDF(chain[e], e+1, X25519(e_i, E_r), E_i, E_r) (key-derivation.ts);
//   chain[e], the ephemeral secrets and the old send keys are zeroed at once.
//
// No frame is lost at the switch: each side sends under the new epoch only
// once the other accepts it (R accepts before it ACKs; I tells R by DONE).
// Control messages carry the epoch's phase (control-session.ts), datagrams a
// key phase bit (router/overlay/sleeve-codec.ts). The control session drops
// the old receive key at the first message under the new one (TCP is in
// order); the sleeve keeps the old receive key for an overlap after the peer
// has switched (UDP reorders), then drops it.
//
// Both sides may start a rekey at once (their timers run alike). Then the
// side whose Hello sorted low keeps its own and ignores the other's INIT; the
// high side abandons its own and answers.

import { RouterError } from './errors';
import type { HandshakeSecrets } from './handshake';
import { epochKeys, EpochKeys, nextChainKey } from './key-derivation';
import { SealedSession } from './control-session';
import { encodeRekey, RekeyMessage, REKEY_PUBLIC_KEY_BYTES } from './rekey-messages';
import { SleeveCipher, SleeveKeyRing } from './sleeve-keys';
import { sodium } from './sodium';

export interface RekeyOptions {
  /** Move to a new epoch when the current keys are this old. */
  intervalMs: number;
  /** ...or when either send counter (control or sleeve) reaches this. */
  counterLimit: number;
  /** Keep accepting the previous epoch's datagrams this long after the peer switched (capped at half the interval). */
  overlapMs: number;
  /** Close the connection when a rekey is not completed within this. */
  timeoutMs: number;
}

export const DEFAULT_REKEY_OPTIONS: RekeyOptions = {
  intervalMs: 120_000,
  // 2^40 datagrams is 30 hours at ten million a second; the time trigger comes
  // first in practice, and the counters' hard limits (2^53) are far beyond.
  counterLimit: 2 ** 40,
  overlapMs: 10_000,
  timeoutMs: 30_000,
};

export interface KeyStatus {
  epoch: number;
  /** When the current epoch began, ms since the epoch (the clock's). */
  epochStartedMs: number;
  /** Completed rekeys on this connection. */
  rekeys: number;
  /** The sleeve's AEAD, agreed in the handshake for the connection's life. */
  sleeveCipher: SleeveCipher;
}

type Pending =
  | { role: 'initiator'; epoch: number; secret: Uint8Array; publicKey: Uint8Array; sinceMs: number }
  | { role: 'responder'; epoch: number; controlSend: Uint8Array; sleeveSend: Uint8Array; sinceMs: number };

export class KeySchedule {
  readonly control: SealedSession;
  readonly sleeve: SleeveKeyRing;
  private chain: Uint8Array;
  private readonly weAreLow: boolean;
  private readonly cipher: SleeveCipher;
  private epoch = 0;
  private epochStartedMs: number;
  private rekeys = 0;
  private pending: Pending | null = null;
  /** The previous epoch's sleeve receive key while it is still accepted. */
  private previous: { epoch: number; peerSwitchedMs: number | null } | null = null;
  private readonly overlapMs: number;
  private readonly random: (count: number) => Uint8Array;

  /** Takes ownership of secrets.chainKey. */
  constructor(secrets: HandshakeSecrets, private readonly opts: RekeyOptions, nowMs: number, randomBytes?: (count: number) => Uint8Array) {
    this.chain = secrets.chainKey;
    this.weAreLow = secrets.weAreLow;
    this.cipher = secrets.sleeveCipher;
    this.epochStartedMs = nowMs;
    this.overlapMs = Math.min(opts.overlapMs, opts.intervalMs / 2);
    this.random = randomBytes ?? ((count: number): Uint8Array => sodium().randombytes_buf(count));
    const keys = epochKeys(this.chain, this.weAreLow, this.cipher);
    this.control = new SealedSession(keys.controlSend, keys.controlReceive);
    this.sleeve = new SleeveKeyRing(keys.sleeveSend, keys.sleeveReceive, this.cipher);
  }

  status(): KeyStatus {
    return { epoch: this.epoch, epochStartedMs: this.epochStartedMs, rekeys: this.rekeys, sleeveCipher: this.cipher };
  }

  /** Called periodically: starts a rekey when due, retires the previous sleeve key. Throws RouterError('rekey') when one stalls. */
  tick(nowMs: number): Uint8Array[] {
    const p = this.pending;
    if (p !== null && nowMs - p.sinceMs > this.opts.timeoutMs) {
      throw new RouterError('rekey', `rekey to epoch ${p.epoch} not completed within ${this.opts.timeoutMs} ms`);
    }
    this.retirePrevious(nowMs);
    if (p !== null || this.previous !== null) return [];
    const sent = Math.max(this.control.counters.send, this.sleeve.sendCounter);
    if (nowMs - this.epochStartedMs < this.opts.intervalMs && sent < this.opts.counterLimit) return [];
    const secret = this.random(32);
    const publicKey = sodium().crypto_scalarmult_base(secret);
    const epoch = this.epoch + 1;
    this.pending = { role: 'initiator', epoch, secret, publicKey, sinceMs: nowMs };
    return [encodeRekey({ kind: 'init', epoch, publicKey })];
  }

  /** A REKEY message from the peer. Throws RouterError('decode') for one that does not fit the exchange. */
  handle(msg: RekeyMessage, nowMs: number): Uint8Array[] {
    switch (msg.kind) {
      case 'init': return this.handleInit(msg.epoch, msg.publicKey, nowMs);
      case 'ack': return this.handleAck(msg.epoch, msg.publicKey, nowMs);
      case 'done': return this.handleDone(msg.epoch, nowMs);
    }
  }

  /** Zeroes every key; for when the connection closes. */
  dispose(): void {
    const na = sodium();
    na.memzero(this.chain);
    this.dropPending();
    this.control.dispose();
    this.sleeve.dispose();
  }

  private handleInit(epoch: number, initiatorPublic: Uint8Array, nowMs: number): Uint8Array[] {
    const p = this.pending;
    if (epoch !== this.epoch + 1 || p?.role === 'responder') {
      throw RouterError.decode('rekey message', `INIT for epoch ${epoch} while at epoch ${this.epoch}${p ? ` with a rekey to ${p.epoch} under way` : ''}`);
    }
    if (p !== null) {
      // Both started at once: the low side's rekey wins.
      if (this.weAreLow) return [];
      this.dropPending();
    }
    const secret = this.random(32);
    const responderPublic = sodium().crypto_scalarmult_base(secret);
    const keys = this.advanceChain(epoch, secret, initiatorPublic, initiatorPublic, responderPublic);
    this.control.expectReceive(epoch, keys.controlReceive);
    this.sleeve.addReceive(epoch, keys.sleeveReceive);
    // The slot of epoch - 1 now holds epoch + 1: nothing of the previous epoch is left to retire.
    this.previous = null;
    this.pending = { role: 'responder', epoch, controlSend: keys.controlSend, sleeveSend: keys.sleeveSend, sinceMs: nowMs };
    return [encodeRekey({ kind: 'ack', epoch, publicKey: responderPublic })];
  }

  private handleAck(epoch: number, responderPublic: Uint8Array, nowMs: number): Uint8Array[] {
    const p = this.pending;
    if (p === null || p.role !== 'initiator' || p.epoch !== epoch) {
      throw RouterError.decode('rekey message', `ACK for epoch ${epoch} without an INIT of ours for it`);
    }
    this.pending = null;
    const keys = this.advanceChain(epoch, p.secret, responderPublic, p.publicKey, responderPublic);
    this.control.rotateSend(epoch, keys.controlSend);
    this.control.expectReceive(epoch, keys.controlReceive);
    this.sleeve.rotateSend(epoch, keys.sleeveSend);
    this.sleeve.addReceive(epoch, keys.sleeveReceive);
    this.enterEpoch(epoch, nowMs, null);
    return [encodeRekey({ kind: 'done', epoch })];
  }

  private handleDone(epoch: number, nowMs: number): Uint8Array[] {
    const p = this.pending;
    if (p === null || p.role !== 'responder' || p.epoch !== epoch) {
      throw RouterError.decode('rekey message', `DONE for epoch ${epoch} without an ACK of ours for it`);
    }
    this.pending = null;
    this.control.rotateSend(epoch, p.controlSend);
    this.sleeve.rotateSend(epoch, p.sleeveSend);
    // DONE came under the new epoch: the initiator has switched already.
    this.enterEpoch(epoch, nowMs, nowMs);
    return [];
  }

  /** chain <- next chain; zeroes the old chain, the DH result and our secret; returns the new epoch's keys. */
  private advanceChain(epoch: number, ourSecret: Uint8Array, peerPublic: Uint8Array, initiatorPublic: Uint8Array, responderPublic: Uint8Array): EpochKeys {
    const na = sodium();
    if (peerPublic.length !== REKEY_PUBLIC_KEY_BYTES) throw RouterError.decode('rekey message', 'public key of the wrong length');
    let dh: Uint8Array;
    try {
      dh = na.crypto_scalarmult(ourSecret, peerPublic);
    } catch (err) {
      throw new RouterError('decode', 'malformed rekey message: the peer\'s key is a weak (low-order) point', { cause: err });
    } finally {
      na.memzero(ourSecret);
    }
    const next = nextChainKey(this.chain, epoch, dh, initiatorPublic, responderPublic);
    na.memzero(dh);
    na.memzero(this.chain);
    this.chain = next;
    return epochKeys(next, this.weAreLow, this.cipher);
  }

  private enterEpoch(epoch: number, nowMs: number, peerSwitchedMs: number | null): void {
    this.previous = { epoch: this.epoch, peerSwitchedMs };
    this.epoch = epoch;
    this.epochStartedMs = nowMs;
    this.rekeys++;
  }

  private retirePrevious(nowMs: number): void {
    const prev = this.previous;
    if (prev === null) return;
    // The peer's first control message under the new epoch shows it sends datagrams under it too.
    if (prev.peerSwitchedMs === null && this.control.receiveEpoch === this.epoch) prev.peerSwitchedMs = nowMs;
    if (prev.peerSwitchedMs !== null && nowMs - prev.peerSwitchedMs >= this.overlapMs) {
      this.sleeve.dropReceive(prev.epoch);
      this.previous = null;
    }
  }

  private dropPending(): void {
    const p = this.pending;
    if (p === null) return;
    const na = sodium();
    if (p.role === 'initiator') na.memzero(p.secret);
    else {
      na.memzero(p.controlSend);
      na.memzero(p.sleeveSend);
    }
    this.pending = null;
  }
}
