// Where a frame goes, decided from the MAC table and the routes alone: the
// pure heart of the data plane (no sockets, no buffers kept). Frames captured
// from our bridge go to the peer that owns the destination MAC, or down our
// broadcast tree when the MAC is unknown or a group address. Frames from the
// overlay are delivered locally, relayed one hop closer to their destination
// peer, or (broadcasts) delivered and passed down the origin's tree.

import { isGroupMac, MacTable, readMac } from './mac-table';
import type { PeerName } from '../mesh/peer-name';
import { BROADCAST_PEER } from './sleeve-codec';

export interface RouteView {
  nextHop(dst: PeerName): PeerName | null;
  /** Hops from us to `dst`, -1 when unreachable (far-path.ts; absent: unknown). */
  hops?(dst: PeerName): number;
  broadcastChildren(origin: PeerName): PeerName[];
}

export type DropReason = 'short' | 'version' | 'type' | 'unknown-sender' | 'auth' | 'replay' | 'no-route' | 'hops' | 'local' | 'too-big' | 'loop' | 'backlog'
  | 'source' | 'vnet' | 'congestion' | 'segment' | 'duplicate' | 'far-key';

/** From the bridge: send to one peer via a next hop, flood down our tree, or drop. */
export type CaptureDecision =
  | { kind: 'unicast'; dst: PeerName; via: PeerName }
  | { kind: 'broadcast'; via: PeerName[] }
  | { kind: 'drop'; reason: DropReason };

/** From the overlay: deliver to our bridge and/or forward to neighbours. */
export interface RelayDecision {
  deliver: boolean;
  via: PeerName[];
  drop: DropReason | null;
}

const NO_PEERS: PeerName[] = [];

export class Forwarder {
  constructor(private readonly self: PeerName, readonly macs: MacTable) {}

  fromBridge(frame: Uint8Array, off: number, routes: RouteView, nowMs: number): CaptureDecision {
    this.macs.learn(readMac(frame, off + 6), this.self, nowMs);
    if (isGroupMac(frame, off)) return { kind: 'broadcast', via: routes.broadcastChildren(this.self) };
    const owner = this.macs.lookup(readMac(frame, off), nowMs);
    if (owner === null) return { kind: 'broadcast', via: routes.broadcastChildren(this.self) };
    if (owner === this.self) return { kind: 'drop', reason: 'local' };
    const via = routes.nextHop(owner);
    if (via === null) return { kind: 'broadcast', via: routes.broadcastChildren(this.self) };
    return { kind: 'unicast', dst: owner, via };
  }

  fromOverlay(src: PeerName, dst: PeerName, hopsLeft: number, frame: Uint8Array, off: number, routes: RouteView, nowMs: number): RelayDecision {
    if (src === this.self) return { deliver: false, via: NO_PEERS, drop: 'loop' };
    // The source MAC lives behind the capturing peer, whoever relayed the frame to us.
    this.macs.learn(readMac(frame, off + 6), src, nowMs);
    if (dst === BROADCAST_PEER) {
      const via = hopsLeft > 0 ? routes.broadcastChildren(src) : NO_PEERS;
      return { deliver: true, via, drop: null };
    }
    if (dst === this.self) return { deliver: true, via: NO_PEERS, drop: null };
    if (hopsLeft <= 0) return { deliver: false, via: NO_PEERS, drop: 'hops' };
    const via = routes.nextHop(dst);
    if (via === null) return { deliver: false, via: NO_PEERS, drop: 'no-route' };
    return { deliver: false, via: [via], drop: null };
  }
}
