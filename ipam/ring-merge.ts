// The merge of a received ring into ours, entry by entry, with the checks
// that make ownership unforgeable (the rules are in ipam/ring.ts's header;
// the signatures in ring-signature.ts). Pure: ours and theirs in, the merged
// list and what was refused out; it throws before anything changes.

import { IpamError } from './errors';
import type { AddressRange } from './address-range';
import type { RingEntry, RingGuard, RingState } from './ring';
import type { PeerName } from '../router/mesh/peer-name';
import { checkProofs, grantedEnd, granteeOf } from './ring-signature';
import type { InitialSplit, RingGrant } from './ring-signature';

export interface MergeOutcome {
  merged: RingEntry[];
  changed: boolean;
  /** Our entries that another peer now owns. */
  lostToOthers: RingEntry[];
  refused: number;
  takeovers: number;
}

interface Slot {
  entry: RingEntry;
  /** Ours before the merge at this token, if we had one. */
  old: RingEntry | undefined;
  /** Where the entry ends in the received ring, when it came from there. */
  theirEnd: number | null;
}

function sameGrant(a: RingGrant | null, b: RingGrant | null): boolean {
  return a === b || (a !== null && b !== null && a.grantor === b.grantor && a.version === b.version);
}

/** Total order on entries for one token: the greater one wins a merge. */
export function compareEntries(a: RingEntry, b: RingEntry): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  if (a.owner !== b.owner) return a.owner < b.owner ? -1 : 1;
  if (a.free !== b.free) return a.free < b.free ? -1 : 1;
  return 0;
}

/**
 * Who held `token` as part of a span: the nearest entry before it (of
 * `entries`, in order) whose granted span covers it; its owner first, then
 * every grantee of its grants whose span covered `token` (each held it once,
 * and may have split it then).
 */
function coveringOwners(entries: readonly RingEntry[], token: number, initial: InitialSplit): PeerName[] {
  for (let k = entries.length - 1; k >= 0; k--) {
    const e = entries[k]!;
    if (e.token >= token) continue;
    const links = e.grant === null ? [] : [...e.earlier, e.grant];
    const holders = links.filter((l) => l.end > token).map((l) => l.grantee);
    const first = initial.entries.get(e.token);
    if (first !== undefined && initial.endOf(e.token) > token) holders.push(first.owner);
    if (holders.length === 0) continue;
    return grantedEnd(e, initial) > token ? [e.owner, ...holders] : holders;
  }
  return [];
}

/**
 * Whether `b` may replace what we know. At its token (`known`): a change by
 * the owner we knew, or that owner's grant of it. A new token: it must be
 * granted by the owner of the span it splits, as that owner held it: the
 * nearest entry before it whose granted span covers it, in our ring before
 * this merge (`oursBefore`) or as merged so far (`before`), since a donation
 * and the receiver's splits of it arrive in one message.
 */
function judge(
  b: RingEntry, known: RingEntry | undefined, oursBefore: readonly RingEntry[], before: readonly RingEntry[],
  initial: InitialSplit, self: PeerName, guard: RingGuard,
): Verdict {
  // Taken over (rmpeer): only while whoever it was given to is unreachable, and never from us.
  const grantee = granteeOf(b, initial);
  if (grantee !== b.owner) {
    const v = grantee === null ? 'refused' : orphaned(grantee, self, guard);
    if (v !== 'takeover') return v;
  }
  if (known !== undefined) {
    if (b.owner === known.owner && sameGrant(b.grant, known.grant)) return 'ok';
    if (chainsFrom(b, known.owner, known.version)) return 'ok';
    return orphaned(known.owner, self, guard);
  }
  const was = coveringOwners(oursBefore, b.token, initial);
  const holders = [...was, ...coveringOwners(before, b.token, initial)];
  if (holders.some((p) => chainsFrom(b, p, -1))) return 'ok';
  return was.length === 0 ? 'refused' : orphaned(was[0]!, self, guard);
}

/**
 * The entry's grants lead from `owner` (as we knew it, at `version`) to its
 * grantee: some grant was made by `owner` after that version, and each later
 * one by the grantee of the one before.
 */
function chainsFrom(b: RingEntry, owner: PeerName, version: number): boolean {
  if (b.grant === null) return false;
  const links = [...b.earlier, b.grant];
  for (let i = links.length - 1; i >= 0; i--) {
    if (links[i]!.grantor !== owner || links[i]!.version <= version) continue;
    let linked = true;
    for (let k = i + 1; k < links.length && linked; k++) linked = links[k]!.grantor === links[k - 1]!.grantee;
    if (linked) return true;
  }
  return false;
}

/**
 * Space whose owner we cannot reach may be taken by anyone who signs (rmpeer,
 * and what was done with the space since): the owner cannot speak for it, and
 * we cannot check history it alone knew. Our own space never.
 */
function orphaned(owner: PeerName, self: PeerName, guard: RingGuard): Verdict {
  if (owner === self) return 'ours';
  return guard.isReachable(owner) ? 'refused' : 'takeover';
}

type Verdict = 'ok' | 'takeover' | 'refused' | 'ours';

/**
 * Merges `incoming` (already checked for range, seed and consistency) into
 * `ours`. When ours is empty only signatures are checked (the first ring is
 * taken on trust). Throws IpamError 'auth' (a signature does not hold) or
 * 'invalid-ring' (a change to our own space that we did not sign).
 */
export function mergeRingEntries(
  range: AddressRange, self: PeerName, guard: RingGuard, ours: readonly RingEntry[], incoming: RingState,
  context: Uint8Array, initial: InitialSplit,
): MergeOutcome {
  const theirs = incoming.entries;
  const ends = new Map<number, number>();
  theirs.forEach((e, k) => ends.set(e.token, theirs[k + 1]?.token ?? range.size));
  for (const b of theirs) {
    const a = ours.find((x) => x.token === b.token);
    if (a === undefined || compareEntries(b, a) > 0) checkProofs(range, guard.signing, b, ends.get(b.token)!, incoming.keys, context, initial);
  }
  // Entries refused, or reverted because their span here would differ from the
  // one they were signed for, are left out and the rest judged again, until
  // what is taken fits together.
  let left = theirs;
  let refusedTotal = 0;
  for (;;) {
    const round = joinOnce(range, self, guard, ours, left, ends, initial);
    refusedTotal += round.refused;
    if (round.misfits.size === 0) {
      return { ...round.outcome, refused: refusedTotal };
    }
    refusedTotal -= round.refused;
    left = left.filter((e) => !round.misfits.has(e.token));
  }
}

function joinOnce(
  range: AddressRange, self: PeerName, guard: RingGuard, ours: readonly RingEntry[], theirs: readonly RingEntry[],
  ends: ReadonlyMap<number, number>, initial: InitialSplit,
): { outcome: MergeOutcome; refused: number; misfits: Set<number> } {
  const trusting = ours.length === 0;
  const slots: Slot[] = [];
  let refused = 0;
  let takeovers = 0;
  let i = 0;
  let j = 0;
  while (i < ours.length || j < theirs.length) {
    const a = ours[i];
    const b = theirs[j];
    if (a && (!b || a.token < b.token)) {
      slots.push({ entry: a, old: a, theirEnd: null });
      i++;
      continue;
    }
    const same = a !== undefined && b !== undefined && a.token === b.token ? a : undefined;
    if (same) i++;
    j++;
    if (!b || (same && compareEntries(b, same) <= 0)) {
      if (same) slots.push({ entry: same, old: same, theirEnd: null });
      continue;
    }
    const verdict: Verdict = trusting ? 'ok' : judge(b, same, ours.slice(0, i), slots.map((x) => x.entry), initial, self, guard);
    if (verdict === 'ours') {
      throw new IpamError('invalid-ring', `ring changes our range at ${range.formatOffset(b.token)} (for ${b.owner}) without our consent`);
    }
    if (verdict === 'refused') {
      refused++;
      if (same) slots.push({ entry: same, old: same, theirEnd: null });
      continue;
    }
    if (verdict === 'takeover') takeovers++;
    slots.push({ entry: b, old: same, theirEnd: ends.get(b.token)! });
  }
  const misfits = new Set<number>();
  for (let k = 0; k < slots.length; k++) {
    const s = slots[k]!;
    const end = slots[k + 1]?.entry.token ?? range.size;
    if (s.theirEnd !== null && end !== s.theirEnd) misfits.add(s.entry.token);
    // A new token cutting one of our kept entries below its free count: that token goes.
    const next = slots[k + 1];
    if (s.theirEnd === null && s.entry.free > end - s.entry.token && next !== undefined && next.old === undefined) misfits.add(next.entry.token);
  }
  const merged = slots.map((s) => s.entry);
  const lostToOthers: RingEntry[] = [];
  let changed = trusting;
  for (const s of slots) {
    if (s.entry === s.old) continue;
    changed = true;
    if (s.old !== undefined && s.old.owner === self && s.entry.owner !== self) lostToOthers.push(s.old);
  }
  return { outcome: { merged, changed, lostToOthers, refused, takeovers }, refused, misfits };
}
