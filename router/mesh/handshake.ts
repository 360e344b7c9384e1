// Owns the versioned control handshake at the start of every TCP connection
// between peers: version negotiation, the password check (a PAKE, cpace.ts),
// the exchange of identities with the proof that each side holds the key its
// peer name derives from (key-proof.ts), and the chain key the connection's
// keys grow from (key-schedule.ts). It is a pure state machine over message bytes: the
// caller sends what it returns and logs what it throws. It must never touch a
// socket, a timer or a logger. Layouts are handshake-messages.ts, the key
// schedule key-derivation.ts.
//
// Flow (symmetric: no initiator role, both ends act the same at once):
//
//     A                                   B
//     | ---- Hello ----------------------> |   sent at once by Handshake.start()
//     | <--------------------- Hello ----- |
//     |   consumeHello(): versions, password flags, CPace secrets, Auth to send
//     | ---- Auth -----------------------> |
//     | <---------------------- Auth ----- |
//     |   consumeAuth(): the peer's identity, proven with the password,
//     |   and its key proof; then result() hands over the chain key
//
// No offline oracle. Each Hello carries, per password the sender accepts, a
// CPace share Y = y * G(password) and nothing that depends on the password
// otherwise; each Auth carries our identity sealed under keys from
// K = X25519(y, Y_peer) and the transcript of both Hellos. A stranger who
// connects (or whom we dial) and sends a share for a guessed password gets an
// Auth it can open only if that one guess was right; with any other password
// it would need the discrete log of G(guess) to G(password). So each handshake
// tests at most one guess per password slot, online, and a recording tests
// none: the scrypt stretch (password-key.ts) is not what stops offline
// guessing any more, and there is nothing a salt would have to separate.
// Because of that, both sides may send Auth at once, without waiting for the
// other to prove itself first, and a wrong password is still reported by name
// ('password-mismatch') on both sides.
//
// Password roll: a peer launched with --old-password sends two shares (slot 0
// current, slot 1 old) and one sealed identity per pairing of its slots with
// the peer's; the pairing whose passwords agree opens. When several do (both
// sides hold both passwords), both pick the same one: the smallest
// (max(low slot, high slot), low slot, high slot), "low" being the side whose
// Hello sorts lower. result().passwordSlot tells whether the peer still uses
// our old password.
//
// Forward secrecy: the CPace scalars are ephemeral and zeroed once used, so a
// recorded session stays unreadable even if the password later leaks. The
// transcript is in every key, so changing any Hello byte (a version range to
// force a downgrade, a flag, a share) makes every Auth fail to open.
//
// Sleeve cipher: each Hello may offer AES-256-GCM (handshake-messages.ts);
// when both do, the connection's UDP sleeve uses it, else ChaCha20-Poly1305.
// The offer is in the transcript like every other Hello byte (no downgrade,
// no confusion), and the two ciphers take keys of different derivations
// (key-derivation.ts), so even two peers that disagreed would share no key.
//
// Key proof (protocol 3): each identity carries our public key and a
// signature over the transcript, our side and the identity (key-proof.ts).
// With a password it travels inside the sealed identity, so only someone
// whose share matched our password sees our key (a passive observer sees
// neither it nor the name), and only an Auth that opened, i.e. a password
// holder, costs us a signature verification: a stranger's bytes never reach
// it. Without a password it goes in the clear, as the identity does. A proof
// that fails is 'peer-key', thrown as PeerKeyRefused: it carries the session's
// secrets (when the password opened) so the connection can tell the peer why
// before it closes (the peer's own check of our proof passed, so it would
// otherwise see only a closed connection).

import { cpaceGenerator, cpaceSecret, cpaceShare, CPACE_SCALAR_BYTES } from './cpace';
import { RouterError } from './errors';
import {
  bytesEqual, CHANNEL_HANDSHAKE_AUTH, decodeIdentity, decodeSealedAuth, encodeHello, encodeIdentity, encodeProvenIdentity, encodeSealedAuth,
  HELLO_CIPHER_AES_256_GCM, HELLO_NONCE_BYTES, HelloInfo, negotiateVersion, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, ProvenIdentity,
  readHelloBody, readHelloHeader, validateHelloOptions,
} from './handshake-messages';
import { authKeys, initialChainKey, pairKey, transcriptHash } from './key-derivation';
import { checkKeyProof, HandshakeSigner, PeerKeyPins, signKeyProof } from './key-proof';
import { peerNameOfKey, PUBLIC_KEY_BYTES } from './peer-key';
import { MeshReader, PeerName } from './peer-name';
import type { SleeveCipher } from './sleeve-keys';
import { sodium } from './sodium';

export interface HandshakeOptions {
  /** Who we say we are; local.name must be the name `key` derives (the router checks it). */
  local: HelloInfo;
  /** Our peer key: signs the key proof. */
  key: HandshakeSigner;
  /** Keys already known per name (signed-gossip.ts's trust on first use); none by default. */
  pins?: PeerKeyPins;
  /** The name a key derives; only a test replaces peerNameOfKey (to make two keys share a name). */
  nameOfKey?: (publicKey: Uint8Array) => PeerName;
  /** From stretchPassword(), or null for a plaintext mesh. */
  passwordKey: Uint8Array | null;
  /** During a password roll: the old password, still accepted (never without passwordKey). */
  oldPasswordKey?: Uint8Array | null;
  /**
   * Version range to offer; defaults to PROTOCOL_MIN_VERSION..PROTOCOL_MAX_VERSION.
   * Only tests and staged rollouts set these: the message formats
   * (handshake-messages.ts) are those of version 3 whatever is negotiated.
   */
  minVersion?: number;
  maxVersion?: number;
  /** Offer AES-256-GCM for the UDP sleeve: the data plane can do it (in hardware, checked). Default false. */
  offerAesGcm?: boolean;
  /**
   * Source of the CPace scalars; must be a CSPRNG. Defaults to libsodium's
   * randombytes_buf. Injected (like the Rng elsewhere) so a test can replay a
   * handshake exactly, e.g. to show what an attacker could and could not do.
   */
  randomBytes?: (count: number) => Uint8Array;
}

const NO_PINS: PeerKeyPins = { keyOf: () => null };

export type HandshakeState = 'awaiting-hello' | 'awaiting-auth' | 'established' | 'failed';

export interface HelloOutcome {
  version: number;
  encrypted: boolean;
  /** To send now. */
  auth: Uint8Array;
}

/** What an established encrypted handshake hands to key-schedule.ts. */
export interface HandshakeSecrets {
  /** chain[0] (key-derivation.ts); the receiver owns it and must zero it. */
  chainKey: Uint8Array;
  /** Whether our Hello sorts lower: orients the per-direction keys. */
  weAreLow: boolean;
  /** AES-256-GCM when both Hellos offered it, else ChaCha20-Poly1305. */
  sleeveCipher: SleeveCipher;
}

export interface HandshakeResult {
  remote: HelloInfo;
  /** The Ed25519 key the peer proved, which derives remote.name. */
  remoteKey: Uint8Array;
  version: number;
  /** Our password the peer proved: 0 current, 1 old (it has not rolled yet); null when plaintext. */
  passwordSlot: number | null;
  /** Null for a plaintext mesh. */
  secrets: HandshakeSecrets | null;
}

/** One pairing of our password slot s with the peer's slot t. */
interface Candidate {
  ourSlot: number;
  peerSlot: number;
  pair: Uint8Array;
  receiveAuth: Uint8Array;
}

/**
 * The peer's Auth opened (or there is no password) but its key proof failed.
 * `secrets` (null without a password) belong to the caller, who may seal one
 * REFUSE under them to tell the peer why, and must then zero them.
 */
export class PeerKeyRefused extends RouterError {
  constructor(cause: RouterError, readonly secrets: HandshakeSecrets | null) {
    super('peer-key', cause.message);
  }
}

const AUTH_NONCE = new Uint8Array(12);
AUTH_NONCE[3] = CHANNEL_HANDSHAKE_AUTH;

// ---------------------------------------------------------------------------
// The state machine

export class Handshake {
  private current: HandshakeState = 'awaiting-hello';
  private readonly local: HelloInfo;
  private readonly key: HandshakeSigner;
  private readonly pins: PeerKeyPins;
  private readonly nameOfKey: (publicKey: Uint8Array) => PeerName;
  private readonly localHello: Uint8Array;
  private readonly minVersion: number;
  private readonly maxVersion: number;
  private scalars: Uint8Array[];
  private readonly shares: Uint8Array[];
  private version = 0;
  private weAreLow = false;
  private transcript: Uint8Array | null = null;
  private peerCount = 0;
  private sleeveCipher: SleeveCipher = 'chacha20-poly1305';
  private readonly ciphers: number;
  private candidates: Candidate[] = [];
  private outcome: HandshakeResult | null = null;

  private constructor(opts: HandshakeOptions, passwordKeys: Uint8Array[], minVersion: number, maxVersion: number) {
    this.local = opts.local;
    this.key = opts.key;
    this.pins = opts.pins ?? NO_PINS;
    this.nameOfKey = opts.nameOfKey ?? peerNameOfKey;
    this.minVersion = minVersion;
    this.maxVersion = maxVersion;
    this.ciphers = opts.offerAesGcm === true && passwordKeys.length > 0 ? HELLO_CIPHER_AES_256_GCM : 0;
    // Fresh per connection, from libsodium's CSPRNG; zeroed once used.
    const random = opts.randomBytes ?? ((count: number): Uint8Array => sodium().randombytes_buf(count));
    this.scalars = passwordKeys.map(() => {
      const scalar = random(CPACE_SCALAR_BYTES);
      if (scalar.length !== CPACE_SCALAR_BYTES) throw RouterError.config(`randomBytes returned ${scalar.length} bytes, expected ${CPACE_SCALAR_BYTES}`);
      return scalar;
    });
    this.shares = passwordKeys.map((key, i) => cpaceShare(this.scalars[i]!, cpaceGenerator(key)));
    const nonce = random(HELLO_NONCE_BYTES);
    if (nonce.length !== HELLO_NONCE_BYTES) throw RouterError.config(`randomBytes returned ${nonce.length} bytes, expected ${HELLO_NONCE_BYTES}`);
    this.localHello = encodeHello({ minVersion, maxVersion, nonce, shares: this.shares, ciphers: this.ciphers });
  }

  /** Validates the options and returns the handshake with the Hello to send at once. */
  static start(opts: HandshakeOptions): { handshake: Handshake; hello: Uint8Array } {
    const minVersion = opts.minVersion ?? PROTOCOL_MIN_VERSION;
    const maxVersion = opts.maxVersion ?? PROTOCOL_MAX_VERSION;
    const old = opts.oldPasswordKey ?? null;
    if (old !== null && opts.passwordKey === null) throw RouterError.config('an old password needs a current password: roll from one password to another');
    const passwordKeys = opts.passwordKey === null ? [] : old === null ? [opts.passwordKey] : [opts.passwordKey, old];
    validateHelloOptions(opts.local, passwordKeys, minVersion, maxVersion);
    if (opts.key.publicKey.length !== PUBLIC_KEY_BYTES) throw RouterError.config(`peer key must be ${PUBLIC_KEY_BYTES} bytes, got ${opts.key.publicKey.length}`);
    const handshake = new Handshake(opts, passwordKeys, minVersion, maxVersion);
    return { handshake, hello: handshake.localHello };
  }

  get state(): HandshakeState {
    return this.current;
  }

  /**
   * Takes the peer's Hello and returns our Auth. Throws RouterError 'decode' |
   * 'limit' (malformed, reflected, weak share), 'version' (no common version),
   * 'password-local-only' (we have a password, the peer has none) or
   * 'password-remote-only' (the reverse); any throw leaves the handshake 'failed'.
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

  /**
   * Takes the peer's Auth: its identity, proven with a shared password, and
   * its key proof. Throws RouterError 'password-mismatch' (no pairing
   * opened), 'decode' | 'limit', or PeerKeyRefused ('peer-key': the proof
   * failed), leaving the handshake 'failed'.
   */
  consumeAuth(payload: Uint8Array): HandshakeResult {
    this.expectState('awaiting-auth', 'consumeAuth');
    try {
      if (this.shares.length === 0) {
        const identity = decodeIdentity(payload);
        this.checkProof(identity, null);
        this.outcome = { remote: identity.info, remoteKey: identity.proof.publicKey, version: this.version, passwordSlot: null, secrets: null };
      } else {
        this.outcome = this.openAuth(payload);
      }
    } catch (err) {
      this.fail();
      throw err;
    }
    this.current = 'established';
    return this.outcome;
  }

  /** The outcome, once established; the secrets in it belong to the caller from then on. */
  result(): HandshakeResult {
    this.expectState('established', 'result');
    return this.outcome!;
  }

  private handleHello(payload: Uint8Array): HelloOutcome {
    const r = new MeshReader(payload, 'Hello');
    // Version first: a peer that shares no version may lay out the rest differently.
    const header = readHelloHeader(r);
    this.version = negotiateVersion(this.minVersion, this.maxVersion, header.minVersion, header.maxVersion);
    const hello = readHelloBody(r, header);
    if (this.shares.length > 0 && hello.shares.length === 0) {
      throw new RouterError('password-local-only', 'we have a password but the peer has none: set the same password on both peers');
    }
    if (this.shares.length === 0 && hello.shares.length > 0) {
      throw new RouterError('password-remote-only', 'the peer has a password but we have none: set the same password on both peers');
    }
    if (bytesEqual(hello.nonce, this.nonce()) || hello.shares.some((theirs) => this.shares.some((ours) => bytesEqual(ours, theirs)))) {
      throw RouterError.decode('Hello', 'the peer\'s nonce or share equals ours (our own Hello reflected back?)');
    }
    this.current = 'awaiting-auth';
    this.weAreLow = compareBytes(this.localHello, payload) < 0;
    const transcript = this.weAreLow ? transcriptHash(this.localHello, payload) : transcriptHash(payload, this.localHello);
    this.transcript = transcript;
    const signed = encodeIdentity(this.local);
    const identity = encodeProvenIdentity(signed, signKeyProof(this.key, transcript, this.weAreLow, signed));
    if (this.shares.length === 0) return { version: this.version, encrypted: false, auth: identity };

    this.peerCount = hello.shares.length;
    // Both Hellos are in the transcript: this choice is authenticated by the Auth that opens.
    if ((this.ciphers & hello.ciphers & HELLO_CIPHER_AES_256_GCM) !== 0) this.sleeveCipher = 'aes-256-gcm';
    const na = sodium();
    const entries: Uint8Array[] = [];
    // s-major, as handshake-messages.ts lays Auth out.
    for (let s = 0; s < this.scalars.length; s++) {
      for (let t = 0; t < hello.shares.length; t++) {
        const k = cpaceSecret(this.scalars[s]!, hello.shares[t]!);
        if (k === null) throw RouterError.decode('Hello', 'the peer\'s share is a weak (low-order) point');
        const pair = this.weAreLow ? pairKey(k, s, t, transcript) : pairKey(k, t, s, transcript);
        na.memzero(k);
        const [lowToHigh, highToLow] = authKeys(pair);
        const [send, receive] = this.weAreLow ? [lowToHigh, highToLow] : [highToLow, lowToHigh];
        entries.push(na.crypto_aead_chacha20poly1305_ietf_encrypt(identity, transcript, null, AUTH_NONCE, send));
        na.memzero(send);
        this.candidates.push({ ourSlot: s, peerSlot: t, pair, receiveAuth: receive });
      }
    }
    this.zeroScalars();
    return { version: this.version, encrypted: true, auth: encodeSealedAuth(entries) };
  }

  private openAuth(payload: Uint8Array): HandshakeResult {
    const na = sodium();
    const ourCount = this.candidates.length / this.peerCount;
    const entries = decodeSealedAuth(payload, this.candidates.length);
    let best: { candidate: Candidate; identity: Uint8Array; rank: number[] } | null = null;
    entries.forEach((entry, k) => {
      // The peer wrote its slot-major order: its slot k / ourCount, ours k % ourCount.
      const peerSlot = Math.floor(k / ourCount);
      const ourSlot = k % ourCount;
      const candidate = this.candidates.find((c) => c.ourSlot === ourSlot && c.peerSlot === peerSlot)!;
      let identity: Uint8Array;
      try {
        identity = na.crypto_aead_chacha20poly1305_ietf_decrypt(null, entry, this.transcript, AUTH_NONCE, candidate.receiveAuth);
      } catch {
        return;
      }
      const [low, high] = this.weAreLow ? [ourSlot, peerSlot] : [peerSlot, ourSlot];
      const rank = [Math.max(low, high), low, high];
      if (best === null || compareRank(rank, best.rank) < 0) best = { candidate, identity, rank };
    });
    const chosen = best as { candidate: Candidate; identity: Uint8Array } | null;
    if (chosen === null) {
      throw new RouterError('password-mismatch',
        'password mismatch (or handshake tampered with): the peer\'s Auth did not open with our password' +
        (ourCount > 1 ? 's (current and old)' : ''));
    }
    const identity = decodeIdentity(chosen.identity);
    const chainKey = initialChainKey(chosen.candidate.pair);
    const passwordSlot = chosen.candidate.ourSlot;
    this.zeroCandidates();
    const secrets: HandshakeSecrets = { chainKey, weAreLow: this.weAreLow, sleeveCipher: this.sleeveCipher };
    this.checkProof(identity, secrets);
    return { remote: identity.info, remoteKey: identity.proof.publicKey, version: this.version, passwordSlot, secrets };
  }

  /** The peer's key proof, signed from the other side of this transcript; PeerKeyRefused when it fails. */
  private checkProof(identity: ProvenIdentity, secrets: HandshakeSecrets | null): void {
    try {
      checkKeyProof(identity.info.name, identity.proof, this.transcript!, !this.weAreLow, identity.signed, this.pins, this.nameOfKey);
    } catch (err) {
      throw err instanceof RouterError ? new PeerKeyRefused(err, secrets) : err;
    }
  }

  /** Our Hello's nonce (handshake-messages.ts: right after the flags). */
  private nonce(): Uint8Array {
    return this.localHello.subarray(11, 11 + HELLO_NONCE_BYTES);
  }

  private zeroScalars(): void {
    for (const scalar of this.scalars) sodium().memzero(scalar);
    this.scalars = [];
  }

  private zeroCandidates(): void {
    for (const c of this.candidates) {
      sodium().memzero(c.pair);
      sodium().memzero(c.receiveAuth);
    }
    this.candidates = [];
  }

  /** Any failure is final: scrub every secret. */
  private fail(): void {
    this.current = 'failed';
    this.zeroScalars();
    this.zeroCandidates();
    this.outcome = null;
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

function compareRank(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}
