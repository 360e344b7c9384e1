import t from 'tap';
import {
  CHANNEL_TCP_CONTROL, CHANNEL_UDP_SLEEVE, PlaintextSession, SEALED_OVERHEAD_BYTES, SealedSession, writeNonce,
} from '../../router/mesh/control-session';
import { RouterError, RouterErrorCode } from '../../router/mesh/errors';
import { loadSodium, sodium } from '../../router/mesh/sodium';

const enc = new TextEncoder();
const dec = new TextDecoder();

function codeOf(fn: () => unknown): RouterErrorCode | 'no-throw' | 'not-router-error' {
  try {
    fn();
    return 'no-throw';
  } catch (err) {
    return err instanceof RouterError ? err.code : 'not-router-error';
  }
}

function pair(): { a: SealedSession; b: SealedSession; k1: Uint8Array; k2: Uint8Array } {
  const k1 = sodium().randombytes_buf(32);
  const k2 = sodium().randombytes_buf(32);
  return { a: new SealedSession(k1, k2), b: new SealedSession(k2, k1), k1, k2 };
}

t.before(async () => { await loadSodium(); });

t.test('sealed messages round-trip in both directions with the documented layout', async (t) => {
  const { a, b, k1 } = pair();
  t.equal(a.encrypted, true);
  const m0 = a.seal(enc.encode('hello'));
  const m1 = a.seal(enc.encode(''));
  t.equal(m0.length, 1 + 8 + 5 + 16);
  t.equal(m1.length, SEALED_OVERHEAD_BYTES);
  t.same(Array.from(m0.subarray(0, 9)), [0, 0, 0, 0, 0, 0, 0, 0, 0], 'key phase 0, first counter 0');
  t.same(Array.from(m1.subarray(0, 9)), [0, 0, 0, 0, 0, 0, 0, 0, 1], 'then 1, big-endian');
  t.equal(dec.decode(b.open(m0)), 'hello');
  t.equal(b.open(m1).length, 0);
  t.equal(dec.decode(a.open(b.seal(enc.encode('back')))), 'back');
  t.same(a.counters, { send: 2, receive: 1 });

  // The nonce is [0,0,0,channel] || counter and the AD is phase and counter: decrypt by hand.
  const nonce = new Uint8Array(12);
  writeNonce(nonce, CHANNEL_TCP_CONTROL, 0);
  t.same(Array.from(nonce), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  const plain = sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, m0.subarray(9), m0.subarray(0, 9), nonce, k1);
  t.equal(dec.decode(plain), 'hello');
  const sleeveNonce = new Uint8Array(12);
  writeNonce(sleeveNonce, CHANNEL_UDP_SLEEVE, 0);
  t.not(sleeveNonce[3], nonce[3], 'sleeve and control nonces differ for the same counter');
  t.throws(() => sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, m0.subarray(9), m0.subarray(0, 9), sleeveNonce, k1));
});

t.test('large counters are encoded big-endian across both words', async (t) => {
  const nonce = new Uint8Array(12);
  writeNonce(nonce, CHANNEL_TCP_CONTROL, 2 ** 53 - 1);
  t.same(Array.from(nonce), [0, 0, 0, 1, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  writeNonce(nonce, CHANNEL_UDP_SLEEVE, 0x0102030405);
  t.same(Array.from(nonce), [0, 0, 0, 2, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05]);
});

t.test('tampering anywhere, or the wrong key, is an auth failure', async (t) => {
  const { a, b } = pair();
  const m = a.seal(enc.encode('secret control message'));
  for (const i of [8, 9, 12, m.length - 17, m.length - 16, m.length - 1]) {
    const bad = m.slice();
    bad[i]! ^= 0x01;
    t.equal(codeOf(() => b.open(bad)), 'auth', `flipped byte ${i}`);
  }
  const stranger = new SealedSession(sodium().randombytes_buf(32), sodium().randombytes_buf(32));
  t.equal(codeOf(() => stranger.open(m)), 'auth', 'wrong key');
  t.equal(codeOf(() => a.open(m)), 'auth', 'own message reflected back (receive key differs from send key)');
  t.equal(dec.decode(b.open(m)), 'secret control message', 'the untouched message still opens');
});

t.test('replayed and reordered messages are refused as replay', async (t) => {
  const { a, b } = pair();
  const m0 = a.seal(enc.encode('zero'));
  const m1 = a.seal(enc.encode('one'));
  const m2 = a.seal(enc.encode('two'));
  let err: unknown = null;
  try { b.open(m1); } catch (e) { err = e; }
  t.ok(err instanceof RouterError && err.code === 'replay', 'skipping ahead is refused');
  t.match((err as Error).message, /replayed or reordered.*expected counter 0, got 1/);
  t.equal(dec.decode(b.open(m0)), 'zero');
  t.equal(codeOf(() => b.open(m0)), 'replay', 'replay of the message just opened');
  t.equal(dec.decode(b.open(m1)), 'one');
  t.equal(codeOf(() => b.open(m0)), 'replay', 'replay of an older message');
  t.equal(dec.decode(b.open(m2)), 'two');
});

t.test('truncated payloads are refused before any crypto', async (t) => {
  const { a, b } = pair();
  const m = a.seal(enc.encode('abc'));
  for (let n = 0; n < SEALED_OVERHEAD_BYTES; n++) {
    t.equal(codeOf(() => b.open(m.subarray(0, n))), 'decode', `length ${n}`);
  }
  for (let n = SEALED_OVERHEAD_BYTES; n < m.length; n++) {
    t.equal(codeOf(() => b.open(m.subarray(0, n))), 'auth', `length ${n}`);
  }
  const huge = m.slice();
  huge[1] = 0xff; // counter >= 2^53
  t.equal(codeOf(() => b.open(huge)), 'decode', 'counter at or past 2^53');
  t.equal(dec.decode(b.open(m)), 'abc');
});

t.test('state is unchanged after any failure: the next valid message still opens', async (t) => {
  const { a, b } = pair();
  const m0 = a.seal(enc.encode('m0'));
  const m1 = a.seal(enc.encode('m1'));
  const tampered = m0.slice();
  tampered[10]! ^= 0x80;
  t.equal(codeOf(() => b.open(tampered)), 'auth');
  t.equal(codeOf(() => b.open(m0.subarray(0, 5))), 'decode');
  t.equal(codeOf(() => b.open(m1)), 'replay');
  t.same(b.counters, { send: 0, receive: 0 });
  t.equal(dec.decode(b.open(m0)), 'm0');
  t.equal(codeOf(() => b.open(tampered)), 'auth');
  t.equal(dec.decode(b.open(m1)), 'm1');
});

t.test('epochs: the receiver takes the next key by its phase, then forgets the old one', async (t) => {
  const { a, b } = pair();
  const before = a.seal(enc.encode('under epoch 0'));
  const next1 = sodium().randombytes_buf(32);
  b.expectReceive(1, next1.slice());
  t.equal(dec.decode(b.open(before)), 'under epoch 0', 'the current key still opens while the next waits');
  a.rotateSend(1, next1);
  t.equal(a.sendEpoch, 1);
  const after = a.seal(enc.encode('under epoch 1'));
  t.equal(after[0], 1, 'phase byte 1');
  t.same(Array.from(after.subarray(1, 9)), [0, 0, 0, 0, 0, 0, 0, 0], 'counters restart at 0');
  t.equal(dec.decode(b.open(after)), 'under epoch 1');
  t.equal(b.receiveEpoch, 1, 'promoted');
  t.equal(codeOf(() => b.open(before)), 'auth', 'the old phase is no longer accepted');
  const stale = a.seal(enc.encode('x'));
  stale[0] = 0;
  t.equal(codeOf(() => b.open(stale)), 'auth', 'a rewritten phase fails authentication');
  t.equal(codeOf(() => b.expectReceive(257, new Uint8Array(32))), 'not-router-error', 'the phase of the current epoch is a caller bug');
  const hk = sodium().randombytes_buf(32);
  const held = hk.slice();
  a.rotateSend(2, hk);
  t.same(hk, held, 'the session keeps the key it was given');
  a.rotateSend(3, sodium().randombytes_buf(32));
  t.same(hk, new Uint8Array(32), 'and zeroes it when it is replaced');
});

t.test('keys of the wrong size are refused', async (t) => {
  t.equal(codeOf(() => new SealedSession(new Uint8Array(16), new Uint8Array(32))), 'config');
});

t.test('plaintext session passes payloads through', async (t) => {
  const p = new PlaintextSession();
  const m = enc.encode('clear');
  t.equal(p.encrypted, false);
  t.equal(p.seal(m), m);
  t.equal(p.open(m), m);
});
