// AES-256-GCM through the addon (native/aead.c, router/overlay/aes-gcm.ts):
// the AES-256 test cases of the GCM specification, typed from it (D. McGrew,
// J. Viega, "The Galois/Counter Mode of Operation (GCM)", revised 2005,
// Appendix B, Test Cases 13-16; NIST SP 800-38D cites this document for its
// test vectors), refusal of every kind of tampering, agreement with
// node:crypto for arbitrary sizes, and misuse that throws instead of crashing.

import t from 'tap';
import * as crypto from 'node:crypto';
import { AesGcm, knownAnswerFails, probeAesGcm } from '../../router/overlay/aes-gcm';
import { loadNative } from '../../router/overlay/native';
import { randomInt, SeededRng } from '../../common/rng';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

interface Vector { name: string; key: string; iv: string; aad: string; plain: string; cipher: string; tag: string }

const K0 = '00000000000000000000000000000000 00000000000000000000000000000000';
const K1 = 'feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308';
const P64 = 'd9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72 1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b391aafd255';
const C64 = '522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa 8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662898015ad';

const VECTORS: readonly Vector[] = [
  { name: 'Test Case 13 (empty)', key: K0, iv: '000000000000000000000000', aad: '', plain: '', cipher: '', tag: '530f8afbc74536b9a963b4f1c4cb738b' },
  { name: 'Test Case 14 (one zero block)', key: K0, iv: '000000000000000000000000', aad: '',
    plain: '00000000000000000000000000000000', cipher: 'cea7403d4d606b6e074ec5d3baf39d18', tag: 'd0d1c8a799996bf0265b98b5d48ab919' },
  { name: 'Test Case 15 (64 bytes)', key: K1, iv: 'cafebabefacedbaddecaf888', aad: '', plain: P64, cipher: C64, tag: 'b094dac5d93471bdec1a502270e3cc6c' },
  { name: 'Test Case 16 (60 bytes, AAD)', key: K1, iv: 'cafebabefacedbaddecaf888', aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    plain: P64.replace(/\s+/g, '').slice(0, 120), cipher: C64.replace(/\s+/g, '').slice(0, 120), tag: '76fc6ece0f4e1768cddf8853bb2d551b' },
];

function aes(): AesGcm {
  const probe = probeAesGcm();
  if (probe.aes === null) throw new Error(`AES-256-GCM not available here: ${probe.reason}`);
  return probe.aes;
}

t.test('this machine offers AES-256-GCM, and the startup known-answer test passes', async (t) => {
  const probe = probeAesGcm();
  t.ok(probe.aes, `available: ${probe.reason}`);
  t.equal(knownAnswerFails(aes()), null);
});

t.test('the GCM specification\'s AES-256 test cases, sealed and opened in place', async (t) => {
  for (const v of VECTORS) {
    const [key, iv, aad, plain] = [hex(v.key), hex(v.iv), hex(v.aad), hex(v.plain)];
    const expected = Buffer.concat([hex(v.cipher), hex(v.tag)]);
    const sealer = aes().key(key, true);
    const opener = aes().key(key, false);
    const buf = Buffer.alloc(plain.length + 16);
    plain.copy(buf);
    t.equal(sealer.seal(buf, 0, plain.length, aad, iv), expected.length, `${v.name}: length`);
    t.equal(buf.toString('hex'), expected.toString('hex'), `${v.name}: ciphertext and tag`);
    t.equal(opener.open(buf, 0, buf.length, aad, iv), plain.length, `${v.name}: opens`);
    t.ok(buf.subarray(0, plain.length).equals(plain), `${v.name}: plaintext back`);
    sealer.dispose();
    opener.dispose();
  }
});

t.test('tampering: flipped tag, AAD, ciphertext, wrong key, wrong nonce, truncation all fail and leave no plaintext', async (t) => {
  const v = VECTORS[3]!;
  const [key, iv, aad] = [hex(v.key), hex(v.iv), hex(v.aad)];
  const sealed = Buffer.concat([hex(v.cipher), hex(v.tag)]);
  const opener = aes().key(key, false);
  const tryOpen = (buf: Buffer, ad: Buffer, nonce: Buffer, o = opener): number => o.open(buf, 0, buf.length, ad, nonce);
  const flip = (b: Buffer, i: number): Buffer => { const c = Buffer.from(b); c[i] = c[i]! ^ 0x01; return c; };
  t.equal(tryOpen(Buffer.from(sealed), aad, iv), 60, 'the untouched datagram opens');
  t.equal(tryOpen(flip(sealed, sealed.length - 1), aad, iv), -1, 'flipped tag bit');
  t.equal(tryOpen(flip(sealed, 0), aad, iv), -1, 'flipped ciphertext bit');
  t.equal(tryOpen(Buffer.from(sealed), flip(aad, 5), iv), -1, 'flipped AAD bit');
  t.equal(tryOpen(Buffer.from(sealed), aad.subarray(1), iv), -1, 'shorter AAD');
  t.equal(tryOpen(Buffer.from(sealed), aad, flip(iv, 11)), -1, 'wrong nonce');
  const other = aes().key(flip(key, 31), false);
  t.equal(tryOpen(Buffer.from(sealed), aad, iv, other), -1, 'wrong key');
  t.equal(opener.open(Buffer.from(sealed), 0, 15, aad, iv), -1, 'shorter than a tag');
  t.equal(opener.open(Buffer.from(sealed), 0, sealed.length - 1, aad, iv), -1, 'one byte cut off');
  const wiped = flip(sealed, 3);
  t.equal(tryOpen(wiped, aad, iv), -1);
  t.ok(wiped.subarray(0, 60).equals(Buffer.alloc(60)), 'a refused datagram\'s decrypted bytes are wiped, not left in the buffer');
  opener.dispose();
  other.dispose();
  t.equal(tryOpen(Buffer.from(sealed), aad, iv), -1, 'a disposed key opens nothing');
});

t.test('agrees with node:crypto for arbitrary sizes, offsets and AAD', async (t) => {
  const rng = new SeededRng(0xae5);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => randomInt(rng, 256)));
  const key = bytes(32);
  const sealer = aes().key(key, true);
  const opener = aes().key(key, false);
  for (const size of [0, 1, 15, 16, 17, 1400, 9001, 65_536, 65_507 - 32]) {
    const [iv, aad, plain] = [bytes(12), bytes(randomInt(rng, 41)), bytes(size)];
    const c = crypto.createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(aad);
    const expected = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
    const off = randomInt(rng, 21);
    const buf = Buffer.alloc(off + size + 16 + 3);
    plain.copy(buf, off);
    t.equal(sealer.seal(buf, off, size, aad, iv), size + 16);
    t.ok(buf.subarray(off, off + size + 16).equals(expected), `${size} bytes at offset ${off}`);
    t.equal(opener.open(buf, off, size + 16, aad, iv), size);
    t.ok(buf.subarray(off, off + size).equals(plain), 'and back');
  }
  sealer.dispose();
  opener.dispose();
});

t.test('misuse throws a TypeError or RangeError, never crashes', async (t) => {
  const na = loadNative() as unknown as Record<string, (...args: unknown[]) => unknown>;
  const key = Buffer.alloc(32, 1);
  const nonce = Buffer.alloc(12);
  const ad = Buffer.alloc(16);
  t.throws(() => na['aeadNew']!(Buffer.alloc(16), true), RangeError, 'a 16-byte key');
  t.throws(() => na['aeadNew']!(key, 'yes'), TypeError, 'encrypt not a boolean');
  const h = na['aeadNew']!(key, true);
  const o = na['aeadNew']!(key, false);
  t.throws(() => na['aeadSeal']!(h, Buffer.alloc(20), 0, 10, ad, nonce), RangeError, 'no room for the tag');
  t.throws(() => na['aeadSeal']!(h, Buffer.alloc(64), 0, 10, ad, Buffer.alloc(8)), RangeError, 'an 8-byte nonce');
  t.throws(() => na['aeadSeal']!(h, Buffer.alloc(64), -1, 10, ad, nonce), RangeError, 'a negative offset');
  t.throws(() => na['aeadSeal']!(o, Buffer.alloc(64), 0, 10, ad, nonce), TypeError, 'sealing with an opening context');
  t.throws(() => na['aeadOpen']!(h, Buffer.alloc(64), 0, 32, ad, nonce), TypeError, 'opening with a sealing context');
  t.throws(() => na['aeadSeal']!({}, Buffer.alloc(64), 0, 10, ad, nonce), TypeError, 'not a handle');
  t.throws(() => na['aeadSeal']!(na['udpOpen'], Buffer.alloc(64), 0, 10, ad, nonce), TypeError, 'some other object');
  na['aeadFree']!(h);
  na['aeadFree']!(h);
  t.throws(() => na['aeadSeal']!(h, Buffer.alloc(64), 0, 10, ad, nonce), /freed/, 'a freed context');
  na['aeadFree']!(o);
});
