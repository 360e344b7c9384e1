// End-to-end test with containerd's own client: `ctr run --cni` against a
// private containerd (its own root, state and socket; CRI plugin off) in a
// simulated host with a router. ctr reads CNI configs and plugins only from
// /etc/cni/net.d and /opt/cni/bin, so it runs in a private mount namespace
// (unshare --mount) where those paths are bind mounts of the directories
// `weave setup-cni` wrote: the host's own stay untouched. ctr hands the
// plugin the task's /proc/PID/ns/net, a different kind of CNI_NETNS than
// podman's. Skips when containerd or runc is missing. Needs root.

import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../cli/api-client';
import { spawn } from 'node:child_process';
import { BackgroundProcess, run } from '../../scripts/command';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(300_000);

const missing = ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/sbin/runc', '/bin/busybox'].filter((f) => !existsSync(f));
// ctr reads /etc/cni/net.d only; without /etc/cni there is nothing to mount over short of changing the host.
if (!existsSync('/etc/cni')) missing.push('/etc/cni (to mount the test\'s config directory over)');
// Opt-in until a flake is understood: in one full run from a fresh clone `ctr run --rm`
// exited 137 (its task SIGKILLed, nothing on stderr) after the task was attached; alone it passes.
if (process.env.WEAVE_TEST_CTR !== '1') missing.push('WEAVE_TEST_CTR=1 (opt-in: ctr run exited 137 once in a full run, cause not yet known)');

t.test('ctr run --cni on a private containerd', { skip: missing.length > 0 ? `needs ${missing.join(', ')}` : false }, async (t) => {
  const net = await SimNetwork.create({ hosts: 1, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const dir = mkdtempSync(join(tmpdir(), 'weave-ctr-'));
  let containerd: BackgroundProcess | null = null;
  t.teardown(async () => {
    await containerd?.stop('SIGTERM', 5_000);
    await net.host('h1').weave(['stop'], { timeoutMs: 15_000 });
    await net.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const h1 = net.host('h1');
  const launch = await h1.weave(['launch', '--nickname', 'h1']);
  t.equal(launch.code, 0, `launch: ${launch.stderr.trim()}`);
  const setup = await h1.weave(['setup-cni', '--bin-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'conf')]);
  t.equal(setup.code, 0, `setup-cni: ${setup.stderr.trim()}`);
  // ctr adds the loopback plugin's network too.
  if (existsSync('/usr/lib/cni/loopback')) copyFileSync('/usr/lib/cni/loopback', join(dir, 'bin', 'loopback'));

  const sock = join(dir, 'containerd.sock');
  writeFileSync(join(dir, 'containerd.toml'), [
    'version = 2', `root = ${JSON.stringify(join(dir, 'root'))}`, `state = ${JSON.stringify(join(dir, 'state'))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]', '[grpc]', `  address = ${JSON.stringify(sock)}`, '',
  ].join('\n'));
  // In the root namespaces: `ip netns exec` would remount /sys and hide the cgroup mounts runc needs.
  // Where containerd runs does not matter to CNI: ctr, the client, runs the plugin.
  const argv = ['/usr/bin/containerd', '-c', join(dir, 'containerd.toml')];
  const daemon = new BackgroundProcess(argv, spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
  containerd = daemon;
  await waitFor(async () => (await run(['ctr', '--address', sock, 'version'])).code === 0, { what: 'containerd to answer', timeoutMs: 30_000, detail: () => daemon.stderr.slice(-2000) });

  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of ['sh', 'ip', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', a));
  const script = join(dir, 'ctr-run.sh');
  writeFileSync(script, [
    '#!/bin/sh',
    'set -e',
    // Only in this mount namespace: the host's /opt and /etc/cni/net.d are not touched.
    'mount --make-rprivate /',
    'mount -t tmpfs weave-ctr-test /opt',
    'mkdir -p /opt/cni/bin',
    // A directory made here would be made on the host: without net.d, a tmpfs over /etc/cni holds it.
    '[ -d /etc/cni/net.d ] || { mount -t tmpfs weave-ctr-test /etc/cni && mkdir /etc/cni/net.d; }',
    `mount --bind ${join(dir, 'bin')} /opt/cni/bin`,
    `mount --bind ${join(dir, 'conf')} /etc/cni/net.d`,
    `exec ctr --address ${sock} run --rm --cni --env PATH=/bin --rootfs ${rootfs} weavectr1 /bin/sh -c 'ip addr show eth0; ip route; sleep 2'`,
    '',
  ].join('\n'));
  chmodSync(script, 0o755);
  const api = new ApiClient(h1.apiSocket);
  const seen: unknown[] = [];
  let finished: { code: number; stdout: string; stderr: string } | null = null;
  const ctr = run(['nsenter', `--net=/var/run/netns/${h1.ns}`, 'unshare', '--mount', script], { timeoutMs: 120_000 }).then((r) => (finished = r));
  // While the task sleeps, the router holds its attachment, in the task's /proc/PID/ns/net.
  await waitFor(async () => {
    if (finished !== null) throw new Error(`ctr ended before its task was seen attached (exit ${finished.code}): ${finished.stderr.trim()} ${finished.stdout.trim()}`);
    const list = (await api.get<{ attachments: { netns: string; containerId: string }[] }>('/cni')).attachments;
    if (list.length > 0) seen.push(...list);
    return list.length > 0;
  }, { what: 'the ctr task to be attached', timeoutMs: 60_000, intervalMs: 100 });
  const r = await ctr;
  t.equal(r.code, 0, `ctr run: ${r.stderr.trim()}`);
  t.match(r.stdout, /inet 10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12 /, 'eth0 got a weave IPAM address');
  t.match(r.stdout, /224\.0\.0\.0\/4 dev eth0/, 'and the multicast route');
  const att = seen[0] as { netns: string; containerId: string };
  t.match(att.netns, /^\/proc\/\d+\/ns\/net$/, `ctr passes the task's namespace by pid (${att.netns})`);
  t.match(att.containerId, /weavectr1$/);
  t.same((await api.get<{ attachments: unknown[] }>('/cni')).attachments, [], 'ctr --rm ran DEL: nothing left');
  t.same((await api.get<{ addresses: string[] }>(`/ipam/containers/${att.containerId}`)).addresses, [], 'address released');
  t.notMatch((await h1.exec(['ip', '-o', 'link'])).stdout, /vethwec/, 'no host end left');
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), /weave-ctr-test/, 'the bind mounts stayed in their own mount namespace');
});
