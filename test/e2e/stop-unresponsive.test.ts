// End to end, issue 11: `weave stop` stops a router whose API does not
// answer. The router is frozen with SIGSTOP (its socket still accepts, nothing
// replies, as with an overloaded daemon); `weave stop` must notice, signal the
// processes it started (checked in /proc to be ours) and return with both the
// router and its supervisor gone. Needs root (a namespace per host).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SimNetwork } from '../../scripts/sim-network';
import { processAlive as alive } from '../../common/process-alive';

t.setTimeout(180_000);


function pidIn(datadir: string, file: string): number {
  return Number(fs.readFileSync(path.join(datadir, file), 'utf8').trim());
}

t.test('weave stop ends a router that does not answer', { skip: process.geteuid?.() !== 0 ? 'needs root (namespaces)' : false }, async (t) => {
  const net = await SimNetwork.create({ hosts: 1, password: `stop-${randomBytes(4).toString('hex')}`, subnet: '10.253.7.0/30', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const pids: number[] = [];
  t.teardown(async () => {
    // Whatever happened, nothing of ours stays frozen or running.
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await net.destroy();
  });
  const h = net.hosts[0]!;
  const launched = await h.weave(['launch'], { timeoutMs: 60_000 });
  t.equal(launched.code, 0, `launch: ${launched.stderr}`);
  const router = pidIn(h.datadir, 'weave.pid');
  const supervisor = pidIn(h.datadir, 'weave-supervisor.pid');
  pids.push(supervisor, router);
  t.ok(alive(router) && alive(supervisor), 'router and supervisor run');

  process.kill(router, 'SIGSTOP');
  const started = Date.now();
  const stopped = await h.weave(['stop'], { timeoutMs: 90_000 });
  t.comment(`weave stop took ${Date.now() - started} ms: ${stopped.stderr.trim()}`);
  t.equal(stopped.code, 0, `weave stop succeeds: ${stopped.stderr}`);
  t.notOk(alive(router), 'the router process is gone');
  t.notOk(alive(supervisor), 'its supervisor is gone (nothing restarts it)');
  const again = await h.weave(['stop'], { timeoutMs: 30_000 });
  t.not(again.code, 0, 'a second stop says nothing runs');
  t.match(again.stderr, /not running/);
});
