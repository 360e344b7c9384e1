// A peer that holds the password (or, in a plaintext mesh, just connects)
// tries to connect under another peer's name, on real routers over the
// in-memory network. Before protocol 3 its newer incarnation would have taken
// the name's connection slot from the real peer. Now its handshake is refused
// by name ('peer-key'): with its own key (which derives another name), and
// with the real peer's public key but its own signature. The real peer keeps
// its connection throughout, the refusal is listed, logged and counted on the
// refusing side, and the impostor is told why.

import t from 'tap';
import { stretchPassword } from '../../router/mesh/password-key';
import type { PeerKey } from '../../router/mesh/peer-key';
import { loadSodium } from '../../router/mesh/sodium';
import { simHost, SimMesh, SimPeer, simPeerKey, simPeerName } from './mesh';

t.before(async () => { await loadSodium(); });

const A = 0;
const B = 1;
const EVIL = 2;

/** EVIL's key pair under B's name: what a router holding EVIL's key but configured as B would present. */
function ownKeyUnderBsName(): PeerKey {
  return Object.create(simPeerKey(EVIL), { name: { value: simPeerName(B) } }) as PeerKey;
}

/** B's public key and name, but EVIL's signatures (it does not have B's secret key). */
function bsKeyWithoutItsSecret(): PeerKey {
  return Object.create(simPeerKey(EVIL), { name: { value: simPeerName(B) }, publicKey: { value: simPeerKey(B).publicKey } }) as PeerKey;
}

function connectionToB(a: SimPeer): string | undefined {
  const c = a.router.status().connections.find((x) => x.state === 'established' && x.peer === simPeerName(B));
  return c?.address;
}

for (const [mode, passwordKey] of [['password', 'secret'], ['plaintext', null]] as const) {
  for (const [how, forged] of [['its own key', ownKeyUnderBsName], ['B\'s public key without B\'s secret', bsKeyWithoutItsSecret]] as const) {
    t.test(`${mode}: an impostor with ${how} cannot take B's connection slot at A`, async (t) => {
      const mesh = new SimMesh({ passwordKey: passwordKey === null ? null : stretchPassword(passwordKey) });
      t.teardown(() => mesh.shutdown());
      const a = await mesh.addPeer([]);
      await mesh.addPeer([A]);
      mesh.net.run(3_000);
      const before = connectionToB(a);
      t.ok(before?.startsWith(simHost(B)), 'A is connected to the real B');

      const evil = await mesh.addPeer([A], EVIL, { key: forged() });
      mesh.net.run(20_000);

      t.equal(connectionToB(a), before, 'A still has the real B on the same connection');
      t.same(a.router.neighbours(), [simPeerName(B)], 'and no one else under that name');
      const refused = a.router.status().connections.filter((c) => c.state === 'failed' && c.failure === 'peer-key');
      t.ok(refused.length > 0 && refused[0]!.address.startsWith(simHost(EVIL)), 'A lists the refusal, from the impostor\'s address');
      t.match(refused[0]!.info, how === 'its own key' ? /claims the name .* but the key it shows derives/ : /signature over this handshake does not verify/);
      t.ok(a.router.counters.connectionsRefusedPeerKey > 0, 'and counts it');
      t.ok(a.router.status().counters['connectionsRefusedPeerKey']! > 0, 'in status and metrics');
      t.match(evil.router.status().targets[0]!.lastError, /refused by peer: .*peer/, 'the impostor is told why');
      t.equal(evil.router.neighbours().length, 0, 'the impostor holds no connection');
    });
  }
}
