// The DNS record store (dns/store.ts) and its wire codec (dns/store-codec.ts):
// local changes, merge rules, corrections of claims about our own records,
// tombstone and departed-peer expiry, hostile batches refused without a change,
// CRDT properties on random histories, codec round trip and fuzz.

import t from 'tap';
import { DnsError } from '../../dns/errors';
import { DnsStore } from '../../dns/store';
import type { DnsEntry } from '../../dns/store-entry';
import { MAX_VERSION, supersedes } from '../../dns/store-entry';
import { decodeEntries, encodeEntries, MAX_MESSAGE_BYTES, STORE_WIRE_VERSION } from '../../dns/store-codec';
import { parseDomain, qualifyName } from '../../dns/names';
import type { PeerName } from '../../router/mesh/peer-name';
import { SeededRng, randomInt } from '../../common/rng';
import { recordSigningBytes, signRecord } from '../../dns/record-signature';
import { testSigning } from './test-signing';

const A = '02:00:00:00:00:01' as PeerName;
const B = '02:00:00:00:00:02' as PeerName;
const C = '02:00:00:00:00:03' as PeerName;
const T0 = 1_700_000_000_000;

/** A record as its origin would sign it. */
function live(origin: PeerName, name: string, address: string, version = 1, containerId = 'netns:c1'): DnsEntry {
  return signRecord({ origin, containerId, name, address, version, tombstone: false, removedAtMs: null }, testSigning(origin));
}

function dead(origin: PeerName, name: string, address: string, version: number, removedAtMs = T0, containerId = 'netns:c1'): DnsEntry {
  return signRecord({ origin, containerId, name, address, version, tombstone: true, removedAtMs }, testSigning(origin));
}

function view(s: DnsStore): string[] {
  return s.snapshot().map((e) => `${e.origin} ${e.containerId} ${e.name} ${e.address} v${e.version}${e.tombstone ? ` dead@${e.removedAtMs}` : ''}`);
}

t.test('names: domain and qualification', async (t) => {
  t.equal(parseDomain('Weave.Local.'), 'weave.local');
  t.throws(() => parseDomain('bad domain'), { code: 'config' });
  t.throws(() => parseDomain('10.in-addr.arpa'), { code: 'config' });
  t.equal(qualifyName('Web', 'weave.local'), 'web.weave.local');
  t.equal(qualifyName('web.weave.local', 'weave.local'), 'web.weave.local');
  t.equal(qualifyName('api.v2', 'weave.local'), 'api.v2.weave.local');
  t.equal(qualifyName('my_app', 'weave.local'), 'my_app.weave.local', 'Docker names may hold underscores');
  t.throws(() => qualifyName('web.example.com.', 'weave.local'), /not under the weave domain/);
  t.throws(() => qualifyName('a..b', 'weave.local'), { code: 'config' });
  t.throws(() => qualifyName('-web', 'weave.local'), { code: 'config' });
  t.throws(() => qualifyName('x'.repeat(64), 'weave.local'), { code: 'config' });
  t.throws(() => qualifyName('', 'weave.local'), { code: 'config' });
});

t.test('local changes: register, re-register, remove, register again', async (t) => {
  const s = new DnsStore(A, testSigning(A));
  const d1 = s.register('netns:c1', 'web.weave.local', '10.32.0.1', T0);
  t.same(d1.map((e) => [e.version, e.tombstone]), [[1, false]]);
  t.same(s.register('netns:c1', 'web.weave.local', '10.32.0.1', T0), [], 'registering twice changes nothing');
  s.register('netns:c1', 'web.weave.local', '10.32.0.2', T0);
  t.same(s.lookup('web.weave.local'), ['10.32.0.1', '10.32.0.2']);
  t.same(s.reverse('10.32.0.2'), ['web.weave.local']);
  const d2 = s.unregister({ containerId: 'netns:c1', address: '10.32.0.1' }, T0 + 5);
  t.same(d2.map((e) => [e.address, e.version, e.tombstone, e.removedAtMs]), [['10.32.0.1', 2, true, T0 + 5]]);
  t.same(s.lookup('web.weave.local'), ['10.32.0.2']);
  t.same(s.reverse('10.32.0.1'), []);
  const d3 = s.register('netns:c1', 'web.weave.local', '10.32.0.1', T0 + 6);
  t.same(d3.map((e) => [e.version, e.tombstone]), [[3, false]], 'a comeback outranks its own removal');
  t.throws(() => s.register('netns:c1', 'Bad Name', '10.32.0.1', T0), { code: 'config' });
  t.throws(() => s.register('netns:c1', 'web.weave.local', '10.32.0.300', T0), { code: 'config' });
  t.throws(() => s.register('', 'web.weave.local', '10.32.0.1', T0), { code: 'config' });
  t.throws(() => s.unregister({}, T0), { code: 'config' });
  t.same(s.unregister({ name: 'nobody.weave.local' }, T0), []);
});

t.test('merge: higher version wins, removal wins a tie, older removal wins between removals', async (t) => {
  t.ok(supersedes(live(B, 'x.weave.local', '10.0.0.1', 2), live(B, 'x.weave.local', '10.0.0.1', 1)));
  t.notOk(supersedes(live(B, 'x.weave.local', '10.0.0.1', 1), live(B, 'x.weave.local', '10.0.0.1', 2)));
  t.ok(supersedes(dead(B, 'x.weave.local', '10.0.0.1', 2), live(B, 'x.weave.local', '10.0.0.1', 2)));
  t.notOk(supersedes(live(B, 'x.weave.local', '10.0.0.1', 2), dead(B, 'x.weave.local', '10.0.0.1', 2)));
  t.ok(supersedes(dead(B, 'x.weave.local', '10.0.0.1', 2, T0 - 1), dead(B, 'x.weave.local', '10.0.0.1', 2, T0)));

  const s = new DnsStore(A, testSigning(A));
  s.setReachable(new Set([A, B]), T0);
  t.equal(s.merge([live(B, 'x.weave.local', '10.0.0.1', 2)], T0).length, 1);
  t.equal(s.merge([live(B, 'x.weave.local', '10.0.0.1', 2)], T0).length, 0, 'idempotent');
  t.equal(s.merge([live(B, 'x.weave.local', '10.0.0.1', 1)], T0).length, 0, 'older ignored');
  t.same(s.lookup('x.weave.local'), ['10.0.0.1']);
  t.equal(s.merge([dead(B, 'x.weave.local', '10.0.0.1', 3)], T0).length, 1);
  t.same(s.lookup('x.weave.local'), []);
  t.equal(s.merge([live(B, 'x.weave.local', '10.0.0.1', 2)], T0).length, 0, 'a late copy cannot bring it back');
});

t.test('claims about our own records: we are the authority', async (t) => {
  const s = new DnsStore(A, testSigning(A));
  // We restarted: someone still has a record of ours at version 4.
  const d = s.merge([live(A, 'old.weave.local', '10.0.0.9', 4)], T0);
  t.same(d.map((e) => [e.version, e.tombstone]), [[5, true]], 'unknown record of ours: removed with a higher version');
  t.same(s.lookup('old.weave.local'), []);
  t.equal(s.counters.ownCorrections, 1);
  // We hold a record; gossip claims it was removed at a higher version (an old incarnation removed it).
  s.register('netns:c1', 'web.weave.local', '10.0.0.1', T0);
  const d2 = s.merge([dead(A, 'web.weave.local', '10.0.0.1', 7)], T0);
  t.same(d2.map((e) => [e.version, e.tombstone]), [[8, false]], 're-asserted above the claim');
  t.same(s.lookup('web.weave.local'), ['10.0.0.1']);
  t.same(s.merge([live(A, 'web.weave.local', '10.0.0.1', 3)], T0), [], 'a lower claim is ignored');
  t.same(s.merge([live(A, 'web.weave.local', '10.0.0.1', 8)], T0), [], 'the same state changes nothing');
  t.same(s.merge([live(A, 'x.weave.local', '10.0.0.1', MAX_VERSION)], T0), [], 'claims we cannot outbid are ignored');
});

t.test('hostile batches are refused whole, the store unchanged', async (t) => {
  const s = new DnsStore(A, testSigning(A), { maxEntries: 3 });
  s.setReachable(new Set([A, B]), T0);
  s.merge([live(B, 'x.weave.local', '10.0.0.1')], T0);
  const before = view(s);
  const bad: DnsEntry[][] = [
    [live(B, 'y.weave.local', '10.0.0.2'), live(B, 'Bad Name', '10.0.0.3')],
    [live(B, 'y.weave.local', '10.0.0.2'), { ...live(B, 'z.weave.local', '10.0.0.3'), address: '010.0.0.3' }],
    [live(B, 'y.weave.local', '10.0.0.2'), { ...live(B, 'z.weave.local', '10.0.0.3'), version: 0 }],
    [live(B, 'y.weave.local', '10.0.0.2'), { ...live(B, 'z.weave.local', '10.0.0.3'), containerId: 'a\nb' }],
    [live(B, 'y.weave.local', '10.0.0.2'), { ...live(B, 'z.weave.local', '10.0.0.3'), removedAtMs: 5 }],
    [live(B, 'y.weave.local', '10.0.0.2'), live(B, 'z.weave.local', '10.0.0.3'), live(B, 'w.weave.local', '10.0.0.4')],
  ];
  for (const batch of bad) {
    t.throws(() => s.merge(batch, T0), DnsError);
    t.same(view(s), before, 'unchanged');
  }
  t.throws(() => s.merge(bad[5]!, T0), { code: 'limit' }, 'capacity is checked before anything changes');
});

t.test('forged entries: only the origin signs its records; a forged batch is refused whole and counted', async (t) => {
  const s = new DnsStore(A, testSigning(A));
  s.setReachable(new Set([A, B, C]), T0);
  s.merge([live(B, 'x.weave.local', '10.0.0.1')], T0);
  const mine = s.register('netns:c1', 'me.weave.local', '10.0.0.9', T0)[0]!;
  const before = view(s);
  const byC = (e: DnsEntry): DnsEntry => ({ ...e, originKey: testSigning(C).publicKey, signature: testSigning(C).sign(recordSigningBytes(e)) });
  const forged: [string, DnsEntry[]][] = [
    ['a new record of B signed by C', [live(C, 'ok.weave.local', '10.0.0.5'), byC(live(B, 'evil.weave.local', '10.6.6.6'))]],
    ['a removal of B\'s record signed by C', [byC(dead(B, 'x.weave.local', '10.0.0.1', 2))]],
    ['B\'s record with its version raised after signing', [{ ...live(B, 'x.weave.local', '10.0.0.1'), version: 7 }]],
    ['B\'s record pointed elsewhere after signing', [{ ...live(B, 'y.weave.local', '10.0.0.2'), address: '10.6.6.6' }]],
    ['B\'s key with C\'s signature', [{ ...live(B, 'y.weave.local', '10.0.0.2'), signature: live(C, 'y.weave.local', '10.0.0.2').signature }]],
    ['a removal of our own record signed by C', [byC(dead(A, 'me.weave.local', '10.0.0.9', mine.version + 1))]],
    ['a record of ours we never made, signed by C', [byC(live(A, 'fake.weave.local', '10.6.6.6'))]],
  ];
  for (const [what, batch] of forged) {
    t.throws(() => s.merge(batch, T0), { code: 'auth' }, what);
    t.same(view(s), before, `${what}: store unchanged`);
  }
  t.equal(s.counters.forgedBatches, forged.length, 'every forged batch counted');
  t.equal(s.counters.ownCorrections, 0, 'no correction was provoked by a forged claim');
  t.same(s.lookup('evil.weave.local'), []);
  t.same(s.lookup('me.weave.local'), ['10.0.0.9']);

  // A stale copy of an entry we already hold changes nothing, so it is not even checked.
  const stale = { ...live(B, 'x.weave.local', '10.0.0.1'), signature: new Uint8Array(64) };
  t.same(s.merge([stale], T0), [], 'an unchanged entry with a broken signature is simply not news');
  // Genuine entries by their origins still merge.
  t.equal(s.merge([live(B, 'x.weave.local', '10.0.0.1', 2), live(C, 'c.weave.local', '10.0.0.3')], T0).length, 2);
});

t.test('expiry: tombstones after their TTL, departed peers hidden at once and dropped after the grace', async (t) => {
  const s = new DnsStore(A, testSigning(A), { tombstoneTtlMs: 1000, departedGraceMs: 5000 });
  s.setReachable(new Set([A, B, C]), T0);
  s.merge([live(B, 'b.weave.local', '10.0.0.2'), live(C, 'c.weave.local', '10.0.0.3'), dead(B, 'gone.weave.local', '10.0.0.4', 2, T0)], T0);
  t.equal(s.size, 3);
  t.same(s.tick(T0 + 999), []);
  t.same(s.tick(T0 + 1000).map((e) => e.name), ['gone.weave.local'], 'the removal is forgotten after its TTL');
  t.same(s.merge([dead(B, 'gone.weave.local', '10.0.0.4', 2, T0)], T0 + 1000), [], 'and an expired removal is not taken back');

  s.setReachable(new Set([A, B]), T0 + 2000);
  t.same(s.lookup('c.weave.local'), [], "an unreachable peer's records are hidden at once");
  t.equal(s.size, 2, 'but kept for a while');
  s.setReachable(new Set([A, B, C]), T0 + 3000);
  t.same(s.lookup('c.weave.local'), ['10.0.0.3'], 'back when it is');
  s.setReachable(new Set([A, B]), T0 + 4000);
  t.same(s.tick(T0 + 8999), []);
  t.same(s.tick(T0 + 9000).map((e) => e.name), ['c.weave.local'], 'dropped after the grace period');
  t.equal(s.counters.departedDropped, 1);
  t.same(s.merge([live(C, 'c.weave.local', '10.0.0.3')], T0 + 9500), [], 'copies gossiped by others are not taken back');
  t.equal(s.size, 1);
  s.setReachable(new Set([A, B, C]), T0 + 10_000);
  t.equal(s.merge([live(C, 'c.weave.local', '10.0.0.3')], T0 + 10_000).length, 1, 'once the peer is back, its records are welcome');
});

t.test('names below a name, reverse, and dedup across containers', async (t) => {
  const s = new DnsStore(A, testSigning(A));
  s.register('netns:c1', 'a.b.weave.local', '10.0.0.1', T0);
  s.register('netns:c2', 'a.b.weave.local', '10.0.0.1', T0);
  t.same(s.lookup('a.b.weave.local'), ['10.0.0.1'], 'one address once');
  t.ok(s.hasNamesBelow('b.weave.local'));
  t.notOk(s.hasNamesBelow('a.b.weave.local'));
  s.unregister({ containerId: 'netns:c1' }, T0);
  t.same(s.lookup('a.b.weave.local'), ['10.0.0.1'], "still c2's");
});

/** Random histories: three origins make changes; two replicas get every update in different orders and duplicated. */
t.test('CRDT: commutative, associative, idempotent on random histories', async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const rng = new SeededRng(seed);
    const origins = [A, B, C].map((p) => new DnsStore(p, testSigning(p)));
    const updates: DnsEntry[][] = [];
    for (let step = 0; step < 60; step++) {
      const o = origins[randomInt(rng, 3)]!;
      const name = `n${randomInt(rng, 4)}.weave.local`;
      const addr = `10.0.0.${randomInt(rng, 4) + 1}`;
      const cid = `netns:c${randomInt(rng, 2)}`;
      const d = randomInt(rng, 3) === 0 ? o.unregister({ containerId: cid, name }, T0 + step) : o.register(cid, name, addr, T0 + step);
      if (d.length > 0) updates.push(d);
    }
    const observer = (order: DnsEntry[][]): string[] => {
      const s = new DnsStore('02:00:00:00:00:09' as PeerName, testSigning('02:00:00:00:00:09' as PeerName));
      for (const u of order) s.merge(u, T0 + 100);
      return view(s);
    };
    const shuffled = (): DnsEntry[][] => {
      const copy = [...updates, ...updates.filter(() => randomInt(rng, 4) === 0)];
      for (let i = copy.length - 1; i > 0; i--) {
        const j = randomInt(rng, i + 1);
        [copy[i], copy[j]] = [copy[j]!, copy[i]!];
      }
      return copy;
    };
    // Grouping: fold some updates together first (associativity of the batch merge).
    const grouped = (): DnsEntry[][] => {
      const s = shuffled();
      const out: DnsEntry[][] = [];
      for (let i = 0; i < s.length; i += 3) out.push(s.slice(i, i + 3).flat());
      return out;
    };
    const ref = observer(updates);
    const a = observer(shuffled());
    const b = observer(grouped());
    if (a.join('\n') !== ref.join('\n') || b.join('\n') !== ref.join('\n')) {
      t.fail(`seed ${seed}: replicas diverge`);
      t.same(a, ref);
      t.same(b, ref);
      return;
    }
    // And the origins' own view of their live records matches what observers see as live.
    const liveAtObserver = ref.filter((l) => !l.includes('dead@')).sort();
    const liveAtOrigins = origins.flatMap((o) => o.localRecords()).map((e) => `${e.origin} ${e.containerId} ${e.name} ${e.address} v${e.version}`).sort();
    if (liveAtObserver.join('\n') !== liveAtOrigins.join('\n')) {
      t.fail(`seed ${seed}: observer and origins disagree`);
      return;
    }
  }
  t.pass('40 random histories converge in every order and grouping');
});

t.test('codec: round trip, ages, limits', async (t) => {
  const entries = [
    live(A, 'web.weave.local', '10.32.0.1', 3, 'f'.repeat(64)),
    dead(B, 'db.weave.local', '2001:db8::1', 9, T0 - 30_000, 'netns:db'),
    live(C, 'x.y.weave.local', '::ffff:102:304', 1, 'weave:api'),
  ];
  const msgs = encodeEntries(entries, T0);
  t.equal(msgs.length, 1);
  t.equal(msgs[0]![0], STORE_WIRE_VERSION);
  const back = decodeEntries(msgs[0]!, T0 + 5000);
  t.same(back[0], entries[0]);
  t.same(back[2], entries[2]);
  t.equal(back[1]!.removedAtMs, T0 + 5000 - 30_000, 'the age travels, not the time');
  t.same({ ...back[1], removedAtMs: 0 }, { ...entries[1], removedAtMs: 0 });

  t.equal(encodeEntries(entries, T0, 2).length, 2, 'split by count');
  const trailing = new Uint8Array([...msgs[0]!, 1, 2, 3]);
  t.equal(decodeEntries(trailing, T0).length, 3, 'trailing bytes tolerated');
  for (const v of [1, 3]) {
    const other = msgs[0]!.slice();
    other[0] = v;
    t.throws(() => decodeEntries(other, T0), { code: 'version', message: new RegExp(`version ${v}`) });
  }
  const flags = msgs[0]!.slice();
  const firstEntry = 1 + 2 + 3 * (6 + 32) + 2;
  flags[firstEntry + 6] = 0x82;
  t.throws(() => decodeEntries(flags, T0), { code: 'decode', message: /unknown flags/ });
  const many = new Uint8Array([STORE_WIRE_VERSION, 0xff, 0xff]);
  t.throws(() => decodeEntries(many, T0), { code: 'limit' });
  const noKey = msgs[0]!.slice();
  noKey[3 + 5] = noKey[3 + 5]! ^ 0x10; // the first key's origin no longer matches its entries
  t.throws(() => decodeEntries(noKey, T0), { code: 'decode', message: /no key in the message/ });
  t.same(decodeEntries(msgs[0]!, T0).map((e) => Buffer.from(e.originKey).toString('hex')),
    entries.map((e) => Buffer.from(e.originKey).toString('hex')), 'each entry gets its origin\'s key');
  const badName = encodeEntries([live(A, 'web.weave.local', '10.32.0.1')], T0)[0]!;
  // Upper-case a letter of the name on the wire: not normal form, refused.
  const idx = Buffer.from(badName).indexOf('web');
  badName[idx] = 'W'.charCodeAt(0);
  t.throws(() => decodeEntries(badName, T0), { code: 'decode', message: /not a valid host name/ });

  // Each of these breaks one check alone (the rest of the message is whole), so it fails for that check's reason.
  const oversized = new Uint8Array(MAX_MESSAGE_BYTES + 1);
  oversized.set(msgs[0]!);
  t.throws(() => decodeEntries(oversized, T0), { code: 'limit', message: /message size/ }, 'over the size cap, though a valid message with trailing bytes');
  t.throws(() => decodeEntries(new Uint8Array([STORE_WIRE_VERSION, 0, 10]), T0), { code: 'decode', message: /claims 10 keys but only 0 bytes follow/ });
  const twoKeys = msgs[0]!.slice();
  twoKeys.copyWithin(3 + 38, 3, 3 + 6);
  t.throws(() => decodeEntries(twoKeys, T0), { code: 'decode', message: /has two keys/ }, 'the second key under the first key\'s origin');
  const family = msgs[0]!.slice();
  family[firstEntry + 6 + 1 + 2 + entries[0]!.containerId.length + 2 + entries[0]!.name.length] = 5;
  t.throws(() => decodeEntries(family, T0), { code: 'decode', message: /entry 0 has address family 5/ });
});

t.test('codec fuzz: random and mutated bytes give a DnsError, never anything else', async (t) => {
  const seed = 20240607;
  const rng = new SeededRng(seed);
  const good = encodeEntries([live(A, 'web.weave.local', '10.32.0.1'), dead(B, 'db.weave.local', '2001:db8::1', 2)], T0)[0]!;
  let errors = 0;
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = new Uint8Array(randomInt(rng, 80)).map(() => randomInt(rng, 256));
      if (bytes.length > 0 && randomInt(rng, 2) === 0) bytes[0] = STORE_WIRE_VERSION;
    } else {
      bytes = good.slice(0, randomInt(rng, good.length + 1));
      for (let k = randomInt(rng, 4); k > 0 && bytes.length > 0; k--) bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
    }
    try {
      decodeEntries(bytes, T0);
      decoded++;
    } catch (err) {
      if (!(err instanceof DnsError)) {
        t.fail(`seed ${seed} case ${i}: ${String(err)} for ${Buffer.from(bytes).toString('hex')}`);
        return;
      }
      errors++;
    }
  }
  t.ok(errors > 1000, `${errors} refused, ${decoded} decoded, no other exception`);
});
