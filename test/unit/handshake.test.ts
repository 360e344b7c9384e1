import t from 'tap';
import { CHANNEL_TCP_CONTROL, writeNonce } from '../../router/mesh/control-session';
import { RouterError, RouterErrorCode } from '../../router/mesh/errors';
import { Handshake, HandshakeOptions, HelloOutcome } from '../../router/mesh/handshake';
import {
  HelloInfo, HELLO_MAGIC, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, decodeHello, encodeHello,
} from '../../router/mesh/handshake-messages';
import { stretchPassword } from '../../router/mesh/password-key';
import { PeerName } from '../../router/mesh/peer-name';
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

const infoA: HelloInfo = { name: 'aa:00:00:00:00:01' as PeerName, nickname: 'host-a', incarnation: 1, listenPort: 6783 };
const infoB: HelloInfo = { name: 'bb:00:00:00:00:02' as PeerName, nickname: 'hôst-b', incarnation: 2 ** 52 + 7, listenPort: 16783 };

let password: Uint8Array;
let otherPassword: Uint8Array;

t.before(async () => {
  await loadSodium();
  password = stretchPassword('correct horse battery staple');
  otherPassword = stretchPassword('correct horse battery stapler');
});

interface Pair {
  a: Handshake; b: Handshake;
  helloA: Uint8Array; helloB: Uint8Array;
}

function startPair(optsA: Partial<HandshakeOptions>, optsB: Partial<HandshakeOptions>): Pair {
  const sa = Handshake.start({ local: infoA, passwordKey: null, ...optsA });
  const sb = Handshake.start({ local: infoB, passwordKey: null, ...optsB });
  return { a: sa.handshake, b: sb.handshake, helloA: sa.hello, helloB: sb.hello };
}

/** Runs both ends to completion (or to the first error, which it rethrows). */
function complete(p: Pair): { outA: HelloOutcome; outB: HelloOutcome } {
  const outA = p.a.consumeHello(p.helloB);
  const outB = p.b.consumeHello(p.helloA);
  if (outA.confirm !== null) p.b.consumeConfirm(outA.confirm);
  if (outB.confirm !== null) p.a.consumeConfirm(outB.confirm);
  return { outA, outB };
}

/** A deterministic byte source, so a handshake can be replayed exactly. */
function fixedRandom(seed: number): (count: number) => Uint8Array {
  return (count) => {
    const rng = new SeededRng(seed);
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

t.test('with the same password both ends establish an encrypted session', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  t.equal(p.a.state, 'awaiting-hello');
  const outA = p.a.consumeHello(p.helloB);
  const outB = p.b.consumeHello(p.helloA);
  t.equal(p.a.state, 'awaiting-confirm');
  t.same(outA.remote, infoB, 'A learns B\'s identity');
  t.same(outB.remote, infoA, 'B learns A\'s identity');
  t.equal(outA.version, 1);
  t.ok(outA.encrypted && outB.encrypted);
  t.ok(outA.confirm !== null && outB.confirm !== null);
  p.b.consumeConfirm(outA.confirm!);
  p.a.consumeConfirm(outB.confirm!);
  t.equal(p.a.state, 'established');
  t.equal(p.b.state, 'established');
  t.ok(p.a.session().encrypted && p.b.session().encrypted);

  const ka = p.a.sleeveKeys()!;
  const kb = p.b.sleeveKeys()!;
  t.same(ka.send, kb.receive, 'A->B sleeve key agrees');
  t.same(ka.receive, kb.send, 'B->A sleeve key agrees');
  t.notSame(ka.send, ka.receive, 'each direction has its own key');
});

t.test('without passwords both ends establish a plaintext session at once', async (t) => {
  const p = startPair({}, {});
  const { outA, outB } = complete(p);
  t.equal(outA.confirm, null);
  t.equal(outB.encrypted, false);
  t.equal(p.a.state, 'established');
  t.equal(p.a.session().encrypted, false);
  t.equal(p.b.sleeveKeys(), null);
  const m = enc.encode('plain');
  t.same(p.b.session().open(p.a.session().seal(m)), m);
});

t.test('wrong password: password-mismatch on both sides', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: otherPassword });
  const outA = p.a.consumeHello(p.helloB);
  const outB = p.b.consumeHello(p.helloA);
  let errB: unknown = null;
  try { p.b.consumeConfirm(outA.confirm!); } catch (e) { errB = e; }
  t.ok(errB instanceof RouterError && errB.code === 'password-mismatch', 'B reports the mismatch');
  t.match((errB as Error).message, /password mismatch/);
  t.equal(codeOf(() => p.a.consumeConfirm(outB.confirm!)), 'password-mismatch', 'A reports the mismatch');
  t.equal(p.a.state, 'failed');
  t.equal(p.b.state, 'failed');
  t.throws(() => p.a.session(), 'no session after failure');
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
  t.equal(PROTOCOL_MIN_VERSION, 1);
  t.equal(PROTOCOL_MAX_VERSION, 1);
  t.test('overlapping ranges pick the highest common version', async (t) => {
    for (const password_ of [null, password]) {
      const p = startPair({ passwordKey: password_, minVersion: 1, maxVersion: 3 }, { passwordKey: password_, minVersion: 2, maxVersion: 5 });
      const { outA, outB } = complete(p);
      t.equal(outA.version, 3);
      t.equal(outB.version, 3);
      t.equal(p.a.state, 'established');
    }
    const p = startPair({}, { minVersion: 1, maxVersion: 9 });
    t.equal(complete(p).outA.version, 1, 'defaults against a newer peer');
  });
  t.test('disjoint ranges fail on both sides, naming both ranges', async (t) => {
    const p = startPair({ minVersion: 1, maxVersion: 1 }, { minVersion: 2, maxVersion: 3 });
    let errA: unknown = null;
    try { p.a.consumeHello(p.helloB); } catch (e) { errA = e; }
    t.ok(errA instanceof RouterError && errA.code === 'version');
    t.match((errA as Error).message, /we support 1\.\.1, the peer supports 2\.\.3/);
    let errB: unknown = null;
    try { p.b.consumeHello(p.helloA); } catch (e) { errB = e; }
    t.ok(errB instanceof RouterError && errB.code === 'version');
    t.match((errB as Error).message, /we support 2\.\.3, the peer supports 1\.\.1/);
  });
  t.test('a rewritten version range (downgrade) makes the Confirms fail', async (t) => {
    const p = startPair({ passwordKey: password, minVersion: 1, maxVersion: 3 }, { passwordKey: password, minVersion: 1, maxVersion: 3 });
    const forged = p.helloB.slice();
    forged[HELLO_MAGIC.length + 1] = 1; // B's max version, as A will see it
    const outA = p.a.consumeHello(forged);
    const outB = p.b.consumeHello(p.helloA);
    t.equal(outA.version, 1, 'A was talked down');
    t.equal(outB.version, 3);
    t.equal(codeOf(() => p.b.consumeConfirm(outA.confirm!)), 'password-mismatch');
    t.equal(codeOf(() => p.a.consumeConfirm(outB.confirm!)), 'password-mismatch');
  });
});

t.test('a tampered Hello makes the Confirms fail on both sides', async (t) => {
  // Offsets into B's Hello: a nickname byte, an incarnation byte, the listen port, the ephemeral key.
  const nicknameAt = HELLO_MAGIC.length + 3 + 6 + 2;
  const p0 = startPair({ passwordKey: password }, { passwordKey: password });
  const offsets = [nicknameAt, nicknameAt + 7 + 2, p0.helloB.length - 33, p0.helloB.length - 1];
  for (const off of offsets) {
    const p = startPair({ passwordKey: password }, { passwordKey: password });
    const tampered = p.helloB.slice();
    tampered[off]! ^= 0x01;
    let outA: HelloOutcome;
    try {
      outA = p.a.consumeHello(tampered);
    } catch (err) {
      // A flipped key bit may land on a weak point; that is refused too.
      t.ok(err instanceof RouterError, `offset ${off}: refused at Hello`);
      continue;
    }
    const outB = p.b.consumeHello(p.helloA);
    t.equal(codeOf(() => p.b.consumeConfirm(outA.confirm!)), 'password-mismatch', `offset ${off}: B refuses A's Confirm`);
    t.equal(codeOf(() => p.a.consumeConfirm(outB.confirm!)), 'password-mismatch', `offset ${off}: A refuses B's Confirm`);
  }
});

t.test('a reflected Hello, a weak key and wrong magic are refused', async (t) => {
  const self = Handshake.start({ local: infoA, passwordKey: password });
  t.equal(codeOf(() => self.handshake.consumeHello(self.hello)), 'decode', 'our own Hello back');

  const weak = Handshake.start({ local: infoB, passwordKey: password }).hello.slice();
  weak.fill(0, weak.length - 32);
  t.equal(codeOf(() => Handshake.start({ local: infoA, passwordKey: password }).handshake.consumeHello(weak)), 'decode', 'all-zero ephemeral key');

  const http = enc.encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  let err: unknown = null;
  try { Handshake.start({ local: infoA, passwordKey: null }).handshake.consumeHello(http); } catch (e) { err = e; }
  t.ok(err instanceof RouterError && err.code === 'decode');
  t.match((err as Error).message, /not a weave peer/);
});

t.test('Hello codec: round trip, trailing bytes tolerated, nickname limit', async (t) => {
  const hello = { ...infoB, minVersion: 1, maxVersion: 2, ephemeralPublicKey: new Uint8Array(32).fill(7) };
  const bytes = encodeHello(hello);
  t.same(decodeHello(bytes), hello);
  const extended = new Uint8Array(bytes.length + 5);
  extended.set(bytes);
  t.same(decodeHello(extended), hello, 'trailing bytes ignored');
  const plain = { ...infoA, minVersion: 1, maxVersion: 1, ephemeralPublicKey: null };
  t.same(decodeHello(encodeHello(plain)), plain);

  const p = startPair({}, {});
  const withTail = new Uint8Array(p.helloB.length + 3);
  withTail.set(p.helloB);
  t.equal(p.a.consumeHello(withTail).remote.nickname, infoB.nickname, 'a newer peer\'s longer Hello is accepted');

  const longName = encodeHello({ ...plain, nickname: 'x'.repeat(65) });
  t.equal(codeOf(() => decodeHello(longName)), 'limit');
  t.equal(codeOf(() => decodeHello(encodeHello({ ...plain, nickname: 'é'.repeat(32) }))), 'no-throw', '64 bytes of UTF-8 is fine');
  t.equal(codeOf(() => Handshake.start({ local: { ...infoA, nickname: 'é'.repeat(33) }, passwordKey: null })), 'config');
  t.equal(codeOf(() => Handshake.start({ local: infoA, passwordKey: new Uint8Array(16) })), 'config');
  t.equal(codeOf(() => Handshake.start({ local: infoA, passwordKey: null, minVersion: 2, maxVersion: 1 })), 'config');
});

t.test('after establishment, sealed messages round-trip; tampering, replay and reordering are caught', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  complete(p);
  const sa = p.a.session();
  const sb = p.b.session();
  t.equal(p.a.session(), sa, 'the same session object each time');
  t.equal(dec.decode(sb.open(sa.seal(enc.encode('a to b')))), 'a to b');
  t.equal(dec.decode(sa.open(sb.seal(enc.encode('b to a')))), 'b to a');

  const m1 = sa.seal(enc.encode('one'));
  const m2 = sa.seal(enc.encode('two'));
  t.same(Array.from(m1.subarray(0, 8)), [0, 0, 0, 0, 0, 0, 0, 2], 'counters continue after the Confirm (0) and one message (1)');
  const bad = m1.slice();
  bad[bad.length - 1]! ^= 0x40;
  t.equal(codeOf(() => sb.open(bad)), 'auth', 'tampered');
  t.equal(codeOf(() => sb.open(m2)), 'replay', 'reordered');
  t.equal(dec.decode(sb.open(m1)), 'one');
  t.equal(codeOf(() => sb.open(m1)), 'replay', 'replayed');
  t.equal(dec.decode(sb.open(m2)), 'two');
});

/**
 * Our own copy of the key schedule documented in router/mesh/handshake.ts, so the
 * test can play an attacker. It is checked against the real thing first.
 */
function deriveControlKeys(shared: Uint8Array, helloLow: Uint8Array, helloHigh: Uint8Array, passwordKey: Uint8Array): Uint8Array[] {
  const na = sodium();
  const label = enc.encode('weave-ts transcript v1');
  const tin = new Uint8Array(label.length + 8 + helloLow.length + helloHigh.length);
  const view = new DataView(tin.buffer);
  tin.set(label, 0);
  view.setUint32(label.length, helloLow.length);
  tin.set(helloLow, label.length + 4);
  view.setUint32(label.length + 4 + helloLow.length, helloHigh.length);
  tin.set(helloHigh, label.length + 8 + helloLow.length);
  const transcript = na.crypto_generichash(32, tin, null);
  const kdf = enc.encode('weave-ts kdf v1');
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 4; i++) {
    const ikm = new Uint8Array(kdf.length + 1 + shared.length + transcript.length);
    ikm.set(kdf, 0);
    ikm[kdf.length] = i;
    ikm.set(shared, kdf.length + 1);
    ikm.set(transcript, kdf.length + 1 + shared.length);
    keys.push(na.crypto_generichash(32, ikm, passwordKey));
  }
  return keys;
}

/** Tries every key on every recorded message, with the documented nonce layout. */
function canOpen(keys: Uint8Array[], recorded: Uint8Array[]): boolean {
  const nonce = new Uint8Array(12);
  for (const key of keys) {
    for (const msg of recorded) {
      const counter = new DataView(msg.buffer, msg.byteOffset).getUint32(4);
      writeNonce(nonce, CHANNEL_TCP_CONTROL, counter);
      try {
        sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, msg.subarray(8), msg.subarray(0, 8), nonce, key);
        return true;
      } catch {
        // not this key
      }
    }
  }
  return false;
}

t.test('forward secrecy: a recording stays sealed even once the password is known', async (t) => {
  const randomA = fixedRandom(4242);
  const p = startPair({ passwordKey: password, randomBytes: randomA }, { passwordKey: password });
  const { outA, outB } = complete(p);
  const recordedAtoB = [outA.confirm!, p.a.session().seal(enc.encode('secret from A')), p.a.session().seal(enc.encode('more from A'))];
  const recordedBtoA = [outB.confirm!, p.b.session().seal(enc.encode('secret from B'))];
  const recorded = [...recordedAtoB, ...recordedBtoA];
  const pubA = p.helloA.subarray(p.helloA.length - 32);
  const pubB = p.helloB.subarray(p.helloB.length - 32);
  const aIsLow = Buffer.compare(pubA, pubB) < 0;
  const [helloLow, helloHigh] = aIsLow ? [p.helloA, p.helloB] : [p.helloB, p.helloA];

  // Control: whoever holds A's ephemeral secret and the password reads everything.
  // This also proves the test's copy of the key schedule matches the code.
  const secretA = randomA(32);
  const realKeys = deriveControlKeys(sodium().crypto_scalarmult(secretA, pubB), helloLow, helloHigh, password);
  t.ok(canOpen(realKeys, recordedAtoB) && canOpen(realKeys, recordedBtoA), 'ephemeral secret + password opens the recording');
  const replay = Handshake.start({ local: infoA, passwordKey: password, randomBytes: randomA });
  t.same(replay.hello, p.helloA, 'replaying A\'s randomness reproduces its Hello');
  t.same(replay.handshake.consumeHello(p.helloB).confirm, outA.confirm, '...and its Confirm');
  replay.handshake.consumeConfirm(outB.confirm!);
  t.equal(dec.decode(replay.handshake.session().open(recordedBtoA[1]!)), 'secret from B');

  // Ephemeral secret without the password: nothing.
  t.notOk(canOpen(deriveControlKeys(sodium().crypto_scalarmult(secretA, pubB), helloLow, helloHigh, otherPassword), recorded),
    'the ephemeral secret alone is not enough');

  // The attacker: both Hellos and all traffic recorded, the password learnt
  // later, fresh ephemerals of its own.
  for (const [local, victimHello, victimConfirm] of [[infoA, p.helloB, outB.confirm!], [infoB, p.helloA, outA.confirm!]] as const) {
    const attacker = Handshake.start({ local, passwordKey: password });
    const out = attacker.handshake.consumeHello(victimHello);
    t.ok(out.encrypted);
    t.equal(codeOf(() => attacker.handshake.consumeConfirm(victimConfirm)), 'password-mismatch', 'its own handshake cannot verify the recorded Confirm');
  }
  const attackerSecret = sodium().randombytes_buf(32);
  const guesses = [
    deriveControlKeys(sodium().crypto_scalarmult(attackerSecret, pubA), helloLow, helloHigh, password),
    deriveControlKeys(sodium().crypto_scalarmult(attackerSecret, pubB), helloLow, helloHigh, password),
    deriveControlKeys(new Uint8Array(32), helloLow, helloHigh, password),
  ];
  t.notOk(guesses.some((keys) => canOpen(keys, recorded)), 'password + recorded Hellos + fresh ephemerals open nothing');
});

t.test('calls out of order are caller bugs (plain Error), not peer errors', async (t) => {
  const p = startPair({ passwordKey: password }, { passwordKey: password });
  t.equal(codeOf(() => p.a.consumeConfirm(new Uint8Array(40))), 'not-router-error');
  t.equal(codeOf(() => p.a.session()), 'not-router-error');
  t.equal(codeOf(() => p.a.sleeveKeys()), 'not-router-error');
  p.a.consumeHello(p.helloB);
  t.equal(codeOf(() => p.a.consumeHello(p.helloB)), 'not-router-error');
  t.equal(codeOf(() => p.a.session()), 'not-router-error', 'no session before the Confirm');
  t.equal(codeOf(() => p.a.consumeConfirm(new Uint8Array(3))), 'password-mismatch', 'a garbage Confirm');
});

t.test('Hello decoder on hostile input throws only RouterError', async (t) => {
  const valid = Handshake.start({ local: infoB, passwordKey: password }).hello;
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
  for (let i = 0; i < 2000; i++) {
    let input: Uint8Array;
    const kind = i % 3;
    if (kind === 0) {
      input = new Uint8Array(randomInt(rng, 120));
      for (let j = 0; j < input.length; j++) input[j] = randomInt(rng, 256);
    } else if (kind === 1) {
      // Valid magic, random rest: gets past the first check.
      input = new Uint8Array(HELLO_MAGIC.length + randomInt(rng, 120));
      input.set(HELLO_MAGIC);
      for (let j = HELLO_MAGIC.length; j < input.length; j++) input[j] = randomInt(rng, 256);
    } else {
      // A valid Hello with a few bytes changed, sometimes cut short.
      input = valid.slice(0, valid.length - (rng.next() < 0.3 ? randomInt(rng, valid.length) : 0));
      for (let k = 0; k < 1 + randomInt(rng, 3) && input.length > 0; k++) input[randomInt(rng, input.length)] = randomInt(rng, 256);
    }
    for (const run of [() => decodeHello(input), () => Handshake.start({ local: infoA, passwordKey: password }).handshake.consumeHello(input)]) {
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
  t.ok(codes.has('decode') && codes.has('ok'), `a spread of outcomes: ${[...codes].join(', ')}`);
});
