// Fakes shared by the container tests: a host played by a scripted
// CommandRunner (links that exist, namespaces by path, scripted failures), a
// Docker that answers from a map, and ContainerManagers wired to them.

import { FakeCommandRunner } from '../../router/host/command-runner';
import type { CommandRunner, RunResult } from '../../router/host/command-runner';
import { describeRequest } from '../../router/host/netlink-codec';
import type { RtReply } from '../../router/host/netlink-codec';
import type { Netlink, NetlinkSocket } from '../../router/host/netlink-socket';
import { ContainerManager } from '../../router/host/container-manager';
import type { HostFs } from '../../router/host/container-ref';
import { MemoryStateStore } from '../../router/host/container-state';
import type { DockerApi, DockerContainer, DockerEvent, EventWatch } from '../../router/host/docker-client';
import { RouterError } from '../../router/mesh/errors';
import { silentLogger } from '../../common/logger';

const ERRNO_TEXT: Record<number, string> = { 17: 'EEXIST: File exists', 19: 'ENODEV: No such device', 22: 'EINVAL: Invalid argument' };

/**
 * rtnetlink played by a CommandRunner: each request is recorded (and answered)
 * as the `ip` command it stands for, `nsenter --net=PATH ip ...` on a socket
 * opened in a container, with interfaces named rather than numbered, so the
 * expectations read as before. What the runner says becomes an errno: "File
 * exists" EEXIST, "does not exist" ENODEV, any other failure EINVAL, and its
 * stderr the kernel's words. The encoding itself is tested in netlink.test.ts.
 */
export class RunnerNetlink implements Netlink {
  private readonly indexes = new Map<string, number>();
  private readonly paths = new Map<number, string>();
  private nextFd = 100;

  constructor(private readonly runner: CommandRunner) {}

  private indexOf(name: string): number {
    let i = this.indexes.get(name);
    if (i === undefined) {
      i = this.indexes.size + 2;
      this.indexes.set(name, i);
    }
    return i;
  }

  private nameOf(index: number): string {
    for (const [name, i] of this.indexes) if (i === index) return name;
    return String(index);
  }

  open(nsPath: string | null): NetlinkSocket {
    const nsFd = nsPath === null ? -1 : this.nextFd++;
    if (nsPath !== null) this.paths.set(nsFd, nsPath);
    const prefix = nsPath === null ? ['ip'] : ['nsenter', `--net=${nsPath}`, 'ip'];
    return {
      nsFd,
      request: async (reqs) => {
        const out: RtReply[] = [];
        for (const req of reqs) {
          const netns = req.op === 'newVeth' ? this.paths.get(req.peer.nsFd) ?? 'fd' : 'fd';
          const line = describeRequest(req, { dev: (i) => this.nameOf(i), netns });
          const r = await this.runner.run(prefix[0] as string, [...prefix.slice(1), ...line.split(' ')], { allowFail: true });
          if (r.code !== 0) {
            const errno = /File exists/i.test(r.stderr) ? 17 : /does not exist|Cannot find device/i.test(r.stderr) ? 19 : 22;
            out.push({ errno, said: r.stderr.trim(), link: null });
            continue;
          }
          let mac: string | null = null;
          try {
            const parsed = JSON.parse(r.stdout) as { address?: unknown }[];
            if (typeof parsed[0]?.address === 'string') mac = parsed[0].address;
          } catch {
            // No JSON: no MAC.
          }
          out.push({ errno: 0, said: null, link: req.op === 'getLink' ? { index: this.indexOf(req.name), mac } : null });
        }
        return out;
      },
      close: () => undefined,
    };
  }

  describeErrno(errno: number): string {
    return ERRNO_TEXT[errno] ?? `E${errno}: error ${errno}`;
  }
}

/** A fake host: links that exist, namespaces by path, scripted failures. */
export class FakeHost {
  readonly links = new Set<string>(['lo', 'weave']);
  readonly namespaces = new Map<string, string>([['/proc/self/ns/net', 'ns:host']]);
  /** Namespace paths whose stat is refused (EACCES), as for another user's process without root. */
  readonly refused = new Set<string>();
  /** A command line matching this fails. */
  failOn: RegExp | null = null;
  macCounter = 0;
  readonly runner = new FakeCommandRunner((cmd, args) => this.respond(cmd, args));
  readonly netlink = new RunnerNetlink(this.runner);
  readonly hostFs: HostFs = {
    namespaceId: (p) => {
      if (this.refused.has(p)) throw new RouterError('io', `permission denied reading ${p} (EACCES)`);
      return this.namespaces.get(p) ?? null;
    },
    processName: (pid) => (this.namespaces.has(`/proc/${pid}/ns/net`) ? `proc${pid}` : null),
  };

  respond(cmd: string, args: string[]): Partial<RunResult> | undefined {
    const line = [cmd, ...args].join(' ');
    if (this.failOn !== null && this.failOn.test(line)) return { code: 2, stderr: `scripted failure of ${line}` };
    if (cmd === 'ip' && args[0] === 'link' && args[1] === 'add') {
      const name = args[3] as string;
      if (this.links.has(name)) return { code: 2, stderr: 'RTNETLINK answers: File exists' };
      this.links.add(name);
      return undefined;
    }
    if (cmd === 'ip' && args[0] === 'link' && args[1] === 'del') {
      const name = args[3] as string;
      if (!this.links.delete(name)) return { code: 1, stderr: `Cannot find device "${name}"` };
      return undefined;
    }
    if (cmd === 'ip' && args[0] === 'link' && args[1] === 'show') {
      const name = args[3] as string;
      return this.links.has(name) ? { stdout: `1: ${name}: <UP>` } : { code: 1, stderr: `Device "${name}" does not exist.` };
    }
    if (cmd === 'ip' && args.join(' ').startsWith('-j -d link show dev')) {
      return { stdout: '[{"linkinfo":{"info_kind":"veth","info_slave_data":{"state":"forwarding"}}}]' };
    }
    if (cmd === 'nsenter' && args.slice(1).join(' ') === 'ip link show dev ethwe') {
      return { stdout: `[{"ifname":"ethwe","address":"02:00:00:00:00:0${this.macCounter}"}]` };
    }
    return undefined;
  }
}

/** A Docker daemon that answers inspect from `containers` and hands events to whoever watches. */
export class FakeDocker implements DockerApi {
  readonly containers = new Map<string, DockerContainer>();
  handler: ((ev: DockerEvent) => void) | null = null;

  async inspect(ref: string): Promise<DockerContainer | null> {
    for (const c of this.containers.values()) if (c.name === ref || c.id.startsWith(ref)) return { ...c };
    return null;
  }

  watchEvents(onEvent: (ev: DockerEvent) => void): EventWatch {
    this.handler = onEvent;
    return { close: () => { this.handler = null; } };
  }
}

/**
 * A ContainerManager on a FakeHost with the IPv4 overlay route only; `newManager`
 * makes another one on the same host and state store (a restarted daemon).
 */
export function setup(opts: { docker?: FakeDocker | null } = {}) {
  const host = new FakeHost();
  const store = new MemoryStateStore();
  let macs = 0;
  const mk = () => new ContainerManager(
    {
      runner: host.runner, netlink: host.netlink, docker: opts.docker ?? null, logger: silentLogger, hostFs: host.hostFs, store,
      newMac: () => `02:aa:00:00:00:0${++macs}`, sleep: async () => undefined,
    },
    { bridge: 'weave', mtu: 1376, overlayRoutes: ['10.32.0.0/12'], datadir: '/nonexistent' },
  );
  return { host, store, manager: mk(), newManager: mk };
}

/** A ContainerManager on a FakeHost with an IPv4 and an IPv6 overlay route. */
export function setupDual() {
  const host = new FakeHost();
  const store = new MemoryStateStore();
  let macs = 0;
  const manager = new ContainerManager(
    {
      runner: host.runner, netlink: host.netlink, docker: null, logger: silentLogger, hostFs: host.hostFs, store,
      newMac: () => `02:aa:00:00:00:0${++macs}`, sleep: async () => undefined,
    },
    { bridge: 'weave', mtu: 1376, overlayRoutes: ['10.32.0.0/12', 'fd00:77:1::/48'], datadir: '/nonexistent' },
  );
  return { host, store, manager };
}

/** The host ends of container veths that exist on `host`, sorted. */
export function veth(host: FakeHost): string[] {
  return [...host.links].filter((l) => l.startsWith('vethwe')).sort();
}
