import t from 'tap';
import type { PeerConnection, PeerEntry } from '../../router/mesh/peer';
import { listsEstablished } from '../../router/mesh/peer';
import type { PeerName } from '../../router/mesh/peer-name';
import { peerNameFromBytes } from '../../router/mesh/peer-name';
import { Reachability } from '../../router/mesh/reachability';
import { SeededRng, randomInt, sample } from '../../common/rng';

function pn(i: number): PeerName {
  return peerNameFromBytes(Uint8Array.of(0x02, 0, 0, 0, (i >> 8) & 0xff, i & 0xff));
}

function entry(name: PeerName, version: number, conns: PeerConnection[]): PeerEntry {
  return { name, nickname: 'n', incarnation: 1, version, connections: conns };
}

/** The definition: a search from scratch over symmetric established edges. */
function naive(byName: Map<PeerName, PeerEntry>, self: PeerName): string[] {
  const seen = new Set<PeerName>([self]);
  const queue = [byName.get(self)!];
  for (let i = 0; i < queue.length; i++) {
    const from = queue[i]!;
    for (const c of from.connections) {
      const to = byName.get(c.name);
      if (!c.established || seen.has(c.name) || to === undefined || !listsEstablished(to, from.name)) continue;
      seen.add(c.name);
      queue.push(to);
    }
  }
  return [...seen].sort();
}

t.test('kept up to date through growth, cuts, restarts and collections, it always equals a search from scratch', async (t) => {
  let checks = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const rng = new SeededRng(seed);
    const names = Array.from({ length: 3 + randomInt(rng, 30) }, (_, i) => pn(i + 1));
    const self = names[0]!;
    const byName = new Map<PeerName, PeerEntry>([[self, entry(self, 1, [])]]);
    const r = new Reachability(self, (n) => byName.get(n));
    for (let step = 0; step < 200; step++) {
      const name = names[randomInt(rng, names.length)]!;
      const before = byName.get(name);
      let conns: PeerConnection[];
      const old = before?.connections ?? [];
      if (before !== undefined && rng.next() < 0.7) {
        // Mostly growth (what a join is): one more connection, established or not yet.
        const other = names[randomInt(rng, names.length)]!;
        conns = other === name || old.some((c) => c.name === other)
          ? [...old]
          : [...old, { name: other, address: '', outbound: false, established: rng.next() < 0.85 }];
      } else {
        // A restart or a loss: any list at all, possibly with fewer connections.
        conns = sample(rng, names.filter((x) => x !== name), randomInt(rng, 4))
          .map((x) => ({ name: x, address: '', outbound: false, established: rng.next() < 0.85 }));
      }
      const after = entry(name, (before?.version ?? 0) + 1, conns);
      r.changed(before, after);
      byName.set(name, after);
      if (rng.next() < 0.3) {
        const got = [...r.current()].sort();
        t.strictSame(got, naive(byName, self), `seed ${seed} step ${step}`);
        checks++;
        // As the store's garbage collection does: drop what is out of reach (no call needed).
        if (rng.next() < 0.5) for (const n of [...byName.keys()]) if (!got.includes(n)) byName.delete(n);
      }
    }
  }
  t.ok(checks > 1000, `${checks} comparisons`);
});

t.test('an entry reached only through a changed entry outside the set is found', async (t) => {
  const [a, b, c, d] = [1, 2, 3, 4].map(pn) as [PeerName, PeerName, PeerName, PeerName];
  const est = (n: PeerName): PeerConnection => ({ name: n, address: '', outbound: false, established: true });
  const byName = new Map<PeerName, PeerEntry>([[a, entry(a, 1, [est(b)])], [b, entry(b, 1, [est(a)])]]);
  const r = new Reachability(a, (n) => byName.get(n));
  t.strictSame([...r.current()].sort(), [a, b].sort());
  // d arrives before c, which joins b and d: then c, then b's edge to c.
  for (const e of [entry(d, 1, [est(c)]), entry(c, 1, [est(b), est(d)])]) {
    r.changed(undefined, e);
    byName.set(e.name, e);
  }
  t.strictSame([...r.current()].sort(), [a, b].sort(), 'c lists b, but b does not list c yet');
  const b2 = entry(b, 2, [est(a), est(c)]);
  r.changed(byName.get(b), b2);
  byName.set(b, b2);
  t.strictSame([...r.current()].sort(), [a, b, c, d].sort(), 'b lists c: c and d behind it are reached');
  const b3 = entry(b, 3, [est(a)]);
  r.changed(byName.get(b), b3);
  byName.set(b, b3);
  t.strictSame([...r.current()].sort(), [a, b].sort(), 'b drops c: both are out of reach again');
});
