// The record store: a state-based CRDT of name -> address records, replicated
// on the `dns` gossip channel (the gossiper is dns/gossiper.ts, the bytes are
// dns/store-codec.ts). Pure: time comes in as `now`, no timers, no I/O.
//
// An entry is keyed by (origin peer, container, name, address) and carries a
// version and a tombstone flag, as in Weave Net's nameserver. Only the origin
// changes its entries, each change with version + 1, so for one key the higher
// version wins everywhere; at equal versions a removal wins over a record, and
// of two removals the older one (which expires first). That choice is
// commutative, associative and idempotent, so every peer that has seen the same
// updates holds the same state, whatever the order.
//
// Rules that keep it honest:
// - The origin is the authority on its own entries. When gossip claims a record
//   of ours that we do not hold (we restarted, or it was forged), we answer with
//   a removal of a higher version; when it claims a removal of one we hold, we
//   re-assert ours with a higher version. Those corrections are part of the
//   delta and travel on like any change.
// - Removals are remembered for TOMBSTONE_TTL_MS, measured from when the origin
//   removed the record (the wire carries the age, so no clocks need to agree).
// - Records of peers that are not reachable are hidden from answers at once and
//   dropped after DEPARTED_PEER_GRACE_MS; from then on, copies of them that other
//   peers still gossip are not taken back (else the records would circulate
//   forever among peers that drop them at different moments). The origin's own
//   gossip brings them back when it is reachable again.
// - Every entry carries its origin's signature (dns/record-signature.ts), and
//   an entry that would change anything here is taken only when the origin's
//   key signed it: nobody else can add, change or remove a peer's records,
//   and a forged claim about one of ours is refused rather than corrected.
// - merge() validates the whole batch (capacity and signatures included)
//   before changing anything: a refused batch leaves the store exactly as it was.

import { canonicalIp } from '../common/ip';
import type { GossipSigning } from '../router/mesh/gossip';
import type { PeerName } from '../router/mesh/peer-name';
import { DEPARTED_PEER_GRACE_MS, MAX_ENTRIES_TOTAL, TOMBSTONE_TTL_MS } from './constants';
import { DnsError } from './errors';
import { isNormalName } from './names';
import { recordAuthentic, signRecord } from './record-signature';
import type { DnsEntry } from './store-entry';
import { entryKey, entryProblem, supersedes, validateContainerId } from './store-entry';

const FORGET_DEPARTED_AFTER_GRACES = 10;
/**
 * Claims about our own records at or above this are ignored rather than
 * outbid, so that our +1 always fits in u32 (no honest peer gets near it: one
 * version per change of one record).
 */
export const MAX_OWN_CLAIM_VERSION = 0x7fff_ffff;

/** An entry before it is signed. */
type UnsignedEntry = Omit<DnsEntry, 'originKey' | 'signature'>;

/** What merge decided for one incoming entry: take it as is, or put an entry of ours (to sign) in its place. */
interface Verdict {
  entry: UnsignedEntry;
  ours: boolean;
  correction: boolean;
}

export interface StoreOptions {
  maxEntries: number;
  tombstoneTtlMs: number;
  departedGraceMs: number;
}

export const DEFAULT_STORE_OPTIONS: StoreOptions = {
  maxEntries: MAX_ENTRIES_TOTAL,
  tombstoneTtlMs: TOMBSTONE_TTL_MS,
  departedGraceMs: DEPARTED_PEER_GRACE_MS,
};

/** What to remove locally; every given field must match. */
export interface EntryMatch {
  containerId?: string;
  name?: string;
  address?: string;
}


export interface StoreCounters {
  mergedBatches: number;
  refusedBatches: number;
  /** Of the refused: batches with an entry its origin did not sign. */
  forgedBatches: number;
  entriesChanged: number;
  ownCorrections: number;
  tombstonesExpired: number;
  departedDropped: number;
}

export class DnsStore {
  private readonly entries = new Map<string, DnsEntry>();
  private readonly byName = new Map<string, Set<string>>();
  private readonly byAddress = new Map<string, Set<string>>();
  private reachable: ReadonlySet<PeerName>;
  /**
 * First instant we saw each origin unreachable; cleared when it is back, and
 * forgotten FORGET_DEPARTED_AFTER_GRACES grace periods later (its records are
 * long gone everywhere by then).
 */
  private readonly unreachableSince = new Map<PeerName, number>();
  private readonly opts: StoreOptions;
  private changes = 0;
  readonly counters: StoreCounters = {
    mergedBatches: 0, refusedBatches: 0, forgedBatches: 0, entriesChanged: 0, ownCorrections: 0, tombstonesExpired: 0, departedDropped: 0,
  };

  constructor(readonly localPeer: PeerName, private readonly signing: GossipSigning, opts: Partial<StoreOptions> = {}) {
    this.opts = { ...DEFAULT_STORE_OPTIONS, ...opts };
    this.reachable = new Set([localPeer]);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Changes with every change that can alter an answer: an entry put or
   * dropped, reachability reported. Caches of encoded answers
   * (dns/answer-cache.ts) compare it instead of being told.
   */
  get generation(): number {
    return this.changes;
  }

  get(key: string): DnsEntry | undefined {
    return this.entries.get(key);
  }

  /** Every entry, records and removals, sorted by key: a stable view for status and tests. */
  snapshot(): DnsEntry[] {
    return [...this.entries.keys()].sort().map((k) => this.entries.get(k) as DnsEntry);
  }

  /** Our own live records. */
  localRecords(): DnsEntry[] {
    return this.snapshot().filter((e) => e.origin === this.localPeer && !e.tombstone);
  }

  // -------------------------------------------------------------------------
  // Local changes: the origin's side. Each returns the delta to broadcast.

  /** Adds a live record of ours; a no-op (empty delta) when it is live already. Throws DnsError.config on bad input. */
  register(containerId: string, name: string, address: string, _nowMs: number): DnsEntry[] {
    validateContainerId(containerId);
    if (!isNormalName(name)) throw DnsError.config(`${JSON.stringify(name)} is not a valid host name`);
    const addr = canonicalIp(address);
    if (addr === null) throw DnsError.config(`${JSON.stringify(address)} is not an IP address`);
    const key = entryKey({ origin: this.localPeer, containerId, name, address: addr });
    const existing = this.entries.get(key);
    if (existing !== undefined && !existing.tombstone) return [];
    if (existing === undefined && this.entries.size >= this.opts.maxEntries) {
      throw DnsError.limit('records in the store', this.entries.size + 1, this.opts.maxEntries);
    }
    const entry = signRecord({
      origin: this.localPeer, containerId, name, address: addr,
      version: (existing?.version ?? 0) + 1, tombstone: false, removedAtMs: null,
    }, this.signing);
    this.put(key, entry);
    return [entry];
  }

  /** Removes our live records matching every given field (at least one must be given). */
  unregister(match: EntryMatch, nowMs: number): DnsEntry[] {
    if (match.containerId === undefined && match.name === undefined && match.address === undefined) {
      throw DnsError.config('say what to remove: a container, a name or an address');
    }
    const address = match.address === undefined ? undefined : canonicalIp(match.address) ?? match.address;
    const delta: DnsEntry[] = [];
    for (const [key, e] of this.entries) {
      if (e.origin !== this.localPeer || e.tombstone) continue;
      if (match.containerId !== undefined && e.containerId !== match.containerId) continue;
      if (match.name !== undefined && e.name !== match.name) continue;
      if (address !== undefined && e.address !== address) continue;
      const dead = signRecord({ ...e, version: e.version + 1, tombstone: true, removedAtMs: nowMs }, this.signing);
      this.put(key, dead);
      delta.push(dead);
    }
    return delta;
  }

  // -------------------------------------------------------------------------
  // Remote changes

  /**
   * Folds in entries from gossip and returns what changed here (including our
   * corrections of claims about our own records). Validates everything first:
   * on a DnsError nothing has changed.
   */
  merge(incoming: readonly DnsEntry[], nowMs: number): DnsEntry[] {
    let fresh = 0;
    const seen = new Set<string>();
    for (const e of incoming) {
      const problem = entryProblem(e);
      if (problem !== null) {
        this.counters.refusedBatches++;
        throw DnsError.decode('dns gossip entry', problem);
      }
      const key = entryKey(e);
      if (!this.entries.has(key) && !seen.has(key)) fresh++;
      seen.add(key);
    }
    if (this.entries.size + fresh > this.opts.maxEntries) {
      this.counters.refusedBatches++;
      throw DnsError.limit('records in the store after this update', this.entries.size + fresh, this.opts.maxEntries);
    }

    // Decide every entry (later duplicates against earlier ones), checking the
    // signature of each that would change something; apply only when all hold.
    const changed = new Map<string, DnsEntry>();
    const pending = new Map<string, Verdict>();
    for (const e of incoming) {
      const key = entryKey(e);
      const existing = pending.get(key)?.entry ?? this.entries.get(key);
      const verdict = e.origin === this.localPeer ? this.judgeOwn(e, existing, nowMs) : this.judgeOther(e, existing, nowMs);
      if (verdict === null) continue;
      if (!recordAuthentic(e, this.signing)) {
        this.counters.refusedBatches++;
        this.counters.forgedBatches++;
        throw new DnsError('auth', `dns gossip entry ${e.name} -> ${e.address} is not signed by its origin ${e.origin}`);
      }
      const previous = pending.get(key);
      pending.set(key, { ...verdict, correction: verdict.correction || (previous?.correction ?? false) });
    }
    for (const [key, v] of pending) {
      const next = v.ours ? signRecord(v.entry, this.signing) : v.entry as DnsEntry;
      if (v.correction) this.counters.ownCorrections++;
      this.put(key, next);
      changed.set(key, next);
    }
    this.counters.mergedBatches++;
    this.counters.entriesChanged += changed.size;
    return [...changed.values()];
  }

  private judgeOther(e: DnsEntry, existing: UnsignedEntry | undefined, nowMs: number): Verdict | null {
    if (this.departed(e.origin, nowMs)) return null;
    if (existing === undefined) {
      // A removal we never saw the record of, and already expired: nothing to remember.
      if (e.tombstone && this.expired(e, nowMs)) return null;
      return { entry: e, ours: false, correction: false };
    }
    return supersedes(e, existing) ? { entry: e, ours: false, correction: false } : null;
  }

  /**
   * A claim about one of our own records (signed by us, in an earlier run):
   * ours is the truth, raised above the claim when they differ.
   */
  private judgeOwn(e: DnsEntry, existing: UnsignedEntry | undefined, nowMs: number): Verdict | null {
    if (e.version >= MAX_OWN_CLAIM_VERSION) return null;
    if (existing === undefined) {
      if (e.tombstone) return this.expired(e, nowMs) ? null : { entry: e, ours: false, correction: false };
      return { entry: { ...e, version: e.version + 1, tombstone: true, removedAtMs: nowMs }, ours: true, correction: true };
    }
    if (e.version < existing.version) return null;
    if (e.tombstone !== existing.tombstone) return { entry: { ...existing, version: e.version + 1 }, ours: true, correction: true };
    if (e.version > existing.version) return { entry: { ...existing, version: e.version }, ours: true, correction: false };
    return null;
  }

  /** Unreachable for longer than the grace period: its records are being dropped everywhere. */
  private departed(origin: PeerName, nowMs: number): boolean {
    const since = this.unreachableSince.get(origin);
    return since !== undefined && nowMs - since >= this.opts.departedGraceMs;
  }

  private expired(e: UnsignedEntry, nowMs: number): boolean {
    return e.removedAtMs !== null && nowMs - e.removedAtMs >= this.opts.tombstoneTtlMs;
  }

  // -------------------------------------------------------------------------
  // Reachability and expiry (the owner calls these; the store has no timers)

  setReachable(reachable: ReadonlySet<PeerName>, nowMs: number): void {
    this.reachable = new Set([...reachable, this.localPeer]);
    this.changes++;
    for (const p of [...this.unreachableSince.keys()]) if (this.reachable.has(p)) this.unreachableSince.delete(p);
    this.noteUnreachable(nowMs);
  }

  isVisible(e: DnsEntry): boolean {
    return !e.tombstone && this.reachable.has(e.origin);
  }

  /** Drops expired removals and the records of peers unreachable for longer than the grace period. */
  tick(nowMs: number): DnsEntry[] {
    this.noteUnreachable(nowMs);
    const dropped: DnsEntry[] = [];
    for (const [key, e] of this.entries) {
      if (e.tombstone && this.expired(e, nowMs)) {
        this.counters.tombstonesExpired++;
      } else {
        const since = this.unreachableSince.get(e.origin);
        if (since === undefined || nowMs - since < this.opts.departedGraceMs) continue;
        this.counters.departedDropped++;
      }
      this.remove(key, e);
      dropped.push(e);
    }
    for (const [p, since] of [...this.unreachableSince]) {
      if (nowMs - since >= FORGET_DEPARTED_AFTER_GRACES * this.opts.departedGraceMs) this.unreachableSince.delete(p);
    }
    return dropped;
  }

  private noteUnreachable(nowMs: number): void {
    for (const e of this.entries.values()) {
      if (!this.reachable.has(e.origin) && !this.unreachableSince.has(e.origin)) this.unreachableSince.set(e.origin, nowMs);
    }
  }

  // -------------------------------------------------------------------------
  // Queries (visible records only)

  /** Addresses of `name` (normal form), deduplicated, sorted; the caller shuffles. */
  lookup(name: string): string[] {
    const keys = this.byName.get(name);
    if (keys === undefined) return [];
    const out = new Set<string>();
    for (const k of keys) {
      const e = this.entries.get(k) as DnsEntry;
      if (this.isVisible(e)) out.add(e.address);
    }
    return [...out].sort();
  }

  /** True when some visible name lies strictly below `name` (an empty non-terminal answers NOERROR). */
  hasNamesBelow(name: string): boolean {
    const suffix = `.${name}`;
    for (const [n, keys] of this.byName) {
      if (!n.endsWith(suffix)) continue;
      for (const k of keys) if (this.isVisible(this.entries.get(k) as DnsEntry)) return true;
    }
    return false;
  }

  /** Names that hold `address` (canonical), sorted. */
  reverse(address: string): string[] {
    const keys = this.byAddress.get(address);
    if (keys === undefined) return [];
    const out = new Set<string>();
    for (const k of keys) {
      const e = this.entries.get(k) as DnsEntry;
      if (this.isVisible(e)) out.add(e.name);
    }
    return [...out].sort();
  }

  // -------------------------------------------------------------------------

  private put(key: string, e: DnsEntry): void {
    const old = this.entries.get(key);
    this.entries.set(key, e);
    this.changes++;
    if (old === undefined) {
      index(this.byName, e.name, key);
      index(this.byAddress, e.address, key);
    }
  }

  private remove(key: string, e: DnsEntry): void {
    this.entries.delete(key);
    this.changes++;
    unindex(this.byName, e.name, key);
    unindex(this.byAddress, e.address, key);
  }
}

function index(map: Map<string, Set<string>>, k: string, key: string): void {
  let set = map.get(k);
  if (set === undefined) {
    set = new Set();
    map.set(k, set);
  }
  set.add(key);
}

function unindex(map: Map<string, Set<string>>, k: string, key: string): void {
  const set = map.get(k);
  if (set === undefined) return;
  set.delete(key);
  if (set.size === 0) map.delete(k);
}
