// Bounded gossip, piece by piece: the token bucket, the per-neighbour outbox
// (a burst goes out at once, then one merged update per channel per token,
// never a queue; what a neighbour holds is remembered until it goes), and the
// topology gossiper forgetting unreachable peers as an update is applied, so
// stale gossip cannot bring them back or get them relayed.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import type { GossipData } from '../../router/mesh/gossip';
import { GOSSIP_BURST, GOSSIP_TOKEN_INTERVAL_MS, GossipOutbox, RawGossip, MAX_PENDING_RAW_MESSAGES } from '../../router/mesh/gossip-outbox';
import type { PeerConnection } from '../../router/mesh/peer';
import { peerNameFromBytes, type PeerName } from '../../router/mesh/peer-name';
import { Peers } from '../../router/mesh/peers';
import { TokenBucket } from '../../router/mesh/token-bucket';
import { TopologyGossiper, TopologyUpdate } from '../../router/mesh/topology-gossiper';
import { loadSodium } from '../../router/mesh/sodium';
import { testSigning } from './test-signing';

t.before(async () => { await loadSodium(); });

/** A set of strings; merge is union. */
class Items implements GossipData {
  constructor(readonly items: ReadonlySet<string>) {}
  encode(): Uint8Array[] { return [Buffer.from([...this.items].sort().join(','))]; }
  merge(other: GossipData): GossipData { return new Items(new Set([...this.items, ...(other as Items).items])); }
}

t.test('token bucket: a full burst, then one token per interval, capped at capacity', async (t) => {
  const b = new TokenBucket(3, 100, 1_000);
  t.ok(b.tryTake(1_000) && b.tryTake(1_000) && b.tryTake(1_000), 'a full bucket gives its capacity at once');
  t.notOk(b.tryTake(1_000), 'then it is empty');
  t.equal(b.msUntilToken(1_000), 100);
  t.equal(b.msUntilToken(1_060), 40);
  t.ok(b.tryTake(1_100), 'one interval later, one token');
  t.notOk(b.tryTake(1_150));
  t.equal(b.available(100_000), 3, 'idle time never fills it past capacity');
  t.throws(() => new TokenBucket(0, 100, 0), RangeError);
});

t.test('outbox: a burst goes out at once, the rest waits merged, one message per token', async (t) => {
  const clock = new ManualClock();
  const sent: string[] = [];
  const out = new GossipOutbox({ clock, send: (_n, ch, msg) => { sent.push(`${ch}:${Buffer.from(msg).toString()}`); return true; } });
  const n = peerNameFromBytes(Uint8Array.of(2, 0, 0, 0, 0, 1));
  for (let i = 0; i < GOSSIP_BURST + 20; i++) out.enqueue(n, 'c', new Items(new Set([`u${i}`])));
  t.equal(sent.length, GOSSIP_BURST, 'the burst is sent at once');
  t.equal(out.counters.gossipDeferred, 1, 'the next one waits');
  t.equal(out.counters.gossipCoalesced, 19, 'and the rest merge into it');
  clock.advance(GOSSIP_TOKEN_INTERVAL_MS);
  t.equal(sent.length, GOSSIP_BURST + 1, 'one token later, one message');
  t.match(sent.at(-1), /^c:u32,u33,.*u51$/, 'carrying every waiting update, merged');
  clock.advance(10 * GOSSIP_TOKEN_INTERVAL_MS);
  t.equal(sent.length, GOSSIP_BURST + 1, 'nothing more: nothing waited');

  // Another channel waits its turn beside the first, not behind a queue.
  // Ten idle intervals refilled ten tokens; spend them.
  for (let i = 0; i < 10; i++) out.enqueue(n, 'c', new Items(new Set([`f${i}`])));
  const mark = sent.length;
  out.enqueue(n, 'c', new Items(new Set(['v0'])));
  out.enqueue(n, 'd', new Items(new Set(['w'])));
  out.enqueue(n, 'c', new Items(new Set(['v1'])));
  t.same(sent.slice(mark), [], 'the bucket is empty: all three wait');
  clock.advance(GOSSIP_TOKEN_INTERVAL_MS * 2);
  t.same(sent.slice(mark), ['c:v0,v1', 'd:w'], 'one merged message per channel, in the order they started waiting');
});

t.test('outbox: raw relays keep only the newest while paced; a gone neighbour is forgotten', async (t) => {
  const clock = new ManualClock();
  let up = true;
  const sent: string[] = [];
  const out = new GossipOutbox({ clock, send: (_n, _ch, msg) => { if (up) sent.push(Buffer.from(msg).toString()); return up; } });
  const n = peerNameFromBytes(Uint8Array.of(2, 0, 0, 0, 0, 2));
  for (let i = 0; i < GOSSIP_BURST; i++) out.enqueue(n, 'x', new RawGossip([Buffer.from('burst')]));
  for (let i = 0; i < MAX_PENDING_RAW_MESSAGES + 10; i++) out.enqueue(n, 'x', new RawGossip([Buffer.from(`r${i}`)]));
  clock.advance(GOSSIP_TOKEN_INTERVAL_MS);
  t.equal(sent.length, GOSSIP_BURST + MAX_PENDING_RAW_MESSAGES, 'at most MAX_PENDING_RAW_MESSAGES waited');
  t.equal(sent.at(-1), `r${MAX_PENDING_RAW_MESSAGES + 9}`, 'the newest among them');
  t.equal(out.counters.gossipDropped, 10, 'the oldest were dropped and counted');

  out.noteSent(n, 'x', 'digest-a');
  out.noteReceived(n, 'y', 'digest-b');
  t.ok(out.holds(n, 'x', 'digest-a') && out.holds(n, 'y', 'digest-b'), 'what it was sent and what it sent are remembered');
  t.notOk(out.holds(n, 'x', 'digest-b'));
  up = false;
  for (let i = 0; i < GOSSIP_BURST + 1; i++) out.enqueue(n, 'x', new RawGossip([Buffer.from('lost')]));
  clock.advance(GOSSIP_TOKEN_INTERVAL_MS * 10);
  t.notOk(out.holds(n, 'x', 'digest-a'), 'a failed send forgets the neighbour');
  t.equal(sent.length, GOSSIP_BURST + MAX_PENDING_RAW_MESSAGES, 'nothing is retried to a gone neighbour');
});

function pn(i: number): PeerName {
  return peerNameFromBytes(Uint8Array.of(0x02, 0, 0, 0, 0, i));
}

function store(name: PeerName, conns: PeerName[]): Peers {
  const p = new Peers({ name, nickname: name, incarnation: 1 }, testSigning(name));
  p.setLocalConnections(conns.map((c): PeerConnection => ({ name: c, address: '', outbound: false, established: true })));
  return p;
}

t.test('topology: peers we cannot reach are forgotten as the update is applied, and not relayed', async (t) => {
  const [a, b, c, d] = [pn(1), pn(2), pn(3), pn(4)];
  const us = store(a, [b]);
  const changes: PeerName[][] = [];
  const g = new TopologyGossiper(us, (names) => changes.push(names));

  // c and d are connected to each other but to nobody we reach: a stale neighbour's full state.
  const stale = [store(c, [d]), store(d, [c])];
  const update = (...stores: Peers[]): Uint8Array => {
    const all = new Peers({ name: pn(99), nickname: 'x', incarnation: 1 }, testSigning(pn(99)));
    for (const s of stores) all.applyUpdate(s.encode([s.localName]));
    return all.encode(stores.map((s) => s.localName));
  };
  t.equal(g.onGossip(update(...stale)), null, 'nothing to relay');
  t.same(us.entries().map((e) => e.name), [a], 'and nothing kept');
  t.same(changes, [], 'no change reported (no route computation)');
  t.equal(g.onGossip(update(...stale)), null, 'the same stale gossip again: still nothing');

  // b lists us: reachable, kept, relayed.
  const delta = g.onGossip(update(store(b, [a])));
  t.ok(delta !== null, 'b is new and reachable');
  t.same(us.entries().map((e) => e.name), [a, b]);
  // b then connects to c: now c and d are reachable through b, and kept.
  const bc = store(b, [a, c]);
  bc.setLocalConnections([{ name: a, address: '', outbound: false, established: true }, { name: c, address: '', outbound: true, established: true }]);
  const cb = store(c, [d, b]);
  g.onGossip(update(bc, cb, store(d, [c])));
  t.same(us.entries().map((e) => e.name).sort(), [a, b, c, d].sort(), 'reachable through b: kept');
  t.equal(changes.length, 2, 'each real change reported once');
});

t.test('topology: an entry that arrives before the one connecting it is not lost', async (t) => {
  const [a, b, c] = [pn(11), pn(12), pn(13)];
  const us = store(a, [b]);
  const g = new TopologyGossiper(us, () => {});
  g.onGossip(store(b, [a]).encode([b]));
  // c's entry (listing b) comes first, over another path: unreachable, dropped, held.
  t.equal(g.onGossip(store(c, [b]).encode([c])), null, 'c alone is unreachable');
  t.same(us.entries().map((e) => e.name).sort(), [a, b].sort());
  // Then b's new entry, listing c: c is reachable now and comes back from the held update.
  const bc = store(b, [a, c]);
  const delta = g.onGossip(bc.encode([b]));
  t.same(us.entries().map((e) => e.name).sort(), [a, b, c].sort(), 'c recovered');
  t.ok(delta instanceof TopologyUpdate && [...delta.names].sort().join() === [b, c].sort().join(), 'and both relayed');
});
