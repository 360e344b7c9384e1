// End to end: `weave attach pid:PID` and `weave detach` never write or read a
// host file through a container's resolv.conf. One simulated host runs a
// router; "containers" are plain processes with their own network and mount
// namespaces and a tmpfs on /etc:
//   - as an unprivileged user (nobody, `unshare -Urmn`): /etc/resolv.conf is a
//     symlink to a root-only file outside the container;
//   - the same user bind-mounts that root-only file over its /etc/resolv.conf
//     (no symlink at all: only acting with the container's own rights stops it);
//   - control cases, as root (`unshare -mn`) and as nobody: a normal
//     resolv.conf is pointed at weave DNS on attach and restored on detach.
// The root-only file stays byte for byte the same through attach and detach,
// the attach succeeds (ethwe has its address), and the refusal shows in the
// log and in `weave status dns`. Needs root; everything it creates is removed.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../scripts/command';
import type { BackgroundProcess } from '../../scripts/command';
import { SimNetwork } from '../../scripts/sim-network';
import type { SimHost } from '../../scripts/sim-host';
import { waitFor } from '../../scripts/wait';
import type { DnsStatusReport } from '../../dns/api-types';

t.setTimeout(240_000);

const VICTIM_TEXT = 'root only: this host file must never change\nnameserver 192.0.2.53\n';
const CONTAINER_RESOLV = 'search corp.example\nnameserver 10.1.1.1\n';

async function dnsStatus(h: SimHost): Promise<DnsStatusReport> {
  const r = await h.weave(['status', 'dns', '--json']);
  if (r.code !== 0) throw new Error(`weave status dns: ${r.stderr}`);
  return JSON.parse(r.stdout) as DnsStatusReport;
}

/** The address on ethwe inside the process's network namespace, or '' when there is none. */
async function ethweOf(pid: number): Promise<string> {
  const r = await run(['nsenter', `--net=/proc/${pid}/ns/net`, 'ip', '-br', '-4', 'addr', 'show', 'dev', 'ethwe']);
  return r.code === 0 ? r.stdout.trim() : '';
}

t.test('attach and detach of pid: containers leave files outside the container alone', async (t) => {
  const net = await SimNetwork.create({ hosts: 1, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const procs: BackgroundProcess[] = [];
  // Searchable by nobody (the bind mount needs to reach it), readable by root alone.
  const victimDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-resolv-victim-'));
  fs.chmodSync(victimDir, 0o755);
  const victim = path.join(victimDir, 'root-only.conf');
  fs.writeFileSync(victim, VICTIM_TEXT, { mode: 0o600 });
  t.teardown(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    await net.host('h1').weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
    fs.rmSync(victimDir, { recursive: true, force: true });
  });
  const h1 = net.host('h1');
  const hostResolv = path.join(net.rootDir, 'h1-resolv.conf');
  fs.writeFileSync(hostResolv, 'nameserver 127.0.0.2\n');
  const launched = await h1.weave(['launch', '--nickname', 'h1', '--dns-resolv-conf', hostResolv]);
  t.equal(launched.code, 0, `launch: ${launched.stderr.trim()}`);

  /** A process in its own namespaces with a tmpfs on /etc, set up by `script`; returns its pid. */
  const container = async (name: string, asNobody: boolean, script: string): Promise<number> => {
    const unshare = asNobody
      ? ['setpriv', '--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', 'unshare', '-Urmn']
      : ['unshare', '-mn', '--propagation', 'private'];
    const p = h1.spawn([...unshare, 'sh', '-c', `mount -t tmpfs tmpfs /etc && ${script} && echo ready && exec sleep 600`]);
    procs.push(p);
    await waitFor(() => p.stdout.includes('ready') || !p.running, { what: `container ${name}`, timeoutMs: 10_000 });
    if (!p.running || p.pid === undefined) throw new Error(`container ${name} did not start: ${p.stderr}`);
    return p.pid;
  };
  const unchanged = (what: string): void => {
    t.equal(fs.readFileSync(victim, 'utf8'), VICTIM_TEXT, `${what}: the root-only file is byte for byte the same`);
    t.equal(fs.statSync(victim).mode & 0o777, 0o600, `${what}: and keeps its mode`);
  };
  const attach = async (pid: number, ip: string): Promise<void> => {
    const r = await h1.weave(['attach', `${ip}/24`, `pid:${pid}`]);
    t.equal(r.code, 0, `attach pid:${pid}: ${r.stderr.trim()}`);
    t.match(await ethweOf(pid), ip, `pid:${pid} has its address on ethwe: its networking works`);
  };
  const detach = async (pid: number): Promise<void> => {
    const r = await h1.weave(['detach', `pid:${pid}`]);
    t.equal(r.code, 0, `detach pid:${pid}: ${r.stderr.trim()}`);
  };

  const symlinked = await container('symlink', true, `ln -s ${victim} /etc/resolv.conf`);
  const bound = await container('bind', true, `touch /etc/resolv.conf && mount --bind ${victim} /etc/resolv.conf`);
  const rootNormal = await container('root control', false, `printf '${CONTAINER_RESOLV.replace(/\n/g, '\\n')}' > /etc/resolv.conf`);
  const userNormal = await container('nobody control', true, `printf '${CONTAINER_RESOLV.replace(/\n/g, '\\n')}' > /etc/resolv.conf`);

  await attach(symlinked, '10.32.9.1');
  unchanged('attach through a symlink');
  await attach(bound, '10.32.9.2');
  unchanged('attach through a bind mount');
  t.ok(fs.lstatSync(`/proc/${symlinked}/root/etc/resolv.conf`).isSymbolicLink(), 'the symlink itself is left in place');

  const warnings = (await dnsStatus(h1)).warnings;
  t.ok(warnings.some((w) => w.includes(`pid:${symlinked}`) && /symbolic link/.test(w)), `status names the symlink: ${warnings.join(' | ')}`);
  t.ok(warnings.some((w) => w.includes(`pid:${bound}`) && /own rights|out of reach/.test(w)), `status names the bind mount: ${warnings.join(' | ')}`);
  const log = h1.readLog('weave.log', 400);
  t.match(log, new RegExp(`WARN container resolv.conf left alone.*container=pid:${symlinked}`), 'a warning in the log');

  await attach(rootNormal, '10.32.9.3');
  await attach(userNormal, '10.32.9.4');
  const nameserver = (await dnsStatus(h1)).address;
  t.match(nameserver, /^169\.254\./);
  for (const pid of [rootNormal, userNormal]) {
    const text = fs.readFileSync(`/proc/${pid}/root/etc/resolv.conf`, 'utf8');
    t.match(text, `nameserver ${nameserver}`, `pid:${pid} points at weave dns`);
    t.match(text, /search weave\.local corp\.example/);
  }

  for (const pid of [symlinked, bound]) {
    await detach(pid);
    unchanged(`detach of pid:${pid}`);
  }
  for (const pid of [rootNormal, userNormal]) {
    await detach(pid);
    t.equal(fs.readFileSync(`/proc/${pid}/root/etc/resolv.conf`, 'utf8'), CONTAINER_RESOLV, `pid:${pid} restored on detach`);
  }
  t.same((await dnsStatus(h1)).warnings.filter((w) => w.includes('resolver not pointed')), [], 'detach clears the warnings');
  unchanged('the end');
});
