// The end-to-end key exchange (router/mesh/far-keys.ts, far-messages.ts)
// between two peers whose gossip passes a relay that may be hostile: both ends
// derive the same key, a relay that flips, swaps or replays bytes gets
// nothing installed, rekeys and UNKNOWN switch keys, unreachable peers are
// forgotten, and the codec refuses malformed input. ManualClock, in memory.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { Gossip, Gossiper, GossipHub, GossipData } from '../../router/mesh/gossip';
import { FarKeys, type FarKeySink, type FarTimings } from '../../router/mesh/far-keys';
import { decodeFarMessage, encodeInit, encodeUnknown, initSigned } from '../../router/mesh/far-messages';
import type { PeerName } from '../../router/mesh/peer-name';
import { loadSodium, sodium } from '../../router/mesh/sodium';
import { TestSigning } from './test-signing';

t.before(async () => { await loadSodium(); });

const A = '02:00:00:00:00:0a' as PeerName;
const C = '02:00:00:00:00:0c' as PeerName;
const R = '02:00:00:00:00:0b' as PeerName;
const TIMINGS: FarTimings = { tickMs: 100, rekeyMs: 10_000, retryMs: 1000, maxRetryMs: 4000, answerGapMs: 50 };

interface Msg { src: PeerName; dst: PeerName; bytes: Uint8Array }

class Sink implements FarKeySink {
  send = new Map<PeerName, { keyId: number; key: Uint8Array }>();
  stopped = 0;
  receive = new Map<string, Uint8Array>();
  forgotten: PeerName[] = [];
  farSendKey(dst: PeerName, keyId: number, key: Uint8Array | null): void {
    if (key === null) { this.send.delete(dst); this.stopped++; return; }
    this.send.set(dst, { keyId, key: key.slice() });
  }
  farReceiveKey(origin: PeerName, keyId: number, key: Uint8Array): boolean {
    const k = `${origin}/${keyId}`;
    if (this.receive.has(k)) return false;
    this.receive.set(k, key.slice());
    return true;
  }
  farForget(peer: PeerName): void { this.forgotten.push(peer); }
}

/** Two peers and the relay between them: every message lands in `wire` until pump() delivers it (or the test tampers). */
function mesh(): { clock: ManualClock; wire: Msg[]; a: FarKeys; c: FarKeys; sa: Sink; sc: Sink; deliver: (m: Msg) => void; pump: () => void;
  reach: Map<PeerName, (r: ReadonlySet<PeerName>) => void> } {
  const clock = new ManualClock();
  const wire: Msg[] = [];
  const gossipers = new Map<PeerName, Gossiper>();
  const reach = new Map<PeerName, (r: ReadonlySet<PeerName>) => void>();
  const hub = (name: PeerName): GossipHub => ({
    localPeer: name,
    signing: new TestSigning(name),
    addChannel(_n: string, g: Gossiper): Gossip {
      gossipers.set(name, g);
      return {
        gossipUnicast: (dst, bytes) => { wire.push({ src: name, dst, bytes }); return true; },
        gossipBroadcast: (_u: GossipData) => undefined,
        gossipNeighbourSubset: (_u: GossipData) => undefined,
      };
    },
    knownPeers: () => [],
    onReachablePeersChanged: (l) => { reach.set(name, l); },
  } as GossipHub);
  const sa = new Sink();
  const sc = new Sink();
  const a = new FarKeys({ clock, logger: silentLogger, hub: hub(A), sink: sa }, TIMINGS);
  const c = new FarKeys({ clock, logger: silentLogger, hub: hub(C), sink: sc }, TIMINGS);
  const deliver = (m: Msg): void => {
    try { gossipers.get(m.dst)!.onGossipUnicast(m.src, m.bytes); } catch { /* the hub counts a throw as rejected */ }
  };
  const pump = (): void => { while (wire.length > 0) deliver(wire.shift()!); };
  return { clock, wire, a, c, sa, sc, deliver, pump, reach };
}

t.test('both ends derive the same one-way key; the relay sees only shares', async (t) => {
  const m = mesh();
  m.a.want(C);
  m.a.want(C);
  t.equal(m.wire.length, 1, 'one INIT while one is pending');
  m.pump();
  const sent = m.sa.send.get(C)!;
  t.ok(sent, 'A seals to C');
  t.same(m.sc.receive.get(`${A}/${sent.keyId}`), sent.key, 'C opens with the same key');
  t.equal(m.sc.send.size, 0, 'C got no send key: its own traffic needs its own exchange');
  t.equal(m.a.counters.farSendKeys, 1);
  m.c.want(A);
  m.pump();
  t.notSame(m.sc.send.get(A)!.key, sent.key, 'the other direction has another key');
  m.a.close(); m.c.close();
});

t.test('a relay that flips any byte, or signs a share itself, gets nothing installed', async (t) => {
  for (const which of ['init', 'reply'] as const) {
    const m = mesh();
    m.a.want(C);
    if (which === 'reply') m.deliver(m.wire.shift()!);
    const genuine = m.wire.shift()!;
    for (let i = 0; i < genuine.bytes.length; i++) {
      const forged = genuine.bytes.slice();
      forged[i] = forged[i]! ^ 0x01;
      m.deliver({ ...genuine, bytes: forged });
    }
    // The relay's own share under its own key, claiming the initiator's name.
    const relay = new TestSigning(R);
    const share = sodium().crypto_scalarmult_base(sodium().randombytes_buf(32));
    m.deliver({ src: A, dst: C, bytes: encodeInit(7, share, relay.publicKey, relay.sign(initSigned(A, C, 7, share))) });
    t.equal(m.sa.send.size, 0, `${which}: A seals under no key`);
    t.equal(m.sc.receive.size, which === 'init' ? 0 : 1, `${which}: C installed nothing forged`);
    t.ok((which === 'init' ? m.c : m.a).counters.farMessagesRefused + m.c.counters.farMessagesRefused > 0, `${which}: refusals counted`);
    // The genuine message still completes the exchange afterwards.
    m.clock.advance(100);
    m.deliver(genuine);
    m.pump();
    t.equal(m.sa.send.size, 1, `${which}: the genuine exchange completes`);
    m.a.close(); m.c.close();
  }
});

t.test('a replayed INIT installs nothing new and earns no REPLY', async (t) => {
  const m = mesh();
  m.a.want(C);
  const init = m.wire[0]!;
  m.pump();
  m.clock.advance(100);
  m.deliver(init);
  t.equal(m.wire.length, 0, 'no second REPLY');
  t.equal(m.sc.receive.size, 1);
  // Two INITs closer than answerGapMs: the second is refused.
  m.a.close();
  const other = new FarKeys({ clock: m.clock, logger: silentLogger, hub: { localPeer: A, signing: new TestSigning(A),
    addChannel: () => ({ gossipUnicast: (dst: PeerName, bytes: Uint8Array) => { m.wire.push({ src: A, dst, bytes }); return true; },
      gossipBroadcast: () => undefined, gossipNeighbourSubset: () => undefined }), knownPeers: () => [], onReachablePeersChanged: () => undefined,
  } as unknown as GossipHub, sink: new Sink() }, TIMINGS);
  other.want(C);
  const before = m.c.counters.farMessagesRefused;
  m.pump();
  t.equal(m.c.counters.farMessagesRefused, before + 1, 'an INIT right after another is refused');
  other.close(); m.c.close();
});

t.test('rekey on time, retry when REPLY is lost, UNKNOWN stops sealing, unreachable peers are forgotten', async (t) => {
  const m = mesh();
  m.a.want(C);
  m.wire.length = 0; // INIT lost
  m.clock.advance(TIMINGS.retryMs + TIMINGS.tickMs);
  t.equal(m.wire.length, 1, 'a new INIT after retryMs');
  m.pump();
  const first = m.sa.send.get(C)!;
  m.clock.advance(TIMINGS.rekeyMs + TIMINGS.tickMs);
  m.pump();
  const second = m.sa.send.get(C)!;
  t.not(second.keyId, first.keyId, 'a new key id after rekeyMs');
  t.ok(m.sc.receive.has(`${A}/${first.keyId}`) && m.sc.receive.has(`${A}/${second.keyId}`), 'the receiver holds both meanwhile');
  m.c.unknownKey(A, 1234);
  m.pump();
  t.equal(m.sa.send.get(C)!.keyId, second.keyId, 'UNKNOWN for another key id changes nothing');
  m.clock.advance(TIMINGS.answerGapMs);
  m.c.unknownKey(A, second.keyId);
  m.c.unknownKey(A, second.keyId);
  t.equal(m.wire.length, 1, 'UNKNOWN at most once per answerGapMs');
  m.deliver(m.wire.shift()!);
  t.equal(m.sa.stopped, 1, 'A stops sealing under the unknown key at once');
  t.equal(m.a.counters.farUnknownKeys, 1);
  m.pump();
  t.ok(m.sa.send.get(C) && m.sa.send.get(C)!.keyId !== second.keyId, 'and has a new key after one more exchange');
  m.reach.get(A)!(new Set([A]));
  t.same(m.sa.forgotten, [C], 'an unreachable peer is forgotten');
  m.a.close(); m.c.close();
});

t.test('a peer that never answers gets INITs ever further apart, up to maxRetryMs; an answer resets the wait', async (t) => {
  const m = mesh();
  m.a.want(C);
  const sentAt: number[] = [];
  for (let now = 0; now <= 20_000; now += TIMINGS.tickMs) {
    for (; m.wire.length > 0; m.wire.shift()) sentAt.push(now);
    m.clock.advance(TIMINGS.tickMs);
  }
  const gaps = sentAt.slice(1).map((at, i) => at - sentAt[i]!);
  t.same(gaps.slice(0, 5), [1000, 2000, 4000, 4000, 4000], 'retryMs, doubled each time, never more than maxRetryMs');
  t.equal(m.a.counters.farExchangesStarted, sentAt.length, 'every INIT is counted');
  m.clock.advance(4000);
  m.pump();
  t.ok(m.sa.send.get(C), 'the exchange that is answered installs the key');
  m.clock.advance(TIMINGS.rekeyMs + TIMINGS.tickMs);
  m.wire.length = 0; // the rekey's INIT is lost
  m.clock.advance(TIMINGS.retryMs + TIMINGS.tickMs);
  t.equal(m.wire.length, 1, 'after an answer, the next unanswered exchange is retried after retryMs again');
  m.a.close(); m.c.close();
});

t.test('the codec refuses anything but the exact messages', async (t) => {
  const signing = new TestSigning(A);
  const share = new Uint8Array(32).fill(9);
  const init = encodeInit(5, share, signing.publicKey, signing.sign(initSigned(A, C, 5, share)));
  t.equal(decodeFarMessage(init).type, 'init');
  t.same(decodeFarMessage(encodeUnknown(9)), { type: 'unknown', keyId: 9 });
  for (let n = 0; n < init.length; n++) t.throws(() => decodeFarMessage(init.subarray(0, n)), `truncated at ${n}`);
  t.throws(() => decodeFarMessage(Uint8Array.from([...init, 0])), 'a trailing byte');
  t.throws(() => decodeFarMessage(Uint8Array.of(2, 1, 0, 0, 0, 0)), 'version 2');
  t.throws(() => decodeFarMessage(Uint8Array.of(1, 9, 0, 0, 0, 0)), 'type 9');
});
