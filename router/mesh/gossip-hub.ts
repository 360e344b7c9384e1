// The gossip core: named channels over the mesh (mesh gossip.go and
// gossip_channel.go, in spirit). It dispatches incoming gossip to the channel's
// Gossiper and relays what was new to it: neighbour gossip to a few
// neighbours, broadcasts down the origin's broadcast tree, unicasts one hop
// closer to their destination. Channels without a local handler are still
// relayed (surrogate), so a peer without DNS does not cut the DNS channel.
// Neighbour gossip leaves through a per-connection outbox (gossip-outbox.ts):
// paced by a token bucket and coalesced per channel, so no topology can make
// a connection carry more than its rate. Periodic gossip skips neighbours
// known to hold exactly our state, and is forced through every
// FORCED_GOSSIP_ROUNDS rounds in case that knowledge went stale.

import type { Clock } from '../../common/clock';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';
import type { PeerName } from './peer-name';
import { encodeGossip, GossipKind, isValidChannelName } from './protocol';
import { Rng, sample } from '../../common/rng';
import type { MeshLinks } from './mesh-links';
import { RecentDigests } from './recent-digests';
import { GossipOutbox, OutboxCounters, RawGossip, stateDigest } from './gossip-outbox';
import type { Gossip, GossipData, Gossiper, GossipHub, PeerInfo } from './gossip';
import type { GossipAuthority } from './signed-gossip';

interface Channel {
  name: string;
  gossiper: Gossiper;
  /** Relay what was new to every neighbour, not a few (topology: every peer must see each change, fast). */
  relayToAll: boolean;
}

export interface GossipCounters extends OutboxCounters {
  gossipReceived: number;
  /** Payload bytes of the gossip received (what the channels' codecs carry, without the GOSSIP header). */
  gossipBytesReceived: number;
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
/** Every this many periodic rounds a channel's state goes to a few neighbours even if they seem to hold it. */
export const FORCED_GOSSIP_ROUNDS = 10;

export class MeshGossipHub implements GossipHub {
  readonly localPeer: PeerName;
  readonly signing: GossipAuthority;
  readonly counters: GossipCounters = {
    gossipReceived: 0, gossipBytesReceived: 0, gossipSent: 0, gossipRejected: 0, gossipRelayedForUnknownChannel: 0, gossipUndeliverable: 0,
    gossipDeferred: 0, gossipCoalesced: 0, gossipDropped: 0,
  };
  private periodicRounds = 0;
  private readonly channels = new Map<string, Channel>();
  private readonly reachableListeners: ((reachable: ReadonlySet<PeerName>) => void)[] = [];
  private readonly surrogateSeen = new RecentDigests(SURROGATE_MEMORY_MS, SURROGATE_MEMORY_COUNT);
  private readonly outbox: GossipOutbox;

  constructor(private readonly deps: GossipHubDeps) {
    this.localPeer = deps.links.localPeer;
    this.outbox = new GossipOutbox({ clock: deps.clock, send: (n, channel, msg) => this.sendNow(n, channel, msg) }, this.counters);
    this.signing = deps.signing;
  }

  /**
   * Registers a channel. What was new to us is relayed to a few random
   * neighbours (mesh gossip_channel.go); periodic gossip repairs what the few
   * missed. `relayToAll` (topology) relays to every neighbour instead, so each
   * change reaches every peer at once rather than after periodic gossip; the
   * outbox's pacing and merging is what keeps that bounded in a dense mesh.
   */
  addChannel(name: string, gossiper: Gossiper, relayToAll = false): Gossip {
    if (!isValidChannelName(name)) throw new RangeError(`invalid gossip channel name ${JSON.stringify(name)}`);
    if (this.channels.has(name)) throw new RangeError(`gossip channel ${name} registered twice`);
    this.channels.set(name, { name, gossiper, relayToAll });
    return {
      gossipUnicast: (dst, msg) => this.sendUnicast(name, this.localPeer, dst, msg),
      gossipBroadcast: (update) => this.relayBroadcast(name, this.localPeer, update.encode()),
      gossipNeighbourSubset: (update) => this.sendToNeighbours(name, update, null, false),
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

  /**
   * Periodic anti-entropy: each channel's full state to a few neighbours,
   * leaving out those known to hold exactly that state already (dampened).
   */
  gossipPeriodically(): void {
    const forced = ++this.periodicRounds % FORCED_GOSSIP_ROUNDS === 0;
    const neighbours = this.deps.links.neighbours();
    for (const ch of this.channels.values()) {
      const data = this.callGossiper(ch, () => ch.gossiper.gossip());
      if (!data) continue;
      const digest = stateDigest(data.encode());
      const candidates = forced ? neighbours : neighbours.filter((n) => !this.outbox.holds(n, ch.name, digest));
      for (const n of sample(this.deps.rng, candidates, fanout(neighbours.length))) {
        this.outbox.noteSent(n, ch.name, digest);
        this.outbox.enqueue(n, ch.name, data);
      }
    }
  }

  /** Sends every channel's full state to a neighbour that just connected; forgets what we knew of its previous connection. */
  gossipFullStateTo(neighbour: PeerName): void {
    this.outbox.forget(neighbour);
    for (const ch of this.channels.values()) {
      const data = this.callGossiper(ch, () => ch.gossiper.gossip());
      if (!data) continue;
      this.outbox.noteSent(neighbour, ch.name, stateDigest(data.encode()));
      this.outbox.enqueue(neighbour, ch.name, data);
    }
  }

  /** Sends `data` on a channel to every neighbour (our own topology entry after it changed), paced like all neighbour gossip. */
  gossipToAllNeighbours(channel: string, data: GossipData): void {
    this.sendToNeighbours(channel, data, null, true);
  }

  /** Drops what waits for a neighbour whose connection went. */
  forgetNeighbour(neighbour: PeerName): void {
    this.outbox.forget(neighbour);
  }

  /** Cancels paced sends (router shutdown). */
  close(): void {
    this.outbox.close();
  }

  /** Entry point for a GOSSIP control message received from neighbour `from`. */
  handleGossip(from: PeerName, kind: GossipKind, channelName: string, src: PeerName, dst: PeerName | null, payload: Uint8Array): void {
    this.counters.gossipReceived++;
    this.counters.gossipBytesReceived += payload.length;
    const ch = this.channels.get(channelName) ?? null;
    switch (kind) {
      case 'neighbour': {
        this.outbox.noteReceived(from, channelName, stateDigest([payload]));
        if (!ch) {
          if (this.surrogateSeen.checkAndRemember(payload, this.deps.clock.now())) return;
          this.counters.gossipRelayedForUnknownChannel++;
          this.sendToNeighbours(channelName, new RawGossip([payload]), from, false);
          return;
        }
        const delta = this.callGossiper(ch, () => ch.gossiper.onGossip(payload));
        if (delta) this.sendToNeighbours(ch.name, delta, from, ch.relayToAll);
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

  private sendToNeighbours(channel: string, data: GossipData, except: PeerName | null, all: boolean): void {
    const candidates = this.deps.links.neighbours().filter((n) => n !== except);
    if (candidates.length === 0) return;
    const targets = all ? candidates : sample(this.deps.rng, candidates, fanout(candidates.length));
    for (const n of targets) this.outbox.enqueue(n, channel, data);
  }

  /** The outbox's way onto a connection: one neighbour-gossip message, now. */
  private sendNow(neighbour: PeerName, channel: string, msg: Uint8Array): boolean {
    if (!this.deps.links.sendTo(neighbour, encodeGossip('neighbour', channel, this.localPeer, null, msg))) return false;
    this.counters.gossipSent++;
    return true;
  }
}

/** How many neighbours periodic gossip reaches: enough for epidemic spread, few enough to stay cheap. */
function fanout(neighbourCount: number): number {
  return Math.min(neighbourCount, Math.max(2, Math.ceil(Math.log2(neighbourCount + 1))));
}
