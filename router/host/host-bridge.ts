// The Linux bridge the data path hangs off (`weave`) and the TAP device's
// membership of it: creating the bridge, setting the MTU of both, enslaving the
// TAP and bringing both up, then asking bridge-firewall.ts to let bridge-local
// traffic through; and undoing exactly that.
//
// It owns the bridge it creates and the TAP's master/MTU/up state; the TAP
// itself belongs to the data path's addon, and container veths to the
// ContainerManager. It must never delete a bridge it did not find to be a
// bridge, nor leave a half-made bridge behind after a failed call. All I/O goes
// through CommandRunner.

import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { ensureBridgeForwarding, removeBridgeForwarding } from './bridge-firewall';
import type { FirewallResult } from './bridge-firewall';
import type { CommandRunner } from './command-runner';
import { CONTAINER_GSO_MAX_BYTES } from './container-link';
import { showLink, validateIfName, validateMtu } from './host-link';

export const DEFAULT_BRIDGE = 'weave';

export interface BridgeOptions {
  /** Bridge name, normally 'weave'. */
  bridge: string;
  /** TAP device of the data path, already created. */
  tap: string;
  mtu: number;
}

export interface BridgeResult {
  created: boolean;
  firewall: FirewallResult;
}

/**
 * Creates the bridge if missing, sets MTUs, enslaves the TAP and brings both
 * up, then makes sure the firewall lets bridge-local traffic through.
 * Idempotent. If the bridge was created here and a later step fails, it is
 * deleted again, so a failed call leaves no half-made bridge.
 */
export async function ensureBridge(opts: BridgeOptions, runner: CommandRunner, logger: Logger = silentLogger): Promise<BridgeResult> {
  const bridge = validateIfName(opts.bridge, 'bridge name');
  const tap = validateIfName(opts.tap, 'TAP device name');
  const mtu = validateMtu(opts.mtu);
  if (bridge === tap) throw RouterError.config(`the bridge and the TAP device need different names, both are ${JSON.stringify(bridge)}`);

  const existing = await showLink(runner, bridge);
  if (existing !== null && existing.kind !== 'bridge') {
    throw RouterError.config(`${bridge} exists but is a ${existing.kind ?? 'plain'} device, not a bridge; remove it or choose another bridge name`);
  }
  const tapLink = await showLink(runner, tap);
  if (tapLink === null) {
    throw new RouterError('io', `TAP device ${tap} does not exist; the data path must create it before the bridge is set up`);
  }
  if (tapLink.master !== null && tapLink.master !== bridge) {
    throw RouterError.config(`TAP device ${tap} is already a port of ${tapLink.master}, not of ${bridge}`);
  }

  let created = false;
  if (existing === null) {
    const r = await runner.run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge'], { allowFail: true });
    if (r.code === 0) created = true;
    // Someone else created it between our check and now: fine, as long as it is a bridge.
    else if (!/File exists/i.test(r.stderr) || (await showLink(runner, bridge))?.kind !== 'bridge') {
      throw new RouterError('io', `cannot create bridge ${bridge}: ${r.stderr.trim()}`);
    }
    if (created) logger.info('created bridge', { bridge });
  }

  try {
    // TAP MTU first: a bridge without a user-set MTU follows its smallest port.
    await runner.run('ip', ['link', 'set', 'dev', tap, 'mtu', String(mtu)]);
    if (tapLink.master !== bridge) await runner.run('ip', ['link', 'set', 'dev', tap, 'master', bridge]);
    await runner.run('ip', ['link', 'set', 'dev', bridge, 'mtu', String(mtu)]);
    // The host's own TCP through the bridge (weave expose) builds super-frames up to this, as a container's does up to
    // its veth's: one that fits a sleeve message whole is never split by the router (router/overlay/gso-split.ts).
    const gso = await runner.run('ip', ['link', 'set', 'dev', bridge, 'gso_max_size', String(CONTAINER_GSO_MAX_BYTES)], { allowFail: true });
    if (gso.code !== 0) logger.debug('bridge gso_max_size left as it was', { bridge, error: gso.stderr.trim() });
    await runner.run('ip', ['link', 'set', 'dev', bridge, 'up']);
    await runner.run('ip', ['link', 'set', 'dev', tap, 'up']);
  } catch (err) {
    if (created) await runner.run('ip', ['link', 'del', 'dev', bridge], { allowFail: true });
    throw err;
  }

  const firewall = await ensureBridgeForwarding({ bridge, tap }, runner, logger);
  return { created, firewall };
}

/**
 * Deletes what ensureBridge made: our firewall rules and the bridge (its ports,
 * the TAP and any veths, are released, not deleted; container veths belong to
 * the ContainerManager). Missing pieces are not an error.
 */
export async function removeBridge(opts: { bridge: string }, runner: CommandRunner, logger: Logger = silentLogger): Promise<void> {
  const bridge = validateIfName(opts.bridge, 'bridge name');
  await removeBridgeForwarding({ bridge }, runner, logger);
  const link = await showLink(runner, bridge);
  if (link === null) return;
  if (link.kind !== 'bridge') throw RouterError.config(`${bridge} is not a bridge; not deleting it`);
  await runner.run('ip', ['link', 'del', 'dev', bridge]);
  logger.info('deleted bridge', { bridge });
}
