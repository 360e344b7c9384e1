// The seam between the control plane and the data plane (mesh overlay.go, in
// spirit): what the mesh router tells the frame-carrying side about its
// neighbours and routes, and what it asks back for status. The mesh defines it
// and router/overlay implements it, so the mesh never imports the data plane.

import type { PeerName } from './peer-name';
import type { SleeveKeyRing } from './sleeve-keys';
import type { Routes } from './routes';
import type { FastdpFlags, KernelRelayFlags } from './protocol';
import type { KernelRelayMessage } from './kernel-relay-messages';
import type { RouterStatus } from './status';

export interface OverlayNeighbour {
  name: PeerName;
  /** The neighbour's IP as our TCP connection sees it, and its mesh (= sleeve) port. */
  host: string;
  udpPort: number;
  /** The connection's sleeve keys, which the mesh rotates in place (key-schedule.ts); null when plaintext. */
  keys: SleeveKeyRing | null;
  /** Puts a control message on the TCP connection to this neighbour. */
  sendControl(msg: Uint8Array): void;
}

/** fastdp: the kernel's VXLAN carries our frames to this neighbour (router/overlay/fastdp.ts); else the sleeve over UDP or TCP. */
export type DataPath = 'udp' | 'tcp' | 'fastdp';

export interface LinkStatus {
  path: DataPath;
  /** Why this path: what the probes say. */
  reason: string;
  udpAddress: string;
  encrypted: boolean;
}

export interface DataPlane {
  /** The sleeve can seal with AES-256-GCM (hardware checked): the router then offers it in every handshake. */
  readonly aesGcm?: boolean;
  addNeighbour(n: OverlayNeighbour): void;
  removeNeighbour(name: PeerName): void;
  setRoutes(routes: Routes): void;
  handleTcpFrame(from: PeerName, inner: Uint8Array): void;
  /** A FAR_FRAME control message (protocol.ts): a far sleeve message a relay passed on over TCP. */
  handleTcpFar?(from: PeerName, message: Uint8Array): void;
  /**
   * echo: the last probe challenge the neighbour heard from us (plaintext meshes), or null; fastdp: its fast-path bits;
   * segments: it accepts sleeve version 3 (router/overlay/sleeve-segments.ts); far: it takes far messages (router/overlay/far-session.ts);
   * kernel: its kernel relay bits (router/overlay/kernel-relay.ts).
   */
  handleUdpStatus(from: PeerName, hearing: boolean, echo: Uint8Array | null, fastdp?: FastdpFlags, segments?: boolean, far?: boolean,
    kernel?: KernelRelayFlags): void;
  /** A KERNEL_RELAY control message (kernel-relay-messages.ts) from a neighbour. */
  handleKernelRelay?(from: PeerName, msg: KernelRelayMessage): void;
  linkStatus(name: PeerName): LinkStatus | null;
  statusSummary(): NonNullable<RouterStatus['dataPlane']>;
  readonly counters: Record<string, number>;
}
