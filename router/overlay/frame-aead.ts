// The per-frame AEAD (ChaCha20-Poly1305 IETF) for the UDP sleeve, working in
// place on caller-owned buffers. sodium-native (native libsodium) when it
// loads, else libsodium-wrappers (the same library as WASM): both produce the
// same bytes for the same key, nonce and message (checked by "sodium-native and
// libsodium-wrappers produce identical ciphertext" in
// test/unit/dataplane-units.test.ts), so peers using different backends
// interoperate.
//
// Never throws per frame: a failed open returns -1 and the caller counts it.

import { sodium, type Sodium } from '../mesh/sodium';
import { loadSodiumNative, type SodiumNativeModule } from '../mesh/sodium-native-api';

export const AEAD_TAG_BYTES = 16;

export interface FrameAead {
  readonly backend: 'sodium-native' | 'libsodium-wrappers';
  /**
   * Encrypts buf[msgOff, msgOff+msgLen) in place and writes the tag after it.
   * Returns the ciphertext length (msgLen + 16). The buffer must have room.
   */
  sealInPlace(buf: Buffer, msgOff: number, msgLen: number, ad: Buffer, nonce: Buffer, key: Buffer): number;
  /** Decrypts buf[ctOff, ctOff+ctLen) in place; returns the plaintext length, or -1 when it does not authenticate. */
  openInPlace(buf: Buffer, ctOff: number, ctLen: number, ad: Buffer, nonce: Buffer, key: Buffer): number;
}

class NativeAead implements FrameAead {
  readonly backend = 'sodium-native' as const;

  constructor(private readonly na: SodiumNativeModule) {}

  sealInPlace(buf: Buffer, msgOff: number, msgLen: number, ad: Buffer, nonce: Buffer, key: Buffer): number {
    // libsodium allows the message and ciphertext to overlap exactly (same start).
    const region = buf.subarray(msgOff, msgOff + msgLen + AEAD_TAG_BYTES);
    return this.na.crypto_aead_chacha20poly1305_ietf_encrypt(region, region.subarray(0, msgLen), ad, null, nonce, key);
  }

  openInPlace(buf: Buffer, ctOff: number, ctLen: number, ad: Buffer, nonce: Buffer, key: Buffer): number {
    if (ctLen < AEAD_TAG_BYTES) return -1;
    const region = buf.subarray(ctOff, ctOff + ctLen);
    try {
      return this.na.crypto_aead_chacha20poly1305_ietf_decrypt(region.subarray(0, ctLen - AEAD_TAG_BYTES), null, region, ad, nonce, key);
    } catch {
      return -1;
    }
  }
}

class WasmAead implements FrameAead {
  readonly backend = 'libsodium-wrappers' as const;

  constructor(private readonly api: Sodium) {}

  sealInPlace(buf: Buffer, msgOff: number, msgLen: number, ad: Buffer, nonce: Buffer, key: Buffer): number {
    const out = this.api.crypto_aead_chacha20poly1305_ietf_encrypt(buf.subarray(msgOff, msgOff + msgLen), ad, null, nonce, key);
    buf.set(out, msgOff);
    return out.length;
  }

  openInPlace(buf: Buffer, ctOff: number, ctLen: number, ad: Buffer, nonce: Buffer, key: Buffer): number {
    if (ctLen < AEAD_TAG_BYTES) return -1;
    try {
      const out = this.api.crypto_aead_chacha20poly1305_ietf_decrypt(null, buf.subarray(ctOff, ctOff + ctLen), ad, nonce, key);
      buf.set(out, ctOff);
      return out.length;
    } catch {
      return -1;
    }
  }
}

let cached: FrameAead | null = null;

/** The portable backend over `api` (the WASM libsodium when sodium-native does not load; tests pass wasmSodium()). */
export function wasmAead(api: Sodium = sodium()): FrameAead {
  return new WasmAead(api);
}

/** The native backend, or null when sodium-native cannot load here. */
export function nativeAead(): FrameAead | null {
  const na = loadSodiumNative();
  return na === null ? null : new NativeAead(na);
}

/** The fastest backend available here (loadSodium() must have run for the fallback). */
export function frameAead(): FrameAead {
  if (cached === null) cached = nativeAead() ?? wasmAead();
  return cached;
}
