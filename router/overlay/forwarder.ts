// Where a frame goes, decided from the MAC table and the routes alone: the
// pure heart of the data plane (no sockets, no buffers kept). Frames captured
// from our bridge go to the peer that owns the destination MAC, or down our
// broadcast tree when the MAC is unknown or a group address. Frames from the
// overlay are delivered locally, relayed one hop closer to their destination
// peer, or (broadcasts) delivered and passed down the origin's tree.

import { isGroupMac, MacTable } from './mac-table';
import type { PeerName } from '../mesh/peer-name';
import { BROADCAST_PEER } from './sleeve-codec';

export interface RouteView {
  nextHop(dst: PeerName): PeerName | null;
  /** Hops from us to `dst`, -1 when unreachable (far-path.ts; absent: unknown). */
  hops?(dst: PeerName): number;
  broadcastChildren(origin: PeerName): PeerName[];
}

export type DropReason = 'short' | 'version' | 'type' | 'unknown-sender' | 'auth' | 'replay' | 'no-route' | 'hops' | 'local' | 'too-big' | 'loop' | 'backlog'
  | 'source' | 'vnet' | 'congestion' | 'segment' | 'duplicate' | 'far-key' | 'kernel-source';

/**
 * From the bridge: send to one peer via a next hop, flood down our tree, or drop.
 * Read-only: the Forwarder hands out objects it owns (see Forwarder).
 */
export type CaptureDecision =
  | { readonly kind: 'unicast'; readonly dst: PeerName; readonly via: PeerName }
  | { readonly kind: 'broadcast'; readonly via: readonly PeerName[] }
  | { readonly kind: 'drop'; readonly reason: DropReason };

/** From the overlay: deliver to our bridge and/or forward to neighbours. Read-only, as CaptureDecision. */
export interface RelayDecision {
  readonly deliver: boolean;
  readonly via: readonly PeerName[];
  readonly drop: DropReason | null;
}

const NO_PEERS: readonly PeerName[] = [];
const DROP_LOCAL: CaptureDecision = { kind: 'drop', reason: 'local' };
const DROP_LOOP: RelayDecision = { deliver: false, via: NO_PEERS, drop: 'loop' };
const DROP_HOPS: RelayDecision = { deliver: false, via: NO_PEERS, drop: 'hops' };
const DROP_NO_ROUTE: RelayDecision = { deliver: false, via: NO_PEERS, drop: 'no-route' };
const DELIVER_ONLY: RelayDecision = { deliver: true, via: NO_PEERS, drop: null };

/**
 * A decision is valid until the next call: the Forwarder fills one object it
 * owns per kind instead of a fresh literal per frame, since a lightly used
 * router runs this in unoptimized code, where every literal is allocated.
 */
export class Forwarder {
  private readonly unicast: { kind: 'unicast'; dst: PeerName; via: PeerName };
  private readonly flood: { kind: 'broadcast'; via: readonly PeerName[] } = { kind: 'broadcast', via: NO_PEERS };
  private readonly relayOne: { deliver: false; via: [PeerName]; drop: null };
  private readonly relayTree: { deliver: true; via: readonly PeerName[]; drop: null } = { deliver: true, via: NO_PEERS, drop: null };

  constructor(private readonly self: PeerName, readonly macs: MacTable) {
    this.unicast = { kind: 'unicast', dst: self, via: self };
    this.relayOne = { deliver: false, via: [self], drop: null };
  }

  fromBridge(frame: Uint8Array, off: number, routes: RouteView, nowMs: number): CaptureDecision {
    this.macs.learnAt(frame, off + 6, this.self, nowMs);
    if (isGroupMac(frame, off)) return this.floodTree(routes);
    const owner = this.macs.lookupAt(frame, off, nowMs);
    if (owner === null) return this.floodTree(routes);
    if (owner === this.self) return DROP_LOCAL;
    const via = routes.nextHop(owner);
    if (via === null) return this.floodTree(routes);
    this.unicast.dst = owner;
    this.unicast.via = via;
    return this.unicast;
  }

  fromOverlay(src: PeerName, dst: PeerName, hopsLeft: number, frame: Uint8Array, off: number, routes: RouteView, nowMs: number): RelayDecision {
    if (src === this.self) return DROP_LOOP;
    // The source MAC lives behind the capturing peer, whoever relayed the frame to us.
    this.macs.learnAt(frame, off + 6, src, nowMs);
    if (dst === BROADCAST_PEER) {
      this.relayTree.via = hopsLeft > 0 ? routes.broadcastChildren(src) : NO_PEERS;
      return this.relayTree;
    }
    if (dst === this.self) return DELIVER_ONLY;
    if (hopsLeft <= 0) return DROP_HOPS;
    const via = routes.nextHop(dst);
    if (via === null) return DROP_NO_ROUTE;
    this.relayOne.via[0] = via;
    return this.relayOne;
  }

  private floodTree(routes: RouteView): CaptureDecision {
    this.flood.via = routes.broadcastChildren(this.self);
    return this.flood;
  }
}
