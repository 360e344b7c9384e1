// Property: whatever the sequence of allocations, releases, partitions and
// heals, and whatever order (and how often) gossip arrives, IPAM on many
// peers never hands out an address twice, every address lies in its holder's
// own space, and once healed every peer holds the same ring, which covers the
// whole range. Seeded; the seed is printed (IPAM_SEED=... to replay).

import t from 'tap';
import { parseIpamConfig } from '../../ipam/config';
import { Ipam } from '../../ipam/ipam';
import { silentLogger } from '../../common/logger';
import { randomInt, SeededRng } from '../../common/rng';
import { allocationsOutsideOwnSpace, duplicates, ringDigest } from '../sim/ipam-sim-helpers';
import { FakeNet } from './ipam-fake-hub';
import { peer, testSeed } from './ipam-helpers';

let allocatedTotal = 0;

async function runOnce(seed: number, peerCount: number, steps: number): Promise<string | null> {
  const rng = new SeededRng(seed);
  const net = new FakeNet();
  net.shuffle = new SeededRng(seed ^ 0x5bd1e995);
  const names = Array.from({ length: peerCount }, (_, i) => peer(i));
  const ipams = names.map((n, i) => new Ipam(
    { hub: net.hub(n), clock: net.clock, rng: new SeededRng(seed + i), logger: silentLogger },
    { config: parseIpamConfig({ range: '10.7.0.0/25', init: `consensus=${peerCount}`, initialPeerCount: peerCount }), timings: { requestTimeoutMs: 30_000 } },
  ));
  const outcomes: Promise<unknown>[] = [];
  const held: { i: number; c: string }[] = [];
  for (let step = 0; step < steps; step++) {
    const roll = rng.next();
    const i = randomInt(rng, peerCount);
    if (roll < 0.55) {
      const c = `c${step}`;
      const subnet = rng.next() < 0.2 ? { subnet: `10.7.0.${64 * randomInt(rng, 2)}/26` } : {};
      outcomes.push(ipams[i]!.allocate(c, subnet).then(() => { allocatedTotal++; held.push({ i, c }); }, () => undefined));
    } else if (roll < 0.62) {
      // A claim of a random address: granted, or refused, never a duplicate.
      const c = `k${step}`;
      const addr = `10.7.0.${1 + randomInt(rng, 126)}/25`;
      outcomes.push(ipams[i]!.claim(c, addr, { timeoutMs: 5_000 }).then(() => { held.push({ i, c }); }, () => undefined));
    } else if (roll < 0.75 && held.length > 0) {
      const h = held.splice(randomInt(rng, held.length), 1)[0]!;
      ipams[h.i]!.releaseContainer(h.c);
    } else if (roll < 0.8) {
      const cut = names.filter(() => rng.next() < 0.5);
      net.partition(cut, names.filter((n) => !cut.includes(n)));
    } else if (roll < 0.85) {
      net.healAll();
    } else if (roll < 0.9) {
      net.gossipRound();
    }
    net.run(randomInt(rng, 400));
    if (step % 25 === 0) await new Promise((r) => setImmediate(r));
    const dups = duplicates(ipams);
    if (dups.length > 0) return `step ${step}: duplicate ${dups[0]}`;
  }
  net.healAll();
  for (let r = 0; r < 5; r++) { net.gossipRound(); net.run(3_000); }
  net.run(40_000);
  await Promise.allSettled(outcomes);
  for (let r = 0; r < 3; r++) { net.gossipRound(); net.run(2_000); }
  const dups = duplicates(ipams);
  if (dups.length > 0) return `duplicate ${dups[0]}`;
  const outside = allocationsOutsideOwnSpace(ipams);
  if (outside.length > 0) return `outside own space: ${outside[0]}`;
  if (new Set(ipams.map(ringDigest)).size !== 1) return 'rings differ after healing';
  const owned = ipams[0]!.status().peers.reduce((n, p) => n + p.owned, 0);
  if (owned !== 128) return `ring covers ${owned} of 128 addresses`;
  const pending = ipams.reduce((n, x) => n + x.status().pending.length, 0);
  if (pending > 0) return `${pending} requests still pending`;
  for (const x of ipams) x.shutdown();
  return null;
}

t.test('property: random operations, partitions and gossip orders never duplicate an address', async (t) => {
  const base = testSeed(1000);
  t.comment(`seeds ${base}..${base + 11}`);
  for (let k = 0; k < 12; k++) {
    const problem = await runOnce(base + k, 3 + (k % 6), 300);
    if (problem !== null) t.fail(`seed ${base + k}: ${problem}`);
  }
  t.ok(allocatedTotal > 800, `${allocatedTotal} allocations succeeded`);
});
