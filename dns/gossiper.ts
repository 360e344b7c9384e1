// The record store on the `dns` gossip channel (router/mesh/gossip.ts). A
// received update is decoded and validated whole, then merged; what was new to
// us (plus our corrections of claims about our own records) is returned and
// relayed; `null` ends the relay. A refused update throws, which the hub counts
// as rejected, and the store is untouched. Unicasts (an origin's own records,
// sent to a peer that just became reachable) are merged the same way but not
// relayed.

import type { Clock } from '../common/clock';
import type { GossipData, Gossiper } from '../router/mesh/gossip';
import type { Logger } from '../common/logger';
import type { PeerName } from '../router/mesh/peer-name';
import type { DnsStore } from './store';
import type { DnsEntry } from './store-entry';
import { entryKey } from './store-entry';
import { decodeEntries, encodeEntries } from './store-codec';

/** A set of entry keys whose current state is sent; merging is set union (mesh's "fold newcomers in"). */
export class DnsUpdate implements GossipData {
  constructor(private readonly store: DnsStore, private readonly clock: Clock, readonly keys: ReadonlySet<string>) {}

  static of(store: DnsStore, clock: Clock, entries: readonly DnsEntry[]): DnsUpdate {
    return new DnsUpdate(store, clock, new Set(entries.map(entryKey)));
  }

  encode(): Uint8Array[] {
    // The current state of each key: newer than when the update was made is fine,
    // and an entry expired since then is simply not sent.
    const entries: DnsEntry[] = [];
    for (const k of [...this.keys].sort()) {
      const e = this.store.get(k);
      if (e !== undefined) entries.push(e);
    }
    return entries.length === 0 ? [] : encodeEntries(entries, this.clock.now());
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof DnsUpdate)) return this;
    return new DnsUpdate(this.store, this.clock, new Set([...this.keys, ...other.keys]));
  }
}

export class DnsGossiper implements Gossiper {
  constructor(
    private readonly store: DnsStore,
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** Called after a merge that changed something, with what changed. */
    private readonly onChanged: (delta: DnsEntry[]) => void = () => undefined,
  ) {}

  /**
   * An origin telling us its own records when we became reachable to it
   * (DnsService.announceOwnTo): merged like any update, not relayed, since
   * every peer that arrived gets its own copy.
   */
  onGossipUnicast(_src: PeerName, update: Uint8Array): void {
    this.onGossip(update);
  }

  onGossipBroadcast(_src: PeerName, update: Uint8Array): GossipData | null {
    return this.onGossip(update);
  }

  gossip(): GossipData | null {
    if (this.store.size === 0) return null;
    return DnsUpdate.of(this.store, this.clock, this.store.snapshot());
  }

  onGossip(update: Uint8Array): GossipData | null {
    const now = this.clock.now();
    const delta = this.store.merge(decodeEntries(update, now), now);
    if (delta.length === 0) return null;
    if (this.logger.enabled('debug')) this.logger.debug('dns records merged', { changed: delta.length });
    this.onChanged(delta);
    return DnsUpdate.of(this.store, this.clock, delta);
  }
}
