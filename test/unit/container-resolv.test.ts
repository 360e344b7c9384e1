// dns/container-resolv.ts in temporary directories standing in for /proc and
// /etc/netns, through the real addon (common/contained-files.ts): netns and
// pid targets are written in place and restored (also after a restart, also
// from a version 1 state file); the host's file is never touched; a symlinked,
// FIFO or oversized resolv.conf is left alone with a warning and listed in
// refusals(), and the file it points to stays byte for byte the same through
// point and restore; a netns name that is not one path component is refused.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import t from 'tap';
import type { Test } from 'tap';
import { ContainerResolvConf } from '../../dns/container-resolv';
import type { ContainerResolvOptions } from '../../dns/container-resolv';
import type { Logger } from '../../common/logger';
import { silentLogger, TextLogger } from '../../common/logger';

interface Fixture { root: string; proc: string; etcNetns: string; hostResolv: string; opts: ContainerResolvOptions }

function fixture(t: Test): Fixture {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-dns-cresolv-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const etcNetns = path.join(root, 'netns');
  const proc = path.join(root, 'proc');
  const hostResolv = path.join(root, 'host-resolv.conf');
  fs.writeFileSync(hostResolv, 'nameserver 10.9.9.9\n');
  const opts = { stateFile: path.join(root, 'state', 'dns-resolv.json'), nameserver: '169.254.3.4', domain: 'weave.local', procRoot: proc, netnsEtc: etcNetns, hostResolvConf: hostResolv };
  return { root, proc, etcNetns, hostResolv, opts };
}

/** A fake /proc/PID: its root is a directory, its user namespace ours (a symlink to the real one). */
function fakeProcess(f: Fixture, pid: number): string {
  const dir = path.join(f.proc, String(pid));
  fs.mkdirSync(path.join(dir, 'root', 'etc'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'ns'));
  fs.symlinkSync('/proc/self/ns/user', path.join(dir, 'ns', 'user'));
  return path.join(dir, 'root', 'etc');
}

function recordingLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  return { logger: new TextLogger('warn', (line) => warnings.push(line)), warnings };
}

t.test('netns and pid targets written in place and restored; the host file never touched', async (t) => {
  const f = fixture(t);
  const dockerFile = path.join(fakeProcess(f, 100), 'resolv.conf');
  fs.writeFileSync(dockerFile, 'search corp.example\nnameserver 10.1.1.1\n');
  const inodeBefore = fs.statSync(dockerFile).ino;
  // pid 200 shares the host's file (a hard link stands in for the same mount).
  fs.linkSync(f.hostResolv, path.join(fakeProcess(f, 200), 'resolv.conf'));
  fakeProcess(f, 300); // no resolv.conf at all
  const w = new ContainerResolvConf(silentLogger, f.opts);

  t.same(w.point({ id: 'netns:c1', kind: 'netns', name: 'c1', pid: null }), { kind: 'written', path: path.join(f.etcNetns, 'c1', 'resolv.conf') });
  t.match(fs.readFileSync(path.join(f.etcNetns, 'c1', 'resolv.conf'), 'utf8'), /nameserver 169\.254\.3\.4/);
  t.same(w.point({ id: 'd1', kind: 'docker', name: 'd1', pid: 100 }).kind, 'written');
  t.equal(fs.statSync(dockerFile).ino, inodeBefore, 'same inode: written in place (bind mounts)');
  t.match(fs.readFileSync(dockerFile, 'utf8'), /search weave\.local corp\.example/);
  t.same(w.point({ id: 'd1', kind: 'docker', name: 'd1', pid: 100 }).kind, 'unchanged', 'pointing twice keeps the first backup');
  t.same(w.ids().sort(), ['d1', 'netns:c1']);
  t.same(w.point({ id: 'pid:200', kind: 'pid', name: 'sleep', pid: 200 }).kind, 'skipped', "a process sharing the host's resolv.conf is left alone");
  t.equal(fs.readFileSync(f.hostResolv, 'utf8'), 'nameserver 10.9.9.9\n');
  t.same(w.point({ id: 'pid:300', kind: 'pid', name: 'sleep', pid: 300 }).kind, 'skipped', 'a process without resolv.conf gets none');
  t.notOk(fs.existsSync(path.join(f.proc, '300', 'root', 'etc', 'resolv.conf')));

  // A daemon restart in between: the backups come from the state file.
  const w2 = new ContainerResolvConf(silentLogger, f.opts);
  w2.restore('d1');
  t.equal(fs.readFileSync(dockerFile, 'utf8'), 'search corp.example\nnameserver 10.1.1.1\n', 'restored after a restart');
  w2.restore('netns:c1');
  t.notOk(fs.existsSync(path.join(f.etcNetns, 'c1')), 'file and the directory we made are gone');

  w2.point({ id: 'd1', kind: 'docker', name: 'd1', pid: 100 });
  fs.writeFileSync(dockerFile, 'nameserver 10.7.7.7\n');
  w2.restore('d1');
  t.equal(fs.readFileSync(dockerFile, 'utf8'), 'nameserver 10.7.7.7\n', 'a file changed by someone else is left as it is');
});

t.test('a symlinked, FIFO or oversized resolv.conf is left alone with a warning; the target outside stays the same', async (t) => {
  const f = fixture(t);
  const outside = path.join(f.root, 'root-owned');
  const secret = Buffer.from('root only: do not read or write\n');
  fs.writeFileSync(outside, secret, { mode: 0o600 });
  const etc1 = fakeProcess(f, 101);
  fs.symlinkSync(outside, path.join(etc1, 'resolv.conf'));
  const etc2 = fakeProcess(f, 102);
  fs.symlinkSync(path.dirname(outside), path.join(path.dirname(etc2), 'up'));
  fs.rmSync(etc2, { recursive: true });
  fs.symlinkSync('up', etc2); // the middle component /etc is the symlink
  const etc3 = fakeProcess(f, 103);
  execFileSync('mkfifo', [path.join(etc3, 'resolv.conf')]);
  const etc4 = fakeProcess(f, 104);
  fs.writeFileSync(path.join(etc4, 'resolv.conf'), Buffer.alloc(70 * 1024, 0x23));
  fs.mkdirSync(f.etcNetns, { recursive: true });
  fs.mkdirSync(path.join(f.etcNetns, 'n1'));
  fs.symlinkSync(outside, path.join(f.etcNetns, 'n1', 'resolv.conf'));
  const { logger, warnings } = recordingLogger();
  const w = new ContainerResolvConf(logger, f.opts);

  const cases: Array<[string, 'docker' | 'netns' | 'pid', string, number | null, RegExp]> = [
    ['pid:101', 'pid', 'abs', 101, /symbolic link/],
    ['pid:102', 'pid', 'mid', 102, /symbolic link/],
    ['pid:103', 'pid', 'fifo', 103, /not a regular file \(.*FIFO\)/],
    ['pid:104', 'pid', 'big', 104, /too big/],
    ['netns:n1', 'netns', 'n1', null, /symbolic link/],
    ['netns:x', 'netns', '../n1', null, /cannot be a directory name/],
  ];
  for (const [id, kind, name, pid, why] of cases) {
    const r = w.point({ id, kind, name, pid });
    t.equal(r.kind, 'refused', id);
    t.match(r.kind === 'refused' ? r.why : '', why, id);
  }
  t.equal(warnings.length, cases.length, 'one warning each');
  t.match(warnings[0], /left alone/);
  t.same([...w.refusals().keys()].sort(), cases.map((c) => c[0]).sort(), 'status can list them');
  t.same(w.ids(), [], 'no backups kept for refused files');
  for (const [id] of cases) w.restore(id);
  t.same(fs.readFileSync(outside), secret, 'byte for byte unchanged');
  t.equal(fs.statSync(outside).mode & 0o777, 0o600);
  t.equal(w.refusals().size, 0, 'detach clears the refusal');
  t.ok(fs.lstatSync(path.join(etc1, 'resolv.conf')).isSymbolicLink(), 'the symlink is left in place');
});

t.test('restore goes through the same checks: a file swapped for a symlink after point is not followed', async (t) => {
  const f = fixture(t);
  const outside = path.join(f.root, 'root-owned');
  const etc = fakeProcess(f, 105);
  const file = path.join(etc, 'resolv.conf');
  fs.writeFileSync(file, 'nameserver 10.1.1.1\n');
  const w = new ContainerResolvConf(silentLogger, f.opts);
  t.equal(w.point({ id: 'pid:105', kind: 'pid', name: 'p', pid: 105 }).kind, 'written');
  // The container swaps its file for a link to a host file holding exactly what we wrote.
  fs.writeFileSync(outside, fs.readFileSync(file));
  fs.rmSync(file);
  fs.symlinkSync(outside, file);
  const before = fs.readFileSync(outside);
  w.restore('pid:105');
  t.same(fs.readFileSync(outside), before, 'the host file is neither rewritten nor removed');
  t.ok(fs.lstatSync(file).isSymbolicLink());
});

t.test('a version 1 state file (full paths) is read back', async (t) => {
  const f = fixture(t);
  const etc = fakeProcess(f, 106);
  const w = new ContainerResolvConf(silentLogger, f.opts);
  fs.writeFileSync(path.join(etc, 'resolv.conf'), 'nameserver 10.1.1.1\n');
  w.point({ id: 'pid:106', kind: 'pid', name: 'p', pid: 106 });
  const written = fs.readFileSync(path.join(etc, 'resolv.conf'), 'utf8');
  fs.writeFileSync(f.opts.stateFile, JSON.stringify({ version: 1, backups: {
    'pid:106': { path: path.join(f.proc, '106', 'root', 'etc', 'resolv.conf'), previous: 'nameserver 10.1.1.1\n', written, createdDir: null },
    'bad': { path: '/etc/shadow', previous: 'x', written: 'y', createdDir: null },
  } }));
  const w2 = new ContainerResolvConf(silentLogger, f.opts);
  t.same(w2.ids(), ['pid:106'], 'a path that is no container file is dropped');
  w2.restore('pid:106');
  t.equal(fs.readFileSync(path.join(etc, 'resolv.conf'), 'utf8'), 'nameserver 10.1.1.1\n');
});
