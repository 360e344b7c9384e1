// End-to-end test with a real Docker engine: two `--network none` busybox
// containers attached by Docker name to a bridge in a namespace acting as the
// host, ping each other, survive `docker restart` (re-attached from Docker
// events, new namespace), and detach cleanly. Starts dockerd if needed
// (scripts/docker.ts); skips only when Docker cannot be installed at all.
// Removes its containers and namespace even on failure.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecCommandRunner, NetnsCommandRunner } from '../../router/host/command-runner';
import { ContainerManager } from '../../router/host/container-manager';
import { DockerClient } from '../../router/host/docker-client';
import { ensureBridge } from '../../router/host/host-bridge';
import { silentLogger } from '../../common/logger';
import { run } from '../../scripts/command';
import { waitFor } from '../../scripts/wait';
import { docker, ensureBusyboxImage, ensureDockerd, stopDockerdIfWeStartedIt } from '../../scripts/docker';

t.setTimeout(600_000);

const PREFIX = `wvd${randomBytes(2).toString('hex')}-`;
const HOST = `${PREFIX}host`;
const A = `${PREFIX}a`;
const B = `${PREFIX}b`;
const TAP = 'wvtap0';
const MTU = 1376;

async function main(): Promise<void> {
  try {
    await ensureDockerd();
  } catch (err) {
    const reason = `Docker cannot be installed or started here: ${err instanceof Error ? err.message : String(err)}`;
    t.skip(reason, async () => undefined);
    return;
  }
  const datadir = mkdtempSync(join(tmpdir(), 'weave-docker-attach-'));
  let manager: ContainerManager | null = null;
  t.teardown(async () => {
    await manager?.close();
    await docker(['rm', '-f', A, B], { allowFail: true });
    await run(['ip', 'netns', 'del', HOST]);
    rmSync(datadir, { recursive: true, force: true });
    await stopDockerdIfWeStartedIt();
  });

  const image = await ensureBusyboxImage();
  for (const name of [A, B]) {
    await docker(['run', '-d', '--network', 'none', '--name', name, image, 'sleep', '3600']);
  }
  const r = await run(['ip', 'netns', 'add', HOST]);
  if (r.code !== 0) throw new Error(`ip netns add ${HOST}: ${r.stderr}`);
  const hostRunner = new NetnsCommandRunner(new ExecCommandRunner(), HOST);
  await hostRunner.run('ip', ['link', 'set', 'lo', 'up']);
  await hostRunner.run('ip', ['tuntap', 'add', TAP, 'mode', 'tap']);
  await ensureBridge({ bridge: 'weave', tap: TAP, mtu: MTU }, hostRunner);

  const client = new DockerClient();
  const m = new ContainerManager(
    { runner: hostRunner, docker: client, logger: silentLogger },
    { bridge: 'weave', mtu: MTU, overlayRoutes: ['10.32.0.0/12'], datadir, hostNetns: `/var/run/netns/${HOST}` },
  );
  manager = m;
  m.watch();

  const ping = (from: string, to: string) => docker(['exec', from, 'ping', '-c', '2', '-W', '2', to], { allowFail: true });

  await t.test('attach two containers by name; they ping each other', async (t) => {
    const a = await m.attach(A, ['10.32.5.1/12']);
    const b = await m.attach(B, ['10.32.5.2/12']);
    t.equal(a.kind, 'docker');
    t.equal(a.name, A);
    t.match(a.id, /^[0-9a-f]{64}$/);
    t.match(a.hostIfname, /^vethwepl\d+$/);
    t.equal((await ping(A, '10.32.5.2')).code, 0, 'a -> b');
    t.equal((await ping(B, '10.32.5.1')).code, 0, 'b -> a');
    const inside = await docker(['exec', A, 'ip', 'addr', 'show', 'ethwe']);
    t.match(inside.stdout, /inet 10\.32\.5\.1\/12/);
    t.match(inside.stdout, new RegExp(`link/ether ${a.mac}`), 'MAC as listed');
    const routes = await docker(['exec', A, 'ip', 'route']);
    t.match(routes.stdout, /224\.0\.0\.0\/4 dev ethwe/);
    t.same(m.list().map((c) => c.name).sort(), [A, B].sort());
    t.equal(b.addresses[0], '10.32.5.2/12');
  });

  await t.test('refusals: unknown and stopped containers', async (t) => {
    await t.rejects(m.attach(`${PREFIX}nosuch`, ['10.32.5.3/12']), { message: /no such Docker container/ });
    await docker(['create', '--network', 'none', '--name', `${PREFIX}idle`, image, 'sleep', '1']);
    try {
      await t.rejects(m.attach(`${PREFIX}idle`, ['10.32.5.3/12']), { message: /is not running/ });
    } finally {
      await docker(['rm', '-f', `${PREFIX}idle`], { allowFail: true });
    }
  });

  await t.test('docker restart: re-attached with the same address in the new namespace', async (t) => {
    const before = m.list().find((c) => c.name === A);
    await docker(['restart', '-t', '1', A]);
    const after = await waitFor(() => {
      const c = m.list().find((x) => x.name === A);
      return c !== undefined && c.pid !== before?.pid ? c : null;
    }, { what: 'the restarted container to be attached again', timeoutMs: 20_000, intervalMs: 100 });
    t.same(after.addresses, ['10.32.5.1/12']);
    t.equal((await ping(B, '10.32.5.1')).code, 0, 'b -> restarted a');
    const hostLinks = (await hostRunner.run('ip', ['-o', 'link', 'show'])).stdout;
    t.notMatch(hostLinks, new RegExp(`${before?.hostIfname ?? 'none'}[@:]`), 'old veth gone');
  });

  await t.test('detach removes the veths', async (t) => {
    await m.detach(A);
    await m.detach(B, ['10.32.5.2/12']);
    t.same(m.list(), []);
    const hostLinks = (await hostRunner.run('ip', ['-o', 'link', 'show'])).stdout;
    t.notMatch(hostLinks, /vethwepl/, 'no veth left on the host');
    const inside = await docker(['exec', A, 'ip', 'link'], { allowFail: true });
    t.notMatch(inside.stdout, /ethwe/, 'no ethwe left in the container');
  });

  await t.test('docker rm of an attached container is noticed', async (t) => {
    await m.attach(B, ['10.32.5.2/12']);
    await docker(['rm', '-f', B]);
    await waitFor(() => m.list().length === 0 && m.addressesInUse().length === 0, { what: 'the destroyed container to be forgotten', timeoutMs: 20_000, intervalMs: 100 });
    t.pass('forgotten, address released');
  });
}

void main().catch((err: unknown) => {
  t.fail(`docker attach test failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
});
