// The status snapshot: built on demand from router state and shared, unchanged,
// by `weave status`, the HTTP API, the status port and the metrics.

import type { RouterErrorCode } from './errors';
import type { PeerName } from './peer-name';

export type ConnectionState = 'connecting' | 'handshaking' | 'established' | 'failed';
export type TargetState = 'waiting' | 'attempting' | 'connected' | 'failed' | 'suspended';

export interface ConnectionStatus {
  /** host:port of the remote end as we see it. */
  address: string;
  outbound: boolean;
  state: ConnectionState;
  /** Filled once the handshake told us who is there. */
  peer: PeerName | null;
  nickname: string | null;
  encrypted: boolean;
  /** Why the connection failed or was refused; empty otherwise. */
  info: string;
  /**
   * For failed connections: the kind of failure, for scripts and for telling a
   * refused handshake (e.g. 'password-mismatch') from an unencrypted peer.
   */
  failure?: RouterErrorCode;
  /** Milliseconds since the epoch of the last state change. */
  sinceMs: number;
  /** Encrypted, established connections: the key epoch (0 from the handshake, +1 per rekey) and its age. */
  keyEpoch?: number;
  keyAgeMs?: number;
  /** Encrypted, established connections: the UDP sleeve's AEAD, agreed in the handshake. */
  cipher?: 'chacha20-poly1305' | 'aes-256-gcm';
  /** During a password roll: set when the peer proved only our old password (it has not rolled yet). */
  oldPassword?: boolean;
  /** For established connections with a data plane: how frames travel (fastdp: kernel VXLAN), and why. */
  dataPath?: 'udp' | 'tcp' | 'fastdp';
  dataPathInfo?: string;
  /** Where the UDP sleeve sends this peer's datagrams (host:port). */
  udpAddress?: string;
}

export interface TargetStatus {
  address: string;
  /** Given by the user (launch, connect) rather than discovered through gossip. */
  direct: boolean;
  state: TargetState;
  attempts: number;
  /** Next attempt, ms since epoch; null when not scheduled. */
  nextAttemptMs: number | null;
  lastError: string;
}

export interface PeerStatus {
  name: PeerName;
  nickname: string;
  incarnation: number;
  version: number;
  reachable: boolean;
  /** Established connections this peer reports, by peer name. */
  connections: { name: PeerName; address: string; outbound: boolean; established: boolean }[];
}

export interface HealthWarning {
  code: string;
  severity: 'info' | 'warning' | 'error';
  text: string;
}

/** Inbound handshakes from peers not yet authenticated (handshake-limits.ts). */
export interface HandshakePressure {
  inProgress: number;
  maxInProgress: number;
  /** Cap per source address (IPv6: per /64). */
  maxPerSource: number;
  /** Inbound handshakes that ended without completing in about the last minute. */
  droppedLastMinute: number;
  /** Of those, the ones dropped to make room because a cap was reached. */
  evictedLastMinute: number;
}

export interface RouterStatus {
  version: string;
  name: PeerName;
  nickname: string;
  incarnation: number;
  port: number;
  encryption: boolean;
  /** Launched with an old password beside the current one (a password roll is under way). */
  passwordRoll?: boolean;
  discovery: boolean;
  /** Established connections at most; handshakes in progress are limited apart (`handshakes`). */
  connLimit: number;
  startedMs: number;
  /** Inbound handshakes in progress and recently dropped; the router always fills it. */
  handshakes?: HandshakePressure;
  peers: PeerStatus[];
  connections: ConnectionStatus[];
  targets: TargetStatus[];
  /** Gossip channel names registered on this peer. */
  channels: string[];
  counters: Record<string, number>;
  health: HealthWarning[];
  /** Present when the daemon runs a data plane. */
  dataPlane?: {
    mtu: number; bridge: string; aead: string; macs: number;
    /** The kernel fast path (router/overlay/fastdp.ts): on, or why not; neighbours on it; vxlan FDB entries. */
    fastdp?: { on: boolean; reason: string; peers: number; fdbEntries: number };
    /** Kernel relays (router/overlay/kernel-relay.ts): whether we grant them, pairs we forward, and our paths through others. */
    kernelRelay?: { grants: boolean; pairs: number; paths: { peer: PeerName; via: PeerName; inUse: boolean }[] };
  };
}
