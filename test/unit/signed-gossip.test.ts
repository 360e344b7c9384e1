// Peer keys and the authority that judges signed gossip (router/mesh/peer-key.ts,
// signed-gossip.ts): names derive from keys, a signature counts only with the
// key its name derives, a second key for a known name is refused (trust on
// first use), verified signatures are cached; and the topology store refuses
// entries that their named peer did not sign, whoever relays them.

import t from 'tap';
import { createHash } from 'node:crypto';
import { RouterError } from '../../router/mesh/errors';
import { PeerKey, peerNameOfKey, verifySignature } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';
import { peerNameToBytes } from '../../router/mesh/peer-name';
import { Peers, topologySigningBytes } from '../../router/mesh/peers';
import { MeshWriter } from '../../router/mesh/peer-name';
import { GossipAuthority, VerifiedSignatures } from '../../router/mesh/signed-gossip';

function key(i: number): PeerKey {
  return PeerKey.fromSeed(createHash('sha256').update(`signed-gossip test ${i}`).digest());
}

const msg = new TextEncoder().encode('hello');

t.test('a peer name is derived from its key: unicast, locally administered, stable', async (t) => {
  const a = key(1);
  t.equal(a.name, peerNameOfKey(a.publicKey));
  t.equal(PeerKey.fromSeed(a.seed).name, a.name, 'the same seed gives the same name');
  const first = peerNameToBytes(a.name)[0]!;
  t.equal(first & 0x01, 0, 'unicast bit clear');
  t.equal(first & 0x02, 0x02, 'locally administered bit set');
  const names = new Set(Array.from({ length: 200 }, (_, i) => key(i).name));
  t.equal(names.size, 200, 'different keys, different names');
  t.ok(verifySignature(a.publicKey, msg, a.sign(msg)));
  t.notOk(verifySignature(key(2).publicKey, msg, a.sign(msg)), 'another key does not verify it');
  t.notOk(verifySignature(a.publicKey, msg, new Uint8Array(63)), 'a short signature is false, not a throw');
  t.throws(() => PeerKey.fromSeed(new Uint8Array(31)), RangeError);
});

t.test('the authority: name bound to key, bad signatures refused and counted, verified ones cached', async (t) => {
  const me = key(1);
  const other = key(2);
  const auth = new GossipAuthority(me);
  t.equal(auth.keyOf(me.name), me.publicKey);
  t.equal(auth.keyOf(other.name), null);
  t.ok(auth.verify(other.name, other.publicKey, msg, other.sign(msg)), 'genuine');
  t.same(auth.keyOf(other.name), other.publicKey, 'and now known');
  t.ok(auth.verify(other.name, other.publicKey, msg, other.sign(msg)), 'again');
  t.equal(auth.counters.gossipSignaturesVerified, 1);
  t.equal(auth.counters.gossipSignatureCacheHits, 1, 'the second time from the cache');

  t.notOk(auth.verify(other.name, me.publicKey, msg, me.sign(msg)), 'a valid signature by a key that does not derive the name');
  t.notOk(auth.verify(me.name, other.publicKey, msg, other.sign(msg)), 'someone else speaking for us');
  t.notOk(auth.verify(other.name, other.publicKey, new TextEncoder().encode('hellO'), other.sign(msg)), 'another message');
  const sig = other.sign(msg);
  sig[5] = sig[5]! ^ 1;
  t.notOk(auth.verify(other.name, other.publicKey, msg, sig), 'a flipped bit');
  t.notOk(auth.verify(other.name, other.publicKey.subarray(1), msg, other.sign(msg)), 'a short key');
  t.equal(auth.counters.gossipSignaturesRefused, 5);
  t.equal(auth.counters.gossipKeyConflicts, 0);
});

t.test('trust on first use: a second key for a known name is refused, even with a valid signature', async (t) => {
  // A derivation under which every key has the same name stands in for a second preimage.
  const shared = key(9).name;
  const a = key(3);
  const b = key(4);
  const auth = new GossipAuthority(key(1), { nameOfKey: () => shared });
  t.ok(auth.verify(shared, a.publicKey, msg, a.sign(msg)), 'first key seen for the name');
  t.notOk(auth.verify(shared, b.publicKey, msg, b.sign(msg)), 'a second key for it');
  t.equal(auth.counters.gossipKeyConflicts, 1);
  t.ok(auth.verify(shared, a.publicKey, msg, a.sign(msg)), 'the first key still speaks for it');

  const small = new GossipAuthority(key(1), { maxKnownKeys: 2 });
  for (const i of [5, 6, 7]) small.verify(key(i).name, key(i).publicKey, msg, key(i).sign(msg));
  t.equal(small.keyOf(key(5).name), null, 'beyond the cap the oldest name is forgotten');
  t.ok(small.keyOf(key(7).name));
  t.ok(small.keyOf(key(1).name), 'never our own');
  t.equal(small.counters.gossipKeysForgotten, 1, 'the forgotten name is counted');

  const cache = new VerifiedSignatures(10);
  const x = new GossipAuthority(key(1), { verified: cache });
  const y = new GossipAuthority(key(2), { verified: cache });
  x.verify(key(3).name, key(3).publicKey, msg, key(3).sign(msg));
  y.verify(key(3).name, key(3).publicKey, msg, key(3).sign(msg));
  t.same([x.counters.gossipSignaturesVerified, y.counters.gossipSignatureCacheHits], [1, 1], 'a shared cache verifies once');
});

/** An entry for `name` with key and signature chosen by the forger. */
function forgedUpdate(name: PeerName, signer: PeerKey, publicKey: Uint8Array, version: number): Uint8Array {
  const e = { name, nickname: 'evil', incarnation: 99, version, connections: [] };
  const w = new MeshWriter().u8(2).u16(1);
  w.peerName(name).bytes(publicKey).string('evil').u53(99).u53(version).u16(0);
  return w.bytes(signer.sign(topologySigningBytes(e, publicKey))).finish();
}

t.test('topology: only a peer itself writes its entry, whoever relays it', async (t) => {
  const [me, victim, forger] = [key(1), key(2), key(3)];
  const store = new Peers({ name: me.name, nickname: 'me', incarnation: 1 }, new GossipAuthority(me));
  const victimStore = new Peers({ name: victim.name, nickname: 'victim', incarnation: 5 }, new GossipAuthority(victim));
  t.same(store.applyUpdate(victimStore.encode()), [victim.name], 'the victim\'s own entry');
  const before = Buffer.from(store.encode()).toString('hex');
  const code = (bytes: Uint8Array): string => {
    try { store.applyUpdate(bytes); return 'applied'; } catch (err) { return err instanceof RouterError ? err.code : String(err); }
  };
  t.equal(code(forgedUpdate(victim.name, forger, forger.publicKey, 50)), 'auth', 'the forger\'s key under the victim\'s name');
  t.equal(code(forgedUpdate(victim.name, forger, victim.publicKey, 50)), 'auth', 'the victim\'s key, the forger\'s signature');
  t.equal(code(forgedUpdate(me.name, forger, forger.publicKey, 50)), 'auth', 'our own name, the forger\'s key: refused, not a name collision');
  t.equal(Buffer.from(store.encode()).toString('hex'), before, 'store unchanged');
  t.equal(store.counters.topologyEntriesRefused, 3);
  t.equal(code(forgedUpdate(forger.name, forger, forger.publicKey, 1)), 'applied', 'the forger may write its own entry');
  t.equal(code(forgedUpdate(me.name, me, me.publicKey, 50)), 'name-collision', 'our own key, used elsewhere: a real collision');
});
