// Owns the versioned control handshake at the start of every TCP connection
// between peers: version negotiation, the password check, and the derivation of
// per-direction keys for the control session and the UDP sleeve. It is a pure
// state machine over message bytes: the caller sends what it returns and logs
// what it throws. It must never touch a socket, a timer or a logger. The
// Hello and Confirm layouts and codecs are handshake-messages.ts.
//
// Flow (symmetric: no initiator role, both ends act the same at once):
//
//     A                                   B
//     | ---- Hello ----------------------> |   sent at once by Handshake.start()
//     | <--------------------- Hello ----- |
//     |   consumeHello(): versions, password flags, keys
//     | ---- Confirm (sealed, counter 0) > |   only when both have a password
//     | <- Confirm (sealed, counter 0) --- |
//     |   consumeConfirm(): proves the peer knows the password and saw the
//     |   same two Hellos; then session() carries on with counters at 1
//
// Keys (both sides have a password):
//   shared     = X25519(our ephemeral secret, peer's ephemeral public)
//   transcript = BLAKE2b-256("weave-ts transcript v1" || u32 len || Hello_low
//                                                     || u32 len || Hello_high)
//                where "low" is the side whose ephemeral public key sorts lower
//                (bytewise); both sides order the same way without roles, and
//                equal keys (a reflected Hello) are refused.
//   key[i]     = BLAKE2b-256(key = passwordKey,
//                            "weave-ts kdf v1" || u8 i || shared || transcript)
//                i = 0: control low->high   1: control high->low
//                    2: sleeve low->high    3: sleeve high->low
//                (BLAKE2b's output stops at 64 bytes, so each key is its own
//                call, told apart by the index byte.)
//   Confirm    = SealedSession.seal("weave-ts confirm v1" || transcript),
//                the first sealed message in each direction (counter 0);
//                see handshake-messages.ts.
//
// Why: the ephemeral keys are discarded after use, so a recorded session stays
// unreadable even if the password later leaks (forward secrecy). The password
// key is the BLAKE2b key, so a peer without it derives different keys and its
// Confirm fails on both sides. The transcript binds the keys to both Hellos,
// so changing any Hello byte (a version range to force a downgrade, a flag, a
// name) makes the Confirms fail.
//
// Known limit: an active attacker who connects without the password can record
// our Confirm and test password guesses against it offline (each guess costs a
// scrypt run, see router/mesh/password-key.ts). Only a PAKE would avoid that; a
// passive eavesdropper cannot, as it never learns `shared`.

import { ControlSession, PlaintextSession, SealedSession, SESSION_KEY_BYTES } from './control-session';
import { RouterError } from './errors';
import {
  confirmPlaintext, EPHEMERAL_KEY_BYTES, encodeHello, HelloInfo, negotiateVersion, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION,
  readHelloBody, readHelloHeader, TRANSCRIPT_BYTES, validateHelloOptions,
} from './handshake-messages';
import { MeshReader, MeshWriter } from './peer-name';
import { sodium } from './sodium';

const TRANSCRIPT_LABEL = new TextEncoder().encode('weave-ts transcript v1');
const KDF_LABEL = new TextEncoder().encode('weave-ts kdf v1');
const KEY_CONTROL_LOW_TO_HIGH = 0;
const KEY_CONTROL_HIGH_TO_LOW = 1;
const KEY_SLEEVE_LOW_TO_HIGH = 2;
const KEY_SLEEVE_HIGH_TO_LOW = 3;
const KEY_COUNT = 4;

export interface HandshakeOptions {
  local: HelloInfo;
  /** From stretchPassword(), or null for a plaintext mesh. */
  passwordKey: Uint8Array | null;
  /**
   * Version range to offer; defaults to PROTOCOL_MIN_VERSION..PROTOCOL_MAX_VERSION.
   * Only tests and staged rollouts set these: the message formats
   * (handshake-messages.ts) are those of version 1 whatever is negotiated.
   */
  minVersion?: number;
  maxVersion?: number;
  /**
   * Source of the ephemeral secret; must be a CSPRNG. Defaults to libsodium's
   * randombytes_buf. Injected (like the Rng elsewhere) so a test can replay a
   * handshake exactly, e.g. to show what an attacker could and could not do.
   */
  randomBytes?: (count: number) => Uint8Array;
}

export type HandshakeState = 'awaiting-hello' | 'awaiting-confirm' | 'established' | 'failed';

export interface HelloOutcome {
  remote: HelloInfo;
  version: number;
  encrypted: boolean;
  /** To send now (the Confirm), or null when plaintext. */
  confirm: Uint8Array | null;
}

export interface SleeveKeys {
  send: Uint8Array;
  receive: Uint8Array;
}

// ---------------------------------------------------------------------------
// The state machine

export class Handshake {
  private current: HandshakeState = 'awaiting-hello';
  private readonly localHello: Uint8Array;
  private readonly minVersion: number;
  private readonly maxVersion: number;
  private readonly passwordKey: Uint8Array | null;
  private ephemeralSecret: Uint8Array | null;
  private readonly ephemeralPublic: Uint8Array | null;
  /** The Confirm plaintext both sides must produce: label || transcript. */
  private expectedConfirm: Uint8Array | null = null;
  private controlSession: ControlSession | null = null;
  private sleeve: SleeveKeys | null = null;
  private controlKeys: Uint8Array[] = [];

  private constructor(opts: HandshakeOptions, minVersion: number, maxVersion: number) {
    this.minVersion = minVersion;
    this.maxVersion = maxVersion;
    this.passwordKey = opts.passwordKey;
    if (opts.passwordKey !== null) {
      // Fresh per connection, from libsodium's CSPRNG; zeroed once used.
      const random = opts.randomBytes ?? ((count: number): Uint8Array => sodium().randombytes_buf(count));
      this.ephemeralSecret = random(EPHEMERAL_KEY_BYTES);
      if (this.ephemeralSecret.length !== EPHEMERAL_KEY_BYTES) {
        throw RouterError.config(`randomBytes returned ${this.ephemeralSecret.length} bytes, expected ${EPHEMERAL_KEY_BYTES}`);
      }
      this.ephemeralPublic = sodium().crypto_scalarmult_base(this.ephemeralSecret);
    } else {
      this.ephemeralSecret = null;
      this.ephemeralPublic = null;
    }
    this.localHello = encodeHello({ ...opts.local, minVersion, maxVersion, ephemeralPublicKey: this.ephemeralPublic });
  }

  /** Validates the options and returns the handshake with the Hello to send at once. */
  static start(opts: HandshakeOptions): { handshake: Handshake; hello: Uint8Array } {
    const minVersion = opts.minVersion ?? PROTOCOL_MIN_VERSION;
    const maxVersion = opts.maxVersion ?? PROTOCOL_MAX_VERSION;
    validateHelloOptions(opts.local, opts.passwordKey, minVersion, maxVersion);
    const handshake = new Handshake(opts, minVersion, maxVersion);
    return { handshake, hello: handshake.localHello };
  }

  get state(): HandshakeState {
    return this.current;
  }

  /**
   * Takes the peer's Hello. Throws RouterError 'decode' | 'limit' (malformed),
   * 'version' (no common version), 'password-local-only' (we have a password,
   * the peer has none) or 'password-remote-only' (the reverse); any throw
   * leaves the handshake 'failed'.
   */
  consumeHello(payload: Uint8Array): HelloOutcome {
    this.expectState('awaiting-hello', 'consumeHello');
    try {
      return this.handleHello(payload);
    } catch (err) {
      this.fail();
      throw err;
    }
  }

  /** Takes the peer's Confirm. Throws RouterError 'password-mismatch' (leaving the handshake 'failed'). */
  consumeConfirm(payload: Uint8Array): void {
    this.expectState('awaiting-confirm', 'consumeConfirm');
    const session = this.controlSession;
    const expected = this.expectedConfirm;
    if (session === null || expected === null) throw new Error('handshake: awaiting-confirm without keys');
    let plain: Uint8Array | null = null;
    let cause: unknown = null;
    try {
      plain = session.open(payload);
    } catch (err) {
      cause = err;
    }
    // Lengths are public (fixed label + hash); memcmp is constant-time over equal lengths.
    if (plain === null || plain.length !== expected.length || !sodium().memcmp(plain, expected)) {
      this.fail();
      throw new RouterError('password-mismatch', 'password mismatch (or handshake tampered with): the peer\'s Confirm did not verify',
        cause === null ? undefined : { cause });
    }
    this.expectedConfirm = null;
    this.current = 'established';
  }

  /** The session for all further control messages; only once established. */
  session(): ControlSession {
    this.expectState('established', 'session');
    return this.controlSession!;
  }

  /** Per-direction keys for the UDP data channel, derived from the same exchange; null when plaintext. */
  sleeveKeys(): SleeveKeys | null {
    this.expectState('established', 'sleeveKeys');
    return this.sleeve;
  }

  private handleHello(payload: Uint8Array): HelloOutcome {
    const r = new MeshReader(payload, 'Hello');
    // Version first: a peer that shares no version may lay out the rest differently.
    const header = readHelloHeader(r);
    const version = negotiateVersion(this.minVersion, this.maxVersion, header.minVersion, header.maxVersion);
    const hello = readHelloBody(r, header);
    const remote: HelloInfo = { name: hello.name, nickname: hello.nickname, incarnation: hello.incarnation, listenPort: hello.listenPort };

    const remotePublic = hello.ephemeralPublicKey;
    if (this.passwordKey !== null && remotePublic === null) {
      throw new RouterError('password-local-only', 'we have a password but the peer has none: set the same password on both peers');
    }
    if (this.passwordKey === null && remotePublic !== null) {
      throw new RouterError('password-remote-only', 'the peer has a password but we have none: set the same password on both peers');
    }
    if (this.passwordKey === null || remotePublic === null) {
      this.controlSession = new PlaintextSession();
      this.current = 'established';
      return { remote, version, encrypted: false, confirm: null };
    }

    const confirm = this.deriveKeys(this.passwordKey, remotePublic, payload);
    this.current = 'awaiting-confirm';
    return { remote, version, encrypted: true, confirm };
  }

  /** Derives all keys, sets up the sealed session and returns the sealed Confirm. */
  private deriveKeys(passwordKey: Uint8Array, remotePublic: Uint8Array, remoteHello: Uint8Array): Uint8Array {
    const na = sodium();
    const localPublic = this.ephemeralPublic!;
    const secret = this.ephemeralSecret!;
    const order = compareBytes(localPublic, remotePublic);
    if (order === 0) {
      throw RouterError.decode('Hello', 'the peer\'s ephemeral key equals ours (our own Hello reflected back?)');
    }
    const localIsLow = order < 0;

    let shared: Uint8Array;
    try {
      shared = na.crypto_scalarmult(secret, remotePublic);
    } catch (err) {
      // libsodium refuses low-order points, whose result would be all zeros.
      throw new RouterError('decode', 'malformed Hello: the peer\'s ephemeral public key is a weak (low-order) point', { cause: err });
    } finally {
      na.memzero(secret);
      this.ephemeralSecret = null;
    }

    const transcriptInput = new MeshWriter(TRANSCRIPT_LABEL.length + 8 + this.localHello.length + remoteHello.length)
      .bytes(TRANSCRIPT_LABEL)
      .longBytes(localIsLow ? this.localHello : remoteHello)
      .longBytes(localIsLow ? remoteHello : this.localHello)
      .finish();
    const transcript = na.crypto_generichash(TRANSCRIPT_BYTES, transcriptInput, null);

    // One buffer for every key, with the index byte changed in place, so there
    // is exactly one copy of `shared` to scrub.
    const ikm = new Uint8Array(KDF_LABEL.length + 1 + shared.length + transcript.length);
    ikm.set(KDF_LABEL, 0);
    ikm.set(shared, KDF_LABEL.length + 1);
    ikm.set(transcript, KDF_LABEL.length + 1 + shared.length);
    na.memzero(shared);
    const keys: Uint8Array[] = [];
    for (let i = 0; i < KEY_COUNT; i++) {
      ikm[KDF_LABEL.length] = i;
      keys.push(na.crypto_generichash(SESSION_KEY_BYTES, ikm, passwordKey));
    }
    na.memzero(ikm);

    const [controlLowHigh, controlHighLow, sleeveLowHigh, sleeveHighLow] =
      [keys[KEY_CONTROL_LOW_TO_HIGH]!, keys[KEY_CONTROL_HIGH_TO_LOW]!, keys[KEY_SLEEVE_LOW_TO_HIGH]!, keys[KEY_SLEEVE_HIGH_TO_LOW]!];
    const sealed = localIsLow
      ? new SealedSession(controlLowHigh, controlHighLow)
      : new SealedSession(controlHighLow, controlLowHigh);
    this.sleeve = localIsLow
      ? { send: sleeveLowHigh, receive: sleeveHighLow }
      : { send: sleeveHighLow, receive: sleeveLowHigh };
    this.controlKeys = [controlLowHigh, controlHighLow];
    this.controlSession = sealed;

    const expected = confirmPlaintext(transcript);
    this.expectedConfirm = expected;
    return sealed.seal(expected);
  }

  /** Any failure is final: scrub every secret and drop the sessions. */
  private fail(): void {
    this.current = 'failed';
    const na = sodium();
    if (this.ephemeralSecret !== null) na.memzero(this.ephemeralSecret);
    this.ephemeralSecret = null;
    for (const key of this.controlKeys) na.memzero(key);
    if (this.sleeve !== null) {
      na.memzero(this.sleeve.send);
      na.memzero(this.sleeve.receive);
    }
    this.controlKeys = [];
    this.sleeve = null;
    this.controlSession = null;
    this.expectedConfirm = null;
  }

  /** Calling out of order is a bug in the caller, not the peer's doing: a plain Error. */
  private expectState(wanted: HandshakeState, call: string): void {
    if (this.current !== wanted) {
      throw new Error(`handshake: ${call}() called in state '${this.current}', expected '${wanted}'`);
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

/** Bytewise order; for public values only (not constant-time). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
