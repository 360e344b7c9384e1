// State files that are damaged or cannot be written (issue 11, "disk full or
// a corrupt state file"): each file of the data directory, given garbage, a
// truncated copy, wrong types and a huge file, is not used, is set aside as
// FILE.corrupt-TIMESTAMP (never overwritten), and the problem is listed with
// the file and the reason; a refused write is retried until it lands.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { ManualClock } from '../../common/clock';
import { readStateFile, setAside, writeFileAtomic } from '../../common/files';
import { silentLogger } from '../../common/logger';
import { StateFileKeeper, stateFiles } from '../../common/state-files';
import { FileIpamStore, IPAM_STATE_FILE } from '../../ipam/persistence';
import { AttachmentRecord, FileStateStore, STATE_FILE } from '../../router/host/container-state';
import { EXPOSE_STATE_FILE, loadExposeState } from '../../router/host/expose-state';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-files-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const asides = (dir: string, name: string): string[] => fs.readdirSync(dir).filter((f) => f.startsWith(`${name}.corrupt-`));

/** Writes `size` bytes without holding them in memory (a sparse file). */
function hugeFile(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, size);
  fs.closeSync(fd);
}

interface Case {
  name: string;
  /** Valid content, to derive the truncated case from. */
  good: string;
  /** Wrong types in a well-formed file. */
  wrongTypes: string;
  huge: number;
  /** Loads through the file's own store; true when it used nothing (and did not throw out of the daemon). */
  load(dir: string): boolean;
}

const peer = 'aa:bb:cc:dd:ee:01';
const cases: Case[] = [
  {
    name: IPAM_STATE_FILE,
    good: JSON.stringify({ format: 1, peer, range: '10.32.0.0/12', ring: null, consensus: null, allocations: [] }),
    wrongTypes: JSON.stringify({ format: 1, peer, range: 12, ring: 7, consensus: null, allocations: {} }),
    huge: 300 * 1024 * 1024,
    load: (dir) => {
      try {
        new FileIpamStore(dir).load();
        return false;
      } catch {
        // IpamContext.restore turns this into its "discarded saved IPAM state" warning.
        return true;
      }
    },
  },
  {
    name: STATE_FILE,
    good: JSON.stringify({ version: 1, containers: [] }),
    wrongTypes: JSON.stringify({ version: '1', containers: 'all of them' }),
    huge: 70 * 1024 * 1024,
    load: (dir) => new AttachmentRecord(new FileStateStore(path.join(dir, STATE_FILE)), silentLogger).loadSaved() === null,
  },
  {
    name: EXPOSE_STATE_FILE,
    good: JSON.stringify({ version: 1, addresses: ['10.32.0.1/12'], ipForwardEnabled: false }),
    wrongTypes: JSON.stringify({ version: 1, addresses: [1, 2, 3], ipForwardEnabled: 'yes' }),
    huge: 1024 * 1024,
    load: (dir) => {
      try {
        loadExposeState(dir);
        return false;
      } catch {
        // HostExposer.restore logs it and runs without exposure.
        return true;
      }
    },
  },
];

for (const c of cases) {
  t.test(`${c.name}: garbage, truncated, wrong types, huge`, async (t) => {
    const variants: [string, (file: string) => void, RegExp][] = [
      ['garbage', (f) => fs.writeFileSync(f, Buffer.from([0x00, 0xff, 0x13, 0x37, 0x7b])), /UTF-8|JSON|Unexpected|not/],
      ['truncated', (f) => fs.writeFileSync(f, c.good.slice(0, Math.floor(c.good.length / 2))), /JSON|Unexpected|end|not/],
      ['wrong types', (f) => fs.writeFileSync(f, c.wrongTypes), /./],
      ['huge', (f) => hugeFile(f, c.huge), /bytes, more than/],
    ];
    for (const [what, make, reason] of variants) {
      const dir = tempDir(t);
      const file = path.join(dir, c.name);
      make(file);
      const before = fs.statSync(file).size;
      const problemsBefore = stateFiles.list().length;
      t.ok(c.load(dir), `${what}: not used`);
      t.notOk(fs.existsSync(file), `${what}: moved out of the way, so the next save cannot overwrite it`);
      const kept = asides(dir, c.name);
      t.equal(kept.length, 1, `${what}: kept as ${kept.join(', ')}`);
      t.equal(fs.statSync(path.join(dir, kept[0] ?? 'none')).size, before, `${what}: the kept copy is the original`);
      const problem = stateFiles.list().slice(problemsBefore).find((p) => p.file === file);
      t.ok(problem, `${what}: listed for status`);
      t.match(problem?.text ?? '', new RegExp(`ignored ${c.name.replace('.', '\\.')}: `), `${what}: names the file`);
      t.match(problem?.text ?? '', reason, `${what}: says why: ${problem?.text ?? ''}`);
      t.match(problem?.text ?? '', /kept as .*\.corrupt-\d{8}T\d{6}Z/, `${what}: says where it went`);
    }
  });
}

t.test('containers.json: a damaged entry is skipped, the others are restored, the original is copied aside', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, STATE_FILE);
  const good = {
    kind: 'netns', id: 'netns:blue', name: 'blue', ref: 'netns:blue', pid: null, netnsPath: '/var/run/netns/blue',
    nsId: '4026532000', hostIfname: 'vethwepl1', mac: '02:00:00:00:00:01', addresses: ['10.32.0.1/12'], state: 'attached',
  };
  fs.writeFileSync(file, JSON.stringify({ version: 1, containers: [good, { ...good, id: 'netns:red', addresses: 'nope' }, 42] }));
  const saved = new AttachmentRecord(new FileStateStore(file), silentLogger).loadSaved();
  t.same(saved?.map((a) => a.id), ['netns:blue'], 'the good entry is restored');
  t.ok(fs.existsSync(file), 'the file stays (it is rewritten on the next save)');
  t.equal(asides(dir, STATE_FILE).length, 1, 'and a copy of the original is kept');
  t.ok(stateFiles.list().some((p) => p.file === file && /2 damaged entries skipped/.test(p.text)));
});

t.test('a refused write is kept, retried with backoff and lands; a later save replaces what waits', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(1_700_000_000_000);
  const keeper = new StateFileKeeper(silentLogger, clock);
  // The directory does not exist yet: every write fails (ENOENT), like a full disk (ENOSPC) would.
  const sub = path.join(dir, 'later');
  const file = path.join(sub, 'x.json');
  t.match(keeper.save(file, 'one')?.message ?? '', /ENOENT/);
  t.match(keeper.list(), [{ file, kind: 'write', text: /cannot write x\.json: .*ENOENT.*retries/ }]);
  t.not(keeper.save(file, 'two'), null, 'a save while one waits reports the pending problem, without a burst of writes');
  clock.advance(1_000);
  clock.advance(2_000);
  t.equal(keeper.list().length, 1, 'still failing, still listed');
  fs.mkdirSync(sub);
  clock.advance(4_000);
  t.equal(fs.readFileSync(file, 'utf8'), 'two', 'the latest content landed');
  t.same(keeper.list(), [], 'and the problem is gone');
  t.same(fs.readdirSync(sub), ['x.json'], 'no temporary file left');

  // A file deleted on purpose while a write waits stays deleted.
  fs.rmSync(sub, { recursive: true });
  keeper.save(file, 'three');
  fs.mkdirSync(sub);
  keeper.forget(file);
  clock.advance(60_000);
  t.notOk(fs.existsSync(file));
  keeper.close();
});

t.test('readStateFile refuses what is not a regular file; setAside never replaces an earlier copy', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'peers.json');
  t.equal(readStateFile(file, 10), null, 'missing is null');
  fs.symlinkSync('/etc/passwd', file);
  t.throws(() => readStateFile(file, 1 << 20), /symbolic link/);
  fs.unlinkSync(file);
  fs.mkdirSync(file);
  t.throws(() => readStateFile(file, 1 << 20), /not a regular file/);
  fs.rmdirSync(file);
  writeFileAtomic(file, 'first');
  const a = setAside(file, 0);
  writeFileAtomic(file, 'second');
  const b = setAside(file, 0);
  t.not(a, b, 'same second, two names');
  t.equal(fs.readFileSync(a ?? '', 'utf8'), 'first');
  t.equal(fs.readFileSync(b ?? '', 'utf8'), 'second');
});
