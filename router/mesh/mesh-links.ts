// What the gossip core needs from the mesh: who our neighbours are, how to
// reach a peer, and a way to put a control message on a neighbour's
// connection. The router implements it; tests can fake it.

import type { PeerName } from './peer-name';

export interface MeshLinks {
  readonly localPeer: PeerName;
  /** Peers we hold an established connection with, sorted. */
  neighbours(): PeerName[];
  /** Puts an encoded control message on the connection to a neighbour; false if there is none. */
  sendTo(neighbour: PeerName, message: Uint8Array): boolean;
  nextHop(dst: PeerName): PeerName | null;
  broadcastChildren(origin: PeerName): PeerName[];
}
