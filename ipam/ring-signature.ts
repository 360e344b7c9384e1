// What proves a ring entry (ipam/ring.ts): who may own a token, and who last
// changed its state. Pure bytes and checks through the injected GossipSigning
// (router/mesh/gossip.ts); the ring decides what the checks mean.
//
// Each entry carries two statements, both over the ring's identity
// ("context": the range and a hash of the seed, so a signature is never valid
// in another ring):
//
//   grant  = "weave-ts ipam grant v2"  | context | token u32 | end u32 | grantee (6 B)
//            | grant version u53
//            signed by the grantor: the peer that owned [token, end) and gave
//            it to the grantee (itself when it split its own span). Absent for
//            an entry of the initial split. An rmpeer takeover keeps the grant
//            (or the initial split) as the proof of what it takes, and the
//            taker signs the state as the new owner; receivers take it only
//            while the grantee is unreachable.
//            The grants before it travel along (at most MAX_GRANT_HISTORY,
//            oldest first), each over the same token, so a peer that missed
//            some changes of owner can follow them from the owner it knew.
//            A span only shrinks after (tokens are never removed), so the
//            entry's end may never pass the grant's: no one can stretch space
//            given to them over a token a receiver has not heard of yet.
//   state  = "weave-ts ipam state v2"  | context | token u32 | end u32 | owner (6 B)
//            | version u53 | free u32 | grant version u53 (0 without a grant)
//            signed by whoever made this version: the grantor when version is
//            the grant's version (the donor wrote the entry as it gave it),
//            else the owner (its own splits and free counts). Absent only for
//            an untouched entry of the initial split (version 0).
//
// The grant outlives the owner's later changes, so a peer that missed the
// donation itself can still check it: the grantor must be the owner it knew.

import { createHash } from 'node:crypto';
import { ipToBytes } from '../common/ip';
import type { GossipSigning } from '../router/mesh/gossip';
import type { PeerName } from '../router/mesh/peer-name';
import { MeshWriter } from '../router/mesh/peer-name';
import type { AddressRange } from './address-range';
import { IpamError } from './errors';
import type { RingEntry } from './ring';

export const SIGNATURE_BYTES = 64;
export const KEY_BYTES = 32;
const GRANT_LABEL = new TextEncoder().encode('weave-ts ipam grant v2');
const STATE_LABEL = new TextEncoder().encode('weave-ts ipam state v2');

export interface RingGrant {
  readonly grantor: PeerName;
  /** Who it was given to: the owner, unless the entry was taken over since (rmpeer), which keeps the grant as proof. */
  readonly grantee: PeerName;
  /** End of the span granted (exclusive offset). */
  readonly end: number;
  /** The entry's version when the grant was made. */
  readonly version: number;
  readonly signature: Uint8Array;
}

/** The fields a state signature covers. */
export interface SignedState {
  readonly token: number;
  readonly owner: PeerName;
  readonly version: number;
  readonly free: number;
  readonly grant: RingGrant | null;
}

/** The ring's identity in every signature: its range and seed. */
export function ringContext(range: AddressRange, seed: readonly PeerName[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of seed) h.update(p);
  const w = new MeshWriter(64);
  w.u8(range.cidr.family).bytes(ipToBytes(range.cidr.network)).u8(range.cidr.prefixLen).bytes(h.digest());
  return w.finish();
}

export function grantBytes(context: Uint8Array, token: number, end: number, owner: PeerName, grantVersion: number): Uint8Array {
  return new MeshWriter(96).bytes(GRANT_LABEL).bytes(context).u32(token).u32(end).peerName(owner).u53(grantVersion).finish();
}

/** `end`: where the entry's span ends (the next token, or the range size). */
export function stateBytes(context: Uint8Array, e: SignedState, end: number): Uint8Array {
  return new MeshWriter(112).bytes(STATE_LABEL).bytes(context).u32(e.token).u32(end).peerName(e.owner)
    .u53(e.version).u32(e.free).u53(e.grant?.version ?? 0).finish();
}

/** Who must have signed this version of the entry's state. */
export function stateSigner(e: SignedState): PeerName {
  return e.grant !== null && e.version === e.grant.version && e.owner === e.grant.grantee ? e.grant.grantor : e.owner;
}

/** Who the entry was given to (by its grant, else by the initial split); another owner took it over. */
export function granteeOf(e: RingEntry, initial: InitialSplit): PeerName | null {
  return e.grant !== null ? e.grant.grantee : initial.entries.get(e.token)?.owner ?? null;
}

export function makeGrant(
  signing: GossipSigning, self: PeerName, context: Uint8Array, token: number, end: number, owner: PeerName, version: number,
): RingGrant {
  return { grantor: self, grantee: owner, end, version, signature: signing.sign(grantBytes(context, token, end, owner, version)) };
}

/** Keys of the peers whose signatures a ring carries, by name. */
export type RingKeys = ReadonlyMap<PeerName, Uint8Array>;

/** Checks a signature by `signer` with the key the message gave for it; false when there is none. */
export function verifiedBy(signing: GossipSigning, keys: RingKeys, signer: PeerName, message: Uint8Array, signature: Uint8Array): boolean {
  const key = keys.get(signer);
  return key !== undefined && signing.verify(signer, key, message, signature);
}

/**
 * The signatures an entry carries hold: its grant by the grantor, its state
 * by whoever made that version; without them it must be exactly what the
 * initial split made (`initial`, by token). Throws IpamError('auth'): honest
 * peers never send such an entry, so the whole message goes.
 */
export function checkProofs(
  range: AddressRange, signing: GossipSigning, b: RingEntry, end: number, keys: RingKeys, context: Uint8Array, initial: InitialSplit,
): void {
  const fail = (why: string): never => {
    throw new IpamError('auth', `ring entry at ${range.formatOffset(b.token)} (owner ${b.owner}, version ${b.version}): ${why}`);
  };
  const first = initial.entries.get(b.token);
  if (b.grant === null) {
    if (first === undefined || end > initial.endOf(b.token)) fail('no grant, and not an entry of the initial split');
  } else if (!verifiedBy(signing, keys, b.grant.grantor, grantBytes(context, b.token, b.grant.end, b.grant.grantee, b.grant.version), b.grant.signature)) {
    fail(`the grant is not signed by ${b.grant.grantor}`);
  } else if (b.grant.version > b.version || end > b.grant.end) {
    fail(`granted [${b.token}, ${b.grant.end}) at version ${b.grant.version}: the entry reaches ${end} at version ${b.version}`);
  }
  const links = b.grant === null ? b.earlier : [...b.earlier, b.grant];
  if (b.grant === null && b.earlier.length > 0) fail('earlier grants without a grant');
  for (let k = 0; k < links.length - 1; k++) {
    const l = links[k]!;
    if (l.version >= links[k + 1]!.version || l.end < links[k + 1]!.end) fail(`earlier grant ${k} is not older and wider than the next`);
    if (!verifiedBy(signing, keys, l.grantor, grantBytes(context, b.token, l.end, l.grantee, l.version), l.signature)) {
      fail(`earlier grant ${k} is not signed by ${l.grantor}`);
    }
  }
  if (b.signature === null) {
    if (first === undefined || b.owner !== first.owner || b.version !== 0 || b.free !== first.free || b.grant !== null || end !== initial.endOf(b.token)) {
      fail('unsigned, and not as the initial split made it');
    }
  } else if (!verifiedBy(signing, keys, stateSigner(b), stateBytes(context, b, end), b.signature)) {
    fail(`the state is not signed by ${stateSigner(b)}`);
  }
}

/** The initial split of a ring's seed, by token, with each span's end. */
export class InitialSplit {
  readonly entries: ReadonlyMap<number, RingEntry>;
  private readonly ends = new Map<number, number>();

  constructor(entries: readonly RingEntry[], size: number) {
    this.entries = new Map(entries.map((e) => [e.token, e]));
    entries.forEach((e, i) => this.ends.set(e.token, entries[i + 1]?.token ?? size));
  }

  /** Where an initial entry's span ends; 0 for a token the split did not make. */
  endOf(token: number): number {
    return this.ends.get(token) ?? 0;
  }
}

/** How far an entry's owner was given space: its grant's end, or its initial span's. */
export function grantedEnd(e: RingEntry, initial: InitialSplit): number {
  return e.grant !== null ? e.grant.end : initial.endOf(e.token);
}
