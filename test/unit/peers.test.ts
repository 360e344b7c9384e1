import t from 'tap';
import { MeshWriter } from '../../router/mesh/peer-name';
import { RouterError } from '../../router/mesh/errors';
import type { PeerConnection, PeerEntry } from '../../router/mesh/peer';
import { comparePeerEntries } from '../../router/mesh/peer';
import type { PeerName } from '../../router/mesh/peer-name';
import { peerNameFromBytes } from '../../router/mesh/peer-name';
import { MAX_PEERS, Peers, decodeTopologyUpdate, topologySigningBytes } from '../../router/mesh/peers';
import { testKeyOf, testSigning } from './test-signing';
import type { Rng } from '../../common/rng';
import { SeededRng, randomInt, sample } from '../../common/rng';

function pn(i: number): PeerName {
  return peerNameFromBytes(Uint8Array.of(0x02, 0, 0, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff));
}

function conn(name: PeerName, established = true, outbound = false, address = ''): PeerConnection {
  return { name, address, outbound, established };
}

/** A store for `name` whose local entry has the given connections, bumped to at least `version`. */
function peerAt(name: PeerName, incarnation: number, conns: PeerConnection[], version = 0, nickname = 'n'): Peers {
  const p = new Peers({ name, nickname, incarnation }, testSigning(name));
  p.setLocalConnections(conns);
  // Alternate an extra connection on and off to reach the wanted version, ending on `conns`.
  const filler = conn(pn(0xfffffe), false);
  while (p.local().version < version - 1) {
    p.setLocalConnections([...conns, filler]);
    if (p.local().version < version - 1) p.setLocalConnections(conns);
  }
  if (p.local().version < version) {
    p.setLocalConnections([...conns, filler]);
    p.setLocalConnections(conns);
  }
  return p;
}

/** Encoded local entry of a peer: what that peer would gossip about itself. */
function ownUpdate(name: PeerName, incarnation: number, conns: PeerConnection[], version = 0): Uint8Array {
  const p = peerAt(name, incarnation, conns, version);
  return p.encode([name]);
}

function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  return sample(rng, items, items.length);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof RouterError ? err.code : `non-RouterError: ${String(err)}`;
  }
  return 'no error';
}

/** A set of updates from many peers: successive versions, restarts, stale runs, relayed subsets and a forged tie. */
function randomUpdates(rng: Rng, peerCount: number): Uint8Array[] {
  const names = Array.from({ length: peerCount }, (_, i) => pn(i + 1));
  const updates: Uint8Array[] = [];
  const stores: Peers[] = [];
  for (const name of names) {
    const runs = 1 + randomInt(rng, 2);
    for (let run = 0; run < runs; run++) {
      const p = new Peers({ name, nickname: `nick-${run}`, incarnation: 100 + run * 7 + randomInt(rng, 5) }, testSigning(name));
      const steps = 1 + randomInt(rng, 5);
      for (let s = 0; s < steps; s++) {
        const others = sample(rng, names.filter((n) => n !== name), randomInt(rng, 5));
        p.setLocalConnections(others.map((o) => conn(o, rng.next() < 0.8, rng.next() < 0.5, rng.next() < 0.5 ? `10.0.0.${randomInt(rng, 255)}:6783` : '')));
        updates.push(p.encode());
      }
      stores.push(p);
    }
  }
  // Two different entries claiming the same (incarnation, version): only the content tie-break orders them.
  const forged = names[0]!;
  updates.push(peerAt(forged, 5000, [conn(names[1]!)], 3).encode());
  updates.push(peerAt(forged, 5000, [conn(names[2]!, false)], 3).encode());
  // Relays: a store that merged a random subset, passing on everything it knows except itself.
  for (let r = 0; r < 4; r++) {
    const relay = new Peers({ name: pn(0xaa0000 + r), nickname: 'relay', incarnation: 1 }, testSigning(pn(0xaa0000 + r)));
    for (const u of sample(rng, updates, randomInt(rng, updates.length))) relay.applyUpdate(u);
    updates.push(relay.encode(relay.entries().map((e) => e.name).filter((n) => n !== relay.localName)));
  }
  return updates;
}

t.test('merge is commutative, associative and idempotent, and keeps the greatest entry per peer', async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new SeededRng(seed);
    const updates = randomUpdates(rng, 3 + randomInt(rng, 10));
    const observer = (): Peers => new Peers({ name: pn(0xbb0000), nickname: 'observer', incarnation: 1 }, testSigning(pn(0xbb0000)));

    const reference = observer();
    for (const u of updates) reference.applyUpdate(u);
    const want = hex(reference.encode());

    // Differential: the winner per name is the maximum under comparePeerEntries of everything seen.
    const best = new Map<PeerName, PeerEntry>();
    for (const u of updates) {
      for (const e of decodeTopologyUpdate(u)) {
        const prev = best.get(e.name);
        if (prev === undefined || comparePeerEntries(e, prev) > 0) best.set(e.name, e);
      }
    }
    t.equal(reference.size(), best.size + 1, `seed ${seed}: every peer known`);
    let mismatched = 0;
    for (const [name, e] of best) if (comparePeerEntries(reference.get(name)!, e) !== 0) mismatched++;
    t.equal(mismatched, 0, `seed ${seed}: greatest entry wins for every peer`);

    // Commutative: any order gives the same state.
    for (let k = 0; k < 5; k++) {
      const s = observer();
      for (const u of shuffled(rng, updates)) s.applyUpdate(u);
      t.equal(hex(s.encode()), want, `seed ${seed}: order ${k} converges`);
    }

    // Associative: merging groups first, then the groups' results, gives the same state.
    const groups: Uint8Array[][] = [[], [], []];
    for (const u of shuffled(rng, updates)) groups[randomInt(rng, groups.length)]!.push(u);
    const s = observer();
    for (const group of groups) {
      const mid = new Peers({ name: pn(0xcc0000), nickname: 'mid', incarnation: 1 }, testSigning(pn(0xcc0000)));
      for (const u of group) mid.applyUpdate(u);
      s.applyUpdate(mid.encode(mid.entries().map((e) => e.name).filter((n) => n !== mid.localName)));
    }
    t.equal(hex(s.encode()), want, `seed ${seed}: grouped merge converges`);

    // Idempotent: applying everything again changes nothing and reports nothing new.
    let reported = 0;
    for (const u of updates) reported += reference.applyUpdate(u).length;
    t.equal(reported, 0, `seed ${seed}: nothing new the second time`);
    t.equal(hex(reference.encode()), want, `seed ${seed}: state unchanged the second time`);

    // Relaying only the deltas converges too: the delta is exactly what was new.
    const downstream = observer();
    const upstream = observer();
    for (const u of shuffled(rng, updates)) {
      const delta = upstream.applyUpdate(u);
      if (delta.length > 0) downstream.applyUpdate(upstream.encode(delta));
    }
    t.equal(hex(downstream.encode()), want, `seed ${seed}: relaying deltas converges`);
  }
});

t.test('encode and decode round-trip; encode(names) picks only known names', async (t) => {
  const a = pn(1), b = pn(2), c = pn(3);
  const s = new Peers({ name: a, nickname: 'héllo', incarnation: 2 ** 53 - 1 }, testSigning(a));
  s.setLocalConnections([conn(c, true, true, '[fe80::1%eth0]:6783'), conn(b, false, false, 'host.example:1')]);
  s.applyUpdate(ownUpdate(b, 7, [conn(a)], 4));
  const decoded = decodeTopologyUpdate(s.encode());
  t.same(decoded, s.entries().map((e) => ({ ...e, connections: e.connections.map((x) => ({ ...x })) })));
  t.same(s.local().connections.map((x) => x.name), [b, c], 'connections kept in canonical order');
  t.same(decodeTopologyUpdate(s.encode([c, b, pn(99), b])).map((e) => e.name), [b], 'unknown skipped, duplicates once');
  t.same(decodeTopologyUpdate(s.encode([])), []);
  t.ok(Object.isFrozen(s.local()) && Object.isFrozen(s.local().connections), 'entries handed out are frozen');
});

t.test('a restarted peer (higher incarnation) replaces its old run; a lower incarnation does not', async (t) => {
  const s = new Peers({ name: pn(1), nickname: 'me', incarnation: 1 }, testSigning(pn(1)));
  const x = pn(2);
  t.same(s.applyUpdate(ownUpdate(x, 5, [conn(pn(1))], 50)), [x]);
  t.equal(s.get(x)!.version, 50);
  t.same(s.applyUpdate(ownUpdate(x, 6, [], 1)), [x], 'new incarnation at version 1 wins over version 50');
  t.same([s.get(x)!.incarnation, s.get(x)!.version], [6, 1]);
  t.same(s.applyUpdate(ownUpdate(x, 5, [conn(pn(1))], 50)), [], 'the old run is stale');
  t.same(s.applyUpdate(ownUpdate(x, 4, [], 100)), [], 'an older run with a higher version is stale');
  t.same([s.get(x)!.incarnation, s.get(x)!.version], [6, 1]);
  t.same(s.applyUpdate(ownUpdate(x, 6, [conn(pn(3))], 2)), [x], 'a newer version of the current run wins');
});

t.test('our own name: collisions detected, stale and echoed entries ignored, our entry never replaced', async (t) => {
  const me = pn(1), other = pn(2);
  const s = new Peers({ name: me, nickname: 'me', incarnation: 10 }, testSigning(me));
  s.setLocalConnections([conn(other)]);
  s.setLocalConnections([conn(other, true, true)]); // version 3
  const before = hex(s.encode());
  const local = s.local();

  // Carries a genuinely new peer alongside the collision: nothing of it may land.
  const withNew = (ownBytes: Uint8Array): Uint8Array => {
    const m = new Peers({ name: pn(0xcc), nickname: 'relay', incarnation: 1 }, testSigning(pn(0xcc)));
    m.applyUpdate(ownBytes);
    m.applyUpdate(ownUpdate(pn(7), 1, []));
    return m.encode([me, pn(7)]);
  };
  t.equal(codeOf(() => s.applyUpdate(withNew(ownUpdate(me, 11, [], 1)))), 'name-collision', 'newer incarnation of our name');
  t.equal(codeOf(() => s.applyUpdate(withNew(ownUpdate(me, 10, [conn(other, true, true)], 4)))), 'name-collision', 'our incarnation at a version we never reached');
  t.equal(codeOf(() => s.applyUpdate(withNew(ownUpdate(me, 10, [conn(pn(9))], 3)))), 'name-collision', 'our incarnation and version, other content');
  t.equal(hex(s.encode()), before, 'rejected updates left the store untouched');
  t.equal(s.get(pn(7)), undefined);

  t.same(s.applyUpdate(withNew(ownUpdate(me, 9, [conn(pn(9))], 80))), [pn(7)], 'older incarnation of our name ignored, the rest applied');
  t.same(s.applyUpdate(ownUpdate(me, 10, [conn(other)], 2)), [], 'an older version of our own entry echoed back');
  t.same(s.applyUpdate(s.encode([me])), [], 'our current entry echoed back');
  t.equal(s.local(), local, 'local entry is the same object');
  t.equal(s.get(me), local);
  t.same(s.local().connections, [conn(other, true, true)]);
});

t.test('setLocalConnections bumps the version only on a real change', async (t) => {
  const a = pn(1), b = pn(2), c = pn(3);
  const s = new Peers({ name: a, nickname: 'a', incarnation: 1 }, testSigning(a));
  t.equal(s.local().version, 1);
  t.equal(s.setLocalConnections([]), false);
  t.equal(s.setLocalConnections([conn(b), conn(c, false)]), true);
  t.equal(s.local().version, 2);
  t.equal(s.setLocalConnections([conn(c, false), conn(b)]), false, 'order does not count');
  t.equal(s.setLocalConnections([conn(c, true), conn(b)]), true, 'established flag counts');
  t.equal(s.setLocalConnections([conn(c, true, true), conn(b)]), true, 'outbound flag counts');
  t.equal(s.setLocalConnections([conn(c, true, true), conn(b, true, false, '1.2.3.4:6783')]), true, 'address counts');
  t.equal(s.local().version, 5);
  t.equal(s.setLocalConnections([conn(b, true, false, '1.2.3.4:6783'), conn(c, true, true)]), false);
  t.equal(s.setLocalConnections([conn(b, true, false, '1.2.3.4:6783')]), true, 'removal counts');
  t.equal(s.local().version, 6);

  t.equal(codeOf(() => s.setLocalConnections([conn(a)])), 'self-connection');
  t.equal(codeOf(() => s.setLocalConnections([conn(b), conn(b, false)])), 'duplicate-connection');
  t.equal(codeOf(() => s.setLocalConnections([conn(b, true, false, 'x'.repeat(263))])), 'config');
  t.equal(s.local().version, 6, 'refused lists change nothing');
  t.equal(codeOf(() => new Peers({ name: a, nickname: 'x'.repeat(65), incarnation: 1 }, testSigning(a))), 'config');
  t.equal(codeOf(() => new Peers({ name: a, nickname: 'a', incarnation: 2 ** 53 }, testSigning(a))), 'config');
});

/** Naive reachability over symmetric established edges, for the differential check. */
function naiveReachable(entries: PeerEntry[], from: PeerName): Set<PeerName> {
  const lists = (x: PeerEntry, y: PeerName): boolean => x.connections.some((c) => c.name === y && c.established);
  const seen = new Set<PeerName>([from]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const x of entries) {
      if (!seen.has(x.name)) continue;
      for (const y of entries) {
        if (!seen.has(y.name) && lists(x, y.name) && lists(y, x.name)) { seen.add(y.name); grew = true; }
      }
    }
  }
  return seen;
}

t.test('garbageCollect removes exactly the unreachable peers', async (t) => {
  const [a, b, c, d, e, f] = [1, 2, 3, 4, 5, 6].map(pn) as [PeerName, PeerName, PeerName, PeerName, PeerName, PeerName];
  const s = new Peers({ name: a, nickname: 'a', incarnation: 1 }, testSigning(a));
  s.setLocalConnections([conn(b), conn(d)]);
  s.applyUpdate(ownUpdate(b, 1, [conn(a), conn(c), conn(f)]));
  s.applyUpdate(ownUpdate(c, 1, [conn(b)]));
  s.applyUpdate(ownUpdate(d, 1, [conn(e)]));           // a lists d, d does not list a: one-sided
  s.applyUpdate(ownUpdate(e, 1, [conn(d)]));           // symmetric with d, but d is cut off
  s.applyUpdate(ownUpdate(f, 1, [conn(b, false)]));    // lists b, but not established
  t.same([...s.reachable()].sort(), [a, b, c]);
  t.same(s.garbageCollect(), [d, e, f]);
  t.same(s.entries().map((x) => x.name), [a, b, c]);
  t.same(s.garbageCollect(), [], 'nothing left to collect');

  const alone = new Peers({ name: a, nickname: 'a', incarnation: 1 }, testSigning(a));
  alone.applyUpdate(ownUpdate(b, 1, [conn(a)]));
  t.same(alone.garbageCollect(), [b], 'we never keep a peer just because it lists us');
  t.same(alone.entries().map((x) => x.name), [a], 'and never remove ourselves');

  for (let seed = 1; seed <= 30; seed++) {
    const rng = new SeededRng(seed);
    const n = 2 + randomInt(rng, 25);
    const names = Array.from({ length: n }, (_, i) => pn(i + 1));
    const store = new Peers({ name: names[0]!, nickname: 'me', incarnation: 1 }, testSigning(names[0]!));
    const pick = (self: PeerName): PeerConnection[] =>
      sample(rng, names.filter((x) => x !== self), randomInt(rng, 4)).map((x) => conn(x, rng.next() < 0.8));
    store.setLocalConnections(pick(names[0]!));
    for (const x of names.slice(1)) store.applyUpdate(ownUpdate(x, 1, pick(x)));
    const all = store.entries();
    const keep = naiveReachable(all, names[0]!);
    const wantRemoved = all.map((x) => x.name).filter((x) => !keep.has(x));
    t.same([...store.reachable()].sort(), [...keep].sort(), `seed ${seed}: reachable`);
    t.same(store.garbageCollect(), wantRemoved, `seed ${seed}: removed`);
    t.same(store.entries().map((x) => x.name), [...keep].sort(), `seed ${seed}: kept`);
  }
});

/** A store with a varied topology to aim hostile input at. */
function richStore(): Peers {
  const s = new Peers({ name: pn(1), nickname: 'local', incarnation: 3 }, testSigning(pn(1)));
  s.setLocalConnections([conn(pn(2), true, true, '10.0.0.2:6783'), conn(pn(3))]);
  s.applyUpdate(ownUpdate(pn(2), 4, [conn(pn(1), true, false, '10.0.0.1:6783'), conn(pn(4), false)], 3));
  s.applyUpdate(ownUpdate(pn(3), 1, [conn(pn(1))]));
  return s;
}

/** A valid update with several entries and connections, none of them ours. */
function richUpdate(): Uint8Array {
  const m = new Peers({ name: pn(0x77), nickname: 'm', incarnation: 1 }, testSigning(pn(0x77)));
  m.applyUpdate(ownUpdate(pn(2), 4, [conn(pn(1)), conn(pn(4), true, true, 'ünïcode.example:6783')], 9));
  m.applyUpdate(ownUpdate(pn(4), 2, [conn(pn(2)), conn(pn(5), false, false, '[::1]:6783')], 2));
  m.applyUpdate(ownUpdate(pn(5), 8, [conn(pn(4))], 1));
  return m.encode([pn(2), pn(4), pn(5)]);
}

t.test('hostile input: random and mutated bytes throw only RouterError and leave state unchanged', async (t) => {
  const s = richStore();
  const valid = richUpdate();
  const failures: string[] = [];
  let rejected = 0;
  let accepted = 0;
  const attempt = (seed: number, kind: string, bytes: Uint8Array): void => {
    const before = hex(s.encode());
    try {
      s.applyUpdate(bytes);
      accepted++;
    } catch (err) {
      rejected++;
      if (!(err instanceof RouterError) || !['decode', 'limit', 'name-collision', 'auth'].includes(err.code)) {
        failures.push(`${kind} seed ${seed}: threw ${String(err)}`);
      } else if (hex(s.encode()) !== before) {
        failures.push(`${kind} seed ${seed}: rejected (${err.code}) but state changed`);
      }
    }
  };
  for (let seed = 1; seed <= 2000; seed++) {
    const rng = new SeededRng(seed);
    const bytes = new Uint8Array(randomInt(rng, 160));
    for (let i = 0; i < bytes.length; i++) bytes[i] = randomInt(rng, 256);
    // Mostly a valid header with small counts, so decoding gets past the first bytes.
    if (bytes.length >= 3 && rng.next() < 0.8) { bytes[0] = 2; bytes[1] = 0; bytes[2] = randomInt(rng, 4); }
    attempt(seed, 'random', bytes);
  }
  for (let seed = 1; seed <= 2000; seed++) {
    const rng = new SeededRng(100000 + seed);
    const bytes = valid.slice();
    const flips = 1 + randomInt(rng, 3);
    for (let i = 0; i < flips; i++) bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
    attempt(100000 + seed, 'mutated', bytes);
  }
  t.same(failures, [], 'every rejection was a RouterError with state untouched (seeds listed on failure)');
  t.ok(rejected > 2000, `most hostile inputs rejected (${rejected} rejected, ${accepted} accepted)`);
});

t.test('every truncation of a valid update is refused with the store untouched', async (t) => {
  const s = richStore();
  const valid = richUpdate();
  const before = hex(s.encode());
  const wrong: number[] = [];
  for (let len = 0; len < valid.length; len++) {
    if (codeOf(() => s.applyUpdate(valid.subarray(0, len))) !== 'decode' || hex(s.encode()) !== before) wrong.push(len);
  }
  t.same(wrong, [], `all ${valid.length} truncations refused as 'decode'`);
  t.same(s.applyUpdate(valid), [pn(2), pn(4), pn(5)], 'the whole update applies');
  const withTrailer = new Uint8Array(valid.length + 3);
  withTrailer.set(valid);
  t.same(richStore().applyUpdate(withTrailer), [pn(2), pn(4), pn(5)], 'trailing bytes are tolerated');
});

t.test('malformed and over-limit updates are refused before anything is allocated or applied', async (t) => {
  const s = richStore();
  const before = hex(s.encode());
  const header = (fmt: number, count: number): MeshWriter => new MeshWriter().u8(fmt).u16(count);
  // An entry up to its connections; connBytes adds those, sig() ends it (64 zero bytes: decoding never looks at them).
  const entry = (w: MeshWriter, name: PeerName, opts: { nick?: Uint8Array; inc?: number; conns?: number } = {}): MeshWriter => {
    w.peerName(name).bytes(new Uint8Array(32)).varBytes(opts.nick ?? new Uint8Array(1)).u53(opts.inc ?? 1).u53(1).u16(opts.conns ?? 0);
    return opts.conns ? w : sig(w);
  };
  const sig = (w: MeshWriter): MeshWriter => w.bytes(new Uint8Array(64));
  const connBytes = (w: MeshWriter, name: PeerName, flags = 2, address = new Uint8Array(0)): MeshWriter =>
    w.peerName(name).varBytes(address).u8(flags);
  /** A genuinely signed entry with no connections, as its owner would write it. */
  const signedEntry = (w: MeshWriter, name: PeerName): MeshWriter => {
    const key = testKeyOf(name);
    const e = { name, nickname: 'x', incarnation: 1, version: 1, connections: [] };
    w.peerName(name).bytes(key.publicKey).string('x').u53(1).u53(1).u16(0);
    return w.bytes(key.sign(topologySigningBytes(e, key.publicKey)));
  };

  t.equal(codeOf(() => s.applyUpdate(header(2, MAX_PEERS + 1).finish())), 'limit', 'entry count over the cap, with no entries following');
  t.equal(codeOf(() => s.applyUpdate(header(2, 0xffff).finish())), 'limit');
  t.equal(codeOf(() => s.applyUpdate(header(2, MAX_PEERS).finish())), 'decode', 'a count the bytes cannot hold');
  t.equal(codeOf(() => s.applyUpdate(sig(entry(header(2, 1), pn(9), { conns: 1025 })).finish())), 'limit', 'connection count over the cap');
  t.equal(codeOf(() => s.applyUpdate(entry(header(2, 1), pn(9), { conns: 1024 }).finish())), 'decode', 'connection count the bytes cannot hold');
  t.equal(codeOf(() => s.applyUpdate(entry(header(2, 1), pn(9), { nick: new Uint8Array(65) }).finish())), 'limit', 'nickname too long');
  t.equal(codeOf(() => s.applyUpdate(sig(connBytes(entry(header(2, 1), pn(9), { conns: 1 }), pn(8), 2, new Uint8Array(263))).finish())), 'limit', 'address too long');
  t.equal(codeOf(() => s.applyUpdate(entry(header(2, 1), pn(9), { nick: Uint8Array.of(0xff) }).finish())), 'decode', 'nickname not UTF-8');
  t.equal(codeOf(() => s.applyUpdate(entry(header(2, 1), pn(9)).finish())), 'auth', 'a well-formed entry without a valid signature');

  for (const fmt of [1, 3]) {
    let msg = '';
    try { s.applyUpdate(entry(header(fmt, 1), pn(9)).finish()); } catch (err) { msg = err instanceof RouterError ? `${err.code}: ${err.message}` : String(err); }
    t.match(msg, new RegExp(`^decode: .*format version ${fmt}`), `format version ${fmt} is refused by name`);
  }

  const dup = entry(entry(header(2, 2), pn(9)), pn(9)).finish();
  t.equal(codeOf(() => s.applyUpdate(dup)), 'decode', 'duplicate entry names');
  t.equal(codeOf(() => s.applyUpdate(sig(connBytes(entry(header(2, 1), pn(9), { conns: 1 }), pn(9))).finish())), 'decode', 'connection to itself');
  t.equal(codeOf(() => s.applyUpdate(sig(connBytes(connBytes(entry(header(2, 1), pn(9), { conns: 2 }), pn(8)), pn(8))).finish())), 'decode', 'the same connection twice');
  t.equal(codeOf(() => s.applyUpdate(sig(connBytes(entry(header(2, 1), pn(9), { conns: 1 }), pn(8), 4)).finish())), 'decode', 'unknown flag bits');
  const bigInc = header(2, 1).peerName(pn(9)).bytes(new Uint8Array(32)).varBytes(new Uint8Array(0)).u32(0x200000).u32(0).u53(1).u16(0).finish();
  t.equal(codeOf(() => s.applyUpdate(bigInc)), 'decode', 'incarnation at 2^53');

  // A late bad entry must not let the good ones before it land.
  const lateBad = sig(connBytes(entry(signedEntry(header(2, 2), pn(9)), pn(10), { conns: 1 }), pn(10))).finish();
  t.equal(codeOf(() => s.applyUpdate(lateBad)), 'decode');
  const lateForged = entry(signedEntry(header(2, 2), pn(9)), pn(10)).finish();
  t.equal(codeOf(() => s.applyUpdate(lateForged)), 'auth', 'a forged entry after a genuine one');
  t.equal(hex(s.encode()), before, 'nothing applied from any refused update');
  t.equal(s.applyUpdate(signedEntry(header(2, 1), pn(9)).finish()).length, 1, 'the genuine entry alone applies');

  // The store itself holds at most MAX_PEERS, so its own encoding always decodes.
  const big = richStore();
  const bigBefore = hex(big.encode());
  const many = header(2, MAX_PEERS);
  for (let i = 0; i < MAX_PEERS; i++) entry(many, pn(0x100000 + i));
  t.equal(codeOf(() => big.applyUpdate(many.finish())), 'limit', 'more peers in total than the store holds, refused before any verification');
  t.equal(hex(big.encode()), bigBefore);
  const fits = header(2, MAX_PEERS - 1);
  for (let i = 1; i < MAX_PEERS; i++) signedEntry(fits, pn(0x100000 + i));
  const fresh = new Peers({ name: pn(0x100000), nickname: 'x', incarnation: 1 }, testSigning(pn(0x100000)));
  t.equal(fresh.applyUpdate(fits.finish()).length, MAX_PEERS - 1, 'exactly MAX_PEERS including us fits');
  t.equal(decodeTopologyUpdate(fresh.encode()).length, MAX_PEERS);
});
