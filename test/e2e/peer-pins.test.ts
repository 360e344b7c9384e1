// End to end, the keys a router pinned for other peers' names (trust on first
// use, router/mesh/signed-gossip.ts) outlive its restart
// (router/mesh/peer-pins.ts): two real routers connect, each writes the
// other's name and public key to peer-pins.json (owner-only) within seconds;
// a router stopped and launched again restores them (its log says how many),
// a killed one too; an entry whose key does not derive its name is dropped
// with a warning in `weave status` and gone from the file after the restart;
// a garbage file is set aside and the router works. That a restored pin
// refuses a second key for its name is in test/unit/peer-pins.test.ts (a
// real second preimage costs 2^46 hashes). Needs root (namespaces).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { DaemonStatus } from '../../cli/daemon-health';
import { PeerKey } from '../../router/mesh/peer-key';
import type { RouterStatus } from '../../router/mesh/status';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(240_000);

function keyOf(h: SimHost): PeerKey {
  return PeerKey.fromSeed(Buffer.from(fs.readFileSync(path.join(h.datadir, 'peer-key'), 'utf8').trim(), 'hex'));
}

function pinsFile(h: SimHost): string {
  return path.join(h.datadir, 'peer-pins.json');
}

/** The file's pins as name -> key hex; {} when it is missing or does not parse (yet). */
function pinsOn(h: SimHost): Record<string, string> {
  try {
    const parsed = JSON.parse(fs.readFileSync(pinsFile(h), 'utf8')) as { pins: Array<[string, string]> };
    return Object.fromEntries(parsed.pins);
  } catch {
    return {};
  }
}

function connectedTo(s: RouterStatus, peer: string): boolean {
  return s.connections.some((c) => c.state === 'established' && c.peer === peer);
}

t.test('pinned peer keys outlive a restart', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'pins e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const [h1, h2] = net.hosts as [SimHost, SimHost];
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
    await net.destroy();
  });
  const launch = async (h: SimHost, peers: SimHost[]): Promise<void> => {
    const r = await h.weave(['launch', '--nickname', h.name, ...peers.map((p) => p.address)]);
    t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
  };
  await launch(h1, []);
  await launch(h2, [h1]);
  const [k1, k2] = [keyOf(h1), keyOf(h2)];
  const hex = (k: PeerKey): string => Buffer.from(k.publicKey).toString('hex');

  await t.test('each router writes the other\'s name and key, owner-only', async (t) => {
    await waitFor(async () => connectedTo(await h1.weaveStatus(), k2.name), { what: 'h1 connected to h2', timeoutMs: 30_000 });
    await waitFor(() => pinsOn(h1)[k2.name] === hex(k2) && pinsOn(h2)[k1.name] === hex(k1),
      { what: 'both pins files name the other peer', timeoutMs: 10_000 });
    t.same(Object.keys(pinsOn(h1)), [k2.name], 'h1 pinned h2 only (never itself)');
    t.same(Object.keys(pinsOn(h2)), [k1.name], 'h2 pinned h1 only');
    for (const h of [h1, h2]) t.equal(fs.statSync(pinsFile(h)).mode & 0o777, 0o600, `${h.name}: owner-only`);
  });

  await t.test('stopped and launched alone, h1 restores the pin and keeps it', async (t) => {
    await h2.weave(['stop'], { timeoutMs: 15_000 });
    await h1.weave(['stop'], { timeoutMs: 15_000 });
    await launch(h1, []);
    t.match(h1.readLog('weave.log', 200), /peer keys restored .*count=1/, 'the log says one pin came back');
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    t.same(pinsOn(h1), { [k2.name]: hex(k2) }, 'the start\'s rewrite keeps h2, though h2 is down');
  });

  await t.test('an entry whose key does not derive its name is dropped, reported, and gone after the restart', async (t) => {
    await h1.weave(['stop'], { timeoutMs: 15_000 });
    // h1's own key under h2's name: what a forged entry would claim.
    fs.writeFileSync(pinsFile(h1), `{"version": 1, "pins": [["${k2.name}", "${hex(k1)}"], ["02:00:00:00:00:01", "${hex(k2)}"]]}`);
    await launch(h1, []);
    const warnings = ((await h1.weaveStatus()) as DaemonStatus).health.filter((x) => x.code === 'state-file').map((x) => x.text);
    t.match(warnings.join(' | '), new RegExp(`ignored peer-pins\\.json: 2 of 2 pins \\(entry 0: the key does not derive ${k2.name}; entry 1: the key does not derive 02:00:00:00:00:01\\)`),
      'status names the file and each entry');
    await waitFor(() => fs.readFileSync(pinsFile(h1), 'utf8').includes('"pins": [\n\n]'), { what: 'the file rewritten without them', timeoutMs: 10_000 });
    await launch(h2, [h1]);
    await waitFor(() => pinsOn(h1)[k2.name] === hex(k2), { what: 'h2 pinned again with its own key once it connected', timeoutMs: 30_000 });
  });

  await t.test('a garbage file is set aside and the router works; a killed router keeps its pins', async (t) => {
    await h1.weave(['stop'], { timeoutMs: 15_000 });
    fs.writeFileSync(pinsFile(h1), '{"version": 1, "pins": [["');
    await launch(h1, []);
    const warnings = ((await h1.weaveStatus()) as DaemonStatus).health.filter((x) => x.code === 'state-file').map((x) => x.text);
    t.match(warnings.join(' | '), /ignored peer-pins\.json: .*kept as peer-pins\.json\.corrupt-\d{8}T\d{6}Z/, 'set aside, and status says so');
    await waitFor(async () => connectedTo(await h1.weaveStatus(), k2.name), { what: 'h2 reconnects to h1', timeoutMs: 30_000 });
    await waitFor(() => pinsOn(h1)[k2.name] === hex(k2), { what: 'h1 pins h2 afresh', timeoutMs: 10_000 });
    // Supervisor first, so it restarts nothing; then the router.
    for (const file of ['weave-supervisor.pid', 'weave.pid']) {
      process.kill(Number(fs.readFileSync(path.join(h1.datadir, file), 'utf8').trim()), 'SIGKILL');
    }
    await waitFor(() => h1.pids().length === 0, { what: 'h1 killed', timeoutMs: 10_000 });
    await launch(h1, []);
    t.match(h1.readLog('weave.log', 200), /peer keys restored .*count=1/, 'the pin survived kill -9');
  });
});
