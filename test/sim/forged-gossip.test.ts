// Gossip that names another peer as its origin is refused by every peer.
// Four honest routers with DNS and IPAM, and a malicious one connected to all
// of them that holds the password (or, in a plaintext mesh, just connects).
// It crafts updates with its own key for a victim's topology entry, DNS
// records and IPAM space, sends them as broadcasts from the victim and as
// neighbour gossip, and every honest peer's state stays as it was, with the
// refusals counted.

import t from 'tap';
import type { Test } from 'tap';
import { DnsService } from '../../dns/service';
import { signRecord } from '../../dns/record-signature';
import { encodeEntries } from '../../dns/store-codec';
import type { DnsEntry } from '../../dns/store-entry';
import { Ipam } from '../../ipam/ipam';
import { parseIpamConfig } from '../../ipam/config';
import { encodeIpamMessage } from '../../ipam/messages';
import { Ring } from '../../ipam/ring';
import type { RingEntry } from '../../ipam/ring';
import { grantBytes, ringContext, stateBytes } from '../../ipam/ring-signature';
import { AddressRange } from '../../ipam/address-range';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { encodeGossip } from '../../router/mesh/protocol';
import { MeshWriter } from '../../router/mesh/peer-name';
import type { PeerName } from '../../router/mesh/peer-name';
import { topologySigningBytes } from '../../router/mesh/peers';
import type { PeerKey } from '../../router/mesh/peer-key';
import { SimMesh, simPeerKey, simPeerName } from './mesh';
import type { SimPeer } from './mesh';

const RANGE = '10.9.0.0/16';
const HONEST = [0, 1, 2, 3];
const VICTIM = 3;
const EVIL = 9;

interface Honest { peer: SimPeer; dns: DnsService; ipam: Ipam }

/** What an honest peer believes: the victim's topology entry, every visible record, every owner's share of the ring. */
function beliefs(h: Honest): string {
  const v = h.peer.router.peers.get(simPeerName(VICTIM));
  const records = h.dns.store.snapshot().map((e) => `${e.origin}/${e.name}/${e.address}/v${e.version}${e.tombstone ? 'x' : ''}`).sort();
  const shares = h.ipam.status().peers.map((p) => `${p.peer}:${p.owned}`).sort();
  return JSON.stringify({ victim: v ? [v.incarnation, v.version, v.nickname, v.connections.map((c) => c.name)] : null, records, shares });
}

/** A topology entry for `name` with the forger's choice of key and signer. */
function forgedTopology(name: PeerName, publicKey: Uint8Array, signer: PeerKey): Uint8Array {
  const e = { name, nickname: 'pwned', incarnation: 2 ** 50, version: 1, connections: [] };
  const w = new MeshWriter().u8(2).u16(1);
  w.peerName(name).bytes(publicKey).string(e.nickname).u53(e.incarnation).u53(e.version).u16(0);
  return w.bytes(signer.sign(topologySigningBytes(e, publicKey))).finish();
}

async function run(t: Test, passwordKey: Uint8Array | null): Promise<void> {
  const mesh = new SimMesh({ seed: 5, passwordKey });
  t.teardown(() => mesh.shutdown());
  const seedNames = HONEST.map(simPeerName);
  const honest: Honest[] = [];
  for (const i of HONEST) {
    const peer = await mesh.addPeer(HONEST.filter((j) => j < i), i);
    const dns = new DnsService({ hub: peer.router.gossip, clock: mesh.clock, rng: new SeededRng(i), logger: silentLogger },
      { domain: 'weave.local', ttlS: 1, tickMs: 1000 });
    dns.start();
    const ipam = new Ipam({ hub: peer.router.gossip, clock: mesh.clock, rng: new SeededRng(i), logger: silentLogger, store: null },
      { config: parseIpamConfig({ range: RANGE, init: `seed=${seedNames.join(',')}`, initialPeerCount: 1 }), timings: { requestTimeoutMs: 60_000 } });
    honest.push({ peer, dns, ipam });
  }
  const evil = await mesh.addPeer(HONEST, EVIL);
  mesh.net.run(5_000);
  t.equal(evil.router.neighbours().length, HONEST.length, 'the malicious peer is connected to every honest one');
  const victim = honest[VICTIM]!;
  victim.dns.register('netns:web', 'web.weave.local', ['10.9.0.7']);
  await victim.ipam.allocate('c1');
  mesh.net.run(5_000);
  const before = honest.map(beliefs);
  t.ok(before.every((b) => b === before[0]), 'the honest peers agree before the attack');
  t.match(before[0]!, /web\.weave\.local\/10\.9\.0\.7/, 'and know the victim\'s record');

  const victimName = simPeerName(VICTIM);
  const victimKey = victim.peer.router.gossip.signing.publicKey;
  const evilKey = simPeerKey(EVIL);
  const evilSigning = evil.router.gossip.signing;
  const forgeries: [string, string, Uint8Array][] = [];

  // Topology: the victim's entry at a huge incarnation, with our key, or with its key and our signature.
  forgeries.push(['topology', 'the victim\'s entry under our key', forgedTopology(victimName, evilKey.publicKey, evilKey)]);
  forgeries.push(['topology', 'the victim\'s entry with its key and our signature', forgedTopology(victimName, victimKey, evilKey)]);

  // DNS: a record of the victim's, and a removal of its real one, signed by us.
  const asVictim = (e: Omit<DnsEntry, 'originKey' | 'signature'>, key: Uint8Array): DnsEntry => ({ ...signRecord(e, evilSigning), originKey: key });
  const record = { origin: victimName, containerId: 'netns:evil', name: 'evil.weave.local', address: '10.6.6.6', version: 1, tombstone: false, removedAtMs: null };
  const removal = { origin: victimName, containerId: 'netns:web', name: 'web.weave.local', address: '10.9.0.7', version: 1000, tombstone: true, removedAtMs: mesh.clock.now() };
  for (const [what, e] of [['a record', record], ['a removal of its real record', removal]] as const) {
    forgeries.push(['dns', `${what} of the victim's under our key`, encodeEntries([asVictim(e, evilKey.publicKey)], mesh.clock.now())[0]!]);
    forgeries.push(['dns', `${what} of the victim's with its key and our signature`, encodeEntries([asVictim(e, victimKey)], mesh.clock.now())[0]!]);
  }

  // IPAM: the victim's share of the initial split, granted to us by us; and the same with the victim named as grantor.
  const range = AddressRange.parse(RANGE, 'range');
  const initial = Ring.initialState(range, seedNames);
  const ctx = ringContext(range, initial.seed);
  const k = initial.entries.findIndex((e) => e.owner === victimName);
  const end = initial.entries[k + 1]?.token ?? range.size;
  const steal = (grantor: PeerName, keyOfGrantor: Uint8Array): Uint8Array => {
    const token = initial.entries[k]!.token;
    const grant = { grantor, grantee: evil.name, end, version: 1000, signature: evilKey.sign(grantBytes(ctx, token, end, evil.name, 1000)) };
    const entry: Omit<RingEntry, 'signature'> = { token, owner: evil.name, version: 1000, free: 100, grant, earlier: [] };
    const entries = initial.entries.slice();
    entries[k] = { ...entry, signature: evilKey.sign(stateBytes(ctx, entry, end)) };
    return encodeIpamMessage({ kind: 'ring', ring: { ...initial, entries, keys: new Map([[grantor, keyOfGrantor], [evil.name, evilKey.publicKey]]) } });
  };
  forgeries.push(['ipam', 'the victim\'s space granted to us by us', steal(evil.name, evilKey.publicKey)]);
  forgeries.push(['ipam', 'the victim\'s space granted to us "by the victim", signed by us', steal(victimName, evilKey.publicKey)]);
  forgeries.push(['ipam', 'the same with the victim\'s key in the table', steal(victimName, victimKey)]);

  const counters = (): number[] => honest.map((h) => {
    const c = h.peer.router.status().counters;
    return (c['topologyEntriesRefused'] ?? 0) + (c['gossipSignaturesRefused'] ?? 0) + (c['gossipKeyConflicts'] ?? 0) +
      h.dns.store.counters.forgedBatches + h.ipam.ringCounters().ringEntriesRefused;
  });
  const refusedBefore = counters();
  for (const [channel, what, payload] of forgeries) {
    for (const h of honest) {
      evil.router.sendTo(h.peer.name, encodeGossip('broadcast', channel, victimName, null, payload));
      evil.router.sendTo(h.peer.name, encodeGossip('neighbour', channel, evil.name, null, payload));
    }
    mesh.net.run(2_000);
    const now = honest.map(beliefs);
    t.same(now, before, `${channel}: ${what}: refused by every peer, state unchanged`);
  }
  const refusedAfter = counters();
  t.ok(refusedAfter.every((n, i) => n >= refusedBefore[i]! + forgeries.length), `every peer counted each refusal (${refusedBefore.join(',')} -> ${refusedAfter.join(',')})`);
  for (const h of honest) {
    t.same(h.dns.lookup('evil.weave.local'), [], `${h.peer.host}: no forged name`);
    t.ok(h.ipam.status().peers.every((p) => p.peer !== evil.name || p.owned === 0), `${h.peer.host}: no space for the forger`);
  }
  // Honest changes still flow after the attack.
  victim.dns.register('netns:api', 'api.weave.local', ['10.9.0.8']);
  mesh.net.run(3_000);
  t.ok(honest.every((h) => h.dns.lookup('api.weave.local').join() === '10.9.0.8'), 'the victim\'s own new record reaches everyone');
}

t.before(loadSodium);

t.test('a password holder cannot speak for another peer', async (t) => {
  await run(t, stretchPassword('shared secret'));
});

t.test('in a plaintext mesh, anyone who connects cannot either', async (t) => {
  await run(t, null);
});
