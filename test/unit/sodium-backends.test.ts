// The two libsodium backends behind router/mesh/sodium.ts: sodium-native
// through its facade (what a router uses where it loads) and libsodium-wrappers'
// WASM (the fallback) give the same bytes for every call the mesh makes and
// refuse the same bad inputs, so a peer on either talks to a peer on the other.
// The file runs with the fallback picked (loadSodium('libsodium-wrappers')), so
// a whole password handshake and a control session go through the WASM too.

import t from 'tap';
import { loadSodium, sodium, sodiumBackend, wasmSodium, type Sodium } from '../../router/mesh/sodium';
import { loadSodiumNative, sodiumNativeApi } from '../../router/mesh/sodium-native-api';
import { Handshake } from '../../router/mesh/handshake';
import { DEFAULT_REKEY_OPTIONS, KeySchedule } from '../../router/mesh/key-schedule';
import { stretchPassword } from '../../router/mesh/password-key';
import { PeerKey } from '../../router/mesh/peer-key';
import { SeededRng } from '../../common/rng';

let native: Sodium;
let wasm: Sodium;

t.before(async () => {
  await loadSodium('libsodium-wrappers');
  const na = loadSodiumNative();
  if (na === null) throw new Error('sodium-native does not load here: the comparison needs both backends');
  native = sodiumNativeApi(na);
  wasm = await wasmSodium();
});

const rng = new SeededRng(14);
const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(rng.next() * 256));
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/** 'ok' or 'threw', for each backend. */
function outcome(fn: () => unknown): 'ok' | 'threw' {
  try {
    fn();
    return 'ok';
  } catch {
    return 'threw';
  }
}

t.test('the first loadSodium() picks the backend; later calls keep it', async (t) => {
  await loadSodium();
  t.equal(sodiumBackend(), 'libsodium-wrappers');
  t.equal(sodium(), wasm);
});

t.test('same bytes from both backends', async (t) => {
  for (const size of [0, 1, 64, 1500]) {
    const msg = bytes(size);
    const key = bytes(32);
    t.ok(same(native.crypto_generichash(32, msg, null), wasm.crypto_generichash(32, msg, null)), `generichash of ${size} bytes`);
    t.ok(same(native.crypto_generichash(64, msg, key), wasm.crypto_generichash(64, msg, key)), `keyed generichash of ${size} bytes`);
    const nonce = bytes(12);
    const ad = bytes(20);
    const sealed = native.crypto_aead_chacha20poly1305_ietf_encrypt(msg, ad, null, nonce, key);
    t.ok(same(sealed, wasm.crypto_aead_chacha20poly1305_ietf_encrypt(msg, ad, null, nonce, key)), `AEAD of ${size} bytes`);
    t.ok(same(wasm.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, ad, nonce, key), msg), 'WASM opens native');
    t.ok(same(native.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, ad, nonce, key), msg), 'native opens its own');
    const noAd = native.crypto_aead_chacha20poly1305_ietf_encrypt(msg, null, null, nonce, key);
    t.ok(same(noAd, wasm.crypto_aead_chacha20poly1305_ietf_encrypt(msg, null, null, nonce, key)), 'AEAD without associated data');
  }
  const secret = bytes(32);
  const pub = wasm.crypto_scalarmult_base(bytes(32));
  t.ok(same(native.crypto_scalarmult_base(secret), wasm.crypto_scalarmult_base(secret)), 'X25519 public key');
  t.ok(same(native.crypto_scalarmult(secret, pub), wasm.crypto_scalarmult(secret, pub)), 'X25519 shared secret');
  const seed = bytes(32);
  const kn = native.crypto_sign_seed_keypair(seed);
  const kw = wasm.crypto_sign_seed_keypair(seed);
  t.ok(same(kn.publicKey, kw.publicKey) && same(kn.privateKey, kw.privateKey), 'Ed25519 key pair from a seed');
  const msg = bytes(100);
  const sig = native.crypto_sign_detached(msg, kn.privateKey);
  t.ok(same(sig, wasm.crypto_sign_detached(msg, kw.privateKey)), 'Ed25519 signature');
  t.equal(wasm.crypto_sign_verify_detached(sig, msg, kw.publicKey), true, 'WASM verifies native');
  t.equal(native.crypto_sign_verify_detached(sig, msg, kn.publicKey), true, 'native verifies');
  const forged = Uint8Array.from(sig);
  forged[3] = forged[3]! ^ 1;
  t.equal(native.crypto_sign_verify_detached(forged, msg, kn.publicKey), false, 'native refuses a forged signature');
  t.equal(wasm.crypto_sign_verify_detached(forged, msg, kn.publicKey), false, 'WASM refuses it too');
});

t.test('both refuse the same bad inputs by throwing', async (t) => {
  const key = bytes(32);
  const nonce = bytes(12);
  const sealed = native.crypto_aead_chacha20poly1305_ietf_encrypt(bytes(40), null, null, nonce, key);
  const tampered = Uint8Array.from(sealed);
  tampered[0] = tampered[0]! ^ 1;
  const lowOrder = new Uint8Array(32);
  const seed = bytes(32);
  const kp = native.crypto_sign_seed_keypair(seed);
  const cases: [string, (s: Sodium) => unknown][] = [
    ['a tampered ciphertext', (s) => s.crypto_aead_chacha20poly1305_ietf_decrypt(null, tampered, null, nonce, key)],
    ['a ciphertext shorter than its tag', (s) => s.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed.subarray(0, 15), null, nonce, key)],
    ['the wrong associated data', (s) => s.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, bytes(3), nonce, key)],
    ['a 31-byte AEAD key', (s) => s.crypto_aead_chacha20poly1305_ietf_encrypt(bytes(5), null, null, nonce, key.subarray(1))],
    ['an 8-byte nonce', (s) => s.crypto_aead_chacha20poly1305_ietf_encrypt(bytes(5), null, null, nonce.subarray(4), key)],
    ['a low-order X25519 point (all-zero result)', (s) => s.crypto_scalarmult(bytes(32), lowOrder)],
    ['a 31-byte X25519 point', (s) => s.crypto_scalarmult(bytes(32), bytes(31))],
    ['a 31-byte X25519 scalar', (s) => s.crypto_scalarmult_base(bytes(31))],
    ['a 31-byte signing seed', (s) => s.crypto_sign_seed_keypair(bytes(31))],
    ['a 65-byte signature', (s) => s.crypto_sign_verify_detached(bytes(65), bytes(4), kp.publicKey)],
    ['a 63-byte signature', (s) => s.crypto_sign_verify_detached(bytes(63), bytes(4), kp.publicKey)],
    ['a 31-byte public key', (s) => s.crypto_sign_verify_detached(bytes(64), bytes(4), kp.publicKey.subarray(1))],
    ['a hash of 0 bytes', (s) => s.crypto_generichash(0, bytes(4), null)],
  ];
  for (const [what, fn] of cases) {
    t.same([outcome(() => fn(native)), outcome(() => fn(wasm))], ['threw', 'threw'], what);
  }
});

t.test('randombytes_buf and memzero', async (t) => {
  for (const s of [native, wasm]) {
    const r = s.randombytes_buf(48);
    t.equal(r.length, 48);
    t.not(Buffer.from(r).toString('hex'), Buffer.from(s.randombytes_buf(48)).toString('hex'), 'two draws differ');
    s.memzero(r);
    t.ok(r.every((b) => b === 0), 'memzero zeroes');
  }
});

t.test('on the fallback, a password handshake completes and its control session carries messages', async (t) => {
  t.equal(sodiumBackend(), 'libsodium-wrappers');
  const passwordKey = stretchPassword('fallback');
  const keyA = PeerKey.fromSeed(new Uint8Array(32).fill(1));
  const keyB = PeerKey.fromSeed(new Uint8Array(32).fill(2));
  const a = Handshake.start({ local: { name: keyA.name, nickname: 'a', incarnation: 1, listenPort: 6783 }, key: keyA, passwordKey });
  const b = Handshake.start({ local: { name: keyB.name, nickname: 'b', incarnation: 1, listenPort: 6783 }, key: keyB, passwordKey });
  const outA = a.handshake.consumeHello(b.hello);
  const outB = b.handshake.consumeHello(a.hello);
  const resB = b.handshake.consumeAuth(outA.auth);
  const resA = a.handshake.consumeAuth(outB.auth);
  const ka = new KeySchedule(resA.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  const kb = new KeySchedule(resB.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  t.equal(Buffer.from(kb.control.open(ka.control.seal(Buffer.from('a to b')))).toString(), 'a to b');
  t.equal(Buffer.from(ka.control.open(kb.control.seal(Buffer.from('b to a')))).toString(), 'b to a');
  t.ok(ka.sleeve.sendKey.equals(kb.sleeve.receiveKeys[0]!), 'sleeve keys agree');
  ka.dispose();
  kb.dispose();
});
