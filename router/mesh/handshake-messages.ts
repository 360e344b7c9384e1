// The two handshake messages and their byte layouts: the Hello each side
// sends first (identity, version range, password flag, ephemeral key) and the
// plaintext of the Confirm that proves both sides derived the same keys. Pure
// codecs: bytes to typed values and back, no state, no crypto of their own
// (the state machine, key derivation and sealing are handshake.ts).
//
// Hello payload (version 1; every later version must keep this prefix and only
// append, because the Hello is sent before the version is agreed):
//
//    0               8     9     10    11                17
//   +---------------+-----+-----+-----+-----------------+---------------------+
//   | magic         | min | max |flags| peer name       | nickname            |
//   | "weave-ts"    | ver | ver |     | (6 bytes)       | (u16 length + UTF-8,|
//   | (8 bytes)     | u8  | u8  | u8  |                 |  at most 64 bytes)  |
//   +---------------+-----+-----+-----+-----------------+---------------------+
//   | incarnation (8 bytes, big-endian, < 2^53) | listen port (u16)            |
//   +-------------------------------------------+------------------------------+
//   | ephemeral X25519 public key (32 bytes), only when flags bit 0 is set     |
//   +--------------------------------------------------------------------------+
//   | trailing bytes: ignored (forward compatibility), but covered by the      |
//   | transcript hash, so they cannot be altered unnoticed                     |
//   +--------------------------------------------------------------------------+
//
//   flags: bit 0 = this peer has a password. Other bits are reserved: sent as
//   0, ignored on receipt.
//
// Confirm (only when both sides have a password), before sealing:
//
//   +------------------------------+-------------------------------------+
//   | "weave-ts confirm v1" (19 B) | transcript (BLAKE2b-256, 32 bytes)  |
//   +------------------------------+-------------------------------------+
//
//   sealed with the control session as its first message in each direction
//   (counter 0); its length is fixed, so a Confirm of any other length fails.

import { RouterError } from './errors';
import { PASSWORD_KEY_BYTES } from './password-key';
import { isPeerName, MeshReader, MeshWriter, PeerName } from './peer-name';

// Protocol constants.
export const PROTOCOL_MIN_VERSION = 1;
export const PROTOCOL_MAX_VERSION = 1;
/** ASCII "weave-ts": tells a weave peer from anything else that answers on the port. */
export const HELLO_MAGIC: Uint8Array = new TextEncoder().encode('weave-ts');
export const HELLO_FLAG_PASSWORD = 0x01;
export const MAX_NICKNAME_BYTES = 64;
export const EPHEMERAL_KEY_BYTES = 32;
export const TRANSCRIPT_BYTES = 32;
const CONFIRM_LABEL = new TextEncoder().encode('weave-ts confirm v1');

export interface HelloInfo {
  name: PeerName;
  nickname: string;
  /** Distinguishes restarts of the same peer name; below 2^53. */
  incarnation: number;
  listenPort: number;
}

/** A decoded Hello: the peer's identity, its version range and, with a password, its ephemeral key. */
export interface Hello extends HelloInfo {
  minVersion: number;
  maxVersion: number;
  /** Present exactly when the peer has a password. */
  ephemeralPublicKey: Uint8Array | null;
}

/** Magic and version range: the part of the Hello every version must share. */
export interface HelloHeader { minVersion: number; maxVersion: number }

const textEncoder = new TextEncoder();

export function encodeHello(hello: Hello): Uint8Array {
  const w = new MeshWriter(64 + MAX_NICKNAME_BYTES);
  w.bytes(HELLO_MAGIC)
    .u8(hello.minVersion)
    .u8(hello.maxVersion)
    .u8(hello.ephemeralPublicKey !== null ? HELLO_FLAG_PASSWORD : 0)
    .peerName(hello.name)
    .string(hello.nickname)
    .u53(hello.incarnation)
    .u16(hello.listenPort);
  if (hello.ephemeralPublicKey !== null) {
    if (hello.ephemeralPublicKey.length !== EPHEMERAL_KEY_BYTES) {
      throw new RangeError(`ephemeral public key must be ${EPHEMERAL_KEY_BYTES} bytes, got ${hello.ephemeralPublicKey.length}`);
    }
    w.bytes(hello.ephemeralPublicKey);
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

/** The rest of a version 1 Hello, after readHelloHeader. */
export function readHelloBody(r: MeshReader, header: HelloHeader): Hello {
  const flags = r.u8('flags');
  const name = r.peerName('peer name');
  const nickname = r.string(MAX_NICKNAME_BYTES, 'nickname');
  const incarnation = r.u53('incarnation');
  const listenPort = r.u16('listen port');
  const ephemeralPublicKey = (flags & HELLO_FLAG_PASSWORD) !== 0
    ? r.bytes(EPHEMERAL_KEY_BYTES, 'ephemeral public key').slice()
    : null;
  // Trailing bytes are left unread on purpose (forward compatibility).
  return { ...header, name, nickname, incarnation, listenPort, ephemeralPublicKey };
}

/** Decodes a Hello from hostile bytes; throws RouterError('decode' | 'limit') only. */
export function decodeHello(payload: Uint8Array): Hello {
  const r = new MeshReader(payload, 'Hello');
  return readHelloBody(r, readHelloHeader(r));
}

/** The Confirm plaintext both sides must produce: label || transcript. */
export function confirmPlaintext(transcript: Uint8Array): Uint8Array {
  const out = new Uint8Array(CONFIRM_LABEL.length + transcript.length);
  out.set(CONFIRM_LABEL, 0);
  out.set(transcript, CONFIRM_LABEL.length);
  return out;
}

/**
 * Checks what we are about to put in our own Hello, so a bad option is a
 * config error at start rather than a malformed message at the peer.
 */
export function validateHelloOptions(local: HelloInfo, passwordKey: Uint8Array | null, minVersion: number, maxVersion: number): void {
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
  if (passwordKey !== null && passwordKey.length !== PASSWORD_KEY_BYTES) {
    throw RouterError.config(`password key must be ${PASSWORD_KEY_BYTES} bytes (from stretchPassword), got ${passwordKey.length}`);
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
    throw new RouterError('version',
      `no protocol version in common: we support ${localMin}..${localMax}, the peer supports ${remoteMin}..${remoteMax}`);
  }
  return hi;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
