// The seam between the control plane and the data plane (mesh overlay.go, in
// spirit): what the mesh router tells the frame-carrying side about its
// neighbours and routes, and what it asks back for status. The mesh defines it
// and router/overlay implements it, so the mesh never imports the data plane.

import type { PeerName } from './peer-name';
import type { SleeveKeyRing } from './sleeve-keys';
import type { Routes } from './routes';
import type { UdpStatusReport } from './protocol';
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
  /** A UDP_STATUS control message from a neighbour (protocol.ts UdpStatusReport says what each field is). */
  handleUdpStatus(from: PeerName, report: UdpStatusReport): void;
  /** A KERNEL_RELAY control message (kernel-relay-messages.ts) from a neighbour. */
  handleKernelRelay?(from: PeerName, msg: KernelRelayMessage): void;
  linkStatus(name: PeerName): LinkStatus | null;
  statusSummary(): NonNullable<RouterStatus['dataPlane']>;
  readonly counters: Record<string, number>;
}
