// A real Docker engine across two simulated hosts: two `--network none`
// busybox containers, each attached by its Docker name with `weave attach` on
// a different host, ping each other over the encrypted overlay. Starts dockerd
// when needed (scripts/docker.ts); removes its containers even on failure.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { docker, ensureBusyboxImage, stopDockerdIfWeStartedIt } from '../../scripts/docker';
import { dockerSkipReason } from './docker-available';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(300_000);

// Decided before the test is declared, so that a machine without Docker
// reports it as skipped with the reason rather than as an empty pass.
void dockerSkipReason().then((skip) => t.test('docker containers on two hosts ping each other by overlay address', { skip }, async (t) => {
  const image = await ensureBusyboxImage();
  const tag = randomBytes(3).toString('hex');
  const names = [`wvt-${tag}-a`, `wvt-${tag}-b`];
  const net = await SimNetwork.create({ hosts: 2, password: 'docker mesh', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const n of names) await docker(['rm', '-f', n], { allowFail: true });
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
    await stopDockerdIfWeStartedIt();
  });
  const [h1, h2] = net.hosts as [typeof net.hosts[0], typeof net.hosts[0]];
  t.equal((await h1.weave(['launch', '--nickname', 'h1'])).code, 0, 'launch h1');
  t.equal((await h2.weave(['launch', '--nickname', 'h2', h1.address])).code, 0, 'launch h2');
  await waitFor(async () => (await h2.weaveStatus()).connections.some((c) => c.state === 'established'), { what: 'h1 and h2 connected', timeoutMs: 30_000 });

  for (const n of names) {
    const r = await docker(['run', '-d', '--network', 'none', '--name', n, image, 'sleep', '3600']);
    t.equal(r.code, 0, `docker run ${n}: ${r.stderr.trim()}`);
  }
  const a = await h1.weave(['attach', '10.32.9.1/24', names[0]!]);
  t.equal(a.code, 0, `attach ${names[0]} on h1: ${a.stdout.trim()} ${a.stderr.trim()}`);
  const b = await h2.weave(['attach', '10.32.9.2/24', names[1]!]);
  t.equal(b.code, 0, `attach ${names[1]} on h2: ${b.stdout.trim()} ${b.stderr.trim()}`);
  const ps = await h1.weave(['ps']);
  t.match(ps.stdout, /10\.32\.9\.1\/24/, 'weave ps on h1 lists the container');

  let out = '';
  await waitFor(async () => {
    const r = await docker(['exec', names[0]!, 'ping', '-c', '2', '-W', '2', '10.32.9.2'], { allowFail: true, timeoutMs: 20_000 });
    out = r.stdout + r.stderr;
    return r.code === 0;
  }, { what: 'container a pings container b across hosts', timeoutMs: 30_000, detail: () => out });
  const back = await docker(['exec', names[1]!, 'ping', '-c', '2', '-W', '2', '10.32.9.1'], { allowFail: true, timeoutMs: 20_000 });
  t.equal(back.code, 0, `and back: ${back.stdout.trim().split('\n').pop()}`);
}));
