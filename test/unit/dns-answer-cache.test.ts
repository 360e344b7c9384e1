// The answer cache (dns/answer-cache.ts) behind DnsService.resolve: a hit
// gives exactly the reply the query core would (id rewritten, the client's
// case echoed in the question and the answers, TTLs as configured, round robin
// kept), a miss computes it, every kind of store change invalidates (local add
// and removal, a peer's record and removal by gossip, reachability, expiry),
// and the cache stays within its bound and never keeps what it must not
// (truncated replies, forwards, header-only errors).

import * as packet from 'dns-packet';
import t from 'tap';
import { ManualClock } from '../../common/clock';
import { SeededRng } from '../../common/rng';
import type { AnswerKind, QueryOutcome } from '../../dns/answer';
import { handleQuery } from '../../dns/answer';
import { AnswerCache } from '../../dns/answer-cache';
import { DnsService } from '../../dns/service';
import { DnsStore } from '../../dns/store';
import type { Gossip, GossipData, GossipHub, Gossiper, PeerInfo } from '../../router/mesh/gossip';
import type { PeerName } from '../../router/mesh/peer-name';
import { silentLogger } from '../../common/logger';
import { TestSigning, testSigning } from './test-signing';

const LOCAL = '02:00:00:00:00:01' as PeerName;
const OTHER = '02:00:00:00:00:02' as PeerName;
const TTL = 7;

class OneHostHub implements GossipHub {
  readonly localPeer = LOCAL;
  readonly signing = new TestSigning(LOCAL);
  listeners: ((r: ReadonlySet<PeerName>) => void)[] = [];
  addChannel(_name: string, _g: Gossiper): Gossip {
    return { gossipUnicast: () => false, gossipBroadcast: (_u: GossipData) => undefined, gossipNeighbourSubset: () => undefined };
  }
  knownPeers(): PeerInfo[] { return [{ name: LOCAL, nickname: 'me' }, { name: OTHER, nickname: 'other' }]; }
  onReachablePeersChanged(l: (r: ReadonlySet<PeerName>) => void): void { this.listeners.push(l); }
  setReachable(peers: PeerName[]): void { for (const l of this.listeners) l(new Set(peers)); }
}

function setup(cacheEntries?: number): { svc: DnsService; hub: OneHostHub; clock: ManualClock } {
  const hub = new OneHostHub();
  const clock = new ManualClock();
  const svc = new DnsService({ hub, clock, rng: new SeededRng(3), logger: silentLogger },
    { domain: 'weave.local', ttlS: TTL, ...(cacheEntries === undefined ? {} : { cacheEntries }) });
  hub.setReachable([LOCAL, OTHER]);
  return { svc, hub, clock };
}

function query(name: string, type: packet.RecordType = 'A', opts: { id?: number; edns?: number } = {}): Buffer {
  return packet.encode({
    type: 'query', id: opts.id ?? 1, flags: packet.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }],
    additionals: opts.edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
}

function bytesOf(o: QueryOutcome): Buffer {
  if (o.kind !== 'reply') throw new Error(`expected a reply, got ${o.kind}`);
  return o.bytes;
}

function decode(o: QueryOutcome): packet.DecodedPacket & { rcode?: string } {
  return packet.decode(bytesOf(o)) as packet.DecodedPacket & { rcode?: string };
}

function addresses(o: QueryOutcome): string[] {
  return (decode(o).answers ?? []).map((a) => String((a as { data: unknown }).data)).sort();
}

t.test('a hit is the reply the core computes, with the id rewritten', async (t) => {
  const { svc } = setup();
  svc.register('netns:c1', 'web.weave.local', ['10.32.0.1']);
  const first = svc.resolve(query('web.weave.local', 'A', { id: 11 }), 'udp');
  t.equal(svc.cache.counters.misses, 1);
  t.equal(svc.cache.counters.stored, 1);
  const second = svc.resolve(query('web.weave.local', 'A', { id: 0xbeef }), 'udp');
  t.equal(svc.cache.counters.hits, 1, 'the second query is a hit');
  const core = handleQuery(query('web.weave.local', 'A', { id: 0xbeef }), 'udp', svc.config, svc, new SeededRng(1));
  t.same(bytesOf(second), bytesOf(core), 'byte for byte what the core builds');
  t.equal(bytesOf(first).readUInt16BE(0), 11);
  t.equal(bytesOf(second).readUInt16BE(0), 0xbeef, 'id rewritten');
  t.equal((decode(second).answers?.[0] as { ttl?: number } | undefined)?.ttl, TTL, 'the configured TTL');
  t.not(bytesOf(first), bytesOf(second), 'each hit is its own buffer (the first may still be in flight)');
});

t.test('misses: another type, another transport, another EDNS size', async (t) => {
  const { svc } = setup();
  svc.register('netns:c1', 'web.weave.local', ['10.32.0.1']);
  svc.resolve(query('web.weave.local', 'A'), 'udp');
  svc.resolve(query('web.weave.local', 'AAAA'), 'udp');
  svc.resolve(query('web.weave.local', 'A'), 'tcp');
  svc.resolve(query('web.weave.local', 'A', { edns: 1232 }), 'udp');
  t.equal(svc.cache.counters.hits, 0);
  t.equal(svc.cache.counters.misses, 4);
  t.equal(decode(svc.resolve(query('web.weave.local', 'AAAA'), 'udp')).rcode, 'NOERROR', 'NODATA kept as NODATA');
  t.equal(svc.cache.counters.hits, 1);
});

t.test('the client\'s case is echoed in the question and in every answer', async (t) => {
  const { svc } = setup();
  svc.register('netns:c1', 'web.weave.local', ['10.32.0.1', '10.32.0.2']);
  svc.resolve(query('web.weave.local'), 'udp');
  const mixed = svc.resolve(query('WeB.wEAVE.LoCaL', 'A', { id: 5 }), 'udp');
  t.equal(svc.cache.counters.hits, 1, 'case does not split the cache');
  const p = decode(mixed);
  t.equal(p.questions?.[0]?.name, 'WeB.wEAVE.LoCaL');
  t.same(p.answers?.map((a) => a.name), ['WeB.wEAVE.LoCaL', 'WeB.wEAVE.LoCaL']);
  t.same(addresses(mixed), ['10.32.0.1', '10.32.0.2']);
  const nx = svc.resolve(query('Nope.Weave.Local'), 'udp');
  svc.resolve(query('nope.weave.local'), 'udp');
  t.equal(decode(nx).rcode, 'NXDOMAIN');
  t.equal((decode(nx).authorities?.[0] as { ttl?: number } | undefined)?.ttl, TTL, 'SOA of a negative answer carries the TTL');
  t.equal(decode(svc.resolve(query('NOPE.weave.local'), 'udp')).questions?.[0]?.name, 'NOPE.weave.local');
});

t.test('round robin survives the cache', async (t) => {
  const { svc } = setup();
  const addrs = ['10.32.0.1', '10.32.0.2', '10.32.0.3', '10.32.0.4'];
  svc.register('netns:c1', 'rr.weave.local', addrs);
  const firsts = new Set<string>();
  for (let i = 0; i < 64; i++) {
    const o = svc.resolve(query('rr.weave.local', 'A', { id: i }), 'udp');
    t.same(addresses(o), addrs, 'every answer has every address');
    firsts.add(String((decode(o).answers?.[0] as { data: unknown }).data));
  }
  t.equal(svc.cache.counters.hits, 63);
  t.equal(firsts.size, 4, 'each address comes first sometimes');
});

t.test('local add and removal invalidate', async (t) => {
  const { svc } = setup();
  t.equal(decode(svc.resolve(query('web.weave.local'), 'udp')).rcode, 'NXDOMAIN');
  svc.register('netns:c1', 'web.weave.local', ['10.32.0.1']);
  t.same(addresses(svc.resolve(query('web.weave.local'), 'udp')), ['10.32.0.1'], 'a cached NXDOMAIN does not outlive the add');
  svc.register('netns:c2', 'web.weave.local', ['10.32.0.2']);
  t.same(addresses(svc.resolve(query('web.weave.local'), 'udp')), ['10.32.0.1', '10.32.0.2']);
  svc.unregister({ containerId: 'netns:c1' });
  t.same(addresses(svc.resolve(query('web.weave.local'), 'udp')), ['10.32.0.2'], 'the tombstone removes the address');
  svc.unregister({ containerId: 'netns:c2' });
  t.equal(decode(svc.resolve(query('web.weave.local'), 'udp')).rcode, 'NXDOMAIN');
  t.ok(svc.cache.counters.invalidated >= 3);
});

t.test('a peer\'s records and removals by gossip, reachability and expiry invalidate', async (t) => {
  const { svc, hub, clock } = setup();
  const remote = new DnsStore(OTHER, testSigning(OTHER));
  const added = remote.register('netns:x', 'db.weave.local', '10.40.0.1', clock.now());
  t.equal(decode(svc.resolve(query('db.weave.local'), 'udp')).rcode, 'NXDOMAIN');
  svc.store.merge(added, clock.now());
  t.same(addresses(svc.resolve(query('db.weave.local'), 'udp')), ['10.40.0.1'], 'gossiped record');
  hub.setReachable([LOCAL]);
  t.equal(decode(svc.resolve(query('db.weave.local'), 'udp')).rcode, 'NXDOMAIN', 'peer unreachable: hidden');
  hub.setReachable([LOCAL, OTHER]);
  t.same(addresses(svc.resolve(query('db.weave.local'), 'udp')), ['10.40.0.1'], 'back');
  const removed = remote.unregister({ containerId: 'netns:x' }, clock.now());
  svc.store.merge(removed, clock.now());
  t.equal(decode(svc.resolve(query('db.weave.local'), 'udp')).rcode, 'NXDOMAIN', 'gossiped removal');
  const before = svc.store.generation;
  svc.resolve(query('db.weave.local'), 'udp');
  clock.advance(24 * 3600 * 1000);
  t.ok(svc.store.tick(clock.now()).length > 0, 'the tombstone expires');
  t.not(svc.store.generation, before, 'dropping an entry is a change too');
  const hits = svc.cache.counters.hits;
  svc.resolve(query('db.weave.local'), 'udp');
  t.equal(svc.cache.counters.hits, hits, 'so the next query is computed again');
});

t.test('bounded: the oldest goes first', async (t) => {
  const { svc } = setup(4);
  for (let i = 0; i < 10; i++) svc.register(`netns:c${i}`, `n${i}.weave.local`, [`10.32.0.${i + 1}`]);
  for (let i = 0; i < 10; i++) svc.resolve(query(`n${i}.weave.local`), 'udp');
  t.equal(svc.cache.size, 4);
  t.equal(svc.cache.counters.evicted, 6);
  svc.resolve(query('n9.weave.local'), 'udp');
  svc.resolve(query('n0.weave.local'), 'udp');
  t.equal(svc.cache.counters.hits, 1, 'the newest is kept, the oldest gone');
});

t.test('never cached: truncated replies, forwards, header-only errors', async (t) => {
  const { svc } = setup();
  svc.register('netns:c1', 'big.weave.local', Array.from({ length: 40 }, (_, i) => `10.32.1.${i + 1}`));
  const tc = svc.resolve(query('big.weave.local'), 'udp');
  t.ok(tc.kind === 'reply' && tc.truncated, 'over 512 bytes: truncated');
  svc.resolve(query('big.weave.local'), 'udp');
  t.equal(svc.cache.counters.hits, 0, 'a truncated reply is not kept (which records fit is random)');
  t.equal(addresses(svc.resolve(query('big.weave.local'), 'tcp')).length, 40, 'over TCP: all of them');
  t.equal(svc.resolve(query('example.com'), 'udp').kind, 'forward');
  t.equal(svc.resolve(query('example.com'), 'udp').kind, 'forward', 'forwards are never answered from the cache');
  const twoQuestions = packet.encode({ type: 'query', id: 9, questions: [{ name: 'a.weave.local', type: 'A' }, { name: 'b.weave.local', type: 'A' }] });
  svc.resolve(twoQuestions, 'udp');
  const again = svc.resolve(twoQuestions, 'udp');
  t.equal(decode(again).rcode, 'FORMERR');
  t.equal(svc.cache.counters.hits, 0);
  t.equal(svc.cache.size, 0, 'nothing stored');
});

t.test('hostile queries: a pointer or a runaway name is computed, never cached', async (t) => {
  const { svc } = setup();
  const q = query('web.weave.local');
  const pointer = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  t.equal(decode(svc.resolve(pointer, 'udp')).rcode, 'FORMERR');
  const runaway = Buffer.concat([q.subarray(0, 12), Buffer.from([63]), Buffer.alloc(40, 0x61)]);
  t.equal(decode(svc.resolve(runaway, 'udp')).rcode, 'FORMERR');
  t.equal(svc.resolve(Buffer.alloc(5), 'udp').kind, 'drop');
  t.equal(svc.cache.size, 0);
});

t.test('keys that share a hash slot: a lookup is the right reply or a miss, never another name\'s', async (t) => {
  const { svc } = setup();
  const names = Array.from({ length: 40 }, (_, i) => `n${i}.weave.local`);
  names.forEach((n, i) => svc.register(`netns:c${i}`, n, [`10.32.1.${i + 1}`]));
  // 3 bits: 8 slots for 40 names, so most keys collide with several others.
  const cache = new AnswerCache(new SeededRng(9), 64, 3);
  const core = (n: string, id: number): Buffer => bytesOf(handleQuery(query(n, 'A', { id }), 'udp', svc.config, svc, new SeededRng(1)));
  let hits = 0;
  for (let round = 0; round < 3; round++) {
    for (const [i, n] of names.entries()) {
      const q = query(n, 'A', { id: 100 + i });
      const hit = cache.lookup(q, 'udp', 1);
      if (hit === null) cache.remember(q, 'udp', 1, core(n, 100 + i), 'answer');
      else {
        hits++;
        t.same(hit.bytes, core(n, 100 + i), `${n}: its own reply`);
      }
    }
  }
  t.ok(cache.size <= 8, `at most one entry per slot (${cache.size})`);
  t.ok(cache.counters.evicted > 0, 'colliding keys took each other\'s slot');
  t.equal(cache.counters.hits, hits);
  // The same name asked twice in a row hits even with every slot contended.
  const q = query('n7.weave.local', 'A', { id: 7 });
  cache.remember(q, 'udp', 1, core('n7.weave.local', 7), 'answer');
  t.same(cache.lookup(query('N7.weave.local', 'A', { id: 8 }), 'udp', 1)?.bytes, core('N7.weave.local', 8));
});

t.test('answerInto: the reply lookup gives, written in place at any offset, nothing around it touched', async (t) => {
  const { svc } = setup();
  svc.register('netns:c1', 'web.weave.local', ['10.32.0.1']);
  svc.register('netns:c2', 'rr.weave.local', ['10.32.0.1', '10.32.0.2', '10.32.0.3']);
  const hit = { kind: 'refused' as AnswerKind };
  for (const [name, type] of [['web.weave.local', 'A'], ['rr.weave.local', 'A'], ['nope.weave.local', 'A'], ['web.weave.local', 'AAAA']] as const) {
    svc.resolve(query(name, type), 'udp');
    const mixed = name.toUpperCase();
    const q = query(mixed, type, { id: 0x1234 });
    const input = Buffer.concat([Buffer.alloc(37, 0xaa), q, Buffer.alloc(9, 0xbb)]);
    const out = Buffer.alloc(2000, 0xee);
    const n = svc.answerUdpFromCache(input, 37, q.length, out, 100, 1232, hit);
    t.ok(n > 0, `${mixed} ${type}: a hit`);
    const reply = out.subarray(100, 100 + n);
    const core = bytesOf(handleQuery(q, 'udp', svc.config, svc, new SeededRng(1)));
    const expected = decode({ kind: 'reply', bytes: core, answerKind: 'answer', truncated: false });
    const got = packet.decode(reply) as packet.DecodedPacket & { rcode?: string };
    t.equal(got.id, 0x1234);
    t.equal(got.rcode, expected.rcode);
    t.equal(hit.kind, got.rcode === 'NXDOMAIN' ? 'nxdomain' : (got.answers ?? []).length > 0 ? 'answer' : 'nodata', 'its kind');
    t.equal(got.questions?.[0]?.name, mixed, 'the client\'s casing');
    t.same((got.answers ?? []).map((a) => a.name), (expected.answers ?? []).map((a) => a.name));
    t.same((got.answers ?? []).map((a) => String((a as { data: unknown }).data)).sort(), (expected.answers ?? []).map((a) => String((a as { data: unknown }).data)).sort());
    if ((expected.answers ?? []).length <= 1) t.same(reply, core, 'byte for byte what the core builds');
    t.ok(out.subarray(0, 100).every((b) => b === 0xee) && out.subarray(100 + n).every((b) => b === 0xee), 'nothing written outside the reply');
  }
  t.equal(svc.answerUdpFromCache(query('example.com'), 0, query('example.com').length, Buffer.alloc(1232), 0, 1232, hit), -1, 'a forward: a miss');
});

t.test('answerInto on hostile spans: a miss or a right reply, never a read past the span', async (t) => {
  const { svc } = setup();
  svc.register('netns:c1', 'web.weave.local', ['10.32.0.1']);
  const q = query('web.weave.local', 'A', { id: 3 });
  svc.resolve(q, 'udp');
  const out = Buffer.alloc(1232);
  const hit = { kind: 'refused' as AnswerKind };
  t.ok(svc.answerUdpFromCache(q, 0, q.length, out, 0, 1232, hit) > 0, 'the whole query hits');
  // The same bytes follow the span: a span one byte short must still miss.
  t.equal(svc.answerUdpFromCache(q, 0, q.length - 1, out, 0, 1232, hit), -1, 'a span one byte short misses');
  t.equal(svc.answerUdpFromCache(q, 0, q.length, out, 0, 20, hit), -1, 'no room for the reply: a miss');
  t.equal(svc.answerUdpFromCache(q, 5, q.length, out, 0, 1232, hit), -1, 'a span past the buffer\'s end misses');
  const misses = svc.cache.counters.misses;
  const seed = 0x5eed;
  const rng = new SeededRng(seed);
  const buf = Buffer.alloc(600);
  for (let i = 0; i < 3000; i++) {
    for (let k = 0; k < buf.length; k++) buf[k] = Math.floor(rng.next() * 256);
    // Often a near-copy of the cached query, so the name walk gets far.
    const at = Math.floor(rng.next() * 64);
    if (i % 2 === 0) q.copy(buf, at, 0, Math.floor(rng.next() * (q.length + 1)));
    const len = Math.floor(rng.next() * (buf.length - at + 1));
    let n = -2;
    try {
      n = svc.answerUdpFromCache(buf, at, len, out, 0, 1232, hit);
    } catch (err) {
      t.fail(`seed ${seed}, case ${i}: threw ${String(err)}`);
      return;
    }
    if (n >= 0) t.same(packet.decode(out.subarray(0, n)).questions?.[0]?.name?.toLowerCase(), 'web.weave.local', `seed ${seed}, case ${i}: only web's reply`);
  }
  t.ok(svc.cache.counters.misses > misses, 'random spans miss');
});
