import t from 'tap';
import type { PeerConnection, PeerEntry } from '../../router/mesh/peer';
import type { PeerName } from '../../router/mesh/peer-name';
import { peerNameFromBytes } from '../../router/mesh/peer-name';
import type { Rng } from '../../common/rng';
import { SeededRng, randomInt, sample } from '../../common/rng';
import { Routes } from '../../router/mesh/routes';

function pn(i: number): PeerName {
  return peerNameFromBytes(Uint8Array.of(0x02, 0, 0, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff));
}

/** Entries from a compact edge list: [from, to, established] means `from` lists `to`. */
function topology(names: readonly PeerName[], edges: readonly [PeerName, PeerName, boolean][]): PeerEntry[] {
  const conns = new Map<PeerName, PeerConnection[]>(names.map((n) => [n, []]));
  for (const [from, to, established] of edges) conns.get(from)!.push({ name: to, address: '', outbound: false, established });
  return names.map((name) => ({ name, nickname: '', incarnation: 1, version: 1, connections: conns.get(name)! }));
}

/** Both ends list each other as established. */
function link(a: PeerName, b: PeerName): [PeerName, PeerName, boolean][] {
  return [[a, b, true], [b, a, true]];
}

interface Graph { names: PeerName[]; entries: PeerEntry[] }

/**
 * Random names (so sorted order is not insertion order) and random pairs,
 * mostly symmetric established links, plus one-sided listings, half-open
 * links and dead links that must never carry traffic.
 */
function randomGraph(rng: Rng, n: number, edgeProbability: number): Graph {
  const picked = new Set<number>();
  while (picked.size < n) picked.add(randomInt(rng, 1 << 24));
  const names = [...picked].map(pn);
  const edges: [PeerName, PeerName, boolean][] = [];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (rng.next() >= edgeProbability) continue;
      const [a, b] = rng.next() < 0.5 ? [names[i]!, names[j]!] : [names[j]!, names[i]!];
      const kind = rng.next();
      if (kind < 0.7) edges.push(...link(a, b));
      else if (kind < 0.82) edges.push([a, b, true]);                  // only one side lists it
      else if (kind < 0.94) edges.push([a, b, true], [b, a, false]);   // half-open
      else edges.push([a, b, false], [b, a, false]);                   // both still handshaking
    }
  }
  return { names, entries: topology(names, edges) };
}

/** Reference: adjacency by scanning both lists, distances by plain BFS. */
function referenceAdjacency(entries: readonly PeerEntry[]): Map<PeerName, Set<PeerName>> {
  const lists = (x: PeerEntry, y: PeerName): boolean => x.connections.some((c) => c.name === y && c.established);
  const adj = new Map<PeerName, Set<PeerName>>(entries.map((e) => [e.name, new Set<PeerName>()]));
  for (const x of entries) for (const y of entries) if (x !== y && lists(x, y.name) && lists(y, x.name)) adj.get(x.name)!.add(y.name);
  return adj;
}

function referenceDistances(adj: Map<PeerName, Set<PeerName>>, from: PeerName): Map<PeerName, number> {
  const dist = new Map<PeerName, number>([[from, 0]]);
  let frontier = [from];
  for (let d = 1; frontier.length > 0; d++) {
    const next: PeerName[] = [];
    for (const u of frontier) for (const v of adj.get(u) ?? []) if (!dist.has(v)) { dist.set(v, d); next.push(v); }
    frontier = next;
  }
  return dist;
}

t.test('table: shortest paths, sorted tie-breaks, one-sided and half-open edges unused', async (t) => {
  const [a, b, c, d, e] = [1, 2, 3, 4, 5].map(pn) as [PeerName, PeerName, PeerName, PeerName, PeerName];
  // Diamond a-b-d, a-c-d: both paths are shortest; the smaller name (b) wins everywhere.
  const diamond = topology([a, b, c, d], [...link(a, b), ...link(a, c), ...link(b, d), ...link(c, d)]);
  const ra = Routes.compute(diamond, a);
  t.equal(ra.nextHop(d), b);
  t.equal(ra.nextHop(b), b);
  t.equal(ra.nextHop(a), null, 'no route to ourselves');
  t.equal(ra.nextHop(e), null, 'unknown peer');
  t.same(ra.neighbours(), [b, c]);
  t.same(ra.broadcastChildren(a), [b, c]);
  t.same(Routes.compute(diamond, b).broadcastChildren(a), [d], 'd hangs under b, the smaller of its parents');
  t.same(Routes.compute(diamond, c).broadcastChildren(a), []);
  t.same(Routes.compute(diamond, d).nextHop(a), b);

  // a-b symmetric; b lists c but c does not list b; c-d half-open; d-e symmetric.
  const lopsided = topology([a, b, c, d, e], [...link(a, b), [b, c, true], [c, d, true], [d, c, false], ...link(d, e)]);
  const rb = Routes.compute(lopsided, b);
  t.same(rb.neighbours(), [a]);
  t.equal(rb.nextHop(c), null, 'one-sided edge unused');
  t.same([...rb.reachable()].sort(), [a, b]);
  t.equal(Routes.compute(lopsided, c).nextHop(d), null, 'half-open edge unused');
  t.same(Routes.compute(lopsided, d).neighbours(), [e]);
  t.same(Routes.compute(lopsided, a).broadcastChildren(e), [], 'origin unreachable from us');
  t.same(Routes.compute(lopsided, a).broadcastChildren(pn(99)), [], 'origin unknown');

  // We have no entry: we reach only ourselves, even if others list us.
  const without = Routes.compute(topology([b], [[b, a, true]]), a);
  t.same([...without.reachable()], [a]);
  t.same(without.neighbours(), []);
  t.equal(without.nextHop(b), null);
  t.same(without.broadcastChildren(b), []);

  // An entry built by hand may list a peer twice: still one edge, one copy of a broadcast.
  const doubled = topology([a, b, c], [...link(a, b), [a, b, true], [a, b, false], ...link(b, c), [c, b, true]]);
  t.same(Routes.compute(doubled, a).neighbours(), [b]);
  t.same(Routes.compute(doubled, b).neighbours(), [a, c]);
  t.same(Routes.compute(doubled, a).broadcastChildren(a), [b]);
  t.same(Routes.compute(doubled, b).broadcastChildren(a), [c]);

  // A line: the route is the line, whatever the names.
  const line = topology([e, c, a, d, b], [...link(e, a), ...link(a, d), ...link(d, b), ...link(b, c)]);
  t.equal(Routes.compute(line, e).nextHop(c), a);
  t.equal(Routes.compute(line, d).nextHop(e), a);
  t.same(Routes.compute(line, d).broadcastChildren(e), [b]);
  t.same(Routes.compute(line, c).broadcastChildren(e), []);
});

t.test('random graphs: hop-by-hop unicast takes exactly the shortest distance; broadcast reaches each peer once', async (t) => {
  const problems: string[] = [];
  let pairs = 0;
  let unreachablePairs = 0;
  for (let seed = 1; seed <= 50; seed++) {
    const rng = new SeededRng(seed);
    const n = 2 + randomInt(rng, 59);
    const { names, entries } = randomGraph(rng, n, 0.02 + rng.next() * 0.25);
    const adj = referenceAdjacency(entries);
    const routes = new Map(names.map((name) => [name, Routes.compute(entries, name)]));
    const at = (name: PeerName): Routes => routes.get(name)!;
    const fail = (what: string): void => { if (problems.length < 20) problems.push(`seed ${seed} (${n} peers): ${what}`); };

    for (const src of names) {
      const dist = referenceDistances(adj, src);
      const r = at(src);
      if ([...r.reachable()].sort().join() !== [...dist.keys()].sort().join()) fail(`${src} reachable set differs`);
      if (r.neighbours().join() !== [...adj.get(src)!].sort().join()) fail(`${src} neighbours differ`);
      for (const dst of names) {
        const want = dist.get(dst);
        if (dst === src || want === undefined) {
          if (r.nextHop(dst) !== null) fail(`${src}->${dst} should have no route`);
          if (want === undefined) unreachablePairs++;
          continue;
        }
        pairs++;
        let cur = src;
        let hops = 0;
        while (cur !== dst && hops <= n) {
          const hop = at(cur).nextHop(dst);
          if (hop === null) { fail(`${src}->${dst}: ${cur} has no next hop`); break; }
          if (!adj.get(cur)!.has(hop)) { fail(`${src}->${dst}: ${cur} forwards to ${hop} over a non-symmetric edge`); break; }
          cur = hop;
          hops++;
        }
        if (cur === dst && hops !== want) fail(`${src}->${dst}: ${hops} hops, shortest is ${want}`);
        if (cur !== dst && hops > n) fail(`${src}->${dst}: loops`);
      }
    }

    for (const origin of names) {
      const want = referenceDistances(adj, origin);
      const received = new Map<PeerName, number>([[origin, 1]]);
      const queue = [origin];
      while (queue.length > 0) {
        const u = queue.shift()!;
        for (const child of at(u).broadcastChildren(origin)) {
          if (!adj.get(u)!.has(child)) fail(`broadcast from ${origin}: ${u} sends to ${child} over a non-symmetric edge`);
          received.set(child, (received.get(child) ?? 0) + 1);
          // Forward only the first copy, so a duplicate shows up as a count of 2 rather than a storm.
          if (received.get(child) === 1) queue.push(child);
        }
      }
      for (const name of names) {
        const got = received.get(name) ?? 0;
        const expected = want.has(name) ? 1 : 0;
        if (got !== expected) fail(`broadcast from ${origin}: ${name} received ${got} copies, expected ${expected}`);
      }
      // Peers outside the origin's component have no children for it.
      for (const name of names) if (!want.has(name) && at(name).broadcastChildren(origin).length > 0) fail(`${name} has children for unreachable ${origin}`);
    }
  }
  t.same(problems, [], 'no wrong hops, loops, lost or duplicated broadcasts');
  t.ok(pairs > 1000 && unreachablePairs > 100, `graphs exercise both cases (${pairs} routed pairs, ${unreachablePairs} unreachable)`);
});

t.test('routes do not depend on the order entries are given in', async (t) => {
  let differing = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new SeededRng(1000 + seed);
    const { names, entries } = randomGraph(rng, 2 + randomInt(rng, 40), 0.15);
    const shuffledEntries = sample(rng, entries, entries.length).map((e) => ({ ...e, connections: sample(rng, e.connections, e.connections.length) }));
    for (const self of names) {
      const x = Routes.compute(entries, self);
      const y = Routes.compute(shuffledEntries, self);
      for (const other of names) {
        if (x.nextHop(other) !== y.nextHop(other)) differing++;
        if (x.broadcastChildren(other).join() !== y.broadcastChildren(other).join()) differing++;
      }
    }
  }
  t.equal(differing, 0);
});

t.test('1000 peers: all routes and broadcast trees', async (t) => {
  const rng = new SeededRng(7);
  const n = 1000;
  const picked = new Set<number>();
  while (picked.size < n) picked.add(randomInt(rng, 1 << 24));
  const names = [...picked].map(pn);
  const edges: [PeerName, PeerName, boolean][] = [];
  // Each peer dials ~3 others: about 6 links per peer, like a mesh with a connection limit.
  for (let i = 0; i < n; i++) {
    for (const j of sample(rng, [...Array(n).keys()].filter((k) => k !== i), 3)) edges.push(...link(names[i]!, names[j]!));
  }
  // i dialling j and j dialling i is still one link; list it once per side.
  const seen = new Set<string>();
  const entries = topology(names, edges.filter(([a, b]) => !seen.has(`${a}>${b}`) && seen.add(`${a}>${b}`)));

  const start = process.hrtime.bigint();
  const routes = Routes.compute(entries, names[0]!);
  const computed = process.hrtime.bigint();
  let routed = 0;
  for (const dst of names) if (routes.nextHop(dst) !== null) routed++;
  let children = 0;
  for (const origin of names) children += routes.broadcastChildren(origin).length;
  const done = process.hrtime.bigint();
  t.comment(`1000 peers, ${seen.size / 2} links: compute ${Number(computed - start) / 1e6} ms, ` +
    `+ all next hops and 1000 broadcast trees ${Number(done - computed) / 1e6} ms`);
  t.equal(routed, n - 1, 'every other peer routed');
  t.ok(children >= 0);

  // Every peer computing its own routes, as the whole mesh does after a change.
  const allStart = process.hrtime.bigint();
  const everyone = new Map(names.map((name) => [name, Routes.compute(entries, name)]));
  const allDone = process.hrtime.bigint();
  t.comment(`every peer computes its routes: ${Number(allDone - allStart) / 1e6} ms in total`);
  // Spot check across peers: a broadcast from a few origins reaches everyone exactly once.
  for (const origin of sample(rng, names, 3)) {
    const received = new Map<PeerName, number>([[origin, 1]]);
    const queue = [origin];
    for (let i = 0; i < queue.length; i++) {
      for (const child of everyone.get(queue[i]!)!.broadcastChildren(origin)) {
        received.set(child, (received.get(child) ?? 0) + 1);
        queue.push(child);
      }
    }
    t.ok(received.size === n && [...received.values()].every((c) => c === 1), `broadcast from ${origin} reaches all ${n} once`);
  }
});
