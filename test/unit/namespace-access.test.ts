// Reading a namespace file: absence and refusal are different answers.
// `weave attach pid:1` by a router that may not look at pid 1 must say
// "permission denied", not "no process with pid 1". The errno is faked
// through namespaceIdOf's stat hook; when the test runs as root, the real
// /proc is also read by a child process running as nobody.

import { spawnSync } from 'node:child_process';
import t from 'tap';
import { namespaceIdOf, resolveContainer } from '../../router/host/container-ref';
import type { HostFs } from '../../router/host/container-ref';

function failing(code: string): (p: string) => { dev: number; ino: number } {
  return (p) => {
    throw Object.assign(new Error(`${code}: ${p}`), { code });
  };
}

t.test('namespaceIdOf: identity, null when absent, an error naming the refusal', async (t) => {
  t.equal(namespaceIdOf('/proc/7/ns/net', () => ({ dev: 4, ino: 4026531992 })), '4:4026531992');
  for (const code of ['ENOENT', 'ESRCH', 'ENOTDIR']) t.equal(namespaceIdOf('/proc/7/ns/net', failing(code)), null, code);
  for (const code of ['EACCES', 'EPERM']) {
    t.throws(() => namespaceIdOf('/proc/1/ns/net', failing(code)), { code: 'io', message: new RegExp(`permission denied reading /proc/1/ns/net \\(${code}\\)`) });
  }
});

t.test('attach pid:N: "permission denied" when refused, "no process" when absent', async (t) => {
  const fsWith = (code: string): HostFs => ({
    namespaceId: (p) => (p === '/proc/self/ns/net' ? '4:1' : namespaceIdOf(p, failing(code))),
    processName: () => null,
  });
  const env = (code: string): Parameters<typeof resolveContainer>[1] => ({ docker: null, hostFs: fsWith(code), hostNetns: '/proc/self/ns/net' });
  await t.rejects(resolveContainer({ kind: 'pid', pid: 1 }, env('EACCES')), { message: /permission denied/ });
  await t.rejects(resolveContainer({ kind: 'pid', pid: 1 }, env('ENOENT')), { message: /no process with pid 1/ });
});

t.test('the real /proc, read as nobody', { skip: process.getuid?.() !== 0 ? 'needs root to switch to nobody' : false }, async (t) => {
  const script = `const m = require(${JSON.stringify(require.resolve('../../router/host/container-ref'))});
try { m.namespaceIdOf('/proc/1/ns/net'); console.log('no error'); } catch (e) { console.log(e.message); }`;
  const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 20_000 });
  if (r.error !== undefined || r.status !== 0) {
    t.comment(`cannot run a child as nobody here: ${r.error?.message ?? r.stderr}`);
    return;
  }
  t.match(r.stdout, /permission denied reading \/proc\/1\/ns\/net/);
});
