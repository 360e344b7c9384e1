// The few libsodium calls the mesh makes (router/mesh/sodium.ts's Sodium),
// answered by sodium-native: the same C library libsodium-wrappers compiles to
// WebAssembly, so the bytes are the same, without instantiating a second copy
// of libsodium as WASM in the router (its compiled module and its heap were
// ~10 MB of an idle router's RSS, issue 14). Shaped like libsodium-wrappers'
// API (results returned, failures thrown) so callers do not know which one
// they hold; sodium-native's own argument checks throw on wrong lengths, the
// way the wrappers do.

import type { Sodium } from './sodium';

const AEAD_TAG_BYTES = 16;
const X25519_BYTES = 32;
const SIGN_PUBLIC_KEY_BYTES = 32;
const SIGN_SECRET_KEY_BYTES = 64;
const SIGNATURE_BYTES = 64;

/** sodium-native's calls used here: outputs are caller-allocated. */
export interface SodiumNativeModule {
  sodium_memzero(buf: Uint8Array): void;
  randombytes_buf(buf: Uint8Array): void;
  crypto_generichash(output: Uint8Array, input: Uint8Array, key?: Uint8Array): void;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): void;
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number;
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
}

/** sodium-native when it loads here (prebuilt for this platform), else null. */
export function loadSodiumNative(): SodiumNativeModule | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('sodium-native') as SodiumNativeModule;
  } catch {
    return null;
  }
}

export function sodiumNativeApi(na: SodiumNativeModule): Sodium {
  return {
    memzero: (bytes) => na.sodium_memzero(bytes),
    randombytes_buf(length) {
      const out = new Uint8Array(length);
      na.randombytes_buf(out);
      return out;
    },
    crypto_generichash(length, message, key) {
      const out = new Uint8Array(length);
      if (key === null) na.crypto_generichash(out, message);
      else na.crypto_generichash(out, message, key);
      return out;
    },
    crypto_scalarmult(privateKey, publicKey) {
      const out = new Uint8Array(X25519_BYTES);
      na.crypto_scalarmult(out, privateKey, publicKey);
      return out;
    },
    crypto_scalarmult_base(privateKey) {
      const out = new Uint8Array(X25519_BYTES);
      na.crypto_scalarmult_base(out, privateKey);
      return out;
    },
    crypto_aead_chacha20poly1305_ietf_encrypt(message, ad, secretNonce, publicNonce, key) {
      const out = new Uint8Array(message.length + AEAD_TAG_BYTES);
      na.crypto_aead_chacha20poly1305_ietf_encrypt(out, message, ad, secretNonce, publicNonce, key);
      return out;
    },
    crypto_aead_chacha20poly1305_ietf_decrypt(secretNonce, ciphertext, ad, publicNonce, key) {
      if (ciphertext.length < AEAD_TAG_BYTES) throw new Error('ciphertext is shorter than its tag');
      const out = new Uint8Array(ciphertext.length - AEAD_TAG_BYTES);
      na.crypto_aead_chacha20poly1305_ietf_decrypt(out, secretNonce, ciphertext, ad, publicNonce, key);
      return out;
    },
    crypto_sign_seed_keypair(seed) {
      const publicKey = new Uint8Array(SIGN_PUBLIC_KEY_BYTES);
      const privateKey = new Uint8Array(SIGN_SECRET_KEY_BYTES);
      na.crypto_sign_seed_keypair(publicKey, privateKey, seed);
      return { publicKey, privateKey };
    },
    crypto_sign_detached(message, privateKey) {
      const out = new Uint8Array(SIGNATURE_BYTES);
      na.crypto_sign_detached(out, message, privateKey);
      return out;
    },
    crypto_sign_verify_detached(signature, message, publicKey) {
      // The wrappers refuse any length but the exact one; native libsodium would read the first 64 bytes.
      if (signature.length !== SIGNATURE_BYTES) throw new Error(`signature must be ${SIGNATURE_BYTES} bytes`);
      return na.crypto_sign_verify_detached(signature, message, publicKey);
    },
  };
}
