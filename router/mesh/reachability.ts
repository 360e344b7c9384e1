// Which peers the topology store can reach from us, kept up to date as entries
// change instead of searched afresh after every update. Each topology update
// is followed by a garbage collection that needs this set, and a full search
// costs the whole mesh's connections; in a mesh of 1000 peers that search,
// run by every peer on every update, was most of what a join cost
// (scripts/bench-control-plane.ts). While entries only gain connections the
// set can only grow, so it is extended from the entries that changed; an
// entry that loses an established connection (or a new incarnation with fewer)
// may cut peers off, and then the next query searches from scratch.
// Pure state: no I/O, no clock. The store (peers.ts) tells it of every change.

import type { PeerEntry } from './peer';
import { listsEstablished } from './peer';
import type { PeerName } from './peer-name';

/** Whether `after` drops an established connection that `before` listed (so an edge may be gone). */
function dropsEdge(before: PeerEntry, after: PeerEntry): boolean {
  const kept = new Set<PeerName>();
  for (const c of after.connections) if (c.established) kept.add(c.name);
  for (const c of before.connections) if (c.established && !kept.has(c.name)) return true;
  return false;
}

export class Reachability {
  /** Reachable as of the last query, or null when a change may have removed an edge. */
  private reach: Set<PeerName> | null = null;
  /** Entries changed since the last query, none of them dropping an edge. */
  private readonly grown = new Set<PeerName>();

  constructor(private readonly localName: PeerName, private readonly lookup: (name: PeerName) => PeerEntry | undefined) {}

  /** An entry was added (`before` undefined) or replaced. Removing unreachable entries needs no call. */
  changed(before: PeerEntry | undefined, after: PeerEntry): void {
    if (this.reach === null) return;
    if (before !== undefined && dropsEdge(before, after)) {
      this.reach = null;
      this.grown.clear();
      return;
    }
    this.grown.add(after.name);
  }

  /**
   * Peers reachable from us over symmetric established connections (both
   * ends list each other as established), us included. The store's own set:
   * callers must not change it.
   */
  current(): ReadonlySet<PeerName> {
    if (this.reach === null) {
      this.reach = new Set([this.localName]);
      this.grown.clear();
      this.extend([this.localName]);
    } else if (this.grown.size > 0) {
      this.extend(this.seeds());
    }
    return this.reach;
  }

  /**
   * Where a new edge may lead out of the known set: every changed entry
   * already reached (its new connections), and every changed entry outside
   * it that now has a symmetric edge to a reached peer (it is reached now).
   * A new edge between two changed entries outside the set is found when
   * the search reaches either of them.
   */
  private seeds(): PeerName[] {
    const reach = this.reach!;
    const seeds: PeerName[] = [];
    for (const name of this.grown) {
      if (reach.has(name)) { seeds.push(name); continue; }
      const e = this.lookup(name);
      if (e === undefined) continue;
      for (const c of e.connections) {
        if (!c.established || !reach.has(c.name)) continue;
        const other = this.lookup(c.name);
        if (other !== undefined && listsEstablished(other, name)) {
          reach.add(name);
          seeds.push(name);
          break;
        }
      }
    }
    this.grown.clear();
    return seeds;
  }

  /** Breadth-first from `start` (already in the set), adding whatever it reaches. */
  private extend(start: PeerName[]): void {
    const reach = this.reach!;
    const queue: PeerEntry[] = [];
    for (const name of start) {
      const e = this.lookup(name);
      if (e !== undefined) queue.push(e);
    }
    for (let i = 0; i < queue.length; i++) {
      const from = queue[i]!;
      for (const c of from.connections) {
        if (!c.established || reach.has(c.name)) continue;
        const to = this.lookup(c.name);
        if (to === undefined || !listsEstablished(to, from.name)) continue;
        reach.add(c.name);
        queue.push(to);
      }
    }
  }
}
