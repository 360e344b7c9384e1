// The key proof in the handshake (protocol 3, router/mesh/key-proof.ts): an
// honest pair proves its keys with and without a password and with either
// sleeve cipher; an impostor with its own key, a replayed or reflected
// signature, a key other than the pinned one and malformed proof fields are
// refused by name ('peer-key'); a stranger without the password never reaches
// the proof; and a version 2 peer, which has no proof, is refused as such.

import t from 'tap';
import { RouterError, RouterErrorCode } from '../../router/mesh/errors';
import { Handshake, HandshakeOptions, HandshakeResult, PeerKeyRefused } from '../../router/mesh/handshake';
import { decodeIdentity, encodeIdentity, encodeProvenIdentity, HELLO_MAGIC, HelloInfo, negotiateVersion } from '../../router/mesh/handshake-messages';
import type { HandshakeSigner, PeerKeyPins } from '../../router/mesh/key-proof';
import { stretchPassword } from '../../router/mesh/password-key';
import { PeerKey, peerNameOfKey } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';
import { GossipAuthority } from '../../router/mesh/signed-gossip';
import { loadSodium } from '../../router/mesh/sodium';

const keyA = PeerKey.fromSeed(new Uint8Array(32).fill(0xa1));
const keyB = PeerKey.fromSeed(new Uint8Array(32).fill(0xb2));
const keyE = PeerKey.fromSeed(new Uint8Array(32).fill(0xe5));
const infoA: HelloInfo = { name: keyA.name, nickname: 'a', incarnation: 1, listenPort: 6783 };
const infoB: HelloInfo = { name: keyB.name, nickname: 'b', incarnation: 2, listenPort: 6783 };

let password: Uint8Array;
let wrongPassword: Uint8Array;

t.before(async () => {
  await loadSodium();
  password = stretchPassword('key proof test');
  wrongPassword = stretchPassword('not the password');
});

/** A on one side, whoever `b` says on the other; the error (or result) each side gets from the other's Auth. */
function run(a: Partial<HandshakeOptions>, b: Partial<HandshakeOptions>): { atA: HandshakeResult | RouterError; atB: HandshakeResult | RouterError } {
  const sa = Handshake.start({ local: infoA, key: keyA, passwordKey: null, ...a });
  const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: null, ...b });
  const outA = sa.handshake.consumeHello(sb.hello);
  const outB = sb.handshake.consumeHello(sa.hello);
  return { atA: attempt(() => sa.handshake.consumeAuth(outB.auth)), atB: attempt(() => sb.handshake.consumeAuth(outA.auth)) };
}

function attempt(fn: () => HandshakeResult): HandshakeResult | RouterError {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RouterError) return err;
    throw err;
  }
}

function codeOf(x: HandshakeResult | RouterError): RouterErrorCode | 'ok' {
  return x instanceof RouterError ? x.code : 'ok';
}

function modes(): Array<[string, Partial<HandshakeOptions>]> {
  return [
    ['plaintext', { passwordKey: null }],
    ['password, ChaCha20-Poly1305', { passwordKey: password }],
    ['password, AES-256-GCM', { passwordKey: password, offerAesGcm: true }],
  ];
}

t.test('an honest pair proves its keys: with and without a password, with either sleeve cipher', async (t) => {
  for (const [mode, o] of modes()) {
    const { atA, atB } = run(o, o);
    if (atA instanceof RouterError || atB instanceof RouterError) {
      t.fail(`${mode}: ${String(atA instanceof RouterError ? atA.message : '')} ${String(atB instanceof RouterError ? atB.message : '')}`);
      continue;
    }
    t.same(atA.remote, infoB, `${mode}: A learns B`);
    t.same(atA.remoteKey, keyB.publicKey, `${mode}: and B's key`);
    t.same(atB.remoteKey, keyA.publicKey, `${mode}: B learns A's key`);
    if (o.offerAesGcm === true) t.equal(atA.secrets?.sleeveCipher, 'aes-256-gcm', `${mode}: the cipher both offered`);
  }
});

t.test('a peer claiming another\'s name with its own key is refused, on our side by name, with the session to tell it why', async (t) => {
  for (const [mode, o] of modes()) {
    // E holds the password (if any) and claims B's name, signing with its own key.
    const { atA, atB } = run(o, { ...o, key: keyE });
    t.equal(codeOf(atA), 'peer-key', `${mode}: A refuses the impostor`);
    t.match((atA as Error).message, new RegExp(`claims the name ${infoB.name}, but the key it shows derives ${keyE.name}`), `${mode}: and says why`);
    t.ok(atA instanceof PeerKeyRefused && (atA.secrets === null) === (o.passwordKey === null), `${mode}: secrets to refuse under, when encrypted`);
    t.equal(codeOf(atB), 'ok', `${mode}: the impostor's own check of A passes (A tells it by REFUSE, connection.ts)`);
  }
});

t.test('B\'s key with a signature replayed from another session is refused', async (t) => {
  for (const [mode, o] of modes()) {
    // A session of B's, recorded: in plaintext the proof is in the clear.
    const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: null });
    const sx = Handshake.start({ local: infoA, key: keyA, passwordKey: null });
    sx.handshake.consumeHello(sb.hello);
    const old = decodeIdentity(sb.handshake.consumeHello(sx.hello).auth);
    t.same(old.proof.publicKey, keyB.publicKey);
    // E replays that signature with B's key and identity into a new session with A.
    const replayer: HandshakeSigner = { publicKey: keyB.publicKey, sign: () => old.proof.signature };
    const { atA } = run(o, { ...o, key: replayer });
    t.equal(codeOf(atA), 'peer-key', `${mode}: refused`);
    t.match((atA as Error).message, /does not verify \(forged, or replayed from another session\)/, `${mode}: as a bad signature`);
  }
});

t.test('a proof reflected back at its signer is refused', async (t) => {
  const sa = Handshake.start({ local: infoA, key: keyA, passwordKey: null });
  const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: null });
  const outA = sa.handshake.consumeHello(sb.hello);
  t.equal(codeOf(attempt(() => sa.handshake.consumeAuth(outA.auth))), 'peer-key', 'our own Auth back: the wrong side of the transcript');
});

t.test('a key other than the one pinned for the name is refused; the pinned one passes', async (t) => {
  // Two keys for one name cost 2^46 work; here nameOfKey stands in for that work.
  const sameName = (): PeerName => infoB.name;
  const pins: PeerKeyPins = { keyOf: (peer) => (peer === infoB.name ? keyB.publicKey : null) };
  for (const [mode, o] of modes()) {
    const { atA } = run({ ...o, pins, nameOfKey: sameName }, { ...o, key: keyE });
    t.equal(codeOf(atA), 'peer-key', `${mode}: the second key is refused`);
    t.match((atA as Error).message, /other than the one already known for that name/);
    t.equal(codeOf(run({ ...o, pins, nameOfKey: sameName }, o).atA), 'ok', `${mode}: the pinned key passes`);
  }
});

t.test('truncated or garbage proof fields are refused by code, never thrown past the parser', async (t) => {
  const sa = (): Handshake => {
    const s = Handshake.start({ local: infoA, key: keyA, passwordKey: null });
    s.handshake.consumeHello(Handshake.start({ local: infoB, key: keyB, passwordKey: null }).hello);
    return s.handshake;
  };
  const signed = encodeIdentity(infoB);
  const whole = encodeProvenIdentity(signed, { publicKey: keyB.publicKey, signature: new Uint8Array(64).fill(1) });
  const odd: string[] = [];
  for (let n = 0; n < whole.length; n++) {
    const code = codeOf(attempt(() => sa().consumeAuth(whole.subarray(0, n))));
    if (code !== 'decode') odd.push(`${n}: ${code}`);
  }
  t.same(odd, [], 'every truncation is a decode error');
  t.equal(codeOf(attempt(() => sa().consumeAuth(whole))), 'peer-key', 'a garbage signature');
  const garbageKey = encodeProvenIdentity(signed, { publicKey: new Uint8Array(32).fill(0xff), signature: new Uint8Array(64) });
  t.equal(codeOf(attempt(() => sa().consumeAuth(garbageKey))), 'peer-key', 'a garbage key');
  const zeroSigner: HandshakeSigner = { publicKey: keyB.publicKey, sign: () => new Uint8Array(64) };
  t.equal(codeOf(run({ passwordKey: password }, { passwordKey: password, key: zeroSigner }).atA), 'peer-key', 'a zero signature, sealed');
  t.throws(() => Handshake.start({ local: infoA, key: { publicKey: new Uint8Array(31), sign: () => new Uint8Array(64) }, passwordKey: null }),
    { code: 'config' }, 'our own key must be 32 bytes');
});

t.test('with a password the proof is sealed, and a stranger without it never reaches the proof check', async (t) => {
  const sa = Handshake.start({ local: infoA, key: keyA, passwordKey: password });
  const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: password });
  const outA = sa.handshake.consumeHello(sb.hello);
  const hay = Buffer.from([...sa.hello, ...outA.auth]);
  t.notOk(hay.includes(Buffer.from(keyA.publicKey)), 'a passive observer does not see our key');
  let derived = 0;
  const counting = (k: Uint8Array): PeerName => { derived++; return peerNameOfKey(k); };
  const stranger = run({ passwordKey: password, nameOfKey: counting }, { passwordKey: wrongPassword });
  t.equal(codeOf(stranger.atA), 'password-mismatch', 'a wrong password is what it is');
  t.equal(derived, 0, 'no key was looked at, no signature verified');
  run({ passwordKey: password, nameOfKey: counting }, { passwordKey: password });
  t.equal(derived, 1, 'a password holder\'s proof is checked');
});

t.test('a version 2 peer, which has no key proof, is refused by name on both sides', async (t) => {
  for (const withPassword of [false, true]) {
    const v2Hello = Uint8Array.from([...HELLO_MAGIC, 2, 2, ...(withPassword ? [1, 1, ...new Uint8Array(32).fill(9)] : [0])]);
    const ours = Handshake.start({ local: infoA, key: keyA, passwordKey: withPassword ? password : null });
    let err: unknown = null;
    try { ours.handshake.consumeHello(v2Hello); } catch (e) { err = e; }
    t.ok(err instanceof RouterError && err.code === 'version', 'refused as a version mismatch');
    t.match((err as Error).message, /older weave-ts that does not prove its peer key in the handshake \(protocol 3\); upgrade it/);
    t.equal(ours.handshake.state, 'failed');
  }
  // What a version 2 peer says about us (its negotiateVersion is the same function).
  t.throws(() => negotiateVersion(2, 2, 3, 3), { code: 'version', message: /we support 2\.\.2, the peer supports 3\.\.3/ });
});

t.test('signed-gossip pins a key a handshake proved, once, and only a key that derives the name', async (t) => {
  const auth = new GossipAuthority(keyA);
  auth.pin(infoB.name, keyE.publicKey);
  t.equal(auth.keyOf(infoB.name), null, 'a key that does not derive the name is not pinned');
  auth.pin(infoB.name, keyB.publicKey);
  t.same(auth.keyOf(infoB.name), keyB.publicKey);
  const two = new GossipAuthority(keyA, { nameOfKey: () => infoB.name });
  two.pin(infoB.name, keyB.publicKey);
  two.pin(infoB.name, keyE.publicKey);
  t.same(two.keyOf(infoB.name), keyB.publicKey, 'the first key stays');
});
