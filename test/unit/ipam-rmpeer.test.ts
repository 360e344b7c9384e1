// `rmpeer` of a name nobody knows: an error, not "owned no addresses" (which
// reads like success and hides a typo). A peer the mesh knows that owns no
// space, and a dead peer the ring still lists, keep working. Ipam on the fake
// in-memory hub, as in ipam-allocate.test.ts.

import t from 'tap';
import { parseIpamConfig } from '../../ipam/config';
import { Ipam } from '../../ipam/ipam';
import { MemoryIpamStore } from '../../ipam/persistence';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import { FakeNet } from './ipam-fake-hub';
import { peer, throwsIpam } from './ipam-helpers';

/** `count` peers on one fake network; only the first `seeded` take part in the seed ring. */
function make(count: number, seeded: number): { net: FakeNet; ipams: Ipam[] } {
  const net = new FakeNet();
  const names = Array.from({ length: count }, (_, i) => peer(i));
  const seed = `seed=${names.slice(0, seeded).join(',')}`;
  const ipams = names.map((n, i) => new Ipam(
    { hub: net.hub(n), clock: net.clock, rng: new SeededRng(i + 1), logger: silentLogger, store: new MemoryIpamStore() },
    { config: parseIpamConfig({ range: '10.9.0.0/24', init: seed, initialPeerCount: seeded }) },
  ));
  net.drain();
  return { net, ipams };
}

t.test('rmpeer of a peer neither the ring nor the mesh knows is refused by name', async (t) => {
  const { ipams } = make(2, 2);
  throwsIpam(t, () => ipams[0]!.rmpeer(peer(99)), 'config', /peer 0a:00:00:00:00:63 is not known here/);
  t.ok(ipams[0]!.status().peers.every((p) => p.owned > 0), 'nothing changed');
});

t.test('a known peer that owns nothing: success with 0 addresses', async (t) => {
  const { net, ipams } = make(3, 2);
  net.partition([peer(0)], [peer(2)]);
  const r = ipams[0]!.rmpeer(peer(2));
  t.same(r, { peer: peer(2), addresses: 0 });
});

t.test('a dead peer the mesh has forgotten but the ring still lists is taken over', async (t) => {
  const { net, ipams } = make(3, 3);
  net.remove(peer(2));
  ipams[2]!.shutdown();
  const r = ipams[0]!.rmpeer(peer(2));
  t.ok(r.addresses > 0, `took over ${r.addresses}`);
});
