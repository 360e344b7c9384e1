// Builds the router's status snapshot (the shapes are status.ts) on demand
// from its parts: identity and options, the topology and routes, the live
// and recently failed connections, the inbound handshakes in progress, the
// connector's targets, gossip and data plane summaries, and the health
// warnings derived from all of it. Pure: it
// reads and formats, it changes nothing.

import type { Connection } from './connection';
import type { DataPlane } from './data-plane';
import { healthWarnings } from './health';
import type { Peers } from './peers';
import type { Routes } from './routes';
import type { ConnectionStatus, RouterStatus, TargetStatus } from './status';

/** The router's own part of the snapshot: who it is and how it was started. */
export type RouterStatusHeader = Pick<
  RouterStatus,
  'version' | 'name' | 'nickname' | 'incarnation' | 'port' | 'encryption' | 'passwordRoll' | 'discovery' | 'connLimit' | 'startedMs' | 'handshakes'
>;

export interface RouterStatusParts {
  peers: Peers;
  routes: Routes;
  /** Live connections, handshaking or established. */
  connections: Iterable<Connection>;
  /** True for the one connection kept to its peer (the one the data plane uses). */
  isKept(conn: Connection): boolean;
  /** Recent failures, newest first. */
  failed: readonly ConnectionStatus[];
  targets: TargetStatus[];
  channels: string[];
  counters: Record<string, number>;
  dataPlane: DataPlane | undefined;
}

export function buildRouterStatus(header: RouterStatusHeader, parts: RouterStatusParts, nowMs: number): RouterStatus {
  const reachable = parts.routes.reachable();
  const connections: ConnectionStatus[] = [...parts.connections]
    .sort((a, b) => a.id - b.id)
    .map((c) => connectionStatus(c, parts.isKept(c) ? parts.dataPlane : undefined, nowMs));
  for (const f of parts.failed) connections.push(f);
  const status: RouterStatus = {
    ...header,
    peers: parts.peers.entries().map((e) => ({
      name: e.name,
      nickname: e.nickname,
      incarnation: e.incarnation,
      version: e.version,
      reachable: reachable.has(e.name),
      connections: e.connections.map((c) => ({ name: c.name, address: c.address, outbound: c.outbound, established: c.established })),
    })),
    connections,
    targets: parts.targets,
    channels: parts.channels,
    counters: parts.counters,
    health: [],
  };
  if (parts.dataPlane) status.dataPlane = parts.dataPlane.statusSummary();
  status.health = healthWarnings(status, nowMs);
  return status;
}

/** One live connection; `dataPlane` is given only for the kept connection to a peer, whose data path it reports. */
function connectionStatus(c: Connection, dataPlane: DataPlane | undefined, nowMs: number): ConnectionStatus {
  const remote = c.remote;
  const state = c.phase === 'established' ? 'established' : remote ? 'handshaking' : 'connecting';
  const link = remote && dataPlane ? dataPlane.linkStatus(remote.name) : null;
  const keys = c.phase === 'established' ? c.keyStatus() : null;
  return {
    ...(keys ? { keyEpoch: keys.epoch, keyAgeMs: nowMs - keys.epochStartedMs, cipher: keys.sleeveCipher } : {}),
    ...(c.passwordSlot === 1 ? { oldPassword: true } : {}),
    ...(link ? { dataPath: link.path, dataPathInfo: link.reason, udpAddress: link.udpAddress } : {}),
    address: c.stream.remoteAddress,
    outbound: c.opts.outbound,
    state,
    peer: remote?.name ?? null,
    nickname: remote?.nickname ?? null,
    encrypted: c.encrypted,
    info: '',
    sinceMs: c.phase === 'established' ? c.startedMs : nowMs,
  };
}
