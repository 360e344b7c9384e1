// The rekey state machine (router/mesh/key-schedule.ts) with the control
// session and the sleeve it drives, on a ManualClock: keys change on time and
// at the counter threshold, no frame is lost across the switch, the old key is
// accepted only for the overlap, simultaneous starts resolve, stalls and
// out-of-place messages close, and old key material is gone afterwards.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { RouterError } from '../../router/mesh/errors';
import { KeySchedule, RekeyOptions } from '../../router/mesh/key-schedule';
import { decodeControlMessage } from '../../router/mesh/protocol';
import { encodeRekey } from '../../router/mesh/rekey-messages';
import { loadSodium, sodium } from '../../router/mesh/sodium';
import type { SleeveCipher } from '../../router/mesh/sleeve-keys';
import { probeAesGcm } from '../../router/overlay/aes-gcm';
import { frameAead } from '../../router/overlay/frame-aead';
import { readSleeveHeader, SLEEVE_TYPE_FRAME } from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';

t.before(async () => { await loadSodium(); });

const OPTS: RekeyOptions = { intervalMs: 120_000, counterLimit: 2 ** 40, overlapMs: 10_000, timeoutMs: 30_000 };

interface Side { keys: KeySchedule; sleeve: SleeveSession }

const CIPHERS: readonly SleeveCipher[] = ['chacha20-poly1305', 'aes-256-gcm'];

function pair(opts: RekeyOptions = OPTS, clock = new ManualClock(), sleeveCipher: SleeveCipher = 'chacha20-poly1305'): { a: Side; b: Side; clock: ManualClock } {
  const chain = sodium().randombytes_buf(32);
  const a = new KeySchedule({ chainKey: chain.slice(), weAreLow: true, sleeveCipher }, opts, clock.now());
  const b = new KeySchedule({ chainKey: chain, weAreLow: false, sleeveCipher }, opts, clock.now());
  const aes = sleeveCipher === 'aes-256-gcm' ? probeAesGcm().aes : null;
  return {
    a: { keys: a, sleeve: new SleeveSession(frameAead(), a.sleeve, Uint8Array.of(2, 0, 0, 0, 0, 1), aes) },
    b: { keys: b, sleeve: new SleeveSession(frameAead(), b.sleeve, Uint8Array.of(2, 0, 0, 0, 0, 2), aes) },
    clock,
  };
}

/** Seals control plaintexts at `from`, opens them at `to` and hands REKEY messages to its schedule; returns `to`'s replies. */
function deliver(from: Side, to: Side, messages: Uint8Array[], nowMs: number): Uint8Array[] {
  const replies: Uint8Array[] = [];
  for (const m of messages) {
    const sealed = from.keys.control.seal(m);
    const msg = decodeControlMessage(to.keys.control.open(sealed));
    if (msg.type === 'rekey') replies.push(...to.keys.handle(msg.rekey, nowMs));
  }
  return replies;
}

/** One control message each way (a heartbeat stands in for any traffic): proves the control keys agree. */
function controlFlows(a: Side, b: Side): boolean {
  const hb = Uint8Array.of(1);
  try {
    return decodeControlMessage(b.keys.control.open(a.keys.control.seal(hb))).type === 'heartbeat' &&
      decodeControlMessage(a.keys.control.open(b.keys.control.seal(hb))).type === 'heartbeat';
  } catch {
    return false;
  }
}

function datagram(from: Side, text: string): Buffer {
  const buf = Buffer.alloc(100);
  buf.write(text, 16);
  return Buffer.from(buf.subarray(0, from.sleeve.seal(buf, 0, SLEEVE_TYPE_FRAME, Buffer.byteLength(text))));
}

/** What the receiving sleeve makes of a datagram: its text, or the drop reason. */
function receive(to: Side, d: Buffer): string {
  const copy = Buffer.from(d);
  const h = readSleeveHeader(copy, 0, copy.length);
  if (typeof h === 'string') return h;
  const n = to.sleeve.open(copy, 0, copy.length, h.counter);
  return typeof n === 'string' ? n : copy.subarray(16, 16 + n).toString();
}

/** Runs one complete rekey started by `init`'s tick. */
function rekey(init: Side, resp: Side, nowMs: number): void {
  const initMsgs = init.keys.tick(nowMs);
  if (initMsgs.length !== 1) throw new Error(`expected an INIT, got ${initMsgs.length} messages`);
  const ack = deliver(init, resp, initMsgs, nowMs);
  const done = deliver(resp, init, ack, nowMs);
  deliver(init, resp, done, nowMs);
}

t.test('keys change on time, both sides agree, and status counts epochs', async (t) => {
  const { a, b, clock } = pair();
  t.same(a.keys.tick(clock.now()), [], 'nothing before the interval');
  clock.advance(OPTS.intervalMs - 1);
  t.same(a.keys.tick(clock.now()), [], 'nor just before');
  const sendKey0 = Buffer.from(a.keys.sleeve.sendKey);
  clock.advance(1);
  const init = a.keys.tick(clock.now());
  t.equal(init.length, 1, 'INIT at the interval');
  t.same(a.keys.tick(clock.now()), [], 'one rekey at a time');
  const ack = deliver(a, b, init, clock.now());
  t.equal(b.keys.status().epoch, 0, 'the responder still sends under epoch 0 after its ACK');
  t.ok(controlFlows(a, b), 'control traffic flows between INIT and ACK');
  const done = deliver(b, a, ack, clock.now());
  t.equal(a.keys.status().epoch, 1, 'the initiator moved on ACK');
  t.ok(controlFlows(a, b), 'control traffic flows between ACK and DONE');
  deliver(a, b, done, clock.now());
  t.same(b.keys.status(), { epoch: 1, epochStartedMs: clock.now(), rekeys: 1, sleeveCipher: 'chacha20-poly1305' });
  t.ok(controlFlows(a, b), 'and after DONE');
  t.notOk(a.keys.sleeve.sendKey.equals(sendKey0), 'the sleeve send key changed');
  t.ok(a.keys.sleeve.sendKey.equals(b.keys.sleeve.receiveKeys[1]!), 'A->B sleeve key agrees');
  t.equal(receive(b, datagram(a, 'epoch one')), 'epoch one');
  t.equal(receive(a, datagram(b, 'and back')), 'and back');
  t.equal(a.keys.control.sendEpoch, 1);
  t.equal(a.keys.control.counters.send, 3, 'control counters restarted at the switch');

  for (let i = 2; i <= 5; i++) {
    clock.advance(OPTS.intervalMs);
    // Either side may start; here they alternate.
    if (i % 2 === 0) rekey(b, a, clock.now()); else rekey(a, b, clock.now());
    t.ok(controlFlows(a, b) && receive(b, datagram(a, `e${i}`)) === `e${i}`, `epoch ${i}: both channels work`);
  }
  t.equal(a.keys.status().epoch, 5);
  t.equal(b.keys.status().rekeys, 5);
});

for (const cipher of CIPHERS) t.test(`${cipher}: no frame is lost across the switch; the old key is accepted only for the overlap`, async (t) => {
  const { a, b, clock } = pair(OPTS, new ManualClock(), cipher);
  clock.advance(OPTS.intervalMs);
  // Datagrams in flight in both directions while the exchange runs, delivered late and out of order.
  const inFlight: [Side, Buffer, string][] = [];
  const send = (from: Side, to: Side, text: string): void => { inFlight.push([to, datagram(from, text), text]); };
  send(a, b, 'a0'); send(b, a, 'b0');
  const init = a.keys.tick(clock.now());
  send(a, b, 'a1'); send(b, a, 'b1');
  const ack = deliver(a, b, init, clock.now());
  send(a, b, 'a2'); send(b, a, 'b2 (still epoch 0: B has not heard DONE)');
  const done = deliver(b, a, ack, clock.now());
  send(a, b, 'a3 (epoch 1)'); send(b, a, 'b3');
  deliver(a, b, done, clock.now());
  send(a, b, 'a4'); send(b, a, 'b4 (epoch 1)');
  const results = inFlight.reverse().map(([to, d, text]) => receive(to, d) === text);
  t.same(results, results.map(() => true), 'every datagram opens, whichever epoch and order');

  const late = datagram(a, 'x');
  t.equal(b.keys.sleeve.receiveEpochs.slice().sort().join(','), '0,1', 'both epochs accepted during the overlap');
  // A hears B under epoch 1 (any control message) and ticks; the overlap runs from then.
  t.ok(controlFlows(a, b));
  a.keys.tick(clock.now());
  b.keys.tick(clock.now());
  clock.advance(OPTS.overlapMs - 1);
  a.keys.tick(clock.now());
  b.keys.tick(clock.now());
  t.equal(b.keys.sleeve.receiveKeys.filter((k) => k !== null).length, 2, 'still both just before the overlap ends');
  const oldFromB = Buffer.from(inFlight.find(([, , text]) => text === 'b0')![1]);
  clock.advance(1);
  a.keys.tick(clock.now());
  b.keys.tick(clock.now());
  t.same(b.keys.sleeve.receiveEpochs, [-1, 1], 'B dropped epoch 0');
  t.same(a.keys.sleeve.receiveEpochs, [-1, 1], 'A dropped epoch 0');
  t.equal(receive(b, late), 'x', 'epoch 1 still opens');
  t.equal(receive(a, oldFromB), 'auth', 'an epoch 0 datagram no longer does');
  t.equal(receive(b, datagram(a, 'x')), 'x', 'a new datagram opens once...');
});

t.test('a counter reaching the threshold starts a rekey before the interval', async (t) => {
  const { a, b, clock } = pair({ ...OPTS, counterLimit: 50 });
  for (let i = 0; i < 49; i++) receive(b, datagram(a, 'data'));
  t.same(a.keys.tick(clock.now()), [], '49 datagrams: not yet');
  receive(b, datagram(a, 'data'));
  clock.advance(1);
  const init = a.keys.tick(clock.now());
  t.equal(init.length, 1, 'the 50th sleeve datagram triggers it');
  deliver(b, a, deliver(a, b, init, clock.now()), clock.now()).forEach((m) => deliver(a, b, [m], clock.now()));
  t.equal(a.keys.sleeve.sendCounter, 0, 'the sleeve counter restarted');
  t.equal(receive(b, datagram(a, 'after')), 'after', 'counter 0 again is no replay under the new key');

  const c = pair({ ...OPTS, counterLimit: 20, overlapMs: 0 });
  for (let i = 0; i < 20; i++) c.b.keys.control.seal(Uint8Array.of(1));
  t.equal(c.b.keys.tick(c.clock.now()).length, 1, 'so does the control counter, on either side');
});

t.test('both sides starting at once: the low side\'s rekey wins', async (t) => {
  const { a, b, clock } = pair();
  clock.advance(OPTS.intervalMs);
  const initA = a.keys.tick(clock.now());
  const initB = b.keys.tick(clock.now());
  t.equal(initA.length + initB.length, 2, 'two INITs cross');
  t.same(deliver(b, a, initB, clock.now()), [], 'A (low) ignores B\'s INIT');
  const ack = deliver(a, b, initA, clock.now());
  t.equal(ack.length, 1, 'B (high) answers A\'s');
  deliver(a, b, deliver(b, a, ack, clock.now()), clock.now());
  t.same([a.keys.status().epoch, b.keys.status().epoch], [1, 1]);
  t.ok(controlFlows(a, b) && receive(a, datagram(b, 'ok')) === 'ok');
});

t.test('a stalled rekey and messages out of place close the connection', async (t) => {
  const { a, b, clock } = pair();
  clock.advance(OPTS.intervalMs);
  a.keys.tick(clock.now());
  clock.advance(OPTS.timeoutMs);
  t.same(a.keys.tick(clock.now()), [], 'within the timeout');
  clock.advance(1);
  let err: unknown = null;
  try { a.keys.tick(clock.now()); } catch (e) { err = e; }
  t.ok(err instanceof RouterError && err.code === 'rekey', 'unanswered INIT: rekey error');

  const pub = sodium().randombytes_buf(32);
  const codes = (fn: () => unknown): string => {
    try { fn(); return 'no-throw'; } catch (e) { return e instanceof RouterError ? e.code : 'other'; }
  };
  t.equal(codes(() => b.keys.handle({ kind: 'ack', epoch: 1, publicKey: pub }, 0)), 'decode', 'ACK without INIT');
  t.equal(codes(() => b.keys.handle({ kind: 'done', epoch: 1 }, 0)), 'decode', 'DONE without ACK');
  t.equal(codes(() => b.keys.handle({ kind: 'init', epoch: 5, publicKey: pub }, 0)), 'decode', 'INIT skipping epochs');
  t.equal(codes(() => b.keys.handle({ kind: 'init', epoch: 1, publicKey: new Uint8Array(32) }, 0)), 'decode', 'INIT with a weak key');
  t.equal(decodeControlMessage(encodeRekey({ kind: 'init', epoch: 7, publicKey: pub })).type, 'rekey', 'the codec round-trips');
  t.equal(codes(() => decodeControlMessage(Uint8Array.of(6, 9, 0, 0, 0, 1))), 'decode', 'unknown kind');
  t.equal(codes(() => decodeControlMessage(Uint8Array.of(6, 1, 0, 0, 0, 1, 5))), 'decode', 'truncated key');
});

/** Every byte array reachable from an object (the schedule's whole state). */
function allBytes(root: unknown, seen = new Set<unknown>()): Uint8Array[] {
  if (root === null || typeof root !== 'object' || seen.has(root)) return [];
  seen.add(root);
  if (root instanceof Uint8Array) return [root];
  return Object.values(root as Record<string, unknown>).flatMap((v) => allBytes(v, seen));
}

t.test('after a rekey no key of the old epoch is left in memory, and its traffic stays sealed', async (t) => {
  const { a, b, clock } = pair({ ...OPTS, overlapMs: 0 });
  const recorded = datagram(a, 'epoch zero secret');
  const oldKey = Buffer.from(a.keys.sleeve.sendKey);
  const chain0 = Buffer.from((a.keys as unknown as { chain: Uint8Array }).chain);
  clock.advance(OPTS.intervalMs);
  rekey(a, b, clock.now());
  controlFlows(a, b);
  a.keys.tick(clock.now());
  b.keys.tick(clock.now());
  const dump = [...allBytes(a.keys), ...allBytes(b.keys)].filter((x) => x.length === 32);
  t.ok(dump.length >= 6, `${dump.length} keys in memory`);
  t.notOk(dump.some((k) => oldKey.equals(k) || chain0.equals(k)), 'neither the old sleeve key nor the old chain key is anywhere');
  const nonce = Buffer.alloc(12);
  nonce[3] = 2;
  const opened = dump.some((k) => {
    try {
      sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, recorded.subarray(16), recorded.subarray(0, 16), nonce, k);
      return true;
    } catch {
      return false;
    }
  });
  t.notOk(opened, 'no key in memory opens the recorded epoch 0 datagram');
  a.keys.dispose();
  t.ok(allBytes(a.keys).filter((k) => k.length === 32).every((k) => k.every((x) => x === 0)), 'dispose zeroes every key');
});

for (const cipher of CIPHERS) t.test(`${cipher}: hundreds of rekeys: phases wrap (control u8, sleeve 1 bit) and both channels keep working`, async (t) => {
  const { a, b, clock } = pair({ ...OPTS, overlapMs: 0 }, new ManualClock(), cipher);
  let ok = 0;
  for (let i = 1; i <= 260; i++) {
    clock.advance(OPTS.intervalMs);
    rekey(i % 3 === 0 ? b : a, i % 3 === 0 ? a : b, clock.now());
    if (controlFlows(a, b) && receive(b, datagram(a, 'x')) === 'x' && receive(a, datagram(b, 'y')) === 'y') ok++;
    a.keys.tick(clock.now());
    b.keys.tick(clock.now());
  }
  t.equal(ok, 260);
  t.equal(a.keys.status().epoch, 260);
});
