// A real Docker engine for tests and demos on a machine without one running.
// It owns: installing docker.io and busybox-static from Debian when missing,
// the dockerd it starts (with its own pid file and log, flags that leave the
// host's firewall, forwarding and bridges alone), and the `local/busybox`
// image it builds with `docker import`.
//
// It never stops a dockerd it did not start, and never pulls from a registry.
// Commands are argument vectors (scripts/command.ts `run`), never shell strings.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerClient, DEFAULT_DOCKER_SOCKET } from '../router/host/docker-client';
import { aptInstall } from './apt';
import { run } from './command';
import { sleep, waitFor } from './wait';

export const BUSYBOX_IMAGE = 'local/busybox';
const STATE_DIR = '/tmp/weave-dockerd';
const PID_FILE = join(STATE_DIR, 'dockerd.pid');
const LOG_FILE = join(STATE_DIR, 'dockerd.log');
/** Installing docker.io takes ~12 s here; a slow mirror gets more. */

let startedPid: number | null = null;

function which(cmd: string): string | null {
  for (const dir of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return null;
}


/** The docker CLI to use: the Debian package's, which matches its engine. */
export function dockerCli(): string {
  return existsSync('/usr/bin/docker') ? '/usr/bin/docker' : which('docker') ?? 'docker';
}

/** Runs the docker CLI; throws with its output unless `allowFail`. */
export async function docker(args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await run([dockerCli(), ...args], {
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    timeoutMs: opts.timeoutMs ?? 60_000,
  });
  if (r.code !== 0 && opts.allowFail !== true) {
    throw new Error(`docker ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Makes sure a Docker engine answers on /var/run/docker.sock: installs
 * docker.io if dockerd is missing, starts dockerd detached if nothing answers.
 * Throws with the reason when that is impossible (callers turn it into a skip).
 */
export async function ensureDockerd(): Promise<void> {
  const client = new DockerClient();
  if (await client.ping()) return;
  if (which('dockerd') === null) await aptInstall(['docker.io']);
  if (which('dockerd') === null) throw new Error('dockerd is still missing after installing docker.io');
  mkdirSync(STATE_DIR, { recursive: true });
  const log = openSync(LOG_FILE, 'a');
  try {
    const child = spawn(
      which('dockerd') as string,
      ['--iptables=false', '--ip-forward=false', '--bridge=none', '--pidfile', PID_FILE],
      { detached: true, stdio: ['ignore', log, log] },
    );
    child.unref();
    startedPid = child.pid ?? null;
  } finally {
    closeSync(log);
  }
  await waitFor(() => client.ping(), {
    what: `dockerd to answer on ${DEFAULT_DOCKER_SOCKET}`,
    timeoutMs: 30_000,
    intervalMs: 200,
    detail: () => {
      try {
        return `dockerd log (${LOG_FILE}):\n${readFileSync(LOG_FILE, 'utf8').split('\n').slice(-15).join('\n')}`;
      } catch {
        return '';
      }
    },
  });
}

/** Builds `local/busybox` from busybox-static with `docker import`, unless it exists. */
export async function ensureBusyboxImage(): Promise<string> {
  const have = await docker(['image', 'inspect', BUSYBOX_IMAGE], { allowFail: true });
  if (have.code === 0) return BUSYBOX_IMAGE;
  if (!existsSync('/bin/busybox') || !(await isStaticBusybox('/bin/busybox'))) await aptInstall(['busybox-static']);
  const rootfs = mkdtempSync(join(tmpdir(), 'weave-busybox-'));
  const tarFile = `${rootfs}.tar`;
  try {
    for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'var/run']) {
      mkdirSync(join(rootfs, dir), { recursive: true });
    }
    copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
    chmodSync(join(rootfs, 'bin/busybox'), 0o755);
    const list = await run(['/bin/busybox', '--list-full'], { check: true });
    for (const applet of list.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '' && l !== 'bin/busybox')) {
      const target = join(rootfs, applet);
      if (!existsSync(target)) {
        mkdirSync(join(target, '..'), { recursive: true });
        symlinkSync('/bin/busybox', target);
      }
    }
    writeFileSync(join(rootfs, 'etc/resolv.conf'), 'nameserver 127.0.0.1\n');
    writeFileSync(join(rootfs, 'etc/hosts'), '127.0.0.1 localhost\n');
    writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\n');
    await run(['tar', '-C', rootfs, '-c', '-f', tarFile, '.'], { check: true });
    try {
      await docker(['import', '-c', 'CMD ["/bin/sh"]', tarFile, BUSYBOX_IMAGE], { timeoutMs: 120_000 });
    } finally {
      rmSync(tarFile, { force: true });
    }
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
  }
  return BUSYBOX_IMAGE;
}

async function isStaticBusybox(path: string): Promise<boolean> {
  // The dynamic busybox would not run inside an image without libc.
  const r = await run(['ldd', path]);
  return r.code !== 0 || /not a dynamic|statically linked/.test(r.stdout + r.stderr);
}

/** Stops the dockerd this process started (by its pid), and waits for it. */
export async function stopDockerdIfWeStartedIt(): Promise<void> {
  if (startedPid === null) return;
  const pid = startedPid;
  startedPid = null;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone meanwhile.
  }
}

/** Whether ensureDockerd started an engine in this process. */
export function weStartedDockerd(): boolean {
  return startedPid !== null;
}
