// The veth pairs of Docker plugin endpoints, as `ip` commands: both ends made
// in the host namespace (Docker moves the peer into the container at Join),
// our end a port of the weave bridge, the MTU of the overlay on both, and the
// peer's MAC and GSO limit set before Docker takes it. A create that fails
// midway deletes the pair again. All I/O goes through CommandRunner.

import { RouterError } from '../mesh/errors';
import type { CommandRunner } from './command-runner';
import { CONTAINER_GSO_MAX_BYTES } from './container-link';
import type { PluginLinks } from './docker-plugin-network';
import { validateIfName, validateMtu } from './host-link';

export class PluginVethLinks implements PluginLinks {
  private readonly bridge: string;
  private readonly mtu: number;

  constructor(private readonly runner: CommandRunner, opts: { bridge: string; mtu: number }) {
    this.bridge = validateIfName(opts.bridge, 'bridge name');
    this.mtu = validateMtu(opts.mtu);
  }

  async create(hostIfname: string, peerIfname: string, mac: string): Promise<void> {
    validateIfName(hostIfname, 'veth name');
    validateIfName(peerIfname, 'veth peer name');
    // Left over from a create cut short (a crash): the names are ours by construction.
    await this.remove(hostIfname);
    await this.remove(peerIfname);
    const mtu = String(this.mtu);
    const add = await this.runner.run('ip', ['link', 'add', 'name', hostIfname, 'mtu', mtu, 'type', 'veth', 'peer', 'name', peerIfname, 'mtu', mtu, 'address', mac], { allowFail: true });
    if (add.code !== 0) throw new RouterError('io', `ip link add ${hostIfname}: ${add.stderr.trim()}`);
    try {
      await this.runner.run('ip', ['link', 'set', 'dev', hostIfname, 'master', this.bridge]);
      await this.runner.run('ip', ['link', 'set', 'dev', hostIfname, 'up']);
      // As for ethwe (container-link.ts): the data plane seals super-frames whole. Older kernels: harmless.
      await this.runner.run('ip', ['link', 'set', 'dev', peerIfname, 'gso_max_size', String(CONTAINER_GSO_MAX_BYTES)], { allowFail: true });
    } catch (err) {
      await this.runner.run('ip', ['link', 'del', 'dev', hostIfname], { allowFail: true });
      throw err;
    }
  }

  async remove(ifname: string): Promise<void> {
    const r = await this.runner.run('ip', ['link', 'del', 'dev', ifname], { allowFail: true });
    if (r.code !== 0 && !/does not exist|Cannot find device/i.test(r.stderr)) {
      throw new RouterError('io', `cannot delete ${ifname}: ${r.stderr.trim()}`);
    }
  }
}
