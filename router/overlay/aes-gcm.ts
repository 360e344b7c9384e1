// AES-256-GCM for the UDP sleeve, through our addon (native/aead.c), which
// keeps one OpenSSL context per key and direction and seals or opens each
// datagram in place with no allocation. Offered in the handshake only when
// the CPU has AES and carry-less multiply instructions and the addon passes a
// known-answer test at startup (McGrew and Viega, "The Galois/Counter Mode of
// Operation (GCM)", 2005, Test Case 16: AES-256, 96-bit IV, with AAD; the
// same vectors as NIST's GCM validation set); anything less and the sleeve
// stays on ChaCha20-Poly1305, which needs no special hardware to be fast and
// constant-time.
//
// Never throws per frame: a failed open returns -1 and the caller counts it.

import { errorMessage } from '../../common/errors';
import { AEAD_TAG_BYTES } from './frame-aead';
import { loadNative } from './native';

declare const aeadHandle: unique symbol;
/** One OpenSSL context (a key, one direction), owned by the addon. */
export interface AeadHandle { readonly [aeadHandle]: 'aead' }

/** The addon's AEAD functions (present from the build that has native/aead.c). */
interface AeadNative {
  aesGcmHardware(): boolean;
  aeadNew(key: Uint8Array, encrypt: boolean): AeadHandle;
  aeadSeal(h: AeadHandle, buf: Uint8Array, off: number, len: number, ad: Uint8Array, nonce: Uint8Array): number;
  aeadOpen(h: AeadHandle, buf: Uint8Array, off: number, len: number, ad: Uint8Array, nonce: Uint8Array): number;
  aeadFree(h: AeadHandle): void;
}

const FUNCTIONS: ReadonlyArray<keyof AeadNative> = ['aesGcmHardware', 'aeadNew', 'aeadSeal', 'aeadOpen', 'aeadFree'];

/** One key in one direction. seal/open work in place like FrameAead; dispose() frees (and cleanses) the context at once. */
export class AesGcmKey {
  private handle: AeadHandle | null;

  constructor(private readonly na: AeadNative, key: Uint8Array, readonly encrypt: boolean) {
    this.handle = na.aeadNew(key, encrypt);
  }

  /** Encrypts buf[off, off+len) in place and writes the tag after it; returns len + 16, or -1 if the key is gone. */
  seal(buf: Uint8Array, off: number, len: number, ad: Uint8Array, nonce: Uint8Array): number {
    return this.handle === null ? -1 : this.na.aeadSeal(this.handle, buf, off, len, ad, nonce);
  }

  /** Decrypts buf[off, off+len) (ciphertext and tag) in place; returns the plaintext length, or -1 when it does not authenticate. */
  open(buf: Uint8Array, off: number, len: number, ad: Uint8Array, nonce: Uint8Array): number {
    return this.handle === null ? -1 : this.na.aeadOpen(this.handle, buf, off, len, ad, nonce);
  }

  /** seal() for a sealing key, open() for an opening one: the one call the sleeve session makes per datagram. */
  run(buf: Uint8Array, off: number, len: number, ad: Uint8Array, nonce: Uint8Array): number {
    return this.encrypt ? this.seal(buf, off, len, ad, nonce) : this.open(buf, off, len, ad, nonce);
  }

  /** The context itself, for the lone-frame lane (native/lane.c), which seals or opens with it as JS would; null once disposed. */
  get nativeHandle(): AeadHandle | null {
    return this.handle;
  }

  dispose(): void {
    if (this.handle === null) return;
    this.na.aeadFree(this.handle);
    this.handle = null;
  }
}

export interface AesGcm {
  /** A context for `key` (copied into OpenSSL's key schedule; the caller keeps and zeroes its own copy). */
  key(key: Uint8Array, encrypt: boolean): AesGcmKey;
}

export type AesGcmProbe = { aes: AesGcm; reason: string } | { aes: null; reason: string };

// McGrew-Viega GCM spec, Test Case 16.
const KAT = {
  key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
  iv: 'cafebabefacedbaddecaf888',
  aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
  plain: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72' +
    '1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
  sealed: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa' +
    '8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662' + '76fc6ece0f4e1768cddf8853bb2d551b',
};

/** Seals and opens the known answer, and refuses it with one bit flipped; the reason when anything differs, else null. */
export function knownAnswerFails(aes: AesGcm): string | null {
  const hex = (s: string): Buffer => Buffer.from(s, 'hex');
  const [key, iv, aad, plain, sealed] = [hex(KAT.key), hex(KAT.iv), hex(KAT.aad), hex(KAT.plain), hex(KAT.sealed)];
  const sealer = aes.key(key, true);
  const opener = aes.key(key, false);
  try {
    const buf = Buffer.alloc(plain.length + AEAD_TAG_BYTES);
    plain.copy(buf);
    if (sealer.seal(buf, 0, plain.length, aad, iv) !== sealed.length || !buf.equals(sealed)) return 'wrong ciphertext or tag';
    if (opener.open(buf, 0, buf.length, aad, iv) !== plain.length || !buf.subarray(0, plain.length).equals(plain)) return 'does not open its own';
    sealed.copy(buf);
    buf[buf.length - 1]! ^= 1;
    if (opener.open(buf, 0, buf.length, aad, iv) !== -1) return 'accepts a wrong tag';
    return null;
  } finally {
    sealer.dispose();
    opener.dispose();
  }
}

let probed: AesGcmProbe | null = null;

/** AES-256-GCM when this machine and build can do it well, with why (not); probed once. */
export function probeAesGcm(): AesGcmProbe {
  if (probed === null) probed = probe();
  return probed;
}

function probe(): AesGcmProbe {
  let record: Record<string, unknown>;
  try {
    record = loadNative() as unknown as Record<string, unknown>;
  } catch (err) {
    return { aes: null, reason: `no native addon: ${errorMessage(err)}` };
  }
  if (FUNCTIONS.some((f) => typeof record[f] !== 'function')) return { aes: null, reason: 'the native addon predates AES-256-GCM (stale build?)' };
  const na = record as unknown as AeadNative;
  if (!na.aesGcmHardware()) return { aes: null, reason: 'the CPU lacks AES and carry-less multiply instructions' };
  const aes: AesGcm = { key: (key, encrypt) => new AesGcmKey(na, key, encrypt) };
  let failure: string | null;
  try {
    failure = knownAnswerFails(aes);
  } catch (err) {
    failure = errorMessage(err);
  }
  if (failure !== null) return { aes: null, reason: `known-answer test failed: ${failure}` };
  return { aes, reason: 'OpenSSL, in hardware' };
}
