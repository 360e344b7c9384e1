// The kernel side of the fast path (router/overlay/fastdp.ts), made by the
// composition root: the vxlan device `vxlan-6784` on the weave bridge, the
// heartbeat TAP `vethwe-hb`, the bridge-port flags that keep the two paths
// apart, and the FdbDevice that lists and changes the vxlan device's FDB
// through `bridge -batch`, and the firewall (router/host/fastdp-firewall.ts)
// that lets only the neighbours in that FDB send to UDP 6784: installed,
// dropping everything, before the vxlan device exists, and removed after it.
// Without nft there is no fast path (it fails closed). The devices and the
// table are ours by name; what a crashed run left is replaced at start and
// removed by `weave reset` (removeFastdpLeftovers, also when no router runs).
//
// Port flags, and why (docs/architecture.md, "The kernel fast path"):
//   vxlan-6784  learning off: the bridge never points a MAC at VXLAN by
//               itself, only our static entries do; flood, mcast_flood,
//               bcast_flood off: broadcasts and unknown MACs never go out over
//               VXLAN (they take the router's broadcast tree, so no loop and no
//               duplicate); isolated: frames from VXLAN never reach the
//               router's TAP (the router would learn remote MACs as ours) and
//               the router's deliveries never leave over VXLAN.
//   vethwe-tap  isolated, for the same pair.
//   vethwe-hb   learning and flooding off: it sees only heartbeats, through
//               the static entry for our own heartbeat MAC.

import type { CommandRunner } from '../router/host/command-runner';
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/logger';
import type { FdbDevice } from '../router/overlay/fastdp';
import { heartbeatMac } from '../router/overlay/fastdp-heartbeat';
import type { FastdpLocal } from '../router/overlay/fastdp-peer';
import type { PeerName } from '../router/mesh/peer-name';
import type { FramePort } from '../router/overlay/ports';
import { TapDevice } from '../router/overlay/tap-device';
import { TapPort } from '../router/overlay/tap-port';
import {
  FASTDP_DEVICE, FASTDP_HEARTBEAT_TAP, installFastdpFirewall, removeFastdpFirewall, removeFastdpLeftovers, setFastdpPeers,
} from '../router/host/fastdp-firewall';

export const FASTDP_PORT = 6784;
/** The VXLAN network identifier every weave-ts peer uses ("wev" in ASCII). */
export const FASTDP_VNI = 0x776576;

export interface FastdpDevices {
  local: FastdpLocal;
  heartbeats: FramePort | null;
  fdb: FdbDevice | null;
  close(): Promise<void>;
}

/**
 * Makes the devices, or says why the fast path is off: `why` is non-null when
 * it was not asked for (a password, --no-fastdp); a failure to make the
 * devices turns it off with the error as the reason, never stops the router.
 */
export async function startFastdpDevices(
  deps: { runner: CommandRunner; logger: Logger },
  opts: { localPeer: PeerName; bridge: string; tap: string; mtu: number; why: string | null },
): Promise<FastdpDevices> {
  const off = (reason: string): FastdpDevices => ({ local: { on: false, reason }, heartbeats: null, fdb: null, close: async () => undefined });
  const { runner } = deps;
  await removeFastdpLeftovers(runner);
  if (opts.why !== null) return off(opts.why);
  let hb: TapDevice | null = null;
  const removeDevice = async (): Promise<void> => {
    await runner.run('ip', ['link', 'del', FASTDP_DEVICE], { allowFail: true });
    await removeFastdpFirewall(runner);
  };
  try {
    await installFastdpFirewall(runner, FASTDP_PORT);
    await runner.run('ip', ['link', 'add', FASTDP_DEVICE, 'type', 'vxlan', 'id', String(FASTDP_VNI), 'dstport', String(FASTDP_PORT), 'nolearning']);
    await runner.run('ip', ['link', 'set', FASTDP_DEVICE, 'mtu', String(opts.mtu), 'master', opts.bridge, 'up']);
    await runner.run('bridge', ['link', 'set', 'dev', FASTDP_DEVICE, 'learning', 'off', 'flood', 'off', 'mcast_flood', 'off', 'bcast_flood', 'off', 'isolated', 'on']);
    await runner.run('bridge', ['link', 'set', 'dev', opts.tap, 'isolated', 'on']);
    hb = TapDevice.open(FASTDP_HEARTBEAT_TAP, { persist: false, vnetHdr: false, maxBatchCount: 16, frameCapacityBytes: 2048 });
    await runner.run('ip', ['link', 'set', hb.name, 'mtu', String(opts.mtu), 'master', opts.bridge, 'up']);
    await runner.run('bridge', ['link', 'set', 'dev', hb.name, 'learning', 'off', 'flood', 'off', 'mcast_flood', 'off', 'bcast_flood', 'off']);
    await runner.run('bridge', ['fdb', 'replace', heartbeatMac(opts.localPeer), 'dev', hb.name, 'master', 'static', 'sticky']);
  } catch (err) {
    hb?.close();
    await removeDevice();
    const reason = `fast path unavailable: ${errorMessage(err)}`;
    deps.logger.warn(reason);
    return off(reason);
  }
  const tap = hb;
  deps.logger.info('fast path ready', { device: FASTDP_DEVICE, port: FASTDP_PORT, heartbeats: tap.name });
  const fdb: FdbDevice = {
    name: FASTDP_DEVICE,
    show: async () => (await runner.run('bridge', ['-j', 'fdb', 'show', 'dev', FASTDP_DEVICE])).stdout,
    apply: async (lines) => {
      // -force: one refused line (an entry that vanished meanwhile) must not stop the rest; the next sync re-reads.
      await runner.run('bridge', ['-force', '-batch', '-'], { input: `${lines.join('\n')}\n` });
    },
    allowPeers: (addresses) => setFastdpPeers(runner, addresses),
  };
  let closed = false;
  return {
    local: { on: true },
    heartbeats: new TapPort(tap),
    fdb,
    // The heartbeat TAP goes when its port closes (Fastdp.close); the rest here. Twice is harmless (reset, then stop).
    close: async () => {
      if (closed) return;
      closed = true;
      await removeDevice();
    },
  };
}
