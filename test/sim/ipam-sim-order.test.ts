// The getting-started order on real routers in one process: the first host
// is launched with no peers, every other host with the first one's address,
// each with the --ipalloc-init default `weave launch` derives (the peers
// named plus itself: 1 for the first, 2 for the others). For every order of
// launches of 2 and 3 hosts and every order of first allocations (one after
// another, or all at once; right after the last launch, or once the mesh has
// settled), every request gets an address, all distinct, in bounded
// simulated time, with one ring everywhere and no warning in any status.

import t from 'tap';
import type { Test } from 'tap';
import { ipamConfigOf } from '../../cli/launch-options';
import type { Ipam } from '../../ipam/ipam';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh, simAddress } from './mesh';
import { allocationsOutsideOwnSpace, attachIpam, duplicates, flush, ringDigest, settleAll } from './ipam-sim-helpers';

/** Simulated time every order must finish in (consensus retries start at 1 s). */
const BOUND_MS = 20_000;
/** Between two `weave launch` commands typed by hand. */
const LAUNCH_GAP_MS = 1_500;

t.before(async () => { await loadSodium(); });

function permutations(items: number[]): number[][] {
  if (items.length <= 1) return [items.slice()];
  const out: number[][] = [];
  items.forEach((x, i) => {
    for (const rest of permutations([...items.slice(0, i), ...items.slice(i + 1)])) out.push([x, ...rest]);
  });
  return out;
}

interface Scenario {
  launch: number[];
  allocate: number[];
  together: boolean;
  settled: boolean;
}

function describe(s: Scenario): string {
  return `launch ${s.launch.map((i) => `h${i}`).join(',')}; allocate ${s.allocate.map((i) => `h${i}`).join(',')} ` +
    `${s.together ? 'all at once' : 'one after another'}, ${s.settled ? 'once settled' : 'right after the last launch'}`;
}

/** Runs one scenario; returns what went wrong (empty when all is well). */
async function runScenario(s: Scenario, seed: number): Promise<string[]> {
  const mesh = new SimMesh({ seed });
  try {
    const ipams: Ipam[] = [];
    const first = s.launch[0]!;
    for (const host of s.launch) {
      const peers = host === first ? [] : [first];
      const p = await mesh.addPeer(peers, host);
      // As `weave launch [peers]` derives it (cli/launch-options.ts): consensus among the peers named plus ourselves.
      const config = ipamConfigOf({ ipalloc: { range: '10.32.0.0/16', defaultSubnet: null, rangeV6: null, init: null }, peers: peers.map(simAddress) });
      ipams[host] = attachIpam(mesh, p, { config }, seed);
      if (host !== s.launch[s.launch.length - 1]) mesh.net.run(LAUNCH_GAP_MS);
    }
    if (s.settled) mesh.net.run(3_000);
    const start = mesh.clock.now();
    const addresses: string[] = [];
    const problems: string[] = [];
    try {
      if (s.together) {
        const got = await settleAll(mesh, s.allocate.map((h) => ipams[h]!.allocate(`c${h}`)), BOUND_MS);
        for (const r of got) if (r.status === 'fulfilled') addresses.push(r.value);
      } else {
        for (const h of s.allocate) {
          const [r] = await settleAll(mesh, [ipams[h]!.allocate(`c${h}`)], BOUND_MS);
          if (r!.status === 'fulfilled') addresses.push(r!.value);
        }
      }
    } catch (err) {
      // Stuck: say what each host waits for.
      problems.push(`${String(err)}: ${ipams.map((ipam, i) => `h${i}: ${ipam.waitingFor() ?? 'ready'}`).join('; ')}`);
      return problems;
    }
    const took = mesh.clock.now() - start;
    mesh.net.run(3_000);
    await flush();
    if (addresses.length !== s.allocate.length) problems.push(`${s.allocate.length - addresses.length} request(s) refused`);
    if (new Set(addresses).size !== addresses.length) problems.push(`duplicate addresses: ${addresses.join(' ')}`);
    if (took > BOUND_MS) problems.push(`took ${took} ms`);
    problems.push(...duplicates(ipams), ...allocationsOutsideOwnSpace(ipams));
    if (new Set(ipams.map(ringDigest)).size !== 1) problems.push('more than one ring');
    for (const [i, ipam] of ipams.entries()) {
      const st = ipam.status();
      if (st.warnings.length > 0) problems.push(`h${i} warns: ${st.warnings.join('; ')}`);
      if (st.state !== 'ready') problems.push(`h${i} is ${st.state}: ${st.waitingFor}`);
    }
    return problems;
  } finally {
    mesh.shutdown();
  }
}

async function everyOrder(t: Test, hosts: number): Promise<void> {
  const ids = Array.from({ length: hosts }, (_, i) => i);
  let runs = 0;
  let seed = 100 * hosts;
  for (const launch of permutations(ids)) {
    for (const allocate of permutations(ids)) {
      for (const together of [false, true]) {
        for (const settled of [false, true]) {
          const s: Scenario = { launch, allocate, together, settled };
          const problems = await runScenario(s, ++seed);
          runs++;
          if (problems.length > 0) t.fail(`${describe(s)}: ${problems.join('; ')}`);
        }
      }
    }
  }
  t.pass(`${runs} orders: every container got a distinct address within ${BOUND_MS / 1000} simulated s, one ring, no warning`);
}

t.test('two hosts: every launch order and every order of first allocations ends with addresses handed out', (t) => everyOrder(t, 2));

t.test('three hosts: every launch order and every order of first allocations ends with addresses handed out', (t) => everyOrder(t, 3));

t.test('a true split (two hosts launched alone, each attaching before they are connected): each status says exactly what to type', async (t) => {
  const mesh = new SimMesh({ seed: 7 });
  t.teardown(() => mesh.shutdown());
  const config = ipamConfigOf({ ipalloc: { range: '10.32.0.0/16', defaultSubnet: null, rangeV6: null, init: null }, peers: [] });
  const ipams: Ipam[] = [];
  for (const host of [0, 1]) ipams[host] = attachIpam(mesh, await mesh.addPeer([], host), { config }, 7);
  const [h0, h1] = ipams as [Ipam, Ipam];
  // h0 runs two containers, h1 one: h0's ring is the one to keep.
  await settleAll(mesh, [h0.allocate('a'), h0.allocate('b'), h1.allocate('c')], BOUND_MS);
  mesh.net.run(3_000);
  mesh.peers[1]!.router.connect([simAddress(0)], false);
  mesh.net.run(5_000);
  await flush();
  const said = (i: Ipam): string => i.status().warnings.join(' | ');
  t.match(said(h0), /two address rings met .* ours is kept, nothing to do here/, `the host with more in use keeps its ring: ${said(h0)}`);
  t.match(said(h1), /theirs is kept: on this peer run weave reset --force, then weave launch <address of [0-9a-f:]+\(p0\)>/, `the other is told what to type: ${said(h1)}`);
  // Both rings handed out 10.32.0.1: that is why one side must go, and why consensus avoids this whenever peers reach each other.
  t.ok(ipams.every((i) => i.status().state === 'ready'), 'each keeps serving its own containers meanwhile');
});
