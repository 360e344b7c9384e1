// The gossip core: named channels over the mesh (mesh gossip.go and
// gossip_channel.go, in spirit). It dispatches incoming gossip to the channel's
// Gossiper and relays what was new to it: neighbour gossip to a few
// neighbours, broadcasts down the origin's broadcast tree, unicasts one hop
// closer to their destination. Channels without a local handler are still
// relayed (surrogate), so a peer without DNS does not cut the DNS channel.

import type { Clock } from '../../common/clock';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';
import type { PeerName } from './peer-name';
import { encodeGossip, GossipKind, isValidChannelName } from './protocol';
import { Rng, sample } from '../../common/rng';
import type { MeshLinks } from './mesh-links';
import { RecentDigests } from './recent-digests';
import type { Gossip, GossipData, Gossiper, GossipHub, PeerInfo } from './gossip';
import type { GossipAuthority } from './signed-gossip';

export interface ChannelOptions {
  /** Relay what was new to every neighbour instead of a few (used by topology, which must converge fast). */
  relayToAllNeighbours: boolean;
}

interface Channel {
  name: string;
  gossiper: Gossiper;
  opts: ChannelOptions;
}

export interface GossipCounters {
  gossipReceived: number;
  gossipSent: number;
  gossipRejected: number;
  gossipRelayedForUnknownChannel: number;
  gossipUndeliverable: number;
}

export interface GossipHubDeps {
  clock: Clock;
  rng: Rng;
  logger: Logger;
  links: MeshLinks;
  /** Signs our updates and judges everyone else's (handed to every channel). */
  signing: GossipAuthority;
  knownPeers(): PeerInfo[];
}

const SURROGATE_MEMORY_MS = 60_000;
const SURROGATE_MEMORY_COUNT = 4096;

export class MeshGossipHub implements GossipHub {
  readonly localPeer: PeerName;
  readonly signing: GossipAuthority;
  readonly counters: GossipCounters = {
    gossipReceived: 0, gossipSent: 0, gossipRejected: 0, gossipRelayedForUnknownChannel: 0, gossipUndeliverable: 0,
  };
  private readonly channels = new Map<string, Channel>();
  private readonly reachableListeners: ((reachable: ReadonlySet<PeerName>) => void)[] = [];
  private readonly surrogateSeen = new RecentDigests(SURROGATE_MEMORY_MS, SURROGATE_MEMORY_COUNT);

  constructor(private readonly deps: GossipHubDeps) {
    this.localPeer = deps.links.localPeer;
    this.signing = deps.signing;
  }

  addChannel(name: string, gossiper: Gossiper): Gossip {
    return this.addChannelWithOptions(name, gossiper, { relayToAllNeighbours: false });
  }

  addChannelWithOptions(name: string, gossiper: Gossiper, opts: ChannelOptions): Gossip {
    if (!isValidChannelName(name)) throw new RangeError(`invalid gossip channel name ${JSON.stringify(name)}`);
    if (this.channels.has(name)) throw new RangeError(`gossip channel ${name} registered twice`);
    this.channels.set(name, { name, gossiper, opts });
    return {
      gossipUnicast: (dst, msg) => this.sendUnicast(name, this.localPeer, dst, msg),
      gossipBroadcast: (update) => this.relayBroadcast(name, this.localPeer, update.encode()),
      gossipNeighbourSubset: (update) => this.sendToNeighbours(name, update.encode(), null, false),
    };
  }

  channelNames(): string[] {
    return [...this.channels.keys()].sort();
  }

  knownPeers(): PeerInfo[] {
    return this.deps.knownPeers();
  }

  onReachablePeersChanged(listener: (reachable: ReadonlySet<PeerName>) => void): void {
    this.reachableListeners.push(listener);
  }

  notifyReachable(reachable: ReadonlySet<PeerName>): void {
    for (const listener of this.reachableListeners) {
      try {
        listener(reachable);
      } catch (err) {
        this.deps.logger.error('reachable-peers listener failed', { error: errorMessage(err) });
      }
    }
  }

  /** Periodic anti-entropy: each channel's full state to a few neighbours. */
  gossipPeriodically(): void {
    for (const ch of this.channels.values()) {
      const data = this.callGossiper(ch, () => ch.gossiper.gossip());
      if (data) this.sendToNeighbours(ch.name, data.encode(), null, false);
    }
  }

  /** Sends a channel's full state to one neighbour (e.g. right after it connected). */
  gossipFullStateTo(neighbour: PeerName): void {
    for (const ch of this.channels.values()) {
      const data = this.callGossiper(ch, () => ch.gossiper.gossip());
      if (!data) continue;
      for (const msg of data.encode()) this.sendNeighbourGossip(neighbour, ch.name, msg);
    }
  }

  /** Sends one neighbour-gossip message on a channel to one neighbour. */
  sendNeighbourGossip(neighbour: PeerName, channel: string, msg: Uint8Array): void {
    if (this.deps.links.sendTo(neighbour, encodeGossip('neighbour', channel, this.localPeer, null, msg))) this.counters.gossipSent++;
  }

  /** Entry point for a GOSSIP control message received from neighbour `from`. */
  handleGossip(from: PeerName, kind: GossipKind, channelName: string, src: PeerName, dst: PeerName | null, payload: Uint8Array): void {
    this.counters.gossipReceived++;
    const ch = this.channels.get(channelName) ?? null;
    switch (kind) {
      case 'neighbour': {
        if (!ch) {
          if (this.surrogateSeen.checkAndRemember(payload, this.deps.clock.now())) return;
          this.counters.gossipRelayedForUnknownChannel++;
          this.sendToNeighbours(channelName, [payload], from, false);
          return;
        }
        const delta = this.callGossiper(ch, () => ch.gossiper.onGossip(payload));
        if (delta) this.sendToNeighbours(ch.name, delta.encode(), from, ch.opts.relayToAllNeighbours);
        return;
      }
      case 'broadcast': {
        if (src === this.localPeer) return;
        if (!ch) {
          this.counters.gossipRelayedForUnknownChannel++;
          this.relayBroadcast(channelName, src, [payload]);
          return;
        }
        const delta = this.callGossiper(ch, () => ch.gossiper.onGossipBroadcast(src, payload));
        if (delta) this.relayBroadcast(ch.name, src, delta.encode());
        return;
      }
      case 'unicast': {
        if (dst === null) return;
        if (dst !== this.localPeer) {
          this.sendUnicast(channelName, src, dst, payload);
          return;
        }
        if (!ch) {
          this.counters.gossipUndeliverable++;
          return;
        }
        this.callGossiper(ch, () => { ch.gossiper.onGossipUnicast(src, payload); return null; });
        return;
      }
    }
  }

  private callGossiper(ch: Channel, fn: () => GossipData | null): GossipData | null {
    try {
      return fn();
    } catch (err) {
      this.counters.gossipRejected++;
      this.deps.logger.debug('gossip rejected', { channel: ch.name, error: errorMessage(err) });
      return null;
    }
  }

  private sendUnicast(channel: string, src: PeerName, dst: PeerName, msg: Uint8Array): boolean {
    const hop = this.deps.links.nextHop(dst);
    if (hop === null) {
      this.counters.gossipUndeliverable++;
      return false;
    }
    const ok = this.deps.links.sendTo(hop, encodeGossip('unicast', channel, src, dst, msg));
    if (ok) this.counters.gossipSent++;
    return ok;
  }

  private relayBroadcast(channel: string, origin: PeerName, messages: Uint8Array[]): void {
    const children = this.deps.links.broadcastChildren(origin);
    for (const msg of messages) {
      const encoded = encodeGossip('broadcast', channel, origin, null, msg);
      for (const child of children) if (this.deps.links.sendTo(child, encoded)) this.counters.gossipSent++;
    }
  }

  private sendToNeighbours(channel: string, messages: Uint8Array[], except: PeerName | null, all: boolean): void {
    const candidates = this.deps.links.neighbours().filter((n) => n !== except);
    if (candidates.length === 0) return;
    const targets = all ? candidates : sample(this.deps.rng, candidates, fanout(candidates.length));
    for (const msg of messages) {
      const encoded = encodeGossip('neighbour', channel, this.localPeer, null, msg);
      for (const n of targets) if (this.deps.links.sendTo(n, encoded)) this.counters.gossipSent++;
    }
  }
}

/** How many neighbours periodic gossip reaches: enough for epidemic spread, few enough to stay cheap. */
function fanout(neighbourCount: number): number {
  return Math.min(neighbourCount, Math.max(2, Math.ceil(Math.log2(neighbourCount + 1))));
}
