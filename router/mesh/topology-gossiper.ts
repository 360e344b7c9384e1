// Topology as a gossip channel: the Peers store behind the Gossiper
// interface. A received update returns the entries that were new to us, and
// those are what gets relayed; a rejected update leaves the store untouched.
// Peers we cannot reach are forgotten as the update is applied (as mesh
// peers.go does), not later: otherwise a neighbour's stale full state brings
// them back, they count as new, get relayed to every peer that had just
// forgotten them too, and the mesh gossips them round in circles for ever.
// So an entry is kept only while someone's connections reach it from us.
// (The few latest updates that carried such entries are held and retried once
// something new becomes reachable, for entries that merely arrived early.)

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

/** Updates with entries we could not reach yet, kept for one retry each when something new becomes reachable. */
export const HELD_UPDATES = 8;

export class TopologyGossiper implements Gossiper {
  private full: { key: string; update: TopologyUpdate } | null = null;
  private readonly held: Uint8Array[] = [];

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
    const fresh = new Set<PeerName>();
    let changed = this.merge(update, fresh);
    // An entry can arrive before the one that connects it to us (over another
    // path), and was dropped; once something new is reachable, try the held
    // updates again. In a stable split nothing new arrives, so nothing is retried.
    if (fresh.size > 0) {
      for (const held of this.held.splice(0)) {
        try {
          if (this.merge(held, fresh)) changed = true;
        } catch {
          // It applied once; if it no longer does (a key conflict since), it is simply not retried.
        }
      }
    }
    if (!changed) return null;
    this.onChanged([...fresh]);
    return fresh.size === 0 ? null : new TopologyUpdate(this.peers, fresh);
  }

  /**
   * Applies one update and forgets whatever it left unreachable; adds the
   * names it made new and kept to `fresh`. True when the store changed (not
   * when unreachable peers only came and went). An update that carried
   * entries we could not reach is held for a retry (the newest HELD_UPDATES).
   */
  private merge(update: Uint8Array, fresh: Set<PeerName>): boolean {
    const sizeBefore = this.peers.size();
    const changed = this.peers.applyUpdate(update);
    if (changed.length === 0) return false;
    const removed = new Set(this.peers.garbageCollect());
    let kept = 0;
    for (const n of changed) {
      if (removed.has(n)) continue;
      fresh.add(n);
      kept++;
    }
    if (changed.some((n) => removed.has(n))) {
      this.held.push(update);
      if (this.held.length > HELD_UPDATES) this.held.shift();
    }
    return kept > 0 || this.peers.size() !== sizeBefore;
  }
}
