import t from 'tap';
import { AddressRange, Span } from '../../ipam/address-range';
import { IpamError } from '../../ipam/errors';
import { decodeIpamMessage, decodeRing, encodeIpamMessage, encodeRing } from '../../ipam/messages';
import { Ring, RingState, usableCount } from '../../ipam/ring';
import type { PeerName } from '../../router/mesh/peer-name';
import { randomInt, Rng } from '../../common/rng';
import type { Test } from 'tap';
import { peer, rngFor, testSeed, throwsIpam } from './ipam-helpers';
import type { RingEntry, RingGuard } from '../../ipam/ring';
import { grantBytes, ringContext, stateBytes } from '../../ipam/ring-signature';
import { testKeyOf, testSigning } from './test-signing';

/** Signs as `p`; every peer counts as reachable unless `unreachable` names it. */
function testGuard(p: PeerName, unreachable: ReadonlySet<PeerName> = new Set()): RingGuard {
  return { signing: testSigning(p), isReachable: (q) => !unreachable.has(q) };
}

/** An entry as `signer` would write it, granting [token, end) to `owner`. */
function signedBy(state: RingState, signer: PeerName, e: { token: number; end: number; owner: PeerName; version: number; free: number }): RingEntry {
  const ctx = ringContext(state.range, state.seed);
  const key = testKeyOf(signer);
  const grant = { grantor: signer, grantee: e.owner, end: e.end, version: e.version, signature: key.sign(grantBytes(ctx, e.token, e.end, e.owner, e.version)) };
  const entry = { token: e.token, owner: e.owner, version: e.version, free: e.free, grant, earlier: [] };
  return { ...entry, signature: key.sign(stateBytes(ctx, entry, e.end)) };
}

/** The state with `signer`'s key added to its key table. */
function withKey(state: RingState, signer: PeerName): RingState {
  return { ...state, keys: new Map([...state.keys, [signer, testKeyOf(signer).publicKey]]) };
}

const RANGE = AddressRange.parse('10.32.0.0/12', 'range');
const OBSERVER = peer(999);

function ringOf(state: RingState, self: PeerName = OBSERVER, guard: RingGuard = testGuard(self)): Ring {
  const r = new Ring(state.range, self, guard);
  r.merge(state);
  return r;
}

function digest(r: Ring): string {
  return Buffer.from(encodeRing(r.state())).toString('hex');
}

/** Every offset belongs to exactly one entry; spans sum to the range size. */
function checkPartition(t: Test, r: Ring): void {
  const e = r.entries();
  t.equal(e[0]!.token, 0, 'first token 0');
  let total = 0;
  for (let i = 0; i < e.length; i++) {
    const s = r.spanAt(i);
    t.ok(s.start < s.end, 'non-empty span');
    total += s.end - s.start;
  }
  t.equal(total, r.range.size, 'no lost space');
}

t.test('initial split is deterministic, contiguous, and covers the range', async (t) => {
  const peers = [peer(3), peer(1), peer(2)];
  const a = Ring.initialState(RANGE, peers);
  const b = Ring.initialState(RANGE, [peer(2), peer(3), peer(1), peer(1)]);
  t.same(encodeRing(a), encodeRing(b));
  t.same(a.seed, [peer(1), peer(2), peer(3)]);
  const r = ringOf(a);
  t.equal(r.entries().length, 3);
  const spans = [peer(1), peer(2), peer(3)].map((p) => r.ownedSpans(p));
  t.same(spans.map((s) => s.length), [1, 1, 1]);
  t.equal(spans[0]![0]!.start, 0);
  t.equal(spans[2]![0]!.end, RANGE.size);
  // network and broadcast of the range are not free
  t.equal(r.entries()[0]!.free, spans[0]![0]!.end - 1);
  t.equal(r.entries()[2]!.free, RANGE.size - spans[2]![0]!.start - 1);
});

t.test('codec round trip', async (t) => {
  const r = new Ring(RANGE, peer(1), testGuard(peer(1)));
  r.seedWith([peer(1), peer(2)]);
  r.transfer({ start: 100, end: 200 }, peer(3));
  r.setFree(0, 17);
  const state = r.state();
  const back = decodeRing(encodeRing(state));
  t.same(back.entries, state.entries);
  t.same(back.seed, state.seed);
  t.ok(back.range.equals(RANGE));
  const msg = decodeIpamMessage(encodeIpamMessage({ kind: 'ring', ring: state }));
  t.equal(msg.kind, 'ring');
  if (msg.kind === 'ring') t.same(msg.ring.entries, state.entries);
});

t.test('transfer splits at the edges and bumps versions; only the owner may give', async (t) => {
  const r = new Ring(RANGE, peer(1), testGuard(peer(1)));
  r.seedWith([peer(1), peer(2)]);
  const before = r.entries()[0]!;
  r.transfer({ start: 1000, end: 2000 }, peer(3));
  const e = r.entries();
  t.same(e.map((x) => [x.token, x.owner]), [[0, peer(1)], [1000, peer(3)], [2000, peer(1)], [RANGE.size / 2, peer(2)]]);
  t.ok(e[0]!.version > before.version, 'left part bumped');
  t.equal(e[1]!.free, 1000);
  t.throws(() => r.transfer({ start: 1500, end: 1600 }, peer(4)), /not ours/);
  t.throws(() => r.transfer({ start: RANGE.size / 2, end: RANGE.size / 2 + 5 }, peer(4)), /not ours/);
  checkPartition(t, r);
});

t.test('foreign and malformed rings are refused and change nothing', async (t) => {
  const mine = new Ring(RANGE, peer(1), testGuard(peer(1)));
  mine.seedWith([peer(1), peer(2)]);
  mine.transfer({ start: 10, end: 20 }, peer(2));
  const before = digest(mine);

  const otherRange = AddressRange.parse('10.40.0.0/16', 'range');
  throwsIpam(t, () => mine.merge(Ring.initialState(otherRange, [peer(1), peer(2)])), 'foreign-range', /10\.40\.0\.0\/16/);
  throwsIpam(t, () => mine.merge(Ring.initialState(RANGE, [peer(1), peer(3)])), 'foreign-seed', /independently/);

  const good = mine.state();
  const bad = (entries: RingState['entries']): RingState => ({ ...good, entries });
  t.throws(() => mine.merge(bad([{ ...good.entries[0]!, token: 5 }, ...good.entries.slice(1)])), /first token/);
  t.throws(() => mine.merge(bad([good.entries[0]!, good.entries[2]!, good.entries[1]!])), /not increasing/);
  t.throws(() => mine.merge(bad(good.entries.map((e) => ({ ...e, free: RANGE.size })))), /claims/);
  t.throws(() => mine.merge({ ...good, seed: [peer(2), peer(1)] }), /sorted/);
  t.throws(() => mine.merge(bad([])), /empty/);

  // A peer that agrees we own [20, 2^19) but splits it anyway.
  const split = good.entries.slice();
  const ours = good.entries.findIndex((e) => e.token === 20);
  split[ours] = { ...split[ours]!, free: 0 };
  split.splice(ours + 1, 0, signedBy(good, peer(2), { token: 5000, end: good.entries[ours + 1]!.token, owner: peer(2), version: 0, free: 10 }));
  throwsIpam(t, () => mine.merge(withKey(bad(split), peer(2))), 'invalid-ring', /without our consent/);
  t.equal(digest(mine), before, 'state unchanged after every refusal');
});

t.test('an entry whose grant or state signature does not hold is refused, whichever of the two it is', async (t) => {
  // peer(2) holds [10, 20) by peer(1)'s grant; its next state is signed by peer(2) alone.
  const mine = new Ring(RANGE, peer(1), testGuard(peer(1)));
  mine.seedWith([peer(1), peer(2)]);
  mine.transfer({ start: 10, end: 20 }, peer(2));
  const before = digest(mine);
  const good = mine.state();
  const at = good.entries.findIndex((e) => e.token === 10);
  const held = good.entries[at]!;
  const ctx = ringContext(good.range, good.seed);
  const next = { ...held, version: held.version + 1, free: 3 };
  const signed = { ...next, signature: testKeyOf(peer(2)).sign(stateBytes(ctx, next, 20)) };
  const flipped = (sig: Uint8Array): Uint8Array => { const c = Uint8Array.from(sig); c[0] = c[0]! ^ 1; return c; };
  const withEntry = (e: RingEntry): RingState => withKey({ ...good, entries: good.entries.map((x, i) => (i === at ? e : x)) }, peer(2));

  const theirs = new Ring(RANGE, peer(3), testGuard(peer(3)));
  theirs.merge(withEntry(signed));
  t.equal(theirs.entries().find((e) => e.token === 10)?.free, 3, 'the honest update is taken (the cases below differ only in one signature)');
  throwsIpam(t, () => mine.merge(withEntry({ ...signed, grant: { ...signed.grant!, signature: flipped(signed.grant!.signature) } })), 'auth', /the grant is not signed by/);
  throwsIpam(t, () => mine.merge(withEntry({ ...signed, signature: flipped(signed.signature!) })), 'auth', /the state is not signed by/);
  t.equal(digest(mine), before, 'state unchanged after both refusals');
});

t.test('an entry whose earlier grant does not hold is refused', async (t) => {
  // [10, 20) went from peer(1) to peer(2), then from peer(2) to peer(3): the grants before the last are kept as earlier.
  const first = new Ring(RANGE, peer(1), testGuard(peer(1)));
  first.seedWith([peer(1), peer(2)]);
  first.transfer({ start: 10, end: 20 }, peer(2));
  const second = ringOf(first.state(), peer(2), testGuard(peer(2)));
  second.transfer({ start: 10, end: 20 }, peer(3));
  const chained = second.state();
  const at = chained.entries.findIndex((e) => e.token === 10);
  const entry = chained.entries[at]!;
  t.ok(entry.earlier.length >= 1, 'earlier grants kept');
  t.equal(digest(ringOf(chained, peer(4), testGuard(peer(4)))), digest(second), 'the honest chain is taken');
  const sig = Uint8Array.from(entry.earlier[0]!.signature);
  sig[0] = sig[0]! ^ 1;
  const forged = { ...entry, earlier: [{ ...entry.earlier[0]!, signature: sig }] };
  const fresh = new Ring(RANGE, peer(4), testGuard(peer(4)));
  throwsIpam(t, () => fresh.merge({ ...chained, entries: chained.entries.map((e, i) => (i === at ? forged : e)) }), 'auth', /earlier grant 0 is not signed by/);
  t.equal(fresh.entries().length, 0, 'nothing taken');
});

t.test('random bytes and mutations never crash the decoder and never change a ring', async (t) => {
  const seed = testSeed(20240601);
  t.comment(`seed ${seed}`);
  const rng = rngFor(seed);
  const mine = new Ring(RANGE, peer(1), testGuard(peer(1)));
  mine.seedWith([peer(1), peer(2), peer(3)]);
  mine.transfer({ start: 77, end: 900 }, peer(4));
  const valid = encodeIpamMessage({ kind: 'ring', ring: mine.state() });
  const before = digest(mine);
  let refused = 0;
  for (let i = 0; i < 3000; i++) {
    let bytes: Uint8Array;
    if (i % 3 === 0) {
      bytes = new Uint8Array(randomInt(rng, 200));
      for (let k = 0; k < bytes.length; k++) bytes[k] = randomInt(rng, 256);
      if (bytes.length > 1 && rng.next() < 0.5) { bytes[0] = 2; bytes[1] = 1 + randomInt(rng, 3); }
    } else {
      bytes = valid.slice(0, rng.next() < 0.2 ? randomInt(rng, valid.length) : valid.length);
      const flips = 1 + randomInt(rng, 4);
      for (let k = 0; k < flips && bytes.length > 0; k++) bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
    }
    try {
      const msg = decodeIpamMessage(bytes);
      if (msg.kind === 'ring') {
        const copy = ringOf(mine.state(), peer(1));
        try { copy.merge(msg.ring); } catch (err) {
          if (!(err instanceof IpamError)) throw err;
          t.equal(digest(copy), before, `refused merge left the ring unchanged (seed ${seed}, case ${i})`);
        }
      }
    } catch (err) {
      if (!(err instanceof IpamError)) { t.fail(`non-IpamError ${String(err)} (seed ${seed}, case ${i})`); return; }
      refused++;
    }
  }
  t.ok(refused > 1000, `most garbage refused (${refused})`);
  t.equal(digest(mine), before);
  t.throws(() => decodeIpamMessage(Uint8Array.of(3, 1)), /version 3/);
  t.throws(() => decodeIpamMessage(Uint8Array.of(1, 1)), /version 1, we speak 2/, 'the unsigned format 1 is refused by name');
  t.throws(() => decodeIpamMessage(Uint8Array.of(2, 9)), /unknown kind 9/);
  // A count far beyond the cap is refused before any allocation.
  const huge = new Uint8Array([2, 1, 4, 10, 32, 0, 0, 12, 0xff, 0xff]);
  throwsIpam(t, () => decodeIpamMessage(huge), 'limit');
});

// ---------------------------------------------------------------------------
// Property: random histories of splits, gifts, free reports, rmpeer and
// delayed, reordered, duplicated gossip.

interface Sim {
  rings: Ring[];
  dead: Set<number>;
  /** Who removed each dead peer. */
  takers: Map<number, number>;
  inFlight: { to: number; state: RingState }[];
  history: RingState[];
}

function randomSubSpan(rng: Rng, s: Span): Span {
  const len = s.end - s.start;
  const a = s.start + randomInt(rng, len);
  const b = a + 1 + randomInt(rng, Math.min(s.end - a, 1 + randomInt(rng, 5000)));
  return { start: a, end: Math.min(b, s.end) };
}

/** No two live peers believe they own the same offset: the invariant behind "no duplicate addresses". */
function checkExclusive(sim: Sim): string | null {
  const claimed: { peer: number; s: Span }[] = [];
  sim.rings.forEach((r, i) => {
    if (sim.dead.has(i)) return;
    for (const s of r.ownedSpans()) claimed.push({ peer: i, s });
  });
  claimed.sort((a, b) => a.s.start - b.s.start);
  for (let k = 1; k < claimed.length; k++) {
    if (claimed[k]!.s.start < claimed[k - 1]!.s.end) return `peers ${claimed[k - 1]!.peer} and ${claimed[k]!.peer} both own ${claimed[k]!.s.start}`;
  }
  return null;
}

function runHistory(seed: number, peerCount: number, steps: number): { sim: Sim; problem: string | null } {
  const rng = rngFor(seed);
  const names = Array.from({ length: peerCount }, (_, i) => peer(i));
  const initial = Ring.initialState(RANGE, names.slice(0, Math.max(1, Math.ceil(peerCount / 2))));
  // A dead peer is unreachable for everyone, so its space may be taken over.
  const dead = new Set<number>();
  const deadNames = { has: (p: PeerName): boolean => dead.has(names.indexOf(p)) } as ReadonlySet<PeerName>;
  const sim: Sim = { rings: names.map((n) => ringOf(initial, n, testGuard(n, deadNames))), dead, takers: new Map(), inFlight: [], history: [initial] };
  const live = (): number[] => names.map((_, i) => i).filter((i) => !sim.dead.has(i));
  for (let step = 0; step < steps; step++) {
    const x = live()[randomInt(rng, live().length)]!;
    const r = sim.rings[x]!;
    const roll = rng.next();
    if (roll < 0.25) {
      const owned = r.ownedSpans();
      const others = live().filter((i) => i !== x);
      if (owned.length > 0 && others.length > 0) {
        const s = randomSubSpan(rng, owned[randomInt(rng, owned.length)]!);
        r.transfer(s, names[others[randomInt(rng, others.length)]!]!);
      }
    } else if (roll < 0.35) {
      const mine = r.entries().map((e, i) => ({ e, i })).filter(({ e }) => e.owner === names[x]);
      if (mine.length > 0) {
        const { e, i } = mine[randomInt(rng, mine.length)]!;
        const s = r.spanAt(i);
        r.setFree(e.token, randomInt(rng, s.end - s.start + 1));
      }
    } else if (roll < 0.37 && live().length > 2 && sim.dead.size < peerCount / 3) {
      // A peer dies; one other peer removes it once it has heard everything the dead one said.
      const victim = live().filter((i) => i !== x)[0]!;
      sim.dead.add(victim);
      r.merge(sim.rings[victim]!.state());
      // Messages already on their way to the taker are older states, which a
      // merge folds in like any other (the delivery loop below relies on the
      // same); a refusal here is a finding, not something to skip.
      for (const m of sim.inFlight) {
        if (m.to !== x) continue;
        try {
          r.merge(m.state);
        } catch (err) {
          if (!(err instanceof IpamError)) throw err;
          return { sim, problem: `merge refused before a takeover at step ${step} (${err.code}): ${err.message}` };
        }
      }
      r.takeOver(names[victim]!);
      sim.takers.set(victim, x);
    } else {
      const to = randomInt(rng, peerCount);
      if (to !== x) sim.inFlight.push({ to, state: r.state() });
      if (rng.next() < 0.05) sim.history.push(r.state());
    }
    // Deliver some messages in random order, some twice.
    const deliveries = randomInt(rng, 3);
    for (let d = 0; d < deliveries && sim.inFlight.length > 0; d++) {
      const k = randomInt(rng, sim.inFlight.length);
      const m = sim.inFlight[k]!;
      if (rng.next() < 0.8) sim.inFlight.splice(k, 1);
      if (sim.dead.has(m.to)) continue;
      try {
        sim.rings[m.to]!.merge(m.state);
      } catch (err) {
        return { sim, problem: `merge refused at step ${step}: ${String(err)}` };
      }
    }
    const p = checkExclusive(sim);
    if (p !== null) return { sim, problem: `step ${step}: ${p}` };
  }
  // Deliver the rest, then anti-entropy until quiet.
  for (const m of sim.inFlight) if (!sim.dead.has(m.to)) sim.rings[m.to]!.merge(m.state);
  const antiEntropy = (): void => {
    for (let round = 0; round < peerCount + 2; round++) {
      for (const a of live()) for (const b of live()) sim.rings[b]!.merge(sim.rings[a]!.state());
    }
  };
  antiEntropy();
  // Space given to a peer just before it died (by someone who had not heard
  // yet) reaches the ring after the takeover: rmpeer once more, as an admin would.
  let again = false;
  for (const [victim, taker] of sim.takers) {
    if (sim.dead.has(taker)) continue;
    if (sim.rings[taker]!.takeOver(names[victim]!) > 0) again = true;
  }
  if (again) antiEntropy();
  return { sim, problem: checkExclusive(sim) };
}

t.test('property: random histories converge to one ring, exclusive ownership, no lost space', async (t) => {
  const base = testSeed(7);
  for (let run = 0; run < 40; run++) {
    const seed = base + run;
    const { sim, problem } = runHistory(seed, 3 + (run % 6), 400);
    if (problem !== null) { t.fail(`seed ${seed}: ${problem}`); continue; }
    const live = sim.rings.filter((_, i) => !sim.dead.has(i));
    const d0 = digest(live[0]!);
    if (!live.every((r) => digest(r) === d0)) { t.fail(`seed ${seed}: rings differ after anti-entropy`); continue; }
    const owners = new Set(live[0]!.entries().map((e) => e.owner));
    for (const [dead, taker] of sim.takers) if (!sim.dead.has(taker) && owners.has(peer(dead))) t.fail(`seed ${seed}: dead peer ${dead} still owns space`);
    let total = 0;
    for (let i = 0; i < live[0]!.entries().length; i++) { const s = live[0]!.spanAt(i); total += s.end - s.start; }
    if (total !== RANGE.size) t.fail(`seed ${seed}: space lost`);
  }
  t.comment(`seeds ${base}..${base + 39}`);
  t.pass('all runs converged');
});

t.test('property: merge is commutative, associative and idempotent', async (t) => {
  const seed = testSeed(99);
  t.comment(`seed ${seed}`);
  const { sim } = runHistory(seed, 6, 600);
  const states = [...sim.history, ...sim.rings.map((r) => r.state())];
  const rng = rngFor(seed);
  // The observer, like every peer, cannot reach the dead: their space may be taken over.
  const dead = new Set([...sim.dead].map((i) => peer(i)));
  const merged = (...xs: RingState[]): string => {
    const r = new Ring(RANGE, OBSERVER, testGuard(OBSERVER, dead));
    for (const x of xs) r.merge(x);
    return digest(r);
  };
  for (let i = 0; i < 200; i++) {
    const a = states[randomInt(rng, states.length)]!;
    const b = states[randomInt(rng, states.length)]!;
    const c = states[randomInt(rng, states.length)]!;
    if (merged(a, b) !== merged(b, a)) { t.fail(`not commutative (seed ${seed}, case ${i})`); return; }
    if (merged(a, a) !== merged(a)) { t.fail(`not idempotent (seed ${seed}, case ${i})`); return; }
    if (merged(a, b, c) !== merged(c, b, a) || merged(a, b, c) !== merged(b, c, a)) { t.fail(`not associative (seed ${seed}, case ${i})`); return; }
  }
  t.pass('200 random triples');
});

t.test('usable count excludes the range network and broadcast addresses', async (t) => {
  t.equal(usableCount(RANGE, { start: 0, end: 10 }), 9);
  t.equal(usableCount(RANGE, { start: 10, end: 20 }), 10);
  t.equal(usableCount(RANGE, { start: RANGE.size - 10, end: RANGE.size }), 9);
  t.equal(usableCount(RANGE, { start: 0, end: RANGE.size }), RANGE.size - 2);
});
