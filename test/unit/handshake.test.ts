import t from 'tap';
import { RouterError, RouterErrorCode } from '../../router/mesh/errors';
import { Handshake, HandshakeOptions, HandshakeResult, HelloOutcome } from '../../router/mesh/handshake';
import {
  HelloInfo, HELLO_MAGIC, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, decodeHello, decodeIdentity, decodeSealedAuth, encodeHello, encodeIdentity, encodeProvenIdentity,
} from '../../router/mesh/handshake-messages';
import { cpaceGenerator, cpaceShare } from '../../router/mesh/cpace';
import { DEFAULT_REKEY_OPTIONS, KeySchedule } from '../../router/mesh/key-schedule';
import { stretchPassword } from '../../router/mesh/password-key';
import { PeerKey } from '../../router/mesh/peer-key';
import { SeededRng, randomInt } from '../../common/rng';
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

const keyA = PeerKey.fromSeed(new Uint8Array(32).fill(0xa1));
const keyB = PeerKey.fromSeed(new Uint8Array(32).fill(0xb2));
const infoA: HelloInfo = { name: keyA.name, nickname: 'host-a', incarnation: 1, listenPort: 6783 };
const infoB: HelloInfo = { name: keyB.name, nickname: 'hôst-b', incarnation: 2 ** 52 + 7, listenPort: 16783 };
const keyFor = (info: HelloInfo): PeerKey => (info.name === keyA.name ? keyA : keyB);
const NONCE = new Uint8Array(32).fill(5);

let password: Uint8Array;
let otherPassword: Uint8Array;
let thirdPassword: Uint8Array;

t.before(async () => {
  await loadSodium();
  password = stretchPassword('correct horse battery staple');
  otherPassword = stretchPassword('correct horse battery stapler');
  thirdPassword = stretchPassword('tr0ub4dor&3');
});

interface Pair {
  a: Handshake; b: Handshake;
  helloA: Uint8Array; helloB: Uint8Array;
}

function startPair(optsA: Partial<HandshakeOptions>, optsB: Partial<HandshakeOptions>): Pair {
  const sa = Handshake.start({ local: infoA, key: keyA, passwordKey: null, ...optsA });
  const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: null, ...optsB });
  return { a: sa.handshake, b: sb.handshake, helloA: sa.hello, helloB: sb.hello };
}

/** Runs both ends to completion (or to the first error, which it rethrows). */
function complete(p: Pair): { outA: HelloOutcome; outB: HelloOutcome; resA: HandshakeResult; resB: HandshakeResult } {
  const outA = p.a.consumeHello(p.helloB);
  const outB = p.b.consumeHello(p.helloA);
  const resB = p.b.consumeAuth(outA.auth);
  const resA = p.a.consumeAuth(outB.auth);
  return { outA, outB, resA, resB };
}

/** The error each side throws on the other's Auth (both must be tried: each side reports for itself). */
function authErrors(p: Pair): [string, string] {
  const outA = p.a.consumeHello(p.helloB);
  const outB = p.b.consumeHello(p.helloA);
  return [codeOf(() => p.a.consumeAuth(outB.auth)), codeOf(() => p.b.consumeAuth(outA.auth))];
}

/** Both sides' key schedules agree: control messages and sleeve keys pass both ways. */
function keysAgree(resA: HandshakeResult, resB: HandshakeResult): boolean {
  const ka = new KeySchedule(resA.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  const kb = new KeySchedule(resB.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  try {
    const ab = dec.decode(kb.control.open(ka.control.seal(enc.encode('a to b'))));
    const ba = dec.decode(ka.control.open(kb.control.seal(enc.encode('b to a'))));
    return ab === 'a to b' && ba === 'b to a' && ka.sleeve.sendKey.equals(kb.sleeve.receiveKeys[0]!) && kb.sleeve.sendKey.equals(ka.sleeve.receiveKeys[0]!) &&
      !ka.sleeve.sendKey.equals(kb.sleeve.sendKey);
  } catch {
    return false;
  } finally {
    ka.dispose();
    kb.dispose();
  }
}

/** A deterministic byte source, so a handshake can be replayed exactly. */
function fixedRandom(seed: number): (count: number) => Uint8Array {
  const rng = new SeededRng(seed);
  return (count) => {
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) out[i] = randomInt(rng, 256);
    return out;
  };
}

t.test('stretchPassword: deterministic, 32 bytes, refuses an empty password', async (t) => {
  t.equal(password.length, 32);
  t.same(stretchPassword('correct horse battery staple'), password);
  t.notSame(otherPassword, password);
  t.equal(codeOf(() => stretchPassword('')), 'config');
});

t.test('with the same password both ends establish, learn each other\'s identity and agree on keys', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  t.equal(p.a.state, 'awaiting-hello');
  const { outA, resA, resB } = complete(p);
  t.equal(outA.version, 3);
  t.ok(outA.encrypted);
  t.equal(p.a.state, 'established');
  t.equal(p.b.state, 'established');
  t.same(resA.remote, infoB, 'A learns B\'s identity');
  t.same(resA.remoteKey, keyB.publicKey, 'and the key B proved');
  t.same(resB.remote, infoA, 'B learns A\'s identity');
  t.equal(resA.passwordSlot, 0);
  t.equal(resA.secrets!.weAreLow, !resB.secrets!.weAreLow, 'exactly one side is low');
  t.ok(keysAgree(resA, resB), 'control and sleeve keys agree, one per direction');
  t.same(p.a.result(), resA);
});

t.test('without passwords both ends establish a plaintext session', async (t) => {
  const p = startPair({}, {});
  const { outA, resA, resB } = complete(p);
  t.equal(outA.encrypted, false);
  t.same(decodeIdentity(outA.auth).info, infoA, 'the identity goes in the clear');
  t.same(decodeIdentity(outA.auth).proof.publicKey, keyA.publicKey, 'with the key it proves');
  t.same(resA.remoteKey, keyB.publicKey);
  t.same(resA.remote, infoB);
  t.same(resB.remote, infoA);
  t.equal(resA.secrets, null);
  t.equal(resA.passwordSlot, null);
});

t.test('wrong password: password-mismatch, named, on both sides', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: otherPassword });
  const outA = p.a.consumeHello(p.helloB);
  const outB = p.b.consumeHello(p.helloA);
  let errB: unknown = null;
  try { p.b.consumeAuth(outA.auth); } catch (e) { errB = e; }
  t.ok(errB instanceof RouterError && errB.code === 'password-mismatch', 'B reports the mismatch');
  t.match((errB as Error).message, /password mismatch/);
  t.equal(codeOf(() => p.a.consumeAuth(outB.auth)), 'password-mismatch', 'A reports the mismatch');
  t.equal(p.a.state, 'failed');
  t.equal(p.b.state, 'failed');
  t.throws(() => p.a.result(), 'no result after failure');
});

t.test('password on one side only: each side names its own case', async (t) => {
  const p = startPair({ passwordKey: password }, {});
  let errA: unknown = null;
  try { p.a.consumeHello(p.helloB); } catch (e) { errA = e; }
  t.ok(errA instanceof RouterError && errA.code === 'password-local-only');
  t.match((errA as Error).message, /we have a password but the peer has none/);
  let errB: unknown = null;
  try { p.b.consumeHello(p.helloA); } catch (e) { errB = e; }
  t.ok(errB instanceof RouterError && errB.code === 'password-remote-only');
  t.match((errB as Error).message, /peer has a password but we have none/);
  t.equal(p.a.state, 'failed');
  t.equal(p.b.state, 'failed');
});

t.test('version negotiation', async (t) => {
  t.equal(PROTOCOL_MIN_VERSION, 3);
  t.equal(PROTOCOL_MAX_VERSION, 3);
  t.test('overlapping ranges pick the highest common version', async (t) => {
    for (const password_ of [null, password]) {
      const p = startPair({ passwordKey: password_, minVersion: 3, maxVersion: 5 }, { passwordKey: password_, minVersion: 4, maxVersion: 6 });
      const { outA } = complete(p);
      t.equal(outA.version, 5);
      t.equal(p.a.state, 'established');
    }
  });
  t.test('a version 1 peer (the Hello that named itself in the clear) fails by name on both sides', async (t) => {
    const p = startPair({ minVersion: 1, maxVersion: 1 }, {});
    let errA: unknown = null;
    try { p.a.consumeHello(p.helloB); } catch (e) { errA = e; }
    t.ok(errA instanceof RouterError && errA.code === 'version');
    t.match((errA as Error).message, /we support 1\.\.1, the peer supports 3\.\.3/);
    t.equal(codeOf(() => p.b.consumeHello(p.helloA)), 'version');
  });
  t.test('a rewritten version range (downgrade) makes every Auth fail', async (t) => {
    const p = startPair({ passwordKey: password, minVersion: 3, maxVersion: 4 }, { passwordKey: password, minVersion: 3, maxVersion: 4 });
    const forged = p.helloB.slice();
    forged[HELLO_MAGIC.length + 1] = 3; // B's max version, as A will see it
    const outA = p.a.consumeHello(forged);
    const outB = p.b.consumeHello(p.helloA);
    t.equal(outA.version, 3, 'A was talked down');
    t.equal(outB.version, 4);
    t.equal(codeOf(() => p.b.consumeAuth(outA.auth)), 'password-mismatch');
    t.equal(codeOf(() => p.a.consumeAuth(outB.auth)), 'password-mismatch');
  });
});

t.test('a tampered Hello or Auth fails on both sides', async (t) => {
  const p0 = startPair({ passwordKey: password }, { passwordKey: password });
  for (const off of [HELLO_MAGIC.length + 2, p0.helloB.length - 32, p0.helloB.length - 1]) {
    const p = startPair({ passwordKey: password }, { passwordKey: password });
    const tampered = p.helloB.slice();
    tampered[off]! ^= 0x01;
    let outA: HelloOutcome;
    try {
      outA = p.a.consumeHello(tampered);
    } catch (err) {
      t.ok(err instanceof RouterError, `offset ${off}: refused at Hello`);
      continue;
    }
    const outB = p.b.consumeHello(p.helloA);
    t.equal(codeOf(() => p.b.consumeAuth(outA.auth)), 'password-mismatch', `offset ${off}: B refuses A's Auth`);
    t.equal(codeOf(() => p.a.consumeAuth(outB.auth)), 'password-mismatch', `offset ${off}: A refuses B's Auth`);
  }
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  const outA = p.a.consumeHello(p.helloB);
  p.b.consumeHello(p.helloA);
  const bad = outA.auth.slice();
  bad[bad.length - 1]! ^= 0x80;
  t.equal(codeOf(() => p.b.consumeAuth(bad)), 'password-mismatch', 'a flipped bit in the sealed identity');
});

t.test('a reflected Hello, a weak share and wrong magic are refused', async (t) => {
  const self = Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: password });
  t.equal(codeOf(() => self.handshake.consumeHello(self.hello)), 'decode', 'our own Hello back');

  const weak = Handshake.start({ local: infoB, key: keyFor(infoB), passwordKey: password }).hello.slice();
  weak.fill(0, weak.length - 32);
  t.equal(codeOf(() => Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: password }).handshake.consumeHello(weak)), 'decode', 'all-zero share');

  const http = enc.encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  let err: unknown = null;
  try { Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: null }).handshake.consumeHello(http); } catch (e) { err = e; }
  t.ok(err instanceof RouterError && err.code === 'decode');
  t.match((err as Error).message, /not a weave peer/);
});

t.test('codecs: Hello round trip with trailing bytes, identity limits, option checks', async (t) => {
  const hello = { minVersion: 3, maxVersion: 4, nonce: NONCE, shares: [new Uint8Array(32).fill(7), new Uint8Array(32).fill(9)], ciphers: 0 };
  const bytes = encodeHello(hello);
  t.same(decodeHello(bytes), hello);
  t.equal(bytes.length, 8 + 3 + 32 + 1 + 64, 'magic, versions, flags, nonce, count, two shares: nothing else');
  const extended = new Uint8Array(bytes.length + 5);
  extended.set(bytes);
  t.same(decodeHello(extended), hello, 'trailing bytes ignored');
  t.same(decodeHello(encodeHello({ minVersion: 3, maxVersion: 3, nonce: NONCE, shares: [], ciphers: 0 })), { minVersion: 3, maxVersion: 3, nonce: NONCE, shares: [], ciphers: 0 });
  // Three shares, all of them there: refused for the count, not for running short.
  const three = new Uint8Array(bytes.length + 32);
  three.set(bytes);
  three[11 + 32] = 3;
  t.equal(codeOf(() => decodeHello(three)), 'decode', 'more shares than passwords');
  const none = bytes.slice();
  none[11 + 32] = 0;
  t.equal(codeOf(() => decodeHello(none)), 'decode', 'the password flag with no share');
  for (const [min, max] of [[0, 4], [4, 3]]) {
    const range = bytes.slice();
    range[8] = min!;
    range[9] = max!;
    t.equal(codeOf(() => decodeHello(range)), 'decode', `version range ${min}..${max}`);
  }

  const proof = { publicKey: keyB.publicKey, signature: new Uint8Array(64).fill(3) };
  t.same(decodeIdentity(encodeProvenIdentity(encodeIdentity(infoB), proof)), { info: infoB, signed: encodeIdentity(infoB), proof });
  t.equal(codeOf(() => decodeIdentity(encodeIdentity({ ...infoA, nickname: 'x'.repeat(65) }))), 'limit');
  t.equal(codeOf(() => Handshake.start({ local: { ...infoA, nickname: 'é'.repeat(33) }, key: keyA, passwordKey: null })), 'config');
  t.equal(codeOf(() => Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: new Uint8Array(16) })), 'config');
  t.equal(codeOf(() => Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: null, oldPasswordKey: password })), 'config', 'old without current');
  t.equal(codeOf(() => Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: null, minVersion: 3, maxVersion: 2 })), 'config');
});

t.test('the Hello reveals no identity: name, nickname and incarnation are only in the sealed Auth', async (t) => {
  const { hello } = Handshake.start({ local: infoB, key: keyFor(infoB), passwordKey: password });
  const hex = Buffer.from(hello).toString('hex');
  t.notOk(hex.includes(Buffer.from(infoB.name.replace(/:/g, ''), 'hex').toString('hex')), 'no peer name');
  t.notOk(Buffer.from(hello).includes(Buffer.from('hôst-b')), 'no nickname');
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  const outB = p.b.consumeHello(p.helloA);
  t.notOk(Buffer.from(outB.auth).includes(Buffer.from('hôst-b')), 'the nickname is sealed in Auth');
});

/**
 * A scanner: connects, sends a Hello with a share made for a password guess,
 * and records everything the victim sends. Returns what it can then try offline.
 */
function scan(victimPassword: Uint8Array, guess: Uint8Array, scannerRandom: (n: number) => Uint8Array): {
  victimHello: Uint8Array; victimAuth: Uint8Array; scannerHello: Uint8Array; scannerScalar: Uint8Array;
} {
  const scannerScalar = scannerRandom(32);
  const scannerHello = encodeHello({ minVersion: 3, maxVersion: 3, nonce: scannerRandom(32), shares: [cpaceShare(scannerScalar, cpaceGenerator(guess))], ciphers: 0 });
  const victim = Handshake.start({ local: infoB, key: keyFor(infoB), passwordKey: victimPassword });
  const out = victim.handshake.consumeHello(scannerHello);
  return { victimHello: victim.hello, victimAuth: out.auth, scannerHello, scannerScalar };
}

/**
 * Everything the scanner can do offline with one candidate password: play
 * the protocol's key schedule (from its documentation in key-derivation.ts and
 * handshake-messages.ts, written out with raw libsodium) with its own scalar,
 * and see whether the victim's sealed identity opens.
 */
function offlineTest(capture: ReturnType<typeof scan>, candidate: Uint8Array): boolean {
  const na = sodium();
  const victimShare = decodeHello(capture.victimHello).shares[0]!;
  // Whatever the candidate, all the scanner can compute is its scalar times the victim's share,
  // or its scalar times the candidate's generator (which it knew already); try both.
  const secrets = [na.crypto_scalarmult(capture.scannerScalar, victimShare), na.crypto_scalarmult(capture.scannerScalar, cpaceGenerator(candidate))];
  const scannerLow = Buffer.compare(Buffer.from(capture.scannerHello), Buffer.from(capture.victimHello)) < 0;
  const [low, high] = scannerLow ? [capture.scannerHello, capture.victimHello] : [capture.victimHello, capture.scannerHello];
  const label = enc.encode('weave-ts transcript v2');
  const tin = new Uint8Array(label.length + 8 + low.length + high.length);
  const view = new DataView(tin.buffer);
  tin.set(label, 0);
  view.setUint32(label.length, low.length);
  tin.set(low, label.length + 4);
  view.setUint32(label.length + 4 + low.length, high.length);
  tin.set(high, label.length + 8 + low.length);
  const transcript = na.crypto_generichash(32, tin, null);
  const entry = decodeSealedAuth(capture.victimAuth, 1)[0]!;
  const nonce = new Uint8Array(12);
  nonce[3] = 3;
  for (const k of secrets) {
    const pairLabel = enc.encode('weave-ts cpace pair v2');
    const pin = new Uint8Array(pairLabel.length + 2 + 32);
    pin.set(pairLabel, 0);
    pin.set(transcript, pairLabel.length + 2);
    const pair = na.crypto_generichash(32, pin, k);
    const authLabel = enc.encode('weave-ts auth v2');
    // The victim seals in its own direction: low->high (0) if it is low.
    const ain = new Uint8Array(authLabel.length + 1);
    ain.set(authLabel, 0);
    ain[authLabel.length] = scannerLow ? 1 : 0;
    const key = na.crypto_generichash(32, ain, pair);
    try {
      const identity = na.crypto_aead_chacha20poly1305_ietf_decrypt(null, entry, transcript, nonce, key);
      return decodeIdentity(identity).info.name === infoB.name;
    } catch {
      // not this one
    }
  }
  return false;
}

t.test('no offline oracle: a scanner that sends a Hello gets nothing it can test guesses against', async (t) => {
  const candidates = [otherPassword, thirdPassword, password];
  // Control: a scanner that happened to guess right opens the Auth, so offlineTest follows the real schedule and can succeed.
  const lucky = scan(password, password, fixedRandom(1));
  t.ok(offlineTest(lucky, password), 'the one guess a scanner commits to in its Hello is tested (online, one per connection)');
  // A scanner that guessed wrong cannot test any candidate offline, not even the right one.
  const capture = scan(password, otherPassword, fixedRandom(2));
  t.same(candidates.map((c) => offlineTest(capture, c)), [false, false, false], 'no candidate verifies, the right password included');
  // The victim's messages before any proof do not depend on the password in a way a scanner can see:
  // with the same randomness, the Hello of a victim with another password has the same form and length,
  // and the share is a valid group element either way (CPace: uniform whatever the password).
  const other = scan(thirdPassword, otherPassword, fixedRandom(2));
  t.equal(other.victimHello.length, capture.victimHello.length);
  t.equal(other.victimAuth.length, capture.victimAuth.length);
  t.notSame(other.victimHello, capture.victimHello, 'shares are fresh group elements...');
  t.same(other.victimHello.subarray(0, 11), capture.victimHello.subarray(0, 11), '...behind an identical header');
  t.equal(other.victimHello[11 + 32], capture.victimHello[11 + 32], '...and share count');
});

t.test('one guess cannot be tested against two captures at the cost of one stretch (nor of two)', async (t) => {
  // Two handshakes with the same victim: each is bound to its own shares
  // (per-handshake randomness in the transcript, the role a salt plays), and
  // neither can be tested offline at all.
  const first = scan(password, thirdPassword, fixedRandom(3));
  const second = scan(password, thirdPassword, fixedRandom(4));
  t.notSame(decodeHello(first.victimHello).shares[0], decodeHello(second.victimHello).shares[0], 'each capture has its own shares');
  for (const candidate of [password, otherPassword]) {
    t.notOk(offlineTest(first, candidate) || offlineTest(second, candidate), 'neither capture verifies a guess');
  }
});

t.test('forward secrecy: a recording stays sealed even once the password is known', async (t) => {
  const randomA = fixedRandom(4242);
  const p = startPair({ passwordKey: password, randomBytes: randomA }, { passwordKey: password });
  const { outA, outB, resA, resB } = complete(p);
  const ka = new KeySchedule(resA.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  const kb = new KeySchedule(resB.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  const recorded = ka.control.seal(enc.encode('secret from A'));
  t.equal(dec.decode(kb.control.open(recorded)), 'secret from A');

  // Replaying A's randomness reproduces its Hello and Auth: whoever holds A's
  // scalar and the password reads everything, so the recording is what it seems.
  const replay = Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: password, randomBytes: fixedRandom(4242) });
  t.same(replay.hello, p.helloA);
  t.same(replay.handshake.consumeHello(p.helloB).auth, outA.auth);
  const replayed = new KeySchedule(replay.handshake.consumeAuth(outB.auth).secrets!, DEFAULT_REKEY_OPTIONS, 0);
  t.same(replayed.control.seal(enc.encode('secret from A')), recorded);

  // The attacker: both Hellos and all traffic recorded, the password learnt
  // later, fresh scalars of its own: its handshakes cannot open the recorded Auths.
  for (const [local, victimHello, victimAuth] of [[infoA, p.helloB, outB.auth], [infoB, p.helloA, outA.auth]] as const) {
    const attacker = Handshake.start({ local, key: keyFor(local), passwordKey: password });
    attacker.handshake.consumeHello(victimHello);
    t.equal(codeOf(() => attacker.handshake.consumeAuth(victimAuth)), 'password-mismatch', 'the recorded Auth does not open');
  }
  ka.dispose();
  kb.dispose();
  replayed.dispose();
});

t.test('password roll: old and new accepted, both sides agree which, and say so', async (t) => {
  const cases: [string, Partial<HandshakeOptions>, Partial<HandshakeOptions>, number, number][] = [
    ['A rolled, B not yet', { passwordKey: otherPassword, oldPasswordKey: password }, { passwordKey: password }, 1, 0],
    ['B rolled, A not yet', { passwordKey: password }, { passwordKey: otherPassword, oldPasswordKey: password }, 0, 1],
    ['both rolled: the new one wins', { passwordKey: otherPassword, oldPasswordKey: password }, { passwordKey: otherPassword, oldPasswordKey: password }, 0, 0],
    ['A dropped the old one, B still accepts it', { passwordKey: otherPassword }, { passwordKey: otherPassword, oldPasswordKey: password }, 0, 0],
  ];
  for (const [what, optsA, optsB, slotA, slotB] of cases) {
    const p = startPair(optsA, optsB);
    const { resA, resB } = complete(p);
    t.equal(resA.passwordSlot, slotA, `${what}: A's slot`);
    t.equal(resB.passwordSlot, slotB, `${what}: B's slot`);
    t.ok(keysAgree(resA, resB), `${what}: keys agree`);
  }
  // Crossed (one side rolling back): two pairings agree (A's new with B's old,
  // A's old with B's new); both sides pick the same one, whichever Hello sorts low.
  const crossed = complete(startPair({ passwordKey: otherPassword, oldPasswordKey: password }, { passwordKey: password, oldPasswordKey: otherPassword }));
  t.same([crossed.resA.passwordSlot! + crossed.resB.passwordSlot!, keysAgree(crossed.resA, crossed.resB)], [1, true], 'crossed: one pairing, chosen alike');
  t.same(authErrors(startPair({ passwordKey: thirdPassword }, { passwordKey: otherPassword, oldPasswordKey: password })),
    ['password-mismatch', 'password-mismatch'], 'a third password matches neither');
  t.same(authErrors(startPair({ passwordKey: otherPassword }, { passwordKey: password })),
    ['password-mismatch', 'password-mismatch'], 'after the roll, a peer left on the old password alone is refused');
});

t.test('calls out of order are caller bugs (plain Error), not peer errors', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  t.equal(codeOf(() => p.a.consumeAuth(new Uint8Array(40))), 'not-router-error');
  t.equal(codeOf(() => p.a.result()), 'not-router-error');
  p.a.consumeHello(p.helloB);
  t.equal(codeOf(() => p.a.consumeHello(p.helloB)), 'not-router-error');
  t.equal(codeOf(() => p.a.result()), 'not-router-error', 'no result before the Auth');
  t.equal(codeOf(() => p.a.consumeAuth(new Uint8Array(3))), 'decode', 'a garbage Auth');
});

t.test('Hello and Auth decoders on hostile input throw only RouterError', async (t) => {
  const valid = Handshake.start({ local: infoB, key: keyFor(infoB), passwordKey: password, oldPasswordKey: otherPassword }).hello;
  const truncations: string[] = [];
  for (let n = 0; n < valid.length; n++) {
    const code = codeOf(() => decodeHello(valid.subarray(0, n)));
    if (code !== 'decode') truncations.push(`length ${n}: ${code}`);
  }
  t.same(truncations, [], 'every truncation is a decode error');

  const seed = 0x5eed;
  const rng = new SeededRng(seed);
  const failures: string[] = [];
  const codes = new Set<string>();
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  const validAuth = p.b.consumeHello(p.helloA).auth;
  for (let i = 0; i < 600; i++) {
    let input: Uint8Array;
    const kind = i % 3;
    const base = i % 2 === 0 ? valid : validAuth;
    if (kind === 0) {
      input = new Uint8Array(randomInt(rng, 120));
      for (let j = 0; j < input.length; j++) input[j] = randomInt(rng, 256);
    } else if (kind === 1) {
      input = new Uint8Array(HELLO_MAGIC.length + randomInt(rng, 120));
      input.set(HELLO_MAGIC);
      for (let j = HELLO_MAGIC.length; j < input.length; j++) input[j] = randomInt(rng, 256);
    } else {
      input = base.slice(0, base.length - (rng.next() < 0.3 ? randomInt(rng, base.length) : 0));
      for (let k = 0; k < 1 + randomInt(rng, 3) && input.length > 0; k++) input[randomInt(rng, input.length)] = randomInt(rng, 256);
    }
    const runs = [
      () => decodeHello(input),
      () => Handshake.start({ local: infoA, key: keyFor(infoA), passwordKey: password }).handshake.consumeHello(input),
      () => {
        const q = startPair({ passwordKey: password }, { passwordKey: password });
        q.a.consumeHello(q.helloB);
        return q.a.consumeAuth(input);
      },
    ];
    for (const run of runs) {
      try {
        run();
        codes.add('ok');
      } catch (err) {
        if (!(err instanceof RouterError)) failures.push(`seed ${seed} case ${i}: ${String(err)} for ${Buffer.from(input).toString('hex')}`);
        else codes.add(err.code);
      }
    }
  }
  t.same(failures.slice(0, 5), [], `seed ${seed}: only RouterError`);
  t.ok(codes.has('decode') && codes.has('ok') && codes.has('password-mismatch'), `a spread of outcomes: ${[...codes].join(', ')}`);
});
