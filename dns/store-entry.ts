// One DNS record entry as the store holds it and gossip carries it: its
// fields, its key, the checks every entry from the wire must pass (treated as
// hostile) and the order in which one version of an entry replaces another
// (the CRDT's merge rule; see dns/store.ts). Pure.

import { canonicalIp } from '../common/ip';
import type { PeerName } from '../router/mesh/peer-name';
import { MAX_CONTAINER_ID_BYTES } from './constants';
import { DnsError } from './errors';
import { isNormalName } from './names';

/** Versions travel as u32. */
export const MAX_VERSION = 0xffff_ffff;

export interface DnsEntry {
  readonly origin: PeerName;
  /** Docker id, netns:NAME, pid:PID, or "weave:api" for names added by hand without a container. */
  readonly containerId: string;
  /** Normal form: lower case, fully qualified, no trailing dot. */
  readonly name: string;
  /** Canonical text (common/ip.ts). */
  readonly address: string;
  /** 1 and up; each change by the origin adds one. */
  readonly version: number;
  readonly tombstone: boolean;
  /** Local-clock instant the origin removed it (from the age on the wire); null for a live record. */
  readonly removedAtMs: number | null;
  /** The origin's public key, and its signature over the entry (record-signature.ts). */
  readonly originKey: Uint8Array;
  readonly signature: Uint8Array;
}

export function entryKey(e: Pick<DnsEntry, 'origin' | 'containerId' | 'name' | 'address'>): string {
  // Container ids never contain control characters (validateContainerId), so NUL separates safely.
  return `${e.origin}\u0000${e.containerId}\u0000${e.name}\u0000${e.address}`;
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const encoder = new TextEncoder();

/** Container ids are printable, non-empty and short. Throws DnsError.config. */
export function validateContainerId(id: unknown): string {
  if (typeof id !== 'string' || id === '' || CONTROL_CHARS.test(id) || encoder.encode(id).length > MAX_CONTAINER_ID_BYTES) {
    throw DnsError.config(`container id must be printable text of 1 to ${MAX_CONTAINER_ID_BYTES} bytes, got ${JSON.stringify(id)}`);
  }
  return id;
}

/** Checks one entry's fields as if hostile; returns a reason or null. */
export function entryProblem(e: DnsEntry): string | null {
  if (!isNormalName(e.name)) return `name ${JSON.stringify(e.name)} is not a valid host name`;
  if (canonicalIp(e.address) !== e.address) return `address ${JSON.stringify(e.address)} is not a canonical IP address`;
  if (typeof e.containerId !== 'string' || e.containerId === '' || CONTROL_CHARS.test(e.containerId) ||
    encoder.encode(e.containerId).length > MAX_CONTAINER_ID_BYTES) {
    return `container id ${JSON.stringify(e.containerId)} is empty, too long or has control characters`;
  }
  if (!Number.isInteger(e.version) || e.version < 1 || e.version > MAX_VERSION) return `version ${e.version} is out of range`;
  if (e.tombstone !== (e.removedAtMs !== null)) return 'a removal must carry its time, a record must not';
  return null;
}

/** True when `a` replaces `b` (same key). The order of the merge; see the file comment. */
export function supersedes(a: Pick<DnsEntry, 'version' | 'tombstone' | 'removedAtMs'>, b: Pick<DnsEntry, 'version' | 'tombstone' | 'removedAtMs'>): boolean {
  if (a.version !== b.version) return a.version > b.version;
  if (a.tombstone !== b.tombstone) return a.tombstone;
  if (a.tombstone && b.tombstone) return (a.removedAtMs as number) < (b.removedAtMs as number);
  return false;
}
