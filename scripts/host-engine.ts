// A Docker engine of one simulated host: a dockerd in the host's network
// namespace (nsenter --net, as scripts/docker.ts notes) with its own socket,
// data and exec roots. With `privatePluginDir`, the host also gets a mount
// namespace of its own (a holder process from `unshare -m --propagation
// slave`) with a private tmpfs at /run/docker/plugins, and the engine and the
// host's `weave` run inside it: that directory is one per machine otherwise,
// so two routers serving the Docker plugin would fight over weave.sock.
// The holder starts inside the host's network namespace too, so a run killed
// before its teardown leaves it to the reaper of simulated networks.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { processAlive } from '../common/process-alive';
import { run, type ExecResult } from './command';
import { docker } from './docker';
import type { SimHost } from './sim-host';
import { sleep, waitFor } from './wait';

const PLUGIN_DIR = '/run/docker/plugins';

export interface HostEngineOptions {
  /** A mount namespace with its own /run/docker/plugins for this host's engine and router. */
  privatePluginDir?: boolean;
}

export class HostEngine {
  readonly sock: string;
  private holder = 0;
  private dockerd = 0;
  private readonly execRoot: string;
  private readonly dataRoot: string;

  constructor(readonly host: SimHost, rootDir: string, prefix: string, private readonly opts: HostEngineOptions = {}) {
    this.sock = `/run/${prefix}${host.name}-docker.sock`;
    this.execRoot = `/run/${prefix}${host.name}-d`;
    this.dataRoot = path.join(rootDir, `${host.name}-docker`);
  }

  async start(): Promise<void> {
    if (this.opts.privatePluginDir === true) {
      fs.mkdirSync(PLUGIN_DIR, { recursive: true });
      const holder = spawn('nsenter', [`--net=/var/run/netns/${this.host.ns}`, 'unshare', '-m', '--propagation', 'slave', 'sh', '-c',
        `mount -t tmpfs -o mode=755 tmpfs ${PLUGIN_DIR} && exec sleep infinity`], { stdio: 'ignore', detached: true });
      holder.unref();
      await waitFor(() => {
        // nsenter execs unshare, which forks nothing: the pid is the holder's.
        this.holder = holder.pid ?? 0;
        return this.holder !== 0 && fs.readFileSync(`/proc/${this.holder}/mountinfo`, 'utf8').includes(` ${PLUGIN_DIR} `);
      }, { what: `${this.host.name}'s private ${PLUGIN_DIR}`, timeoutMs: 10_000 });
    }
    const log = fs.openSync(`${this.dataRoot}.log`, 'a');
    const d = spawn('nsenter', [...this.namespaces(), 'dockerd', '-H', `unix://${this.sock}`,
      '--data-root', this.dataRoot, '--exec-root', this.execRoot, '--pidfile', `${this.execRoot}.pid`,
      '--iptables=false', '--ip-forward=false', '--bridge=none'], { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    d.unref();
    this.dockerd = d.pid ?? 0;
    await waitFor(async () => (await this.docker(['version'], true)).code === 0, { what: `${this.host.name}'s dockerd`, timeoutMs: 30_000, detail: () => this.log() });
  }

  docker(args: string[], allowFail = false): Promise<{ code: number; stdout: string; stderr: string }> {
    return docker(['-H', `unix://${this.sock}`, ...args], { allowFail, timeoutMs: 60_000 });
  }

  /** `weave ARGS` on this host (inside its mount namespace, if it has one) with this engine as DOCKER_HOST. */
  weave(args: string[]): Promise<ExecResult> {
    const env = { DOCKER_HOST: `unix://${this.sock}` };
    if (this.holder === 0) return this.host.weave(args, { env, timeoutMs: 60_000 });
    return run(['nsenter', ...this.namespaces(), 'node', path.resolve(__dirname, '..', 'cli', 'weave.js'), ...args],
      { env: this.host.weaveEnv({ env }), timeoutMs: 60_000 });
  }

  /** The host's /run/docker/plugins/NAME as seen from here (its private tmpfs, through the holder's root). */
  pluginSocketPath(name = 'weave.sock'): string {
    return this.holder === 0 ? path.join(PLUGIN_DIR, name) : `/proc/${this.holder}/root${PLUGIN_DIR}/${name}`;
  }

  log(): string {
    try {
      return fs.readFileSync(`${this.dataRoot}.log`, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  }

  /** Containers and weave networks removed (while a plugin-serving router still answers the engine). */
  async clear(): Promise<void> {
    if (this.dockerd === 0) return;
    const ids = (await this.docker(['ps', '-aq'], true)).stdout.split('\n').filter((l) => l.trim() !== '');
    if (ids.length > 0) await this.docker(['rm', '-f', ...ids], true);
    const networks = (await this.docker(['network', 'ls', '-q', '--filter', 'driver=weave'], true)).stdout.split('\n').filter((l) => l.trim() !== '');
    for (const n of networks) await this.docker(['network', 'rm', n], true);
  }

  /** dockerd stopped and waited for, the holder gone (and with it the tmpfs), the roots removed. */
  async stop(): Promise<void> {
    if (this.dockerd !== 0) {
      try { process.kill(this.dockerd, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 100 && processAlive(this.dockerd); i++) await sleep(100);
      if (processAlive(this.dockerd)) try { process.kill(this.dockerd, 'SIGKILL'); } catch { /* gone */ }
      this.dockerd = 0;
    }
    if (this.holder !== 0) try { process.kill(this.holder, 'SIGKILL'); } catch { /* gone */ }
    this.holder = 0;
    fs.rmSync(this.execRoot, { recursive: true, force: true });
    fs.rmSync(`${this.execRoot}.pid`, { force: true });
    fs.rmSync(this.sock, { force: true });
  }

  private namespaces(): string[] {
    const net = `--net=/var/run/netns/${this.host.ns}`;
    return this.holder === 0 ? [net] : ['-t', String(this.holder), '-m', net];
  }
}
