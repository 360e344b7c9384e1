// The ring: an address range divided among peers, gossiped as a CRDT. It owns
// the division (who owns which offsets) and nothing else: which addresses are
// in use is the allocator's business, the wire format is messages.ts.
//
// Model (after Weave Net's ipam/ring, written anew): the range's offsets
// 0..size-1 are cut by tokens; entry i owns [token_i, token_{i+1}) (the last
// one up to the end of the range). Each entry carries its owner, a version and
// the owner's last reported free count.
//
// Invariants, and why merging is a CRDT:
// - Tokens are never removed. The state is a map token -> entry, and merge is
//   map union taking, per token, the entry that is greater in the total order
//   (version, owner, free). Union and max are commutative, associative and
//   idempotent, so every peer that has seen the same messages holds the same
//   ring, whatever the order.
// - Only the owner of a range changes entries inside it (split, give away,
//   report free) and it bumps the version when it does. The one exception is
//   `rmpeer`, which takes over a dead peer's entries with a version jump
//   (RMPEER_VERSION_STEP) so the takeover wins against the dead peer's last state.
// - Signed (ring-signature.ts): each entry carries the grant by which its
//   owner holds it (signed by the previous owner) and a signature over its
//   state (by whoever made that version). An entry that would change our ring
//   is taken only when its signatures hold and its grantor is the owner we
//   knew for that token (for a new token: the owner of the span it splits),
//   judged in token order against the ring as merged so far, so a donation
//   and the receiver's later splits arrive together. A takeover by another
//   grantor is taken only when the owner we knew is unreachable and is not
//   us. Forged signatures refuse the whole message ('auth'); a claim on our
//   own space that we did not sign refuses it too ('invalid-ring'); any other
//   unauthorised entry is skipped and counted (ringEntriesRefused): it may be
//   honest news we cannot check yet (we missed two changes of one token in a
//   row), and our older entry stays until the token changes again. A ring
//   that is not seeded yet takes the first ring whose signatures hold.
// - Messages carry the sender's whole ring, never a delta. A peer learns that
//   it owns a range in the same message that holds every token inside it, so it
//   never believes it owns space that someone else has split off.
// - Token 0 always exists once seeded, so the entries partition the range:
//   no overlap and no lost space by construction.
// - The seed (sorted initial peers) names the ring's origin. Rings with
//   different seeds were created independently and are refused, as are rings
//   for another range: merging them would hand out addresses twice.
//
// A merge validates everything first and changes nothing when it throws.

import { MAX_GRANT_HISTORY, RMPEER_VERSION_STEP, MAX_RING_ENTRIES, MAX_SEED_PEERS } from './constants';
import type { AddressRange, Span } from './address-range';
import { IpamError } from './errors';
import type { GossipSigning } from '../router/mesh/gossip';
import type { PeerName } from '../router/mesh/peer-name';
import type { RingGrant, RingKeys } from './ring-signature';
import { InitialSplit, makeGrant, ringContext, stateBytes, stateSigner } from './ring-signature';
import { mergeRingEntries } from './ring-merge';

export { compareEntries } from './ring-merge';

export interface RingEntry {
  readonly token: number;
  readonly owner: PeerName;
  readonly version: number;
  readonly free: number;
  /** How the owner came to hold the token; null for an entry of the initial split. */
  readonly grant: RingGrant | null;
  /** The grants before it, oldest first (at most MAX_GRANT_HISTORY): a peer that missed some can still follow the chain. */
  readonly earlier: readonly RingGrant[];
  /** Over the state, by stateSigner(); null only for an untouched initial-split entry. */
  readonly signature: Uint8Array | null;
}

/** A ring as values, as it travels on the wire or to disk. */
export interface RingState {
  readonly range: AddressRange;
  readonly seed: readonly PeerName[];
  readonly entries: readonly RingEntry[];
  /** The public key of every peer whose signature the entries carry. */
  readonly keys: RingKeys;
}

/** What the ring needs of the mesh to sign and to judge. */
export interface RingGuard {
  readonly signing: GossipSigning;
  /** Reachable from us now; an unreachable owner's space may be taken over. */
  isReachable(peer: PeerName): boolean;
}

export interface RingCounters {
  ringEntriesRefused: number;
  ringTakeovers: number;
}
export interface RingMergeResult {
  changed: boolean;
  /** Our entries that another peer now owns (rmpeer of us, or state we had lost). */
  lostToOthers: RingEntry[];
}

/**
 * Addresses of a span that can be handed out: the range's first and last
 * address (network and broadcast of the whole range) never are.
 */
export function usableCount(range: AddressRange, span: Span): number {
  let n = span.end - span.start;
  if (span.start === 0 && span.end > 0) n--;
  if (span.end === range.size && span.start < range.size && range.size - 1 !== 0) n--;
  return Math.max(0, n);
}

/** The keys of every peer whose signature the entries carry, from `known`. */
function signerKeys(entries: readonly RingEntry[], known: RingKeys): Map<PeerName, Uint8Array> {
  const keys = new Map<PeerName, Uint8Array>();
  for (const e of entries) {
    for (const p of [e.grant?.grantor, e.signature !== null ? stateSigner(e) : undefined]) {
      const k = p === undefined ? undefined : known.get(p);
      if (p !== undefined && k !== undefined) keys.set(p, k);
    }
  }
  return keys;
}

function sameSeed(a: readonly PeerName[], b: readonly PeerName[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}

function spanEnd(entries: readonly RingEntry[], i: number, size: number): number {
  return entries[i + 1]?.token ?? size;
}

/** Index of the entry whose span contains `offset` (entries non-empty, first token 0). */
function indexContaining(entries: readonly RingEntry[], offset: number): number {
  let lo = 0;
  let hi = entries.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (entries[mid]!.token <= offset) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/**
 * Checks a ring that came from outside (wire, disk) for internal consistency.
 * Throws IpamError('invalid-ring') naming the first problem.
 */
export function validateRingState(state: RingState, what: string): void {
  const { seed, entries, range } = state;
  const bad = (detail: string): IpamError => new IpamError('invalid-ring', `${what}: ${detail}`);
  if (seed.length === 0 || entries.length === 0) throw bad('ring is empty (no seed or no entries)');
  if (seed.length > MAX_SEED_PEERS) throw IpamError.limit(`${what} seed peers`, seed.length, MAX_SEED_PEERS);
  if (entries.length > MAX_RING_ENTRIES) throw IpamError.limit(`${what} entries`, entries.length, MAX_RING_ENTRIES);
  for (let i = 1; i < seed.length; i++) {
    if (!(seed[i - 1]! < seed[i]!)) throw bad('seed peers are not sorted and distinct');
  }
  if (entries[0]!.token !== 0) throw bad(`first token is ${entries[0]!.token}, must be 0`);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (!Number.isSafeInteger(e.version) || e.version < 0) throw bad(`entry ${i} has version ${e.version}`);
    if (!Number.isInteger(e.token) || e.token < 0 || e.token >= range.size) throw bad(`token ${e.token} is outside the range`);
    if (i > 0 && e.token <= entries[i - 1]!.token) throw bad(`tokens are not increasing at entry ${i}`);
  }
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const len = spanEnd(entries, i, range.size) - e.token;
    if (!Number.isInteger(e.free) || e.free < 0 || e.free > len) throw bad(`entry at ${range.formatOffset(e.token)} claims ${e.free} free of ${len}`);
  }
}

export class Ring {
  private list: RingEntry[] = [];
  private seedPeers: PeerName[] = [];
  private readonly keys = new Map<PeerName, Uint8Array>();
  private context: Uint8Array | null = null;
  readonly counters: RingCounters = { ringEntriesRefused: 0, ringTakeovers: 0 };

  constructor(readonly range: AddressRange, readonly self: PeerName, readonly guard: RingGuard) {
    this.keys.set(self, guard.signing.publicKey);
  }

  isSeeded(): boolean {
    return this.list.length > 0;
  }

  seed(): readonly PeerName[] {
    return this.seedPeers;
  }

  entries(): readonly RingEntry[] {
    return this.list;
  }

  state(): RingState {
    return { range: this.range, seed: this.seedPeers.slice(), entries: this.list.slice(), keys: signerKeys(this.list, this.keys) };
  }

  /**
   * The deterministic initial split: sorted peers, equal contiguous shares.
   * Every peer that seeds with the same peers builds the identical ring.
   */
  static initialState(range: AddressRange, peers: readonly PeerName[]): RingState {
    const seed = [...new Set(peers)].sort();
    if (seed.length === 0) throw IpamError.config('cannot seed a ring with no peers');
    if (seed.length > MAX_SEED_PEERS) throw IpamError.limit('seed peers', seed.length, MAX_SEED_PEERS);
    if (seed.length > range.size) throw IpamError.config(`range ${range.toString()} is too small for ${seed.length} peers`);
    const entries: RingEntry[] = [];
    for (let i = 0; i < seed.length; i++) {
      const start = Math.floor((i * range.size) / seed.length);
      const end = Math.floor(((i + 1) * range.size) / seed.length);
      entries.push({ token: start, owner: seed[i]!, version: 0, free: usableCount(range, { start, end }), grant: null, earlier: [], signature: null });
    }
    return { range, seed, entries, keys: new Map() };
  }

  /** Seeds an empty ring (a no-op when already seeded the same way). */
  seedWith(peers: readonly PeerName[]): RingMergeResult {
    return this.merge(Ring.initialState(this.range, peers));
  }

  spanAt(index: number): Span {
    const e = this.list[index];
    if (!e) throw new RangeError(`no ring entry ${index}`);
    return { start: e.token, end: spanEnd(this.list, index, this.range.size) };
  }

  ownerOf(offset: number): PeerName | null {
    if (this.list.length === 0 || offset < 0 || offset >= this.range.size) return null;
    return this.list[indexContaining(this.list, offset)]!.owner;
  }

  /** The spans `peer` owns, adjacent ones joined, in offset order. */
  ownedSpans(peer: PeerName = this.self): Span[] {
    const out: Span[] = [];
    for (let i = 0; i < this.list.length; i++) {
      if (this.list[i]!.owner !== peer) continue;
      const span = this.spanAt(i);
      const last = out[out.length - 1];
      if (last && last.end === span.start) last.end = span.end; else out.push(span);
    }
    return out;
  }

  /** Every owner with its share (addresses owned) and its reported free count. */
  shares(): Map<PeerName, { owned: number; free: number; entries: number }> {
    const out = new Map<PeerName, { owned: number; free: number; entries: number }>();
    for (let i = 0; i < this.list.length; i++) {
      const e = this.list[i]!;
      const s = this.spanAt(i);
      const cur = out.get(e.owner) ?? { owned: 0, free: 0, entries: 0 };
      cur.owned += s.end - s.start;
      cur.free += Math.min(e.free, s.end - s.start);
      cur.entries++;
      out.set(e.owner, cur);
    }
    return out;
  }

  /**
   * Folds another ring into ours. Validates the whole of it first: another
   * range ('foreign-range'), another seed ('foreign-seed'), or an inconsistent
   * ring ('invalid-ring') throws and leaves this ring untouched.
   */
  merge(incoming: RingState): RingMergeResult {
    if (!incoming.range.equals(this.range)) {
      throw new IpamError('foreign-range', `ring is for range ${incoming.range.toString()}, ours is ${this.range.toString()}; every peer must use the same --ipalloc-range`);
    }
    validateRingState(incoming, 'ring');
    if (this.isSeeded() && !sameSeed(this.seedPeers, incoming.seed)) {
      throw new IpamError(
        'foreign-seed',
        `ring was created by peers [${incoming.seed.join(', ')}], ours by [${this.seedPeers.join(', ')}]: ` +
          'the two were set up independently (each side reached consensus alone, or different seed lists); ' +
          'reset IPAM on one side (weave reset) before connecting them',
      );
    }

    const context = ringContext(this.range, incoming.seed);
    const initial = new InitialSplit(Ring.initialState(this.range, incoming.seed).entries, this.range.size);
    const out = mergeRingEntries(this.range, this.self, this.guard, this.list, incoming, context, initial);
    this.counters.ringEntriesRefused += out.refused;
    if (!out.changed) return { changed: false, lostToOthers: [] };
    this.counters.ringTakeovers += out.takeovers;
    for (const [p, k] of signerKeys(out.merged, incoming.keys)) if (!this.keys.has(p)) this.keys.set(p, k);
    this.list = out.merged;
    if (this.seedPeers.length === 0) this.seedPeers = incoming.seed.slice();
    this.context = context;
    return { changed: true, lostToOthers: out.lostToOthers };
  }

  /** Signs the state of an entry we make. */
  private ours(e: Omit<RingEntry, 'signature'>, end: number): RingEntry {
    const context = this.context ?? ringContext(this.range, this.seedPeers);
    return { ...e, signature: this.guard.signing.sign(stateBytes(context, e, end)) };
  }

  /** Our grant of `token` to `owner` at `version`. */
  private grantTo(token: number, end: number, owner: PeerName, version: number): RingGrant {
    const context = this.context ?? ringContext(this.range, this.seedPeers);
    return makeGrant(this.guard.signing, this.self, context, token, end, owner, version);
  }

  /**
   * Gives [span.start, span.end) to `to`. Only ours to give: every offset of
   * the span must be ours. Splits entries at the edges as needed. `freeOf`
   * says what the receiver starts with as free (by default: all usable).
   */
  transfer(span: Span, to: PeerName, freeOf: (s: Span) => number = (s) => usableCount(this.range, s)): void {
    if (to === this.self) throw new RangeError('transfer to ourselves');
    if (!(span.start < span.end) || span.start < 0 || span.end > this.range.size) throw new RangeError(`bad span ${span.start}-${span.end}`);
    const covering = this.ownedSpans().some((s) => s.start <= span.start && span.end <= s.end);
    if (!covering) throw new RangeError(`span ${this.range.formatOffset(span.start)}+${span.end - span.start} is not ours to give`);
    const next = this.list.slice();
    const ensureToken = (token: number): void => {
      if (token >= this.range.size) return;
      const k = indexContaining(next, token);
      const c = next[k]!;
      if (c.token === token) return;
      const cEnd = spanEnd(next, k, this.range.size);
      // The split-off part is ours (the whole span is): version 0 is safe,
      // because nobody but the owner can know a token inside its span.
      const right = this.ours({
        token, owner: c.owner, version: 0, free: Math.min(c.free, usableCount(this.range, { start: token, end: cEnd })),
        grant: this.grantTo(token, cEnd, c.owner, 0), earlier: [],
      }, cEnd);
      next[k] = this.ours({ ...c, version: c.version + 1, free: Math.min(c.free, usableCount(this.range, { start: c.token, end: token })) }, token);
      next.splice(k + 1, 0, right);
    };
    ensureToken(span.start);
    ensureToken(span.end);
    if (next.length > MAX_RING_ENTRIES) throw IpamError.limit('ring entries', next.length, MAX_RING_ENTRIES);
    for (let k = indexContaining(next, span.start); k < next.length && next[k]!.token < span.end; k++) {
      const e = next[k]!;
      const s = { start: e.token, end: spanEnd(next, k, this.range.size) };
      const version = e.version + 1;
      const earlier = e.grant === null ? e.earlier : [...e.earlier, e.grant].slice(-MAX_GRANT_HISTORY);
      next[k] = this.ours({ token: e.token, owner: to, version, free: Math.min(freeOf(s), s.end - s.start), grant: this.grantTo(e.token, s.end, to, version), earlier }, s.end);
    }
    this.list = next;
  }

  /**
   * rmpeer: takes over every entry of `dead`. Returns the number of addresses
   * taken over. The version jump makes the takeover win over anything the
   * dead peer last said.
   */
  takeOver(dead: PeerName): number {
    if (dead === this.self) throw new RangeError('takeOver of ourselves');
    let taken = 0;
    const next = this.list.map((e, k) => {
      if (e.owner !== dead) return e;
      const s = this.spanAt(k);
      taken += s.end - s.start;
      const version = e.version + RMPEER_VERSION_STEP;
      if (!Number.isSafeInteger(version)) throw new IpamError('invalid-ring', `version of entry ${this.range.formatOffset(e.token)} would overflow`);
      // The grant stays: it proves what we take, to peers that never saw it given.
      return this.ours({ token: e.token, owner: this.self, version, free: usableCount(this.range, s), grant: e.grant, earlier: e.earlier }, s.end);
    });
    if (taken > 0) this.list = next;
    return taken;
  }

  /** Reports the free count of one of our entries; true when it changed (version bumped). */
  setFree(token: number, free: number): boolean {
    const k = indexContaining(this.list, token);
    const e = this.list[k];
    if (!e || e.token !== token || e.owner !== this.self) throw new RangeError(`no entry of ours at token ${token}`);
    const s = this.spanAt(k);
    const clamped = Math.max(0, Math.min(free, s.end - s.start));
    if (clamped === e.free) return false;
    this.list[k] = this.ours({ ...e, version: e.version + 1, free: clamped }, s.end);
    return true;
  }
}
