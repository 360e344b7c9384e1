// The one seam between the mesh and its users (docs/architecture.md). IPAM
// and DNS are gossipers on named channels; they import only these types (and
// peer names). A test can drive them with an in-memory mesh.
//
// Semantics follow weaveworks/mesh gossip.go: a receiver returns only what was
// new to it (or null), and that return value is what gets relayed; null ends
// the relay.

import type { PeerName } from './peer-name';

/** State or a delta of it, able to encode itself and absorb another. */
export interface GossipData {
  /** Self-contained encoded messages; each is delivered to onGossip/onGossipBroadcast separately. */
  encode(): Uint8Array[];
  /** Folds `other` (same channel) into this; returns the combined data (may be `this`). */
  merge(other: GossipData): GossipData;
}

/** What a channel's owner implements. Throwing from a handler counts as a rejected message (state must be unchanged). */
export interface Gossiper {
  /** A message addressed to us by `src`. */
  onGossipUnicast(src: PeerName, msg: Uint8Array): void;
  /** A broadcast from `src`; returns what was new to us, which is relayed along the broadcast tree. */
  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | null;
  /** Our full state for periodic gossip, or null when there is nothing to say. */
  gossip(): GossipData | null;
  /** Periodic gossip from a neighbour; returns what was new to us, which is passed on to neighbours. */
  onGossip(update: Uint8Array): GossipData | null;
}

/** What a channel's owner uses to send. */
export interface Gossip {
  /** Sends along unicast routes; false when `dst` is unreachable right now. */
  gossipUnicast(dst: PeerName, msg: Uint8Array): boolean;
  /** Sends to every reachable peer along the broadcast tree rooted at us. */
  gossipBroadcast(update: GossipData): void;
  /** Sends to a few random neighbours (the periodic gossip path). */
  gossipNeighbourSubset(update: GossipData): void;
}

export interface PeerInfo {
  name: PeerName;
  nickname: string;
}

/** Where channels are registered, plus the little of the topology users need. */
export interface GossipHub {
  readonly localPeer: PeerName;
  /** Registers a channel; names are short ASCII identifiers ("ipam", "dns"). */
  addChannel(name: string, gossiper: Gossiper): Gossip;
  /** Peers currently known (reachable or not yet garbage-collected), including us. */
  knownPeers(): PeerInfo[];
  /** Called after each topology change with the peers now reachable, us included. */
  onReachablePeersChanged(listener: (reachable: ReadonlySet<PeerName>) => void): void;
}
