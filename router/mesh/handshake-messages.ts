// The two handshake messages and their byte layouts: the Hello each side sends
// first (version range, a fresh nonce, whether it has a password, its CPace
// shares) and the Auth each side sends once it has the peer's Hello (its
// identity and the proof that it holds its peer key, sealed with each
// candidate key when there is a password). Pure codecs: bytes to typed values
// and back, no state, no crypto of their own (the state machine, key
// derivation, sealing and the key proof are handshake.ts, key-derivation.ts,
// cpace.ts, key-proof.ts).
//
// Hello payload, protocol version 3. Every later version must keep the first
// 10 bytes, because the Hello is read before the version is agreed; versions
// 1 and 2 share them, so an older peer and this one fail with a clear
// 'version' error on both sides. Version 3 added the key proof to Auth and
// the nonce to Hello; a version 2 peer is refused, never accepted without the
// proof (that would make the proof downgradable).
//
//    0               8     9     10    11             43      44
//   +---------------+-----+-----+-----+--------------+-------+--------------------+
//   | magic         | min | max |flags| nonce        | count | count x CPace share|
//   | "weave-ts"    | ver | ver |     | (32 random   | u8    | (32 bytes each)    |
//   | (8 bytes)     | u8  | u8  | u8  |  bytes)      | 1..2  |                    |
//   +---------------+-----+-----+-----+--------------+-------+--------------------+
//   count and shares are present only when flags bit 0 (password) is set;
//   one share per password the sender accepts (current, then old during a
//   password roll). The nonce makes every Hello fresh even without a
//   password, so the transcript both key proofs sign is never repeated.
//   Then, with a password, one optional byte: the sleeve ciphers the sender
//   can use besides ChaCha20-Poly1305, which every peer has. Bit 0:
//   AES-256-GCM. Absent = 0. The UDP sleeve uses AES-256-GCM when both Hellos
//   set bit 0 (handshake.ts); a man in the middle who sets or clears it
//   changes the transcript, so no Auth opens. Trailing bytes: ignored, but
//   covered by the transcript.
//
//   What a stranger learns from our Hello: that this is weave-ts, which
//   versions, whether the mesh has a password and whether a roll is under
//   way (two shares). Nonce and shares are uniformly random whatever the
//   password (cpace.ts). No peer name, nickname, incarnation or key: those
//   travel in Auth, sealed.
//
// Auth payload:
//
//   plaintext mesh:  identity
//   with a password: +-------+------------------------------------------------+
//                    | count | count x (u16 length + sealed identity)         |
//                    | u8    | one per pairing (our slot s, the peer's slot t),|
//                    |       | s-major: s = k / peerCount, t = k % peerCount  |
//                    +-------+------------------------------------------------+
//                    sealed = ChaCha20-Poly1305-IETF(identity), key = auth key
//                    of the pairing in our direction, nonce = 00 00 00 03 ||
//                    8 zero bytes (each key seals exactly one message),
//                    associated data = the transcript hash.
//
//   identity:  +-----------+-------------------+-------------+--------+------------+-----------+
//              | peer name | nickname (u16 len | incarnation | listen | public key | signature |
//              | (6 B)     | + UTF-8, <= 64 B) | (8 B, <2^53)| port   | (32 B,     | (64 B,    |
//              |           |                   |             | (u16)  |  Ed25519)  |  Ed25519) |
//              +-----------+-------------------+-------------+--------+------------+-----------+
//              \_____________ signed part (key-proof.ts) ______________/
//              The signature covers the signed part, the transcript and the
//              sender's side (key-proof.ts). Trailing bytes ignored.

import { RouterError } from './errors';
import { PASSWORD_KEY_BYTES } from './password-key';
import type { KeyProof } from './key-proof';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from './peer-key';
import { isPeerName, MeshReader, MeshWriter, PeerName } from './peer-name';

// Protocol constants.
export const PROTOCOL_MIN_VERSION = 3;
export const PROTOCOL_MAX_VERSION = 3;
/** The first version whose Auth carries the key proof; anything older is refused by name. */
export const KEY_PROOF_VERSION = 3;
/** ASCII "weave-ts": tells a weave peer from anything else that answers on the port. */
export const HELLO_MAGIC: Uint8Array = new TextEncoder().encode('weave-ts');
export const HELLO_FLAG_PASSWORD = 0x01;
/** Bit of the Hello's cipher byte: the sender can seal the sleeve with AES-256-GCM. */
export const HELLO_CIPHER_AES_256_GCM = 0x01;
export const MAX_NICKNAME_BYTES = 64;
export const SHARE_BYTES = 32;
export const HELLO_NONCE_BYTES = 32;
/** Current and old password during a roll. */
export const MAX_PASSWORDS = 2;
/** Nonce channel byte of the identity sealed in Auth (1 and 2 are control-session.ts's). */
export const CHANNEL_HANDSHAKE_AUTH = 3;
/** A sealed identity: 6 + 2 + 64 + 8 + 2 + 32 + 64 bytes and a 16-byte tag, with room to grow. */
const MAX_SEALED_IDENTITY_BYTES = 256;

export interface HelloInfo {
  name: PeerName;
  nickname: string;
  /** Distinguishes restarts of the same peer name; below 2^53. */
  incarnation: number;
  listenPort: number;
}

/** A decoded Hello: the peer's version range and, with a password, one share per password. */
export interface Hello {
  minVersion: number;
  maxVersion: number;
  /** HELLO_NONCE_BYTES fresh random bytes. */
  nonce: Uint8Array;
  /** Empty exactly when the peer has no password. */
  shares: Uint8Array[];
  /** HELLO_CIPHER_* bits; 0 without a password (and from older peers). */
  ciphers: number;
}

/** Magic and version range: the part of the Hello every version must share. */
export interface HelloHeader { minVersion: number; maxVersion: number }

const textEncoder = new TextEncoder();

export function encodeHello(hello: Hello): Uint8Array {
  if (hello.nonce.length !== HELLO_NONCE_BYTES) throw new RangeError(`a Hello nonce must be ${HELLO_NONCE_BYTES} bytes, got ${hello.nonce.length}`);
  const w = new MeshWriter(16 + HELLO_NONCE_BYTES + SHARE_BYTES * MAX_PASSWORDS);
  w.bytes(HELLO_MAGIC).u8(hello.minVersion).u8(hello.maxVersion).u8(hello.shares.length > 0 ? HELLO_FLAG_PASSWORD : 0).bytes(hello.nonce);
  if (hello.shares.length > 0) {
    if (hello.shares.length > MAX_PASSWORDS) throw new RangeError(`at most ${MAX_PASSWORDS} shares, got ${hello.shares.length}`);
    w.u8(hello.shares.length);
    for (const share of hello.shares) {
      if (share.length !== SHARE_BYTES) throw new RangeError(`a share must be ${SHARE_BYTES} bytes, got ${share.length}`);
      w.bytes(share);
    }
    // Written only when set, so a Hello offering nothing extra is byte for byte the older one.
    if (hello.ciphers !== 0) w.u8(hello.ciphers);
  }
  return w.finish();
}

/**
 * Reads the magic and the version range. The state machine negotiates the
 * version from these before reading on: a peer that shares no version may lay
 * out the rest differently.
 */
export function readHelloHeader(r: MeshReader): HelloHeader {
  const magic = r.bytes(HELLO_MAGIC.length, 'magic');
  if (!bytesEqual(magic, HELLO_MAGIC)) {
    throw RouterError.decode('Hello', 'wrong magic: this is not a weave peer');
  }
  const minVersion = r.u8('min version');
  const maxVersion = r.u8('max version');
  if (minVersion < 1 || minVersion > maxVersion) {
    throw RouterError.decode('Hello', `invalid version range ${minVersion}..${maxVersion}`);
  }
  return { minVersion, maxVersion };
}

/** The rest of a version 3 Hello, after readHelloHeader. */
export function readHelloBody(r: MeshReader, header: HelloHeader): Hello {
  const flags = r.u8('flags');
  const nonce = r.bytes(HELLO_NONCE_BYTES, 'nonce').slice();
  const shares: Uint8Array[] = [];
  let ciphers = 0;
  if ((flags & HELLO_FLAG_PASSWORD) !== 0) {
    const count = r.u8('share count');
    if (count < 1 || count > MAX_PASSWORDS) throw RouterError.decode('Hello', `share count ${count} is not in 1..${MAX_PASSWORDS}`);
    for (let i = 0; i < count; i++) shares.push(r.bytes(SHARE_BYTES, 'share').slice());
    if (r.remaining > 0) ciphers = r.u8('ciphers');
  }
  // Further trailing bytes are left unread on purpose (forward compatibility).
  return { ...header, nonce, shares, ciphers };
}

/** Decodes a Hello from hostile bytes; throws RouterError('decode' | 'limit') only. */
export function decodeHello(payload: Uint8Array): Hello {
  const r = new MeshReader(payload, 'Hello');
  return readHelloBody(r, readHelloHeader(r));
}

/** The signed part of an identity (key-proof.ts signs exactly these bytes). */
export function encodeIdentity(info: HelloInfo): Uint8Array {
  return new MeshWriter(32 + MAX_NICKNAME_BYTES).peerName(info.name).string(info.nickname).u53(info.incarnation).u16(info.listenPort).finish();
}

/** The identity as Auth carries it: the signed part, then the proof. */
export function encodeProvenIdentity(signed: Uint8Array, proof: KeyProof): Uint8Array {
  if (proof.publicKey.length !== PUBLIC_KEY_BYTES || proof.signature.length !== SIGNATURE_BYTES) throw new RangeError('a key proof is a 32-byte key and a 64-byte signature');
  return new MeshWriter(signed.length + PUBLIC_KEY_BYTES + SIGNATURE_BYTES).bytes(signed).bytes(proof.publicKey).bytes(proof.signature).finish();
}

/** A decoded identity: who the sender says it is, the bytes it signed, and its proof (not yet checked). */
export interface ProvenIdentity {
  info: HelloInfo;
  signed: Uint8Array;
  proof: KeyProof;
}

export function decodeIdentity(bytes: Uint8Array): ProvenIdentity {
  const r = new MeshReader(bytes, 'Auth identity');
  const name = r.peerName('peer name');
  const nickname = r.string(MAX_NICKNAME_BYTES, 'nickname');
  const incarnation = r.u53('incarnation');
  const listenPort = r.u16('listen port');
  const signed = bytes.slice(0, r.offset);
  const publicKey = r.bytes(PUBLIC_KEY_BYTES, 'public key').slice();
  const signature = r.bytes(SIGNATURE_BYTES, 'signature').slice();
  return { info: { name, nickname, incarnation, listenPort }, signed, proof: { publicKey, signature } };
}

/** The sealed entries of an Auth, in the order the sender wrote them. */
export function encodeSealedAuth(entries: readonly Uint8Array[]): Uint8Array {
  const w = new MeshWriter(1 + entries.reduce((n, e) => n + 2 + e.length, 0));
  w.u8(entries.length);
  for (const e of entries) w.varBytes(e);
  return w.finish();
}

/** Reads a sealed Auth, which must hold exactly `expected` entries (ours x the peer's passwords). */
export function decodeSealedAuth(payload: Uint8Array, expected: number): Uint8Array[] {
  const r = new MeshReader(payload, 'Auth');
  const count = r.u8('entry count');
  if (count !== expected) throw RouterError.decode('Auth', `${count} entries, expected ${expected} (one per pairing of passwords)`);
  const entries: Uint8Array[] = [];
  for (let i = 0; i < count; i++) entries.push(r.varBytes(MAX_SEALED_IDENTITY_BYTES, 'sealed identity'));
  return entries;
}

/**
 * Checks what we are about to put in our own messages, so a bad option is a
 * config error at start rather than a malformed message at the peer.
 */
export function validateHelloOptions(local: HelloInfo, passwordKeys: readonly Uint8Array[], minVersion: number, maxVersion: number): void {
  const { name, nickname, incarnation, listenPort } = local;
  if (!isPeerName(name)) throw RouterError.config(`peer name ${JSON.stringify(name)} is not of the form aa:bb:cc:dd:ee:ff`);
  const nicknameBytes = textEncoder.encode(nickname).length;
  if (nicknameBytes > MAX_NICKNAME_BYTES) {
    throw RouterError.config(`nickname is ${nicknameBytes} bytes of UTF-8, over the limit of ${MAX_NICKNAME_BYTES}`);
  }
  if (!Number.isSafeInteger(incarnation) || incarnation < 0) {
    throw RouterError.config(`incarnation must be an integer in [0, 2^53), got ${incarnation}`);
  }
  if (!Number.isInteger(listenPort) || listenPort < 0 || listenPort > 0xffff) {
    throw RouterError.config(`listen port must be an integer in [0, 65535], got ${listenPort}`);
  }
  if (passwordKeys.length > MAX_PASSWORDS) throw RouterError.config(`at most ${MAX_PASSWORDS} passwords (current and old), got ${passwordKeys.length}`);
  for (const key of passwordKeys) {
    if (key.length !== PASSWORD_KEY_BYTES) {
      throw RouterError.config(`password key must be ${PASSWORD_KEY_BYTES} bytes (from stretchPassword), got ${key.length}`);
    }
  }
  if (!Number.isInteger(minVersion) || !Number.isInteger(maxVersion) || minVersion < 1 || maxVersion > 0xff || minVersion > maxVersion) {
    throw RouterError.config(`protocol version range must satisfy 1 <= min <= max <= 255, got ${minVersion}..${maxVersion}`);
  }
}

/** The highest version both ranges contain. */
export function negotiateVersion(localMin: number, localMax: number, remoteMin: number, remoteMax: number): number {
  const lo = Math.max(localMin, remoteMin);
  const hi = Math.min(localMax, remoteMax);
  if (lo > hi) {
    const older = remoteMax < KEY_PROOF_VERSION && localMin >= KEY_PROOF_VERSION
      ? `: the peer runs an older weave-ts that does not prove its peer key in the handshake (protocol ${KEY_PROOF_VERSION}); upgrade it`
      : '';
    throw new RouterError('version',
      `no protocol version in common: we support ${localMin}..${localMax}, the peer supports ${remoteMin}..${remoteMax}${older}`);
  }
  return hi;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
