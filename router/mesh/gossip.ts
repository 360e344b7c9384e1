// The one seam between the mesh and its users (docs/architecture.md). IPAM
// and DNS are gossipers on named channels; they import only these types (and
// peer names). A test can drive them with an in-memory mesh. GossipSigning is
// how a channel proves its own updates and checks who made someone else's
// (router/mesh/signed-gossip.ts implements it; the hub hands it out).
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

/**
 * Ed25519 signatures bound to peer names. A peer's name is derived from its
 * public key (router/mesh/peer-key.ts), so anything signed carries the
 * signer's key and any receiver can check it without having met the signer.
 * Sign the canonical bytes of what you change, with a label naming the
 * channel and format, so a signature can never be replayed as another kind.
 */
export interface GossipSigning {
  /** Our public key (32 bytes); our peer name is derived from it. */
  readonly publicKey: Uint8Array;
  /** Our signature (64 bytes) over `message`. */
  sign(message: Uint8Array): Uint8Array;
  /**
   * True when `publicKey` is `peer`'s key (the name derives from it, and no
   * other key is known for that name) and `signature` is its signature over
   * `message`. Never throws; a false is counted by the implementation.
   */
  verify(peer: PeerName, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
  /** The key this peer knows for `peer`, or null. */
  keyOf(peer: PeerName): Uint8Array | null;
}

export interface PeerInfo {
  name: PeerName;
  nickname: string;
}

/** Where channels are registered, plus the little of the topology users need. */
export interface GossipHub {
  readonly localPeer: PeerName;
  /** Signs our updates and checks others' (see GossipSigning). */
  readonly signing: GossipSigning;
  /** Registers a channel; names are short ASCII identifiers ("ipam", "dns"). */
  addChannel(name: string, gossiper: Gossiper): Gossip;
  /** Peers currently known (reachable or not yet garbage-collected), including us. */
  knownPeers(): PeerInfo[];
  /** Called after each topology change with the peers now reachable, us included. */
  onReachablePeersChanged(listener: (reachable: ReadonlySet<PeerName>) => void): void;
}
