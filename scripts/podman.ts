// A private podman for tests: its own storage, run directory, lock files and
// CNI config and plugin directories under one temporary directory, never the
// host's /etc/cni/net.d or global podman storage. Owns installing podman,
// the reference CNI plugins, runc and busybox-static from Debian when
// missing, the flags this kind of machine needs (runc, not crun, on hybrid
// cgroups; cgroupfs; ulimits the runtime may set), and a `local/busybox`
// image imported from a busybox-static rootfs (no registry).
//
// It never touches another podman's containers: every call carries --root
// and --runroot of its own, and cleanup removes only those.

import { chmodSync, copyFileSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../common/errors';
import { aptInstall } from './apt';
import { run, type ExecResult } from './command';

export const PODMAN_IMAGE = 'local/busybox';
/** Without these the runtime fails with "setrlimit ... Operation not permitted" here. */
const RUN_FLAGS = ['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=1024:1024'];


/** false when podman with the CNI backend can run here, else why not (for a test's skip). */
export async function podmanSkipReason(): Promise<string | false> {
  try {
    const missing = [
      ['/usr/bin/podman', 'podman'], ['/usr/lib/cni/host-local', 'containernetworking-plugins'], ['/usr/sbin/runc', 'runc'],
    ].filter(([file]) => !existsSync(file as string)).map(([, pkg]) => pkg as string);
    if (missing.length > 0) await aptInstall(missing);
    if (!existsSync('/usr/bin/podman')) return 'podman is not installed and apt-get could not install it';
    return false;
  } catch (err) {
    return `podman cannot be installed here: ${errorMessage(err)}`;
  }
}

export class PrivatePodman {
  readonly confDir: string;
  readonly binDir: string;

  constructor(
    /** Everything of this podman lives under here. */
    readonly dir: string,
  ) {
    this.confDir = join(dir, 'cni-conf');
    this.binDir = join(dir, 'cni-bin');
    for (const d of ['root', 'run', 'tmp', this.confDir, this.binDir]) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'containers.conf'), [
      '[engine]',
      // The machine-wide shared-memory lock would be shared with every other podman.
      'lock_type = "file"',
      '[network]',
      `cni_plugin_dirs = [${JSON.stringify(this.binDir)}, "/usr/lib/cni"]`,
      `network_config_dir = ${JSON.stringify(this.confDir)}`,
      '',
    ].join('\n'));
  }

  private argv(args: string[]): string[] {
    return [
      '/usr/bin/podman', '--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'run'), '--tmpdir', join(this.dir, 'tmp'),
      '--storage-driver', 'vfs', '--events-backend', 'none', '--runtime', '/usr/sbin/runc', '--cgroup-manager', 'cgroupfs',
      '--network-backend', 'cni', '--cni-config-dir', this.confDir, ...args,
    ];
  }

  /**
   * Runs podman, inside network namespace `netns` when given (as a runtime on
   * a node runs beside that node's router: the CNI plugin runs there too).
   */
  podman(args: string[], opts: { netns?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    const argv = this.argv(args);
    const cmd = opts.netns === undefined ? argv : ['nsenter', `--net=/var/run/netns/${opts.netns}`, ...argv];
    return run(cmd, { env: { CONTAINERS_CONF: join(this.dir, 'containers.conf') }, timeoutMs: opts.timeoutMs ?? 120_000 });
  }

  /** `podman run -d` with this machine's flags; returns the container id. */
  async runDetached(name: string, network: string, netns: string, cmd: string[]): Promise<string> {
    const r = await this.podman(['run', '-d', '--name', name, ...RUN_FLAGS, '--network', network, PODMAN_IMAGE, ...cmd], { netns });
    if (r.code !== 0) throw new Error(`podman run ${name} failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r.stdout.trim().split('\n').pop() ?? '';
  }

  /** Imports `local/busybox` from /bin/busybox (busybox-static). */
  async importBusybox(): Promise<void> {
    const check = await run(['ldd', '/bin/busybox']);
    if (!existsSync('/bin/busybox') || !/not a dynamic|statically linked/.test(check.stdout + check.stderr)) await aptInstall(['busybox-static']);
    const rootfs = join(this.dir, 'rootfs');
    for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root']) mkdirSync(join(rootfs, d), { recursive: true });
    copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
    chmodSync(join(rootfs, 'bin/busybox'), 0o755);
    for (const applet of ['sh', 'sleep', 'ping', 'ip', 'cat', 'nslookup', 'hostname']) symlinkSync('busybox', join(rootfs, 'bin', applet));
    writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\n');
    const tar = join(this.dir, 'rootfs.tar');
    await run(['tar', '-C', rootfs, '-c', '-f', tar, '.'], { check: true });
    const r = await this.podman(['import', tar, PODMAN_IMAGE]);
    rmSync(tar, { force: true });
    if (r.code !== 0) throw new Error(`podman import failed: ${r.stderr.trim()}`);
  }

  /** Removes every container of this podman (running ones too) and then its directory. */
  async destroy(): Promise<void> {
    await this.podman(['rm', '-f', '-a', '-t', '1'], { timeoutMs: 60_000 });
    // vfs leaves plain files; nothing of this podman stays mounted once its containers are gone.
    rmSync(this.dir, { recursive: true, force: true });
  }
}
