// The daemon's configuration, validated once at startup. Everything the
// command line and environment can set ends up here; nothing else reads argv
// or process.env.

import type { DnsDaemonConfig } from '../dns/daemon';
import type { LogLevel } from '../common/logger';
import type { PeerName } from '../router/mesh/peer-name';

export interface DaemonConfig {
  /** All persistent state lives here (docs/architecture.md). */
  datadir: string;
  /** null: derive from the machine and datadir, then persist. */
  name: PeerName | null;
  nickname: string;
  /** TCP (control) and UDP (sleeve) port. */
  port: number;
  password: string | null;
  /** During a password roll (--old-password, WEAVE_OLD_PASSWORD): the old password, still accepted. */
  oldPassword?: string;
  /** Test-only (WEAVE_REKEY_INTERVAL_MS): rotate connection keys this often instead of every 2 minutes. */
  rekeyIntervalMs?: number;
  discovery: boolean;
  /** false with --no-fastdp: never the kernel fast path (VXLAN), even in a plaintext mesh. Absent: on. */
  fastdp?: boolean;
  /** false with --no-kernel-relay: neither grant kernel relays nor use them (router/overlay/kernel-relay.ts). Absent: on. */
  kernelRelay?: boolean;
  /** false with --no-auto-attach: Docker containers labelled weave.attach or with WEAVE_CIDR are not attached. Absent: on. */
  autoAttach?: boolean;
  /** false with --no-docker-plugin: no Docker network plugin socket and no `weave` Docker network. Absent: on. */
  dockerPlugin?: boolean;
  /** false with --no-port-security: containers may send as any MAC or address (router/host/port-security.ts). Absent: on. */
  portSecurity?: boolean;
  connLimit: number;
  /** Initial targets, normalised host:port. */
  peers: string[];
  logLevel: LogLevel;
  /** Absolute path of the API's Unix socket (cli/api-socket.ts apiSocketFor(datadir) unless --api-socket). */
  apiSocket: string;
  /** Group that may use the API socket besides root (--api-group); null: root only. */
  apiGroup: string | null;
  /** host:port of the read-only status and metrics server (loopback only). */
  statusAddress: string;
  /** Overlay MTU; null: derived from the underlay's MTU minus the sleeve's overhead. */
  mtu: number | null;
  /** Weave DNS: domain, TTL, where queries outside the domain go (dns/daemon.ts). */
  dns: DnsDaemonConfig;
  /** IPAM flags as given (validated by toDaemonConfig); null means the default. */
  ipalloc: { range: string | null; defaultSubnet: string | null; rangeV6: string | null; init: string | null };
}

export const DEFAULT_DATADIR = '/var/lib/weave';
export const DEFAULT_STATUS_ADDRESS = '127.0.0.1:6782';
export const DEFAULT_CONN_LIMIT = 100;
export const DEFAULT_RESOLV_CONF = '/etc/resolv.conf';
