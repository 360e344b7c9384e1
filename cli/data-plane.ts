// Builds the daemon's data plane: the TAP device (native addon) on the
// `weave` bridge, the batched UDP sleeve socket and the Overlay between them.
// Host changes go through router/host (host-bridge.ts for the bridge and the
// TAP's membership, host-link.ts for MTUs, bridge-firewall.ts for the rules);
// the kernel fast path's devices are fastdp-device.ts's.

import type { Clock } from '../common/clock';
import type { CommandRunner } from '../router/host/command-runner';
import { probeAesGcm } from '../router/overlay/aes-gcm';
import { frameAead } from '../router/overlay/frame-aead';
import { DEFAULT_BRIDGE, ensureBridge } from '../router/host/host-bridge';
import { detectUnderlayMtu } from '../router/host/host-link';
import type { Logger } from '../common/logger';
import { DEFAULT_OVERLAY_TIMINGS, FAST_OVERLAY_TIMINGS, Overlay } from '../router/overlay/overlay';
import { Fastdp } from '../router/overlay/fastdp';
import { KernelRelayRules, removeKernelRelayTable } from '../router/host/kernel-relay-rules';
import { startFastdpDevices } from './fastdp-device';
import type { PeerName } from '../router/mesh/peer-name';
import { SLEEVE_OVERHEAD_BYTES, VNET_HDR_BYTES } from '../router/overlay/sleeve-codec';
import { TAP_OFFLOAD_GSO, TapDevice } from '../router/overlay/tap-device';
import { TapPort } from '../router/overlay/tap-port';
import { UdpBatchSocket } from '../router/overlay/udp-batch';
import { UdpBatchPort } from '../router/overlay/udp-batch-port';
import { NativeLane } from '../router/overlay/native-lane';
import { REJECT_AFTER_COUNTER } from '../router/overlay/replay-window';
import { loadNative } from '../router/overlay/native';

export const TAP_NAME = 'vethwe-tap';
const UDP_BUFFER_BYTES = 4 << 20;
const IPV4_UDP_HEADER_BYTES = 28;

export interface DataPlaneSetup {
  overlay: Overlay;
  bridge: string;
  mtu: number;
  /** weave reset: the fast path's devices and firewall table go now; frames take the sleeve until the stop. */
  resetFastdp(): Promise<void>;
  close(): Promise<void>;
}

export async function startDataPlane(
  deps: { clock: Clock; logger: Logger; runner: CommandRunner },
  /**
   * fastdpOff: why the kernel fast path is not wanted (a password, --no-fastdp), or null to try it;
   * kernelRelay: grant and use kernel relays (router/overlay/kernel-relay.ts; false with --no-kernel-relay).
   */
  opts: { localPeer: PeerName; port: number; mtu: number | null; fast: boolean; fastdpOff: string | null; kernelRelay: boolean },
): Promise<DataPlaneSetup> {
  const underlayMtu = await detectUnderlayMtu(deps.runner);
  const mtu = opts.mtu ?? underlayMtu - SLEEVE_OVERHEAD_BYTES;
  // Sleeve version 3's segments must cross the underlay unfragmented: an IPv4
  // and UDP header less than the smaller of the underlay MTU and the one --mtu implies.
  const segmentBytes = Math.min(underlayMtu, mtu + SLEEVE_OVERHEAD_BYTES) - IPV4_UDP_HEADER_BYTES;
  // Opening first creates the device; the bridge then takes it as a port.
  // vnet headers and offloads: the kernel hands us TCP super-frames instead of
  // MTU-sized frames, the biggest single lever on throughput (docs/architecture.md).
  const tap = TapDevice.open(TAP_NAME, { persist: false, vnetHdr: true, vnetHdrBytes: VNET_HDR_BYTES, offloadFlags: TAP_OFFLOAD_GSO });
  let udp: UdpBatchSocket | null = null;
  try {
    await ensureBridge({ bridge: DEFAULT_BRIDGE, tap: tap.name, mtu }, deps.runner, deps.logger);
    udp = UdpBatchSocket.open({ address: '0.0.0.0', port: opts.port, recvBufferBytes: UDP_BUFFER_BYTES, sendBufferBytes: UDP_BUFFER_BYTES, gro: true });
  } catch (err) {
    tap.close();
    throw err;
  }
  const aead = frameAead();
  // WEAVE_NO_AES_GCM=1 keeps this peer's sleeve on ChaCha20-Poly1305, as a peer
  // without the hardware (or an older one) would be: for comparisons and tests.
  const aesGcm = process.env['WEAVE_NO_AES_GCM'] === '1' ? { aes: null, reason: 'WEAVE_NO_AES_GCM=1' } : probeAesGcm();
  const timings = opts.fast ? FAST_OVERLAY_TIMINGS : DEFAULT_OVERLAY_TIMINGS;
  const devices = await startFastdpDevices(
    { runner: deps.runner, logger: deps.logger },
    { localPeer: opts.localPeer, bridge: DEFAULT_BRIDGE, tap: tap.name, mtu, why: opts.fastdpOff },
  );
  const fastdp = new Fastdp(
    { clock: deps.clock, logger: deps.logger, heartbeats: devices.heartbeats, fdb: devices.fdb },
    { localPeer: opts.localPeer, local: devices.local, timings: { timeoutMs: timings.udpTimeoutMs } },
  );
  const socket = udp;
  // What a router that died left forwarding would point at addresses nobody vouches for any more.
  await removeKernelRelayTable(deps.runner);
  const kernelRules = opts.kernelRelay ? new KernelRelayRules(deps.runner, deps.logger) : null;
  const overlay = new Overlay(
    { clock: deps.clock, logger: deps.logger, aead, aes: aesGcm.aes, bridge: new TapPort(tap), udp: new UdpBatchPort(udp), fastdp,
      memory: loadNative(), lane: (maxFrameBytes) => NativeLane.open(loadNative(), tap, socket, maxFrameBytes, REJECT_AFTER_COUNTER),
      ...(kernelRules ? { kernelRelay: { rules: kernelRules } } : {}) },
    { localPeer: opts.localPeer, mtu, bridgeName: DEFAULT_BRIDGE, timings, segmentBytes },
  );
  overlay.start();
  deps.logger.info('data plane ready', { bridge: DEFAULT_BRIDGE, tap: tap.name, mtu, udpPort: opts.port, aead: aead.backend,
    aesGcm: aesGcm.aes !== null ? 'offered' : 'not offered', aesGcmWhy: aesGcm.reason, fastdp: devices.local.on,
    udpGro: udp.groEnabled, segmentBytes });
  return {
    overlay, bridge: DEFAULT_BRIDGE, mtu,
    resetFastdp: async () => {
      fastdp.close();
      await devices.close();
    },
    close: async () => {
      overlay.close();
      await kernelRules?.closeAll();
      await devices.close();
    },
  };
}
