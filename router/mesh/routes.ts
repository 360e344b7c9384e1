// Unicast and broadcast routes computed from a topology snapshot. Every peer
// runs the same deterministic rules on the same entries, so they all agree on
// paths and broadcast trees without exchanging anything else:
//  - only symmetric established edges count (both ends list each other as
//    established), so a half-open or one-sided connection never carries traffic;
//  - a node's parent in a BFS from a root is its smallest-named neighbour one
//    layer closer to the root. That depends only on distances, never on queue
//    order, so the tree is the same wherever it is computed.
// Pure: it must never hold a reference to live state, read a clock, or do I/O;
// callers recompute (debounced) after topology changes. Immutable once built.

import type { PeerEntry } from './peer';
import { comparePeerEntries } from './peer';
import type { PeerName } from './peer-name';
import { comparePeerNames } from './peer-name';

export class Routes {
  /** Broadcast children of us per origin, filled on first use. */
  private readonly childrenByOrigin = new Map<PeerName, readonly PeerName[]>();
  /** BFS scratch reused across broadcastChildren calls (one per instance, never shared). */
  private readonly scratchDist: Int32Array;
  private readonly scratchQueue: Int32Array;

  private constructor(
    /** All peers with an entry, sorted; a node's index is its rank, so index order is name order. */
    private readonly names: readonly PeerName[],
    private readonly indexOf: ReadonlyMap<PeerName, number>,
    /** Symmetric established neighbours per node, ascending. */
    private readonly adj: Adjacency,
    /** Our index, or -1 when the topology has no entry for us (then we reach only ourselves). */
    private readonly selfIndex: number,
    /** First hop from us toward each node, -1 for us and for unreachable nodes. */
    private readonly firstHop: Int32Array,
    /** Hops from us to each node, -1 when unreachable. */
    private readonly selfDist: Int32Array,
    private readonly reachableSet: ReadonlySet<PeerName>,
  ) {
    this.scratchDist = new Int32Array(names.length);
    this.scratchQueue = new Int32Array(names.length);
  }

  static compute(entries: Iterable<PeerEntry>, self: PeerName): Routes {
    // Duplicates cannot come from a Peers store, but keep the greatest so the
    // result still does not depend on iteration order.
    const byName = new Map<PeerName, PeerEntry>();
    for (const e of entries) {
      const prev = byName.get(e.name);
      if (prev === undefined || comparePeerEntries(e, prev) > 0) byName.set(e.name, e);
    }
    const names = [...byName.keys()].sort(comparePeerNames);
    const n = names.length;
    const indexOf = new Map<PeerName, number>();
    names.forEach((name, i) => indexOf.set(name, i));

    // Established out-lists, sorted, so the symmetry test is a binary search
    // in the other side's list rather than a scan: a full mesh of 1000 would
    // otherwise cost 10^9 steps.
    // Duplicates are dropped, since an entry built outside a Peers store may
    // list a peer twice and a doubled edge would double broadcast delivery.
    const out: number[][] = new Array<number[]>(n);
    for (let i = 0; i < n; i++) {
      const list: number[] = [];
      for (const c of byName.get(names[i]!)!.connections) {
        if (!c.established) continue;
        const j = indexOf.get(c.name);
        if (j !== undefined && j !== i) list.push(j);
      }
      out[i] = sortedUnique(list);
    }
    // Walking i's list in ascending order keeps each adjacency list sorted:
    // j is appended to adj[i] in j order, and i to adj[j] in i order.
    const lists: number[][] = names.map(() => []);
    for (let i = 0; i < n; i++) {
      for (const j of out[i]!) {
        if (j > i && contains(out[j]!, i)) {
          lists[i]!.push(j);
          lists[j]!.push(i);
        }
      }
    }
    const adj = packAdjacency(lists);

    const selfIndex = indexOf.get(self) ?? -1;
    const firstHop = new Int32Array(n).fill(-1);
    const reachable = new Set<PeerName>([self]);
    const dist = new Int32Array(n).fill(-1);
    if (selfIndex >= 0) {
      const order = bfs(adj, selfIndex, dist, new Int32Array(n), Infinity);
      for (const v of order) {
        if (v === selfIndex) continue;
        reachable.add(names[v]!);
        const p = parentOf(adj, dist, v);
        firstHop[v] = p === selfIndex ? v : firstHop[p]!;
      }
    }
    return new Routes(names, indexOf, adj, selfIndex, firstHop, dist, reachable);
  }

  /**
   * First hop on a shortest path from us to `dst`, or null if `dst` is us or
   * unreachable. The hop is one step closer to `dst`, so a packet forwarded
   * by each hop's own nextHop arrives in exactly the shortest distance.
   */
  nextHop(dst: PeerName): PeerName | null {
    const i = this.indexOf.get(dst);
    if (i === undefined) return null;
    const hop = this.firstHop[i]!;
    return hop < 0 ? null : this.names[hop]!;
  }

  /** Hops on a shortest path from us to `dst`: 0 for us, -1 when unknown or unreachable. */
  hops(dst: PeerName): number {
    const i = this.indexOf.get(dst);
    return i === undefined ? -1 : this.selfDist[i]!;
  }

  /**
   * Our children in the broadcast tree rooted at `origin`: the neighbours one
   * layer further from `origin` whose parent is us. [] when `origin` is
   * unknown or unreachable. Computed on first use and cached per origin.
   */
  broadcastChildren(origin: PeerName): PeerName[] {
    let children = this.childrenByOrigin.get(origin);
    if (children === undefined) {
      children = this.computeChildren(origin);
      this.childrenByOrigin.set(origin, children);
    }
    return children.slice();
  }

  private computeChildren(origin: PeerName): readonly PeerName[] {
    const root = this.indexOf.get(origin);
    if (root === undefined || this.selfIndex < 0 || !this.reachableSet.has(origin)) return [];
    const dist = this.scratchDist;
    dist.fill(-1);
    // Our children sit one layer below us; their parents one layer above
    // them, i.e. our layer. Those layers are fully known once the BFS has
    // dequeued everything up to our own distance, so it stops there.
    // Edges are symmetric, so our distance from origin is origin's distance from us.
    bfs(this.adj, root, dist, this.scratchQueue, this.selfDist[root]!);
    const mine = dist[this.selfIndex]!;
    const out: PeerName[] = [];
    const { start, list } = this.adj;
    for (let k = start[this.selfIndex]!; k < start[this.selfIndex + 1]!; k++) {
      const v = list[k]!;
      if (dist[v] === mine + 1 && parentOf(this.adj, dist, v) === this.selfIndex) out.push(this.names[v]!);
    }
    return out;
  }

  reachable(): ReadonlySet<PeerName> {
    return this.reachableSet;
  }

  /** Neighbours we have a symmetric established edge with, sorted. */
  neighbours(): PeerName[] {
    if (this.selfIndex < 0) return [];
    const { start, list } = this.adj;
    return Array.from(list.subarray(start[this.selfIndex]!, start[this.selfIndex + 1]!), (v) => this.names[v]!);
  }
}

/**
 * Adjacency lists packed into two arrays (node v's neighbours are
 * list[start[v]] up to list[start[v + 1]]): one typed array per node made a
 * computation for 250 peers take milliseconds, mostly allocating.
 */
interface Adjacency {
  readonly start: Int32Array;
  readonly list: Int32Array;
}

function packAdjacency(lists: readonly number[][]): Adjacency {
  const start = new Int32Array(lists.length + 1);
  for (let i = 0; i < lists.length; i++) start[i + 1] = start[i]! + lists[i]!.length;
  const list = new Int32Array(start[lists.length]!);
  for (let i = 0; i < lists.length; i++) list.set(lists[i]!, start[i]!);
  return { start, list };
}

/**
 * Breadth-first search from `root`, filling `dist` (which must hold -1
 * everywhere) and returning the visit order. Stops dequeuing once a node is
 * farther than `maxDequeueDist`, having discovered every node up to one more.
 */
function bfs(adj: Adjacency, root: number, dist: Int32Array, queue: Int32Array, maxDequeueDist: number): Int32Array {
  let head = 0;
  let tail = 0;
  dist[root] = 0;
  queue[tail++] = root;
  while (head < tail) {
    const u = queue[head++]!;
    const du = dist[u]!;
    if (du > maxDequeueDist) break;
    for (let k = adj.start[u]!; k < adj.start[u + 1]!; k++) {
      const v = adj.list[k]!;
      if (dist[v] === -1) {
        dist[v] = du + 1;
        queue[tail++] = v;
      }
    }
  }
  return queue.subarray(0, tail);
}

/** Smallest-indexed (= smallest-named) neighbour one layer closer to the root; -1 for the root. */
function parentOf(adj: Adjacency, dist: Int32Array, v: number): number {
  const want = dist[v]! - 1;
  for (let k = adj.start[v]!; k < adj.start[v + 1]!; k++) if (dist[adj.list[k]!] === want) return adj.list[k]!;
  return -1;
}

/**
 * Sorts ascending and drops repeats. Most lists are short (a handful of
 * connections), where an insertion sort beats a comparator sort several times
 * over; long ones (up to 1024 connections) would make it quadratic, so they
 * take the library sort.
 */
function sortedUnique(list: number[]): number[] {
  if (list.length > 32) {
    list.sort((a, b) => a - b);
  } else {
    for (let i = 1; i < list.length; i++) {
      const x = list[i]!;
      let k = i;
      while (k > 0 && list[k - 1]! > x) {
        list[k] = list[k - 1]!;
        k--;
      }
      list[k] = x;
    }
  }
  let w = 0;
  for (let r = 0; r < list.length; r++) if (r === 0 || list[r] !== list[w - 1]) list[w++] = list[r]!;
  list.length = w;
  return list;
}

function contains(sorted: readonly number[], x: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid]!;
    if (v === x) return true;
    if (v < x) lo = mid + 1; else hi = mid - 1;
  }
  return false;
}
