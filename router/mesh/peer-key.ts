// A peer's signing key and the name it proves. Each peer holds an Ed25519 key
// pair (kept in its data directory by identity.ts); its 48-bit peer name is
// derived from the public key, so a name is self-certifying: whoever shows a
// public key whose hash is the name, and a signature by it, speaks for that
// name. This file owns the key pair, the derivation and the raw sign/verify
// calls (sodium-native when it loads, else libsodium-wrappers); it must never
// do I/O or decide what is trusted (that is signed-gossip.ts).
//
// Name derivation (version 1):
//   name = first 6 bytes of SHA-256("weave-ts peer name v1" || public key),
//          with byte 0 bit 0 cleared (unicast) and bit 1 set (locally
//          administered), as peerNameFromSeed does for every peer name.
// That leaves 46 free bits. Finding a second key for a given name takes about
// 2^46 key generations (a second preimage, not a birthday collision): days of
// CPU on one core at ~20 us per Ed25519 public key, or hours on a GPU. The
// mesh-wide trust on first use in signed-gossip.ts is the second line: a name
// already known with one key refuses any other.

import { createHash } from 'node:crypto';
import type { PeerName } from './peer-name';
import { peerNameFromSeed } from './peer-name';
import { sodium } from './sodium';

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const KEY_SEED_BYTES = 32;
const NAME_LABEL = Buffer.from('weave-ts peer name v1');

/** The Ed25519 calls we use, over either binding. */
interface SignBackend {
  keyPairFromSeed(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array;
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
}

interface SodiumNativeSign {
  crypto_sign_seed_keypair(pk: Buffer, sk: Buffer, seed: Buffer): void;
  crypto_sign_detached(sig: Buffer, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
}

function nativeBackend(): SignBackend | null {
  let na: SodiumNativeSign;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    na = require('sodium-native') as SodiumNativeSign;
  } catch {
    return null;
  }
  return {
    keyPairFromSeed(seed) {
      const pk = Buffer.alloc(PUBLIC_KEY_BYTES);
      const sk = Buffer.alloc(64);
      na.crypto_sign_seed_keypair(pk, sk, Buffer.from(seed));
      return { publicKey: new Uint8Array(pk), secretKey: new Uint8Array(sk) };
    },
    sign(message, secretKey) {
      const sig = Buffer.alloc(SIGNATURE_BYTES);
      na.crypto_sign_detached(sig, message, secretKey);
      return new Uint8Array(sig);
    },
    verify: (signature, message, publicKey) => na.crypto_sign_verify_detached(signature, message, publicKey),
  };
}

function wasmBackend(): SignBackend {
  return {
    keyPairFromSeed(seed) {
      const kp = sodium().crypto_sign_seed_keypair(seed);
      return { publicKey: kp.publicKey, secretKey: kp.privateKey };
    },
    sign: (message, secretKey) => sodium().crypto_sign_detached(message, secretKey),
    verify(signature, message, publicKey) {
      try {
        return sodium().crypto_sign_verify_detached(signature, message, publicKey);
      } catch {
        return false;
      }
    },
  };
}

let backend: SignBackend | null = null;
function sign(): SignBackend {
  if (backend === null) backend = nativeBackend() ?? wasmBackend();
  return backend;
}

/** The peer name a public key proves (see the file comment). */
export function peerNameOfKey(publicKey: Uint8Array): PeerName {
  return peerNameFromSeed(createHash('sha256').update(NAME_LABEL).update(publicKey).digest());
}

/** Checks an Ed25519 signature; false (never a throw) for any malformed input. */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  return sign().verify(signature, message, publicKey);
}

/** Our key pair. The secret never leaves this object except as the seed identity.ts persists. */
export class PeerKey {
  readonly publicKey: Uint8Array;
  readonly name: PeerName;
  private readonly secretKey: Uint8Array;

  private constructor(readonly seed: Uint8Array) {
    const kp = sign().keyPairFromSeed(seed);
    this.publicKey = kp.publicKey;
    this.secretKey = kp.secretKey;
    this.name = peerNameOfKey(this.publicKey);
  }

  /** The key pair a 32-byte seed determines (a persisted key, or a test's fixed one). */
  static fromSeed(seed: Uint8Array): PeerKey {
    if (seed.length !== KEY_SEED_BYTES) throw new RangeError(`key seed must be ${KEY_SEED_BYTES} bytes, got ${seed.length}`);
    return new PeerKey(Uint8Array.from(seed));
  }

  /** A fresh key pair from a CSPRNG. */
  static generate(randomBytes: (n: number) => Uint8Array): PeerKey {
    return PeerKey.fromSeed(randomBytes(KEY_SEED_BYTES));
  }

  sign(message: Uint8Array): Uint8Array {
    return sign().sign(message, this.secretKey);
  }
}
