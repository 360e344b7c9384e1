// Owns the one libsodium the mesh calls, behind the few functions it uses
// (Sodium). sodium-native (libsodium itself, prebuilt) when it loads here,
// else libsodium-wrappers (the same library compiled to WebAssembly): same
// bytes either way, so peers on different backends interoperate. The WASM copy
// is required only when it is the one used, or asked for by wasmSodium(): a
// second libsodium instantiated as WASM next to the native one cost ~10 MB of
// an idle router's RSS (issue 14). The WASM finishes loading asynchronously,
// so every crypto user goes through sodium(), which refuses loudly until
// loadSodium() has been awaited once (at daemon startup, at the top of a test).
// This file must never do crypto itself.

import { loadSodiumNative, sodiumNativeApi } from './sodium-native-api';

/** The libsodium calls the mesh makes, as libsodium-wrappers shapes them (results returned, failures thrown). */
export interface Sodium {
  memzero(bytes: Uint8Array): void;
  randombytes_buf(length: number): Uint8Array;
  crypto_generichash(length: number, message: Uint8Array, key: Uint8Array | null): Uint8Array;
  crypto_scalarmult(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array;
  crypto_scalarmult_base(privateKey: Uint8Array): Uint8Array;
  crypto_aead_chacha20poly1305_ietf_encrypt(message: Uint8Array, ad: Uint8Array | null, secretNonce: null, publicNonce: Uint8Array, key: Uint8Array): Uint8Array;
  crypto_aead_chacha20poly1305_ietf_decrypt(secretNonce: null, ciphertext: Uint8Array, ad: Uint8Array | null, publicNonce: Uint8Array, key: Uint8Array): Uint8Array;
  crypto_sign_seed_keypair(seed: Uint8Array): { publicKey: Uint8Array; privateKey: Uint8Array };
  crypto_sign_detached(message: Uint8Array, privateKey: Uint8Array): Uint8Array;
  crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
}

export type SodiumBackend = 'sodium-native' | 'libsodium-wrappers';

let ready: { api: Sodium; backend: SodiumBackend } | null = null;
let loading: Promise<void> | null = null;
let wasm: Promise<Sodium> | null = null;

/** libsodium-wrappers, loaded (and its WASM instantiated) on first call only. */
export function wasmSodium(): Promise<Sodium> {
  if (wasm === null) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const libsodium = require('libsodium-wrappers') as typeof import('libsodium-wrappers');
    // The module object itself: its functions are attached only once `ready` resolves.
    wasm = libsodium.ready.then((): Sodium => libsodium);
  }
  return wasm;
}

/**
 * Makes sodium() usable; safe to call (and await) any number of times. The
 * first call picks the backend: `prefer` when it loads, the other one else
 * (a test asks for 'libsodium-wrappers' to run the fallback).
 */
export async function loadSodium(prefer: SodiumBackend = 'sodium-native'): Promise<void> {
  if (loading === null) {
    loading = (async () => {
      const na = prefer === 'sodium-native' ? loadSodiumNative() : null;
      ready = na !== null
        ? { api: sodiumNativeApi(na), backend: 'sodium-native' }
        : { api: await wasmSodium(), backend: 'libsodium-wrappers' };
    })();
  }
  await loading;
}

/** The ready libsodium; throws if loadSodium() has not completed. */
export function sodium(): Sodium {
  if (ready === null) {
    throw new Error('libsodium is not ready: await loadSodium() once at startup before using any crypto');
  }
  return ready.api;
}

/** Which backend sodium() answers with; null before loadSodium() completed. */
export function sodiumBackend(): SodiumBackend | null {
  return ready?.backend ?? null;
}
