// Owns turning the mesh password into the 32-byte key that authenticates the
// control handshake (router/mesh/handshake.ts). The password never goes on the wire
// and never reaches a key directly: it is stretched with scrypt once at
// startup, and the stretched key only picks the CPace generator (cpace.ts).
// Since version 2 the handshake is a PAKE, so nothing a peer or an
// eavesdropper sees lets it test a guess offline; the stretch is defence in
// depth (a leaked stretched key still costs scrypt per guess), not the line
// that holds.
//
// Every peer must derive the same key from the same password, so the salt and
// cost parameters below are protocol constants: changing any of them is a
// protocol version change, not a tuning knob.

import { scryptSync } from 'node:crypto';
import { RouterError } from './errors';

/**
 * Fixed protocol salt. A per-mesh salt would have to be sent before the
 * password is proven, and would buy nothing against captures: with the PAKE
 * there is no capture a guess can be tested against, whatever the salt
 * (handshake.ts). The salt separates our keys from any other use of the same
 * password.
 */
export const PASSWORD_SALT = 'weave-ts mesh password v1';
/** scrypt cost: N = 2^15, r = 8, p = 1 (RFC 7914 section 2's interactive-use ballpark); ~100 ms once at startup. */
export const PASSWORD_SCRYPT_N = 2 ** 15;
export const PASSWORD_SCRYPT_R = 8;
export const PASSWORD_SCRYPT_P = 1;
export const PASSWORD_KEY_BYTES = 32;
/**
 * scrypt needs 128 * N * r bytes (32 MiB here) plus a little working space,
 * which does not fit Node's default maxmem of 32 MiB (measured: "memory limit
 * exceeded"), so allow twice that.
 */
const SCRYPT_MAXMEM_BYTES = 2 * 128 * PASSWORD_SCRYPT_N * PASSWORD_SCRYPT_R;

/**
 * Stretches a password into the 32-byte handshake key. The password is
 * NFC-normalised first so the same visible password typed on different systems
 * gives the same key. Throws RouterError('config') for an empty password
 * (no password means a plaintext mesh, which the caller chooses explicitly).
 */
export function stretchPassword(password: string): Uint8Array {
  if (password.length === 0) {
    throw RouterError.config('password must not be empty (leave it unset for a plaintext mesh)');
  }
  const derived = scryptSync(password.normalize('NFC'), PASSWORD_SALT, PASSWORD_KEY_BYTES, {
    N: PASSWORD_SCRYPT_N,
    r: PASSWORD_SCRYPT_R,
    p: PASSWORD_SCRYPT_P,
    maxmem: SCRYPT_MAXMEM_BYTES,
  });
  // Hand out a plain Uint8Array and scrub the Buffer it came in.
  const key = new Uint8Array(derived);
  derived.fill(0);
  return key;
}
