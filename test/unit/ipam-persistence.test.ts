// ipam.json: round trip through the file, atomic replacement, and damaged or
// foreign files discarded with a warning instead of crashing the daemon.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { parseIpamConfig } from '../../ipam/config';
import { Ipam } from '../../ipam/ipam';
import { FileIpamStore, IPAM_STATE_FILE, MemoryIpamStore, parseSnapshotJson } from '../../ipam/persistence';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import { FakeNet } from './ipam-fake-hub';
import { peer, throwsIpam } from './ipam-helpers';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipam-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function ipamOn(dir: string, init = `seed=${peer(0)}`): Ipam {
  const net = new FakeNet();
  return new Ipam(
    { hub: net.hub(peer(0)), clock: net.clock, rng: new SeededRng(1), logger: silentLogger, store: new FileIpamStore(dir) },
    { config: parseIpamConfig({ init, initialPeerCount: 1 }) },
  );
}

t.test('state survives a restart through the file; no temporary file is left behind', async (t) => {
  const dir = tempDir(t);
  const a = ipamOn(dir);
  const x = await a.allocate('c1');
  a.releaseContainer('c2');
  a.shutdown();
  t.same(fs.readdirSync(dir), [IPAM_STATE_FILE]);
  const text = fs.readFileSync(path.join(dir, IPAM_STATE_FILE), 'utf8');
  t.match(text, /"format":1/);
  t.equal((fs.statSync(path.join(dir, IPAM_STATE_FILE)).mode & 0o777), 0o600, 'readable by root only');
  const b = ipamOn(dir);
  t.same(b.addressesOf('c1'), [x]);
  t.same(b.status().warnings, []);
});

t.test('a damaged file is discarded with a warning, and then overwritten', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, IPAM_STATE_FILE);
  for (const bad of ['{', '[]', '{"format":2}', JSON.stringify({ format: 1, peer: peer(0), range: '10.32.0.0/12', ring: 'AQ==', consensus: null, allocations: [] })]) {
    fs.writeFileSync(file, bad);
    const ipam = ipamOn(dir);
    t.ok(ipam.status().warnings.some((w) => /discarded saved IPAM state/.test(w)), `${bad.slice(0, 20)}: ${ipam.status().warnings.join('; ')}`);
    t.equal(ipam.status().state, 'ready', 'starts afresh');
    ipam.shutdown();
  }
  // Bad single allocations are dropped, the rest kept.
  const good = ipamOn(dir);
  await good.allocate('keep');
  good.shutdown();
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { allocations: unknown[] };
  saved.allocations.push({ container: 'x', address: '192.168.0.1', prefixLen: 24, releaseAtMs: null });
  saved.allocations.push({ container: 'dup', address: '10.32.0.1', prefixLen: 12, releaseAtMs: null });
  fs.writeFileSync(file, JSON.stringify(saved));
  const again = ipamOn(dir);
  t.same(again.addressesOf('keep'), ['10.32.0.1/12']);
  t.equal(again.status().warnings.filter((w) => /dropped a saved allocation/.test(w)).length, 2);
});

t.test('the JSON shape is checked before anything is used', async (t) => {
  throwsIpam(t, () => parseSnapshotJson('{"format":1,"peer":"nope","range":"x","allocations":[]}', 'f'), 'decode', /peer/);
  throwsIpam(t, () => parseSnapshotJson(`{"format":1,"peer":"${peer(0)}","range":"x","allocations":{}}`, 'f'), 'decode', /allocations/);
  throwsIpam(t, () => parseSnapshotJson(`{"format":1,"peer":"${peer(0)}","range":"x","ring":"!!","allocations":[]}`, 'f'), 'decode', /base64/);
  throwsIpam(t, () => parseSnapshotJson(`{"format":1,"peer":"${peer(0)}","range":"x","allocations":[{"container":"c","address":"1.2.3.4","prefixLen":99.5,"releaseAtMs":null}]}`, 'f'), 'decode', /prefix/);
});

t.test('a first allocation that also runs the initial split writes the state once, before it is answered', async (t) => {
  const net = new FakeNet();
  const store = new MemoryIpamStore();
  const ipam = new Ipam(
    { hub: net.hub(peer(0)), clock: net.clock, rng: new SeededRng(1), logger: silentLogger, store },
    { config: parseIpamConfig({ init: 'consensus', initialPeerCount: 1 }) },
  );
  t.teardown(() => ipam.shutdown());
  const before = store.saves;
  const pending = ipam.allocate('c1');
  // Proposal, decision (the ring seeded) and the allocation: one save, already done when allocate() returns.
  t.equal(store.saves - before, 1, 'one write for consensus, ring and allocation');
  t.same(store.saved?.allocations.map((a) => a.container), ['c1'], 'the allocation is in it');
  t.ok(store.saved?.ring !== null, 'so is the seeded ring');
  const cidr = await pending;
  t.match(cidr, /^10\.3[2-9]\./);
  await ipam.claim('c2', '10.32.9.9/12');
  t.equal(store.saves - before, 2, 'then one write per change');
});
