// The DNS peer: the record store on its gossip channel, the local registrations
// (our records), the reachability feed from the mesh and the store's periodic
// tick, plus the query core bound to the store. No sockets: the server, mDNS
// responder and host plumbing are adapters around it (dns/server.ts,
// dns/mdns.ts, dns/host-setup.ts), so a simulated mesh can run it as is.

import type { Clock, Timer } from '../common/clock';
import { canonicalIp } from '../common/ip';
import type { Gossip, GossipHub } from '../router/mesh/gossip';
import type { Logger } from '../common/logger';
import type { PeerName } from '../router/mesh/peer-name';
import type { Rng } from '../common/rng';
import type { QueryOutcome, RecordSource, ResolverConfig, Transport } from './answer';
import { handleQuery } from './answer';
import { AnswerCache, type CacheHit } from './answer-cache';
import { DNS_CHANNEL, MAX_ADDRESSES_PER_NAME, STORE_TICK_MS } from './constants';
import { DnsError } from './errors';
import { DnsGossiper, DnsUpdate } from './gossiper';
import type { EntryMatch, StoreOptions } from './store';
import { DnsStore } from './store';
import type { DnsEntry } from './store-entry';
import { validateContainerId } from './store-entry';

export interface DnsServiceDeps {
  hub: GossipHub;
  clock: Clock;
  rng: Rng;
  logger: Logger;
}

export interface DnsServiceOptions extends ResolverConfig {
  store?: Partial<StoreOptions>;
  tickMs?: number;
  /** Bound of the answer cache (dns/answer-cache.ts). */
  cacheEntries?: number;
}

export class DnsService implements RecordSource {
  readonly store: DnsStore;
  readonly localPeer: PeerName;
  readonly config: ResolverConfig;
  private readonly gossip: Gossip;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly logger: Logger;
  private readonly tickMs: number;
  private timer: Timer | null = null;
  readonly cache: AnswerCache;
  private stopped = false;
  /** As the mesh last reported it, to see who arrives. */
  private reachable: ReadonlySet<PeerName>;

  constructor(private readonly deps: DnsServiceDeps, opts: DnsServiceOptions) {
    this.clock = deps.clock;
    this.rng = deps.rng;
    this.logger = deps.logger;
    this.localPeer = deps.hub.localPeer;
    this.config = { domain: opts.domain, ttlS: opts.ttlS };
    this.tickMs = opts.tickMs ?? STORE_TICK_MS;
    this.store = new DnsStore(this.localPeer, deps.hub.signing, opts.store ?? {});
    this.cache = new AnswerCache(this.rng, opts.cacheEntries);
    this.gossip = deps.hub.addChannel(DNS_CHANNEL, new DnsGossiper(this.store, this.clock, this.logger));
    // Until the first topology change tells us better: the peers the mesh knows now.
    this.reachable = new Set(deps.hub.knownPeers().map((p) => p.name));
    this.store.setReachable(this.reachable, this.clock.now());
    deps.hub.onReachablePeersChanged((reachable) => {
      if (this.stopped) return;
      this.store.setReachable(reachable, this.clock.now());
      const arrived = [...reachable].filter((p) => p !== this.localPeer && !this.reachable.has(p));
      this.reachable = new Set(reachable);
      this.announceOwnTo(arrived);
    });
  }

  /**
   * Tells peers that just became reachable what we hold of our own records,
   * by unicast. The origin is the authority on its records, and this is the
   * moment another peer may hold a stale view of them: we restarted (it may
   * hold our old records, or removals we made of them a moment ago, before our
   * containers were restored), or it was cut off while they changed. A
   * broadcast made before our routes reached it went nowhere, and the periodic
   * gossip (30 s) is too slow for a name to come back after a relaunch. Costs
   * one unicast of our own entries per peer that arrives, never a broadcast.
   */
  private announceOwnTo(peers: readonly PeerName[]): void {
    if (peers.length === 0) return;
    const own = this.store.snapshot().filter((e) => e.origin === this.localPeer);
    if (own.length === 0) return;
    const messages = DnsUpdate.of(this.store, this.clock, own).encode();
    for (const p of peers) for (const m of messages) this.gossip.gossipUnicast(p, m);
  }

  start(): void {
    if (this.timer !== null || this.stopped) return;
    const loop = (): void => {
      this.timer = this.clock.setTimer(this.tickMs, () => {
        if (this.stopped) return;
        const dropped = this.store.tick(this.clock.now());
        if (dropped.length > 0) this.logger.debug('dns records expired', { count: dropped.length });
        loop();
      });
    };
    loop();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  /** Peers the mesh knows, for nicknames in status. */
  knownPeers(): { name: PeerName; nickname: string }[] {
    return this.deps.hub.knownPeers();
  }

  // -------------------------------------------------------------------------
  // Our records

  /** Registers `name` (normal form) at each address for a container; broadcasts what is new. */
  register(containerId: string, name: string, addresses: readonly string[]): DnsEntry[] {
    validateContainerId(containerId);
    if (addresses.length === 0) throw DnsError.config(`no address to register ${name} at`);
    const canon = addresses.map((a) => {
      const c = canonicalIp(a);
      if (c === null) throw DnsError.config(`${JSON.stringify(a)} is not an IP address`);
      return c;
    });
    const have = new Set(this.store.lookup(name));
    const total = new Set([...have, ...canon]).size;
    if (total > MAX_ADDRESSES_PER_NAME) throw DnsError.limit(`addresses under ${name}`, total, MAX_ADDRESSES_PER_NAME);
    const now = this.clock.now();
    const delta: DnsEntry[] = [];
    for (const a of canon) delta.push(...this.store.register(containerId, name, a, now));
    this.broadcast(delta);
    return delta;
  }

  /** Removes our records matching every given field; broadcasts the removals. */
  unregister(match: EntryMatch): DnsEntry[] {
    const delta = this.store.unregister(match, this.clock.now());
    this.broadcast(delta);
    return delta;
  }

  private broadcast(delta: DnsEntry[]): void {
    if (delta.length === 0 || this.stopped) return;
    this.gossip.gossipBroadcast(DnsUpdate.of(this.store, this.clock, delta));
  }

  // -------------------------------------------------------------------------
  // Queries

  lookup(name: string): string[] {
    return this.store.lookup(name);
  }

  reverse(address: string): string[] {
    return this.store.reverse(address);
  }

  hasNamesBelow(name: string): boolean {
    return this.store.hasNamesBelow(name);
  }

  /**
   * Answers one DNS query (the server's entry point). `cacheTried`: the
   * caller already missed in the cache with this query (answerUdpFromCache).
   */
  resolve(bytes: Uint8Array, transport: Transport, cacheTried = false): QueryOutcome {
    const generation = this.store.generation;
    if (!cacheTried) {
      const cached = this.cache.lookup(bytes, transport, generation);
      if (cached !== null) return cached;
    }
    const outcome = handleQuery(bytes, transport, this.config, this, this.rng);
    if (outcome.kind === 'reply') this.cache.remember(bytes, transport, generation, outcome.bytes, outcome.answerKind);
    return outcome;
  }

  /** The batched UDP server's hit path: AnswerCache.answerInto at the store's generation (-1: resolve it). */
  answerUdpFromCache(query: Uint8Array, at: number, length: number, out: Uint8Array, outAt: number, outCapacity: number, hit: CacheHit): number {
    return this.cache.answerInto(query, at, length, 'udp', this.store.generation, out, outAt, outCapacity, hit);
  }
}
