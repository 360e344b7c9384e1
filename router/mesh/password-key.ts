// Owns turning the mesh password into the 32-byte key that authenticates the
// control handshake (router/mesh/handshake.ts). The password never goes on the wire
// and never reaches a key directly: it is stretched with scrypt once at
// startup, so that each guess an attacker makes against a recorded handshake
// (see the note in handshake.ts) costs as much as this does.
//
// Every peer must derive the same key from the same password, so the salt and
// cost parameters below are protocol constants: changing any of them is a
// protocol version change, not a tuning knob.

import { scryptSync } from 'node:crypto';
import { RouterError } from './errors';

/**
 * Fixed protocol salt. A per-mesh random salt would need distributing; peers
 * only share the password. The salt still separates our keys from any other
 * use of the same password.
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
