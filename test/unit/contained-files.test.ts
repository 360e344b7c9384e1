// common/contained-files.ts over the real addon (native/fs.c), in temporary
// directories standing in for a container's root: a regular file is read,
// replaced in place and removed; a symlink as the last or a middle component,
// absolute or relative, a '..' path, a FIFO, a device node and a file over
// the limit are refused with their own code, and the file outside the root is
// never read or changed. A process root (/proc/self) works through the
// process's root and user namespace; for a process in another user namespace
// (nobody's, `unshare -Ur`) the work has that namespace's rights only. Calls
// leave no fd and no child behind, and a file that blocks its opener (a lease
// standing in for a hung FUSE mount) costs only the deadline. Needs the built
// addon (npx node-gyp rebuild) and root.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { ContainedFileError, describeContained, nativeContainedFiles } from '../../common/contained-files';
import type { ContainedFileErrorCode, FileRoot } from '../../common/contained-files';

const files = nativeContainedFiles();

function codeOf(fn: () => unknown): ContainedFileErrorCode | 'no error' | 'other' {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof ContainedFileError ? err.code : 'other';
  }
}

function setup(t: Test): { base: string; root: FileRoot; outside: string } {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-contained-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const rootDir = path.join(base, 'root');
  fs.mkdirSync(path.join(rootDir, 'etc'), { recursive: true });
  const outside = path.join(base, 'outside');
  fs.writeFileSync(outside, 'secret outside the root\n', { mode: 0o600 });
  return { base, root: { kind: 'dir', path: rootDir }, outside };
}

t.test('a regular file is read, replaced in place, created and removed', async (t) => {
  const { root } = setup(t);
  const file = path.join((root as { path: string }).path, 'etc', 'resolv.conf');
  fs.writeFileSync(file, 'nameserver 10.1.1.1\n');
  const ino = fs.statSync(file).ino;
  const r = files.read(root, 'etc/resolv.conf', 4096);
  t.equal(r.data.toString(), 'nameserver 10.1.1.1\n');
  t.equal(r.ino, BigInt(ino), 'identity of the file read');
  files.write(root, 'etc/resolv.conf', Buffer.from('x\n'), { maxBytes: 4096, create: false });
  t.equal(fs.readFileSync(file, 'utf8'), 'x\n', 'shorter content truncates the rest');
  t.equal(fs.statSync(file).ino, ino, 'same inode: written in place');
  t.equal(codeOf(() => files.write(root, 'etc/new.conf', Buffer.from('n\n'), { maxBytes: 4096, create: false })), 'missing', 'no create unless asked');
  files.write(root, 'etc/new.conf', Buffer.from('n\n'), { maxBytes: 4096, create: true });
  t.equal(fs.readFileSync(path.join(path.dirname(file), 'new.conf'), 'utf8'), 'n\n');
  t.equal((fs.statSync(path.join(path.dirname(file), 'new.conf')).mode & 0o777), 0o644);
  files.unlink(root, 'etc/new.conf');
  t.notOk(fs.existsSync(path.join(path.dirname(file), 'new.conf')));
  t.equal(codeOf(() => files.read(root, 'etc/none', 4096)), 'missing');
  t.equal(codeOf(() => files.read(root, 'nodir/resolv.conf', 4096)), 'missing');
});

t.test('symlinks anywhere on the path are refused and never followed', async (t) => {
  const { base, root, outside } = setup(t);
  const rootDir = (root as { path: string }).path;
  fs.symlinkSync(outside, path.join(rootDir, 'etc', 'abs'));
  fs.symlinkSync('../../outside', path.join(rootDir, 'etc', 'rel'));
  fs.symlinkSync('resolv.conf', path.join(rootDir, 'etc', 'inside'));
  fs.writeFileSync(path.join(rootDir, 'etc', 'resolv.conf'), 'inside\n');
  // A middle component: root/link -> the directory holding `outside`.
  fs.symlinkSync(base, path.join(rootDir, 'link'));
  fs.symlinkSync('/', path.join(rootDir, 'slash'));
  const before = fs.readFileSync(outside);
  for (const rel of ['etc/abs', 'etc/rel', 'etc/inside', 'link/outside', 'slash/etc/passwd']) {
    t.equal(codeOf(() => files.read(root, rel, 4096)), 'symlink', `read ${rel}`);
    t.equal(codeOf(() => files.write(root, rel, Buffer.from('pwned\n'), { maxBytes: 4096, create: true })), 'symlink', `write ${rel}`);
    t.equal(codeOf(() => files.unlink(root, rel)), 'symlink', `unlink ${rel}`);
  }
  t.same(fs.readFileSync(outside), before, 'the file outside is byte for byte unchanged');
  t.ok(fs.lstatSync(path.join(rootDir, 'etc', 'abs')).isSymbolicLink(), 'the symlink itself is not removed');
  const err = (() => { try { files.read(root, 'etc/abs', 4096); } catch (e) { return e as Error; } return null; })();
  t.match(err?.message, /etc\/abs is, or is reached through, a symbolic link/, 'the message names the file');
});

t.test("'..' and absolute paths are refused before anything is opened", async (t) => {
  const { root, outside } = setup(t);
  for (const rel of ['../outside', 'etc/../../outside', '/etc/passwd', '', 'etc//resolv.conf', './etc/resolv.conf']) {
    t.equal(codeOf(() => files.read(root, rel, 4096)), 'io', JSON.stringify(rel));
    t.equal(codeOf(() => files.write(root, rel, Buffer.from('x'), { maxBytes: 4096, create: true })), 'io', JSON.stringify(rel));
  }
  t.equal(fs.readFileSync(outside, 'utf8'), 'secret outside the root\n');
});

t.test('a FIFO, a device, a directory and a file over the limit are refused', async (t) => {
  const { root } = setup(t);
  const etc = path.join((root as { path: string }).path, 'etc');
  const fifo = path.join(etc, 'fifo');
  execFileSync('mkfifo', [fifo]);
  // Opening a FIFO without a writer would block: the refusal comes from fstat on an O_PATH fd.
  t.equal(codeOf(() => files.read(root, 'etc/fifo', 4096)), 'not-regular');
  t.equal(codeOf(() => files.write(root, 'etc/fifo', Buffer.from('x'), { maxBytes: 4096, create: false })), 'not-regular');
  t.equal(codeOf(() => files.unlink(root, 'etc/fifo')), 'not-regular');
  t.ok(fs.statSync(fifo).isFIFO(), 'still there');
  if (process.getuid?.() === 0) {
    execFileSync('mknod', [path.join(etc, 'null'), 'c', '1', '3']);
    t.equal(codeOf(() => files.read(root, 'etc/null', 4096)), 'not-regular', 'character device');
  }
  t.equal(codeOf(() => files.read(root, 'etc', 4096)), 'not-regular', 'directory');
  fs.writeFileSync(path.join(etc, 'big'), Buffer.alloc(5000, 0x61));
  t.equal(codeOf(() => files.read(root, 'etc/big', 4096)), 'too-big');
  t.equal(codeOf(() => files.write(root, 'etc/big', Buffer.from('x'), { maxBytes: 4096, create: false })), 'too-big');
  t.equal(fs.statSync(path.join(etc, 'big')).size, 5000, 'an oversized file is not overwritten');
  t.equal(files.read(root, 'etc/big', 5000).data.length, 5000, 'exactly at the limit is fine');
});

t.test('a process root: /proc/self reads through our own root and user namespace', async (t) => {
  const root: FileRoot = { kind: 'process', procDir: '/proc/self' };
  t.equal(describeContained(root, 'etc/hostname'), '/proc/self/root/etc/hostname');
  const hostname = fs.readFileSync('/etc/hostname');
  t.same(files.read(root, 'etc/hostname', 4096).data, hostname);
  t.equal(codeOf(() => files.read({ kind: 'process', procDir: '/proc/999999999' }, 'etc/hostname', 4096)), 'missing', 'no such process');
});

t.test("a process in another user namespace: the work is done with that namespace's rights", async (t) => {
  // nobody in a user namespace of its own (root inside it), sharing our mounts:
  // a file nobody owns may be changed, a root-owned one may not, though it is
  // in plain reach of the path and the daemon is root.
  const { base } = setup(t);
  fs.chmodSync(base, 0o755);
  const theirs = path.join(base, 'theirs.conf');
  const rootOnly = path.join(base, 'root-only.conf');
  fs.writeFileSync(theirs, 'nameserver 10.1.1.1\n');
  fs.chownSync(theirs, 65534, 65534);
  fs.writeFileSync(rootOnly, 'root only\n', { mode: 0o644 });
  const holder = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '-Ur', 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => { holder.kill('SIGKILL'); });
  const pid = holder.pid as number;
  const ours = fs.readlinkSync('/proc/self/ns/user');
  for (let i = 0; i < 200; i++) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/ns/user`) !== ours && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') break;
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  t.not(fs.readlinkSync(`/proc/${pid}/ns/user`), ours, 'the holder has a user namespace of its own');
  const root: FileRoot = { kind: 'process', procDir: `/proc/${pid}` };
  const rel = (p: string): string => path.relative('/', p);
  t.equal(files.read(root, rel(theirs), 4096).data.toString(), 'nameserver 10.1.1.1\n');
  files.write(root, rel(theirs), Buffer.from('nameserver 10.2.2.2\n'), { maxBytes: 4096, create: false });
  t.equal(fs.readFileSync(theirs, 'utf8'), 'nameserver 10.2.2.2\n', 'its own file is written');
  t.equal(codeOf(() => files.write(root, rel(rootOnly), Buffer.from('x\n'), { maxBytes: 4096, create: false })), 'denied');
  t.equal(codeOf(() => files.unlink(root, rel(rootOnly))), 'denied');
  t.equal(fs.readFileSync(rootOnly, 'utf8'), 'root only\n', 'the root-owned file is untouched');
});

t.test('calls leave no file descriptor and no child behind', async (t) => {
  const { root } = setup(t);
  fs.writeFileSync(path.join((root as { path: string }).path, 'etc', 'resolv.conf'), 'nameserver 10.1.1.1\n');
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  // Children of earlier tests may still be on their way out: only new ones count.
  const children = (): string[] => fs.readFileSync(`/proc/self/task/${process.pid}/children`, 'utf8').trim().split(' ').filter((c) => c !== '');
  const before = fds();
  const childrenBefore = children();
  for (let i = 0; i < 50; i++) {
    files.read(root, 'etc/resolv.conf', 4096);
    files.write(root, 'etc/resolv.conf', Buffer.from(`nameserver 10.1.1.${i}\n`), { maxBytes: 4096, create: false });
    codeOf(() => files.read(root, 'etc/none', 4096));
  }
  t.equal(fds(), before, 'as many open fds as before');
  t.same(children().filter((c) => !childrenBefore.includes(c)), [], 'every child reaped');
});

t.test('a file that blocks its opener costs at most the deadline, then the child is killed', async (t) => {
  // A read lease held by another process makes an open for writing wait for
  // up to fs.lease-break-time (45 s): a stand-in for a hung FUSE mount.
  const { root } = setup(t);
  const file = path.join((root as { path: string }).path, 'etc', 'resolv.conf');
  fs.writeFileSync(file, 'leased\n');
  const holder = spawn('python3', ['-c', [
    'import fcntl, os, signal, sys, time',
    'signal.signal(signal.SIGIO, signal.SIG_IGN)',
    'fd = os.open(sys.argv[1], os.O_RDONLY)',
    'fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)',
    'print("leased", flush=True)',
    'time.sleep(60)',
  ].join('\n'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { holder.kill('SIGKILL'); });
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`lease holder exited with ${String(code)}`)));
  });
  const started = Date.now();
  t.equal(codeOf(() => nativeContainedFiles(300).write(root, 'etc/resolv.conf', Buffer.from('new\n'), { maxBytes: 4096, create: false })), 'timeout');
  const tookMs = Date.now() - started;
  t.ok(tookMs >= 300 && tookMs < 5000, `gave up after ${tookMs} ms`);
  t.equal(fs.readFileSync(file, 'utf8'), 'leased\n', 'nothing written');
});
