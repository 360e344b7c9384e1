// The gossip core between real routers: a channel's broadcasts reach every
// peer exactly once, unicasts follow routes, and peers that do not know a
// channel still relay it (the middle of a line has no handler here).

import t from 'tap';
import type { GossipData, Gossiper } from '../../router/mesh/gossip';
import type { PeerName } from '../../router/mesh/peer-name';
import { SimMesh } from './mesh';

/** A grow-only set of strings: the simplest CRDT, enough to watch delivery. */
class SetData implements GossipData {
  constructor(readonly items: Set<string>) {}
  encode(): Uint8Array[] { return [Buffer.from(JSON.stringify([...this.items]))]; }
  merge(other: GossipData): GossipData { return new SetData(new Set([...this.items, ...(other as SetData).items])); }
}

class Recorder implements Gossiper {
  readonly state = new Set<string>();
  readonly broadcasts: string[] = [];
  readonly unicasts: string[] = [];

  onGossipUnicast(src: PeerName, msg: Uint8Array): void {
    this.unicasts.push(`${src}:${Buffer.from(msg).toString()}`);
  }

  onGossipBroadcast(_src: PeerName, update: Uint8Array): GossipData | null {
    const items = JSON.parse(Buffer.from(update).toString()) as string[];
    this.broadcasts.push(...items);
    return this.absorb(items);
  }

  gossip(): GossipData | null {
    return this.state.size > 0 ? new SetData(new Set(this.state)) : null;
  }

  onGossip(update: Uint8Array): GossipData | null {
    return this.absorb(JSON.parse(Buffer.from(update).toString()) as string[]);
  }

  private absorb(items: string[]): GossipData | null {
    const fresh = items.filter((i) => !this.state.has(i));
    for (const i of fresh) this.state.add(i);
    return fresh.length > 0 ? new SetData(new Set(fresh)) : null;
  }
}

t.test('broadcast, unicast and periodic gossip cross a peer that has no handler for the channel', async (t) => {
  const mesh = new SimMesh();
  t.teardown(() => mesh.shutdown());
  for (let i = 0; i < 3; i++) await mesh.addPeer(i === 0 ? [] : [i - 1]);
  mesh.net.runUntil(() => mesh.converged(), 10_000);
  const [a, b, c] = mesh.peers as [typeof mesh.peers[0], typeof mesh.peers[0], typeof mesh.peers[0]];
  const ra = new Recorder();
  const rc = new Recorder();
  const ga = a.router.gossip.addChannel('test', ra);
  const gc = c.router.gossip.addChannel('test', rc);

  ga.gossipBroadcast(new SetData(new Set(['from-a'])));
  mesh.net.drain();
  t.same(rc.broadcasts, ['from-a'], 'the broadcast crossed b, which has no handler');
  t.ok(b.router.gossip.counters.gossipRelayedForUnknownChannel > 0, 'b relayed it as a surrogate');

  t.equal(gc.gossipUnicast(a.name, Buffer.from('hello a')), true);
  mesh.net.drain();
  t.same(ra.unicasts, [`${c.name}:hello a`], 'unicast delivered through b');

  rc.state.add('only-in-c');
  mesh.net.run(5_000); // several periodic gossip rounds
  t.ok(ra.state.has('only-in-c'), "periodic gossip carried c's state to a through b");
});

t.test('a broadcast reaches every peer of a random mesh exactly once', async (t) => {
  const mesh = new SimMesh({ seed: 3 });
  t.teardown(() => mesh.shutdown());
  const n = 30;
  for (let i = 0; i < n; i++) await mesh.addPeer(i === 0 ? [] : [Math.floor(i / 3), (i * 7) % i]);
  mesh.net.runUntil(() => mesh.converged(), 20_000);
  const recorders = mesh.peers.map(() => new Recorder());
  const senders = mesh.peers.map((p, i) => p.router.gossip.addChannel('count', recorders[i]!));
  senders[17]!.gossipBroadcast(new SetData(new Set(['y'])));
  mesh.net.drain();
  for (const [i, r] of recorders.entries()) {
    if (i === 17) continue;
    t.equal(r.broadcasts.length, 1, `peer ${i} got the broadcast once`);
  }
});
