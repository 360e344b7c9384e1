// The short chaos run (scripts/chaos.ts): three simulated hosts with a
// probing container each, about a minute of faults (a link flap, a partition
// with an attach on each side, kill -9 + relaunch of a router), then the
// table; every must-be-zero figure must be 0 (no duplicate address, no lost
// container, DNS right and every pair answering after convergence, no router
// dead without a fault). The five-host, five-minute run is `scripts/chaos.sh`.

import t from 'tap';
import { runChaos } from '../../scripts/chaos';

t.setTimeout(420_000);

t.test('short chaos run: the must-be-zero figures are zero', async (t) => {
  const lines: string[] = [];
  const result = await runChaos({
    durationS: 60, hosts: 3, seed: 4242, faults: ['flap', 'partition', 'kill'], timings: 'fast', shortHolds: true,
    log: (line) => lines.push(line),
  });
  t.comment(result.table);
  const kinds = new Set(result.facts.faults.map((f) => f.kind));
  t.same([...kinds].sort(), ['flap', 'kill', 'partition'], `faults injected: ${result.facts.faults.map((f) => `${f.kind} ${f.hosts.join(',')}`).join('; ')}`);
  for (const f of result.facts.faults) t.not(f.healedMs, null, `${f.kind} healed (${f.note})`);
  for (const [what, n] of Object.entries(result.figures.mustBeZero)) t.equal(n, 0, what);
  t.equal(result.facts.restartsByChaos, result.facts.faults.filter((f) => f.kind === 'kill').length, 'every killed router came back');
  if (!result.ok) t.comment(lines.join('\n'));
});
