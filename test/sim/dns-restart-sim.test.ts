// A peer that restarts (kill -9, then weave launch) gets its names back on
// every peer promptly (issue 11: within 10 s of the relaunch), with the mesh's
// real periodic gossip interval (30 s), so anti-entropy cannot be what saves
// it. The relaunched peer connects and hears its own old records before it
// has restored its containers, so it first corrects them to removals; its
// re-registration must then reach every peer although, at that instant, it
// may not have routes to them yet.

import * as packet from 'dns-packet';
import t from 'tap';
import { DnsService } from '../../dns/service';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import { DEFAULT_TIMINGS } from '../../router/mesh/constants';
import { SimMesh } from './mesh';
import type { SimPeer } from './mesh';

const DOMAIN = 'weave.local';

function attachDns(mesh: SimMesh, peer: SimPeer, seed: number): DnsService {
  const dns = new DnsService(
    { hub: peer.router.gossip, clock: mesh.clock, rng: new SeededRng(seed), logger: silentLogger },
    { domain: DOMAIN, ttlS: 1 },
  );
  dns.start();
  return dns;
}

function resolves(d: DnsService, name: string, want: string): boolean {
  const q = packet.encode({ type: 'query', id: 1, flags: packet.RECURSION_DESIRED, questions: [{ name, type: 'A' }] });
  const o = d.resolve(q, 'udp');
  if (o.kind !== 'reply') return false;
  const p = packet.decode(o.bytes);
  return (p.answers ?? []).some((a) => String((a as { data: unknown }).data) === want);
}

for (const restoreAfterMs of [0, 50, 300, 2_000]) {
  t.test(`relaunched peer restores its containers ${restoreAfterMs} ms after starting: names back everywhere within 10 s`, async (t) => {
    const mesh = new SimMesh({ seed: 7 + restoreAfterMs, discovery: false, timings: DEFAULT_TIMINGS });
    t.teardown(() => mesh.shutdown());
    const dns: DnsService[] = [];
    // A line with a shortcut: 0-1-2-3-4 and 0-4, so some peers hear the restarted one only through others.
    const targets = [[], [0], [1], [2], [3, 0]];
    for (const [i, tg] of targets.entries()) {
      const peer = await mesh.addPeer(tg);
      dns.push(attachDns(mesh, peer, i));
    }
    mesh.net.runUntil(() => mesh.converged(), 60_000);
    for (const [i, d] of dns.entries()) d.register(`netns:c${i}`, `c${i}.${DOMAIN}`, [`10.32.0.${i + 1}`]);
    mesh.net.runUntil(() => dns.every((d) => [0, 1, 2, 3, 4].every((i) => resolves(d, `c${i}.${DOMAIN}`, `10.32.0.${i + 1}`))), 60_000);
    t.ok(dns.every((d) => resolves(d, `c2.${DOMAIN}`, '10.32.0.3')), 'c2 resolves everywhere before the crash');

    // kill -9 of peer 2, down for 20 s.
    dns[2]!.stop();
    mesh.stopPeer(2);
    mesh.net.run(20_000);
    t.notOk(resolves(dns[0]!, `c2.${DOMAIN}`, '10.32.0.3'), 'unreachable: not answered meanwhile');

    // weave launch: same name (same key), a fresh store; its containers come back restoreAfterMs later.
    const again = await mesh.addPeer([1, 3], 2);
    dns[2] = attachDns(mesh, again, 99);
    mesh.net.run(restoreAfterMs);
    dns[2].register('netns:c2', `c2.${DOMAIN}`, ['10.32.0.3']);
    const everywhere = (): boolean => dns.every((d) => resolves(d, `c2.${DOMAIN}`, '10.32.0.3'));
    const ms = mesh.net.runUntil(everywhere, 60_000, 50);
    t.ok(everywhere(), `c2 answers on every peer ${restoreAfterMs + ms} ms after the relaunch`);
    t.ok(restoreAfterMs + ms <= 10_000, `within 10 s of the relaunch (took ${restoreAfterMs + ms} ms; periodic gossip is every ${DEFAULT_TIMINGS.gossipIntervalMs} ms)`);
    // And it stays: nothing later hides it again.
    mesh.net.run(40_000);
    t.ok(everywhere(), 'still answered everywhere 40 s later');
  });
}
