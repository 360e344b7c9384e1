// Trust-on-first-use pins across a restart (router/mesh/peer-pins.ts, the
// authority's restore/pins/onPinned in signed-gossip.ts, identity.ts's
// loadPins/savePins): the file round-trips, hostile files are refused whole or
// entry by entry, no entry can pin a key to a name it does not derive, a
// restored pin refuses a second key for its name in gossip and in the
// handshake's check, new pins are saved once per burst, owner-only.

import t from 'tap';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import { StateFileKeeper } from '../../common/state-files';
import { loadPins, PINS_FILE, savePins } from '../../router/mesh/identity';
import { PeerKey, peerNameOfKey } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';
import { decodePeerPins, encodePeerPins, PIN_SAVE_DELAY_MS, PinSaver } from '../../router/mesh/peer-pins';
import type { PeerPin } from '../../router/mesh/peer-pins';
import { GossipAuthority } from '../../router/mesh/signed-gossip';

function key(i: number): PeerKey {
  return PeerKey.fromSeed(createHash('sha256').update(`peer-pins test ${i}`).digest());
}

function pinOf(k: PeerKey): PeerPin {
  return { peer: k.name, publicKey: k.publicKey };
}

const hex = (k: PeerKey): string => Buffer.from(k.publicKey).toString('hex');
const decode = (text: string, maxPins = 100): ReturnType<typeof decodePeerPins> => decodePeerPins(text, { maxPins, nameOfKey: peerNameOfKey });
const msg = new TextEncoder().encode('topology');

t.test('the file round-trips, oldest first, and says its version', async (t) => {
  const pins = [key(1), key(2), key(3)].map(pinOf);
  const text = encodePeerPins(pins);
  t.match(text, /^\{"version": 1, "pins": \[\n/);
  const back = decode(text);
  t.same(back.pins.map((p) => p.peer), pins.map((p) => p.peer), 'names in order');
  t.same(back.pins.map((p) => Buffer.from(p.publicKey).toString('hex')), [1, 2, 3].map((i) => hex(key(i))), 'keys');
  t.equal(back.dropped, 0);
  t.same(decode(encodePeerPins([])).pins, [], 'no pins is a valid file');
});

t.test('a file that is not ours as a whole is refused with the reason', async (t) => {
  const one = `["${key(1).name}", "${hex(key(1))}"]`;
  const cases: Array<[string, RegExp]> = [
    ['', /JSON/],
    ['[]', /not an object/],
    ['null', /not an object/],
    ['{"pins": []}', /version missing/],
    ['{"version": 2, "pins": []}', /version 2, this router reads 1/],
    ['{"version": "1", "pins": []}', /version "1"/],
    ['{"version": 1}', /"pins" is not a list/],
    ['{"version": 1, "pins": {}}', /"pins" is not a list/],
    [`{"version": 1, "pins": [${one}, ${one}, ${one}]}`, /3 pins, more than the 2 a router keeps/],
  ];
  for (const [text, why] of cases) t.throws(() => decode(text, 2), why, JSON.stringify(text).slice(0, 60));
});

t.test('bad entries are dropped one by one; none pins a key to a name it does not derive', async (t) => {
  const [a, b, c] = [key(1), key(2), key(3)];
  const rows = [
    `["${a.name}", "${hex(a)}"]`,
    `["${b.name}", "${hex(c)}"]`,
    `"${c.name}"`,
    `["${c.name}", "${hex(c)}", "extra"]`,
    `["not a name", "${hex(c)}"]`,
    `["${c.name}", "${hex(c).toUpperCase()}"]`,
    `["${c.name}", "${hex(c).slice(2)}"]`,
    `["${c.name}", 7]`,
    `["${a.name}", "${hex(a)}"]`,
    `["__proto__", "${hex(c)}"]`,
    `["${c.name}", "${hex(c)}"]`,
  ];
  const d = decode(`{"version": 1, "pins": [${rows.join(', ')}]}`);
  t.same(d.pins.map((p) => p.peer), [a.name, c.name], 'only the good entries, in order');
  t.equal(d.dropped, 9);
  t.same(d.reasons, [
    `entry 1: the key does not derive ${b.name}`,
    'entry 2: not a [name, key] pair of strings',
    'entry 3: not a [name, key] pair of strings',
  ], 'the first reasons, with where');
  t.equal(decode(`{"version": 1, "pins": [${rows[8]}, ${rows[8]}]}`).reasons[0], `entry 1: ${a.name} is pinned twice`);
  t.equal(decode(`{"version": 1, "pins": [${rows[5]}]}`).reasons[0], 'entry 0: the key is not 64 lowercase hex digits');
  t.equal(decode(`{"version": 1, "pins": [${rows[4]}]}`).reasons[0], 'entry 0: not a peer name');
});

t.test('the authority restores pins, lists them, and says when a new one comes', async (t) => {
  const me = key(0);
  const [a, b, c] = [key(1), key(2), key(3)];
  const auth = new GossipAuthority(me);
  let told = 0;
  auth.onPinned = () => { told++; };
  const forged = { peer: b.name, publicKey: c.publicKey };
  t.equal(auth.restore([pinOf(a), forged, pinOf(me), { peer: c.name, publicKey: c.publicKey.subarray(1) }, pinOf(b), pinOf(a)]), 2,
    'a and b taken; a key that does not derive its name, our own name, a short key and a repeat are not');
  t.equal(told, 0, 'restoring is not news');
  t.same(auth.pins().map((p) => p.peer), [a.name, b.name]);
  t.ok(auth.verify(c.name, c.publicKey, msg, c.sign(msg)), 'a new peer');
  t.equal(told, 1, 'a new pin from gossip is');
  auth.pin(key(4).name, key(4).publicKey);
  t.equal(told, 2, 'and one from a handshake');
  auth.pin(key(4).name, key(4).publicKey);
  t.ok(auth.verify(c.name, c.publicKey, msg, c.sign(msg)));
  t.equal(told, 2, 'known ones are not');
  t.same(auth.pins().map((p) => p.peer), [a.name, b.name, c.name, key(4).name], 'oldest first');
  const listed = auth.pins()[0]!.publicKey;
  listed[0] = listed[0]! ^ 1;
  t.same(auth.keyOf(a.name), a.publicKey, 'the list is a copy');
});

t.test('a restored pin refuses a second key for its name, in gossip and for the handshake', async (t) => {
  // A derivation under which two keys share a name stands in for a second preimage (2^46 work).
  const [real, forger] = [key(1), key(2)];
  const shared = real.name;
  const nameOfKey = (k: Uint8Array): PeerName => (Buffer.compare(Buffer.from(k), Buffer.from(forger.publicKey)) === 0 ? shared : peerNameOfKey(k));
  const before = new GossipAuthority(key(0), { nameOfKey });
  t.ok(before.verify(shared, real.publicKey, msg, real.sign(msg)), 'the real peer, first');
  const saved = encodePeerPins(before.pins());

  const fresh = new GossipAuthority(key(0), { nameOfKey });
  t.ok(fresh.verify(shared, forger.publicKey, msg, forger.sign(msg)), 'without the pins, a restarted router would take the forger first');

  const restarted = new GossipAuthority(key(0), { nameOfKey });
  restarted.restore(decodePeerPins(saved, { maxPins: 10, nameOfKey }).pins);
  t.notOk(restarted.verify(shared, forger.publicKey, msg, forger.sign(msg)), 'with them, the forger is refused');
  t.equal(restarted.counters.gossipKeyConflicts, 1);
  t.same(restarted.keyOf(shared), real.publicKey, 'the handshake\'s pin check (key-proof.ts keyOf) sees the real key');
  restarted.pin(shared, forger.publicKey);
  t.same(restarted.keyOf(shared), real.publicKey, 'and a handshake cannot move it');
});

t.test('PinSaver: one write per burst, and the waiting one at flush', async (t) => {
  const clock = new ManualClock(1_000);
  let writes = 0;
  const saver = new PinSaver(clock, () => { writes++; });
  saver.changed();
  saver.changed();
  clock.advance(PIN_SAVE_DELAY_MS - 1);
  t.equal(writes, 0, 'not before the delay');
  saver.changed();
  clock.advance(1);
  t.equal(writes, 1, 'three changes, one write');
  clock.advance(10 * PIN_SAVE_DELAY_MS);
  t.equal(writes, 1, 'nothing new, nothing written');
  saver.flush();
  t.equal(writes, 1, 'flush with nothing waiting writes nothing');
  saver.changed();
  saver.flush();
  t.equal(writes, 2, 'flush writes what waits');
  clock.advance(10 * PIN_SAVE_DELAY_MS);
  t.equal(writes, 2, 'and its timer is gone');
});

t.test('the pins file: owner-only, read back, damage reported', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-pins-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keeper = new StateFileKeeper(silentLogger, new ManualClock(Date.UTC(2026, 11, 4)));
  const file = path.join(dir, PINS_FILE);
  t.same(loadPins(dir, 10, keeper), [], 'no file, no pins');
  t.equal(savePins(dir, [key(1), key(2)].map(pinOf), keeper), null);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'owner-only');
  t.same(loadPins(dir, 10, keeper).map((p) => p.peer), [key(1).name, key(2).name]);
  t.same(keeper.list(), [], 'nothing to report');

  fs.writeFileSync(file, `{"version": 1, "pins": [["${key(1).name}", "${hex(key(1))}"], ["${key(2).name}", "${hex(key(3))}"]]}`);
  t.same(loadPins(dir, 10, keeper).map((p) => p.peer), [key(1).name], 'the good entry is kept');
  t.match(keeper.list().map((p) => p.text), [`ignored ${PINS_FILE}: 1 of 2 pins (entry 1: the key does not derive ${key(2).name})`]);
  t.ok(fs.existsSync(file), 'the file stays for the next save to rewrite');

  fs.writeFileSync(file, '{"version": 1, "pins": [');
  t.same(loadPins(dir, 10, keeper), [], 'a truncated file gives no pins');
  t.ok(fs.readdirSync(dir).some((f) => f.startsWith(`${PINS_FILE}.corrupt-`)), 'and is kept aside');
  t.notOk(fs.existsSync(file));
  t.equal(loadPins(dir, 1, keeper).length, 0);
  savePins(dir, [key(1), key(2)].map(pinOf), keeper);
  t.same(loadPins(dir, 1, keeper), [], 'more pins than the authority keeps: refused whole');
});
