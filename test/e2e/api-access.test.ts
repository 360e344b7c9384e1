// End-to-end access control of the router API (issue 9): a real router in a
// namespace, its API on a Unix socket, and the CLI run as other users with
// setpriv. Unprivileged `weave status`, `weave attach` and a raw HTTP request
// are refused (the kernel says EACCES; the CLI says who may), root is served;
// with --api-group a member of the group is served and a stranger is told
// the group. A socket left by a killed router is replaced at the next launch;
// a router answering on the socket is never displaced by a second one.
//
// The unprivileged CLI runs from this repository's dist/ as `nobody`: the
// test first checks that nobody can read dist/cli/weave.js (every directory
// on the way must be o+x and the files o+r, as /work/main is here) and skips
// with that reason otherwise, rather than loosening permissions itself. The
// socket is a file path, so those runs need no namespace; the router's data
// directory (0700) is never read by them. Needs root; the throwaway group
// (groupadd) and everything else is removed at teardown.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { run, type ExecResult } from '../../scripts/command';
import { SimNetwork } from '../../scripts/sim-network';
import type { SimHost } from '../../scripts/sim-host';

t.setTimeout(240_000);

const GROUP = `wvapi${randomBytes(3).toString('hex')}`;
const RAW_REQUEST = `
const req = require('node:http').get({ socketPath: process.argv[1], path: '/status' }, (res) => {
  res.resume();
  process.stdout.write('HTTP ' + res.statusCode);
});
req.on('error', (err) => process.stdout.write(String(err.code)));`;

const WEAVE_CLI = path.resolve(__dirname, '..', '..', 'cli', 'weave.js');

/**
 * argv prefix that drops to nobody:nogroup, with no supplementary groups
 * unless `groups` names some, in a clean environment: the test runner's
 * NODE_OPTIONS would have the child write its bookkeeping where nobody may not.
 */
function asNobody(groups?: string): string[] {
  const g = groups === undefined ? ['--clear-groups'] : ['--groups', groups];
  return ['setpriv', '--reuid', 'nobody', '--regid', 'nogroup', ...g, '--'];
}

function cleanEnv(h: SimHost): string[] {
  return ['env', '-i', `PATH=${process.env['PATH'] ?? '/usr/bin:/bin'}`, `WEAVE_DATADIR=${h.datadir}`];
}

function skipReason(): string | false {
  if (process.geteuid?.() !== 0) return 'needs root (setpriv, groupadd, namespaces)';
  const r = spawnSync('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', '--', 'test', '-r', WEAVE_CLI]);
  return r.status === 0 ? false : `user nobody cannot read ${WEAVE_CLI} (setpriv exit ${String(r.status)}); the unprivileged CLI needs it`;
}

function weaveAs(h: SimHost, user: string[], args: string[]): Promise<ExecResult> {
  return run([...cleanEnv(h), ...user, process.execPath, WEAVE_CLI, ...args], { timeoutMs: 20_000 });
}

function rawRequest(h: SimHost, user: string[]): Promise<ExecResult> {
  return run([...cleanEnv(h), ...user, process.execPath, '-e', RAW_REQUEST, h.apiSocket], { timeoutMs: 10_000 });
}

t.test('API socket: refused without access, served to root and to the API group', { skip: skipReason() }, async (t) => {
  const net = await SimNetwork.create({ hosts: ['h1'], weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const h = net.hosts[0]!;
  const container = `${net.prefix}c1`;
  const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-api-other-'));
  let groupAdded = false;
  t.teardown(async () => {
    await h.weave(['stop'], { timeoutMs: 15_000 });
    await run(['ip', 'netns', 'del', container]);
    await net.destroy();
    fs.rmSync(otherDir, { recursive: true, force: true });
    if (groupAdded) await run(['groupdel', GROUP]);
  });
  const launched = await h.weave(['launch', '--nickname', 'h1']);
  t.equal(launched.code, 0, `launch: ${launched.stderr.trim()}`);
  const sock = h.apiSocket;
  const st = fs.statSync(sock);
  t.ok(st.isSocket(), `the API is the socket ${sock}`);
  t.equal(st.mode & 0o777, 0o660, 'mode 0660');
  t.same([st.uid, st.gid], [0, 0], 'root:root without --api-group');

  // Unprivileged: every way in is refused, and nothing changes.
  const denied = `weave: permission denied: weave needs root (to use ${sock})\n`;
  const status = await weaveAs(h, asNobody(), ['status']);
  t.same([status.code, status.stderr], [1, denied], 'weave status as nobody');
  await run(['ip', 'netns', 'add', container], { check: true });
  const attach = await weaveAs(h, asNobody(), ['attach', '10.32.9.1/12', `netns:${container}`]);
  t.same([attach.code, attach.stderr], [1, denied], 'weave attach as nobody');
  t.equal((await rawRequest(h, asNobody())).stdout, 'EACCES', 'a raw HTTP request as nobody: the kernel refuses the connect');
  t.equal((await run(['ip', '-n', container, '-o', 'link', 'show', 'ethwe'])).code, 1, 'the refused attach left the container alone');

  // Root: served.
  t.equal((await rawRequest(h, [])).stdout, 'HTTP 200', 'a raw HTTP request as root');
  t.equal((await h.weaveStatus()).nickname, 'h1');
  const rootAttach = await h.weave(['attach', '10.32.9.1/12', `netns:${container}`]);
  t.same([rootAttach.code, rootAttach.stdout.trim()], [0, '10.32.9.1'], `weave attach as root: ${rootAttach.stderr.trim()}`);
  t.match((await run(['ip', '-n', container, '-o', 'addr', 'show', 'ethwe'])).stdout, /10\.32\.9\.1\/12/);
  t.equal((await h.weave(['detach', `netns:${container}`])).code, 0, 'weave detach as root');

  // A second router on the same socket is refused; the first keeps answering.
  const second = await h.weave(['router', '--datadir', otherDir, '--api-socket', sock, '--port', '6790', '--status-address', '127.0.0.1:6791'], { timeoutMs: 20_000 });
  t.equal(second.code, 1, 'a second router on a live socket exits');
  t.match(second.stderr, `another weave router is answering on ${sock}`);
  t.equal((await rawRequest(h, [])).stdout, 'HTTP 200', 'the first router still answers');

  // A group that does not exist is refused before anything starts.
  await h.weave(['stop']);
  const noGroup = await h.weave(['launch', '--api-group', `${GROUP}x`]);
  t.same([noGroup.code, noGroup.stderr.trim()], [1, `weave: --api-group: there is no group "${GROUP}x" on this host (create it with groupadd)`]);
  t.notOk(fs.existsSync(sock), 'nothing listens after the refused launch');

  // With --api-group: its members are served, everyone else is told the group.
  const added = await run(['groupadd', GROUP]);
  t.equal(added.code, 0, `groupadd ${GROUP}: ${added.stderr.trim()}`);
  groupAdded = added.code === 0;
  const relaunched = await h.weave(['launch', '--nickname', 'h1', '--api-group', GROUP]);
  t.equal(relaunched.code, 0, `launch --api-group: ${relaunched.stderr.trim()}`);
  const gid = Number((await run(['getent', 'group', GROUP], { check: true })).stdout.split(':')[2]);
  t.equal(fs.statSync(sock).gid, gid, `the socket belongs to group ${GROUP}`);
  const member = asNobody(GROUP);
  const memberStatus = await weaveAs(h, member, ['status', '--json']);
  t.equal(memberStatus.code, 0, `weave status as a member of ${GROUP}: ${memberStatus.stderr.trim()}`);
  t.equal((JSON.parse(memberStatus.stdout) as { nickname: string }).nickname, 'h1');
  const memberAttach = await weaveAs(h, member, ['attach', '10.32.9.2/12', `netns:${container}`]);
  t.same([memberAttach.code, memberAttach.stdout.trim()], [0, '10.32.9.2'], `weave attach as a member: ${memberAttach.stderr.trim()}`);
  t.equal((await rawRequest(h, member)).stdout, 'HTTP 200', 'a raw HTTP request as a member');
  const stranger = await weaveAs(h, asNobody(), ['status']);
  t.same([stranger.code, stranger.stderr], [1, `weave: permission denied: weave needs root or membership of group ${GROUP} (to use ${sock})\n`]);
  t.equal((await rawRequest(h, asNobody())).stdout, 'EACCES');

  // A router that dies without cleaning up leaves its socket; the next launch replaces it.
  // Its supervisor dies first (a host crash takes both), or it would restart the router.
  for (const file of ['weave-supervisor.pid', 'weave.pid']) {
    const pid = Number(fs.readFileSync(path.join(h.datadir, file), 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    await run(['sh', '-c', `while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done`], { timeoutMs: 10_000 });
  }
  t.ok(fs.statSync(sock).isSocket(), 'the dead router left its socket behind');
  const dead = await h.weave(['status']);
  t.same([dead.code, dead.stderr], [1, `weave: weave router is not running (nothing answers on ${sock}; the socket is left from a router that stopped)\n`]);
  const afterCrash = await h.weave(['launch', '--nickname', 'h1']);
  t.equal(afterCrash.code, 0, `launch over a stale socket: ${afterCrash.stderr.trim()}`);
  t.equal((await rawRequest(h, [])).stdout, 'HTTP 200');
  t.same([fs.statSync(sock).gid, fs.statSync(sock).mode & 0o777], [0, 0o660], 'without --api-group again: root only');

  await h.weave(['stop']);
  t.notOk(fs.existsSync(sock), 'weave stop leaves no socket behind');
  const gone = await h.weave(['status']);
  t.same([gone.code, gone.stderr], [1, `weave: weave router is not running (no socket at ${sock})\n`]);
});
