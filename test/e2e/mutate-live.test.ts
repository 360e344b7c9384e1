// A short live mutation run (scripts/mutate-live.ts): mutated handshakes,
// sleeve datagrams, DNS over UDP and TCP and mDNS against a daemon with a
// password (its state snapshot must not change), then mutated control
// messages and gossip of every channel from a peer of a plaintext mesh; after
// every sender the router has the same pid, its API answers and its RSS is
// within 40 MB of the RSS after warm-up. Long runs: node dist/scripts/mutate-live.js --iterations N.

import t from 'tap';
import { runMutateLive } from '../../scripts/mutate-live';

t.setTimeout(420_000);

t.test('live mutation: no crash, no state change from strangers, memory flat', async (t) => {
  const lines: string[] = [];
  const result = await runMutateLive({ iterations: 400, seed: 1311, rssBoundMb: 40, log: (line) => lines.push(line) });
  t.comment(result.table);
  t.same(result.violations, [], 'no violation');
  const modes = result.steps.map((s) => `${s.phase} ${s.mode}`);
  t.same(modes, ['password handshake', 'password sleeve', 'password dns-udp', 'password dns-tcp', 'password mdns', 'plaintext control'], 'every sender ran');
  const control = result.steps.find((s) => s.mode === 'control');
  t.ok((control?.counts?.established ?? 0) > 0, 'the plaintext peer got past the handshake');
  t.ok((control?.counts?.seeds ?? 0) > 0, 'gossip from the daemon seeded the mutations');
  if (result.violations.length > 0) t.comment(lines.join('\n'));
});
