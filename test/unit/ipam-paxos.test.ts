// The consensus rules of ipam/paxos.ts on their own, with peers that were
// given different --ipalloc-init counts (the getting-started order: the first
// host launched alone has consensus=1, the others 2): acceptors answer every
// proposal, N follows the participants a peer reaches, and whatever order
// records arrive in (a peer launched late included), one value is decided.
// Seeded; the seed is printed (IPAM_SEED=... to replay).

import t from 'tap';
import { Paxos } from '../../ipam/paxos';
import type { PeerName } from '../../router/mesh/peer-name';
import { randomInt, SeededRng } from '../../common/rng';
import { peer, testSeed } from './ipam-helpers';

/** What a gossip message does: `to` folds `from`'s records and runs the rules. */
function deliver(from: Paxos, to: Paxos): void {
  to.merge(from.records());
  to.think();
}

function nodes(counts: number[]): Paxos[] {
  const all = counts.map((n, i) => new Paxos(peer(i), n));
  const names = new Set<PeerName>(all.map((p) => p.self));
  for (const p of all) {
    p.join();
    p.setLive(names);
  }
  return all;
}

/** Everyone hears everyone's join record, as on connect before anyone allocates. */
function connectAll(all: Paxos[]): void {
  for (const a of all) for (const b of all) if (a !== b) deliver(a, b);
}

t.test('an acceptor answers a proposal whatever its own count; both learn one value', async (t) => {
  const [alone, second] = nodes([1, 2]) as [Paxos, Paxos];
  connectAll([alone, second]);
  t.equal(alone.peerCount(), 2, 'the host launched alone counts the peer it reaches');
  second.propose();
  deliver(second, alone);
  t.same(alone.ownRecord()?.promise, second.liveProposal(), 'promised');
  deliver(alone, second);
  deliver(second, alone);
  deliver(alone, second);
  t.same(second.decision(), [peer(0), peer(1)].sort());
  t.same(alone.decision(), second.decision());
});

t.test('N is the larger of our count and the participants we reach', async (t) => {
  const [a, b, c, d] = nodes([1, 2, 2, 5]) as [Paxos, Paxos, Paxos, Paxos];
  connectAll([a, b, c, d]);
  t.equal(a.peerCount(), 4);
  t.equal(a.quorum, 3);
  a.setLive(new Set([a.self, b.self]));
  t.equal(a.peerCount(), 2, 'known but unreachable peers do not count');
  t.equal(a.progress().reachable, 2);
  a.setLive(new Set([a.self]));
  t.equal(a.peerCount(), 1);
  t.equal(d.peerCount(), 5, 'a count above the participants stays');
  t.equal(d.quorum, 3);
});

t.test('a host launched alone decides alone, but needs a quorum once it reaches the others', async (t) => {
  const [lone] = nodes([1]) as [Paxos];
  lone.propose();
  lone.think();
  t.same(lone.decision(), [peer(0)], 'alone: decided at once');

  const [a, b, c] = nodes([1, 2, 2]) as [Paxos, Paxos, Paxos];
  connectAll([a, b, c]);
  a.propose();
  a.think();
  t.equal(a.decision(), null, 'with two peers reachable, one promise is not enough');
  deliver(a, b);
  deliver(b, a);
  deliver(a, c);
  deliver(c, a);
  t.same(a.decision(), [peer(0), peer(1), peer(2)]);
});

t.test('property: one value is decided, whatever the counts, the order of records and a peer that joins late', async (t) => {
  const seed = testSeed(20_240_611);
  t.comment(`seed ${seed}`);
  const rng = new SeededRng(seed);
  let decidedRuns = 0;
  for (let run = 0; run < 400; run++) {
    const size = 2 + randomInt(rng, 4);
    // The getting-started shape (first alone, the others given one address) or any counts at all.
    const counts = rng.next() < 0.5
      ? Array.from({ length: size }, (_, i) => (i === 0 ? 1 : 2))
      : Array.from({ length: size }, () => 1 + randomInt(rng, size + 1));
    const all = nodes(counts);
    // The last one was launched late: the others know each other, it is heard of only through gossip.
    // Values then differ (with or without it), so only quorums that meet keep them apart.
    connectAll(all.slice(0, -1));
    const values = new Set<string>();
    for (let step = 0; step < 400; step++) {
      const roll = rng.next();
      const i = randomInt(rng, size);
      if (roll < 0.08) {
        all[i]!.propose();
        all[i]!.think();
      } else if (roll < 0.9) {
        const j = randomInt(rng, size);
        if (j !== i) deliver(all[i]!, all[j]!);
      }
      // The rest: a message lost.
      for (const p of all) {
        const d = p.decision();
        if (d !== null) values.add(d.join(','));
      }
      if (values.size > 1) break;
    }
    if (values.size > 1) {
      t.fail(`run ${run}, counts ${counts.join(',')}: two values decided: ${[...values].join(' | ')}`);
      return;
    }
    if (values.size === 1) decidedRuns++;
  }
  t.ok(decidedRuns > 300, `most runs decide (${decidedRuns} of 400)`);
});
