// Owns the password-authenticated key exchange under the control handshake:
// CPace over X25519 (draft-irtf-cfrg-cpace, the X25519 instantiation), built
// from libsodium's X25519 and BLAKE2b plus a map from hash to curve written
// here. Pure functions; no state, no I/O. handshake.ts decides what is sent.
//
// Why a PAKE: with a plain "mix the password into an X25519 exchange and send
// a MAC" design, whoever runs one handshake against us (or whom we dial) holds
// a MAC it can test password guesses against offline. In CPace the exchanged
// value is Y = y * G where the generator G is derived from the password; for a
// uniformly random scalar y, Y is a uniformly random group element whatever
// the password, and the shared K = y_a * y_b * G can be computed only by
// someone who knew G (the password) when choosing their share. An active
// attacker therefore tests exactly one guess per handshake (the generator it
// committed to), online; a recording tests none.
//
//   G   = Elligator2(BLAKE2b-512("weave-ts cpace generator v2" || passwordKey) mod p)
//         on Curve25519 (RFC 9380 section 6.7.1, Z = 2, the map libsodium uses);
//         only the u-coordinate is needed, as X25519 takes nothing else
//   y   = 32 random bytes (X25519 clamps: a multiple of the cofactor 8, so Y
//         lands in the prime-order subgroup whatever G's small-order part)
//   Y   = X25519(y, G)              sent in the clear (the share)
//   K   = X25519(y, Y_peer)         libsodium refuses an all-zero K (a
//                                   low-order share), as CPace requires
//
// There is no pre-agreed session id (the draft's "sid"); the session is bound
// instead by hashing the transcript (both Hellos, hence both shares and the
// version ranges) into every key (handshake.ts), as the draft recommends when
// no sid is available.
//
// Known limit: the map runs on BigInt, which is not constant-time. It runs once
// per password key per process (the generator is cached), never per
// connection, so a remote peer cannot time it.

import { sodium } from './sodium';

export const CPACE_SHARE_BYTES = 32;
export const CPACE_SCALAR_BYTES = 32;
const GENERATOR_LABEL = new TextEncoder().encode('weave-ts cpace generator v2');

const P = (1n << 255n) - 19n;
const A = 486662n;

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function powMod(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if ((e & 1n) === 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

/** 0 or a quadratic residue (Euler's criterion). */
function isSquare(a: bigint): boolean {
  return powMod(a, (P - 1n) / 2n) !== P - 1n;
}

/** Little-endian bytes to an integer (any length). */
export function bytesToBigIntLE(bytes: Uint8Array): bigint {
  let x = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i]!);
  return x;
}

/** A field element as 32 little-endian bytes (the X25519 u-coordinate encoding). */
export function bigIntToBytesLE(x: bigint): Uint8Array {
  const out = new Uint8Array(32);
  let v = x;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * Elligator 2 onto Curve25519 (v^2 = u^3 + A u^2 + u), returning the
 * u-coordinate of the point for field element r (RFC 9380 section 6.7.1 with
 * Z = 2; inv0(0) = 0 covers the one r where 1 + 2r^2 = 0).
 */
export function elligator2U(r: bigint): bigint {
  const t = mod(2n * r * r + 1n);
  let x1 = mod(-A * powMod(t, P - 2n));
  if (x1 === 0n) x1 = mod(-A);
  const gx1 = mod(x1 * x1 * x1 + A * x1 * x1 + x1);
  return isSquare(gx1) ? x1 : mod(-x1 - A);
}

const generators = new WeakMap<Uint8Array, Uint8Array>();

/**
 * The CPace generator (u-coordinate bytes) for a stretched password key.
 * Cached per key object: the map costs a few milliseconds of BigInt work and
 * depends on nothing but the password.
 */
export function cpaceGenerator(passwordKey: Uint8Array): Uint8Array {
  const cached = generators.get(passwordKey);
  if (cached !== undefined) return cached;
  const input = new Uint8Array(GENERATOR_LABEL.length + passwordKey.length);
  input.set(GENERATOR_LABEL, 0);
  input.set(passwordKey, GENERATOR_LABEL.length);
  const h = sodium().crypto_generichash(64, input, null);
  sodium().memzero(input);
  // 512 bits reduced mod p: the bias is below 2^-250.
  const generator = bigIntToBytesLE(elligator2U(mod(bytesToBigIntLE(h))));
  sodium().memzero(h);
  generators.set(passwordKey, generator);
  return generator;
}

/** Our share for one password: Y = X25519(scalar, G). */
export function cpaceShare(scalar: Uint8Array, generator: Uint8Array): Uint8Array {
  return sodium().crypto_scalarmult(scalar, generator);
}

/**
 * K = X25519(scalar, peer's share), or null when the peer's share is a
 * low-order point (libsodium refuses the all-zero result).
 */
export function cpaceSecret(scalar: Uint8Array, peerShare: Uint8Array): Uint8Array | null {
  try {
    return sodium().crypto_scalarmult(scalar, peerShare);
  } catch {
    return null;
  }
}
