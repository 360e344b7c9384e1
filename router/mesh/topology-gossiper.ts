// Topology as a gossip channel: the Peers store behind the Gossiper
// interface. A received update returns the entries that were new to us, and
// those are what gets relayed; a rejected update leaves the store untouched.
// Peers we cannot reach are forgotten as the update is applied (as mesh
// peers.go does), not later: otherwise a neighbour's stale full state brings
// them back, they count as new, get relayed to every peer that had just
// forgotten them too, and the mesh gossips them round in circles for ever.
// So an entry is kept only while someone's connections reach it from us.

import type { GossipData, Gossiper } from './gossip';
import type { PeerName } from './peer-name';
import type { Peers } from './peers';

/**
 * A set of peer names whose current entries are to be sent; merging is set
 * union. Encoded when sent, so a update that waited carries the newest
 * entries; the bytes are kept while those entries are the same objects
 * (entries are frozen and replaced on change), so sending one update to many
 * neighbours encodes it once.
 */
export class TopologyUpdate implements GossipData {
  private cached: { entries: readonly (object | undefined)[]; bytes: Uint8Array } | null = null;

  constructor(private readonly peers: Peers, readonly names: ReadonlySet<PeerName>) {}

  encode(): Uint8Array[] {
    const entries = [...this.names].map((n) => this.peers.get(n));
    const c = this.cached;
    if (c !== null && c.entries.length === entries.length && c.entries.every((e, i) => e === entries[i])) return [c.bytes];
    const bytes = this.peers.encode(this.names);
    this.cached = { entries, bytes };
    return [bytes];
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof TopologyUpdate)) return this;
    return new TopologyUpdate(this.peers, new Set([...this.names, ...other.names]));
  }
}

export class TopologyGossiper implements Gossiper {
  private full: { key: string; update: TopologyUpdate } | null = null;

  constructor(private readonly peers: Peers, private readonly onChanged: (names: PeerName[]) => void) {}

  onGossipUnicast(): void {
    // Topology travels only by neighbour gossip.
  }

  onGossipBroadcast(_src: PeerName, update: Uint8Array): GossipData | null {
    return this.onGossip(update);
  }

  /** Our full state; the same object while the set of names stands, so its encoding is reused. */
  gossip(): GossipData | null {
    const names = this.peers.entries().map((e) => e.name);
    const key = names.join(' ');
    if (this.full === null || this.full.key !== key) this.full = { key, update: new TopologyUpdate(this.peers, new Set(names)) };
    return this.full.update;
  }

  onGossip(update: Uint8Array): GossipData | null {
    const sizeBefore = this.peers.size();
    const changed = this.peers.applyUpdate(update);
    if (changed.length === 0) return null;
    const removed = new Set(this.peers.garbageCollect());
    const fresh = changed.filter((n) => !removed.has(n));
    // Nothing kept and nobody we knew removed: only unreachable peers came and went.
    if (fresh.length === 0 && this.peers.size() === sizeBefore) return null;
    this.onChanged(changed);
    return fresh.length === 0 ? null : new TopologyUpdate(this.peers, new Set(fresh));
  }
}
