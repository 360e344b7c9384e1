// What a DNS record's origin signs, so that only the peer a record names as
// its origin can make, change or remove it (router/mesh/gossip.ts
// GossipSigning; the key in a message is checked against the origin's name
// there). Pure bytes and calls into the injected signer; no state.
//
// Signed bytes (version 2 of the dns channel, store-codec.ts):
//
//   "weave-ts dns entry v2" | origin (6 B) | flags u8 (bit 0 tombstone)
//   | container id (u16 len + UTF-8) | name (u16 len + ASCII)
//   | family u8 | address (4 or 16 B) | version u32
//
// The age of a removal is not signed: it changes as the entry travels. A
// relay can make a removal look older or younger, so it is forgotten earlier
// or later; it cannot undo it or revive the record (that takes a higher
// version, which only the origin can sign).

import { ipToBytes, tryParseIp } from '../common/ip';
import type { GossipSigning } from '../router/mesh/gossip';
import { MeshWriter } from '../router/mesh/peer-name';
import type { DnsEntry } from './store-entry';

const LABEL = new TextEncoder().encode('weave-ts dns entry v2');
export const FLAG_TOMBSTONE = 0x01;

/** The fields of an entry that its signature covers. */
export type SignedFields = Pick<DnsEntry, 'origin' | 'containerId' | 'name' | 'address' | 'version' | 'tombstone'>;

export function recordSigningBytes(e: SignedFields): Uint8Array {
  const ip = tryParseIp(e.address);
  if (ip === null) throw new RangeError(`record has a bad address ${e.address}`);
  const w = new MeshWriter(64 + e.containerId.length + e.name.length);
  w.bytes(LABEL).peerName(e.origin).u8(e.tombstone ? FLAG_TOMBSTONE : 0).string(e.containerId).string(e.name);
  w.u8(ip.family).bytes(ipToBytes(ip)).u32(e.version);
  return w.finish();
}

/** Our entry, signed by us (the store's own changes and corrections). */
export function signRecord(e: Omit<DnsEntry, 'originKey' | 'signature'>, signing: GossipSigning): DnsEntry {
  return { ...e, originKey: signing.publicKey, signature: signing.sign(recordSigningBytes(e)) };
}

/** True when the entry's origin signed exactly these fields with the key the mesh knows for it. */
export function recordAuthentic(e: DnsEntry, signing: GossipSigning): boolean {
  return signing.verify(e.origin, e.originKey, recordSigningBytes(e), e.signature);
}
