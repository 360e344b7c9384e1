// Bytes of the `dns` gossip channel: a batch of store entries, each signed by
// its origin (dns/record-signature.ts), with the origins' public keys once per
// message. Decoding treats the input as hostile (common/codec.ts checks every
// length before reading); a message in an unknown version is refused by name.
// Decoding does not check signatures: the store checks those of the entries
// that would change it (store.ts merge). Trailing bytes after the last entry
// are tolerated, for forward compatibility.
//
// Message, version 2 (all integers big-endian):
//
//   +---------+-------------+---------------------------+-----------+-------------+
//   | ver u8  | keys u16    | key x keys:               | count u16 | entry x     |
//   | = 2     | <= 2048     | origin (6 B) | Ed25519    | <= 2048   | count       |
//   |         |             | public key (32 B)         |           |             |
//   +---------+-------------+---------------------------+-----------+-------------+
//
// Each origin appears once in the key table, and every entry's origin must be
// in it. Version 1 (no keys, no signatures) is refused.
//
// Entry:
//
//   +-----------+--------+----------------+-------------+--------+----------+---------+------------+-----------+
//   | origin    | flags  | container id   | name        | family | address  | version | age_s u32  | signature |
//   | 6 bytes   | u8     | u16 len + UTF-8| u16 len +   | u8     | 4 or 16  | u32     | only when  | 64 bytes  |
//   | (peer     | bit 0: | <= 300 bytes   | ASCII       | 4 | 6  | bytes    | >= 1    | tombstone: | (origin's |
//   |  name)    | tomb-  |                | <= 253      |        |          |         | seconds    |  key; see |
//   |           | stone  |                |             |        |          |         | since the  |  record-  |
//   |           |        |                |             |        |          |         | removal    | signature)|
//   +-----------+--------+----------------+-------------+--------+----------+---------+------------+-----------+
//
// Other flag bits must be zero: a future field would hide behind one, and an
// old decoder must not misread it. Ages, not timestamps, so no two clocks need
// to agree: a receiver dates the removal at now - age.

import { formatIp, ipFromBytes, ipToBytes, tryParseIp } from '../common/ip';
import { MeshReader, MeshWriter } from '../router/mesh/peer-name';
import type { PeerName } from '../router/mesh/peer-name';
import { CodedError } from '../common/errors';
import { MAX_CONTAINER_ID_BYTES, MAX_ENTRIES_PER_MESSAGE, MAX_NAME_BYTES } from './constants';
import { DnsError } from './errors';
import { FLAG_TOMBSTONE } from './record-signature';
import type { DnsEntry } from './store-entry';
import { entryProblem } from './store-entry';

export const STORE_WIRE_VERSION = 2;
const KNOWN_FLAGS = FLAG_TOMBSTONE;
const WHAT = 'dns gossip';
const KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
/** Upper bound of one encoded entry: 6 + 1 + 2 + 300 + 2 + 253 + 1 + 16 + 4 + 4 + 64. */
const MAX_ENTRY_BYTES = 6 + 1 + 2 + MAX_CONTAINER_ID_BYTES + 2 + MAX_NAME_BYTES + 1 + 16 + 4 + 4 + SIGNATURE_BYTES;
/** One message stays well below the mesh's control-message limit. */
export const MAX_MESSAGE_BYTES = 5 + MAX_ENTRIES_PER_MESSAGE * (6 + KEY_BYTES + MAX_ENTRY_BYTES);

/** Encodes entries into as many messages as needed; `nowMs` turns removal times into ages. */
export function encodeEntries(entries: readonly DnsEntry[], nowMs: number, perMessage = MAX_ENTRIES_PER_MESSAGE): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < entries.length; i += perMessage) {
    const chunk = entries.slice(i, i + perMessage);
    const keys = new Map<PeerName, Uint8Array>();
    for (const e of chunk) keys.set(e.origin, e.originKey);
    const w = new MeshWriter(64 + keys.size * 38 + chunk.length * 128);
    w.u8(STORE_WIRE_VERSION).count(keys.size);
    for (const [origin, key] of keys) w.peerName(origin).bytes(key);
    w.count(chunk.length);
    for (const e of chunk) {
      const ip = tryParseIp(e.address);
      if (ip === null) throw new RangeError(`store holds a bad address ${e.address}`);
      w.peerName(e.origin).u8(e.tombstone ? FLAG_TOMBSTONE : 0).string(e.containerId).string(e.name);
      w.u8(ip.family).bytes(ipToBytes(ip)).u32(e.version);
      if (e.tombstone) {
        const ageMs = Math.max(0, nowMs - (e.removedAtMs ?? nowMs));
        w.u32(Math.min(0xffff_ffff, Math.floor(ageMs / 1000)));
      }
      w.bytes(e.signature);
    }
    out.push(w.finish());
  }
  return out;
}

export function decodeEntries(msg: Uint8Array, nowMs: number): DnsEntry[] {
  try {
    return decodeUnchecked(msg, nowMs);
  } catch (err) {
    if (err instanceof DnsError) throw err;
    if (err instanceof CodedError) throw new DnsError(err.code === 'limit' ? 'limit' : 'decode', err.message);
    throw DnsError.decode(WHAT, err instanceof Error ? err.message : String(err));
  }
}

function decodeUnchecked(msg: Uint8Array, nowMs: number): DnsEntry[] {
  if (msg.length > MAX_MESSAGE_BYTES) throw DnsError.limit(`${WHAT} message size`, msg.length, MAX_MESSAGE_BYTES);
  const r = new MeshReader(msg, WHAT);
  const version = r.u8('version');
  if (version !== STORE_WIRE_VERSION) {
    throw new DnsError('version', `${WHAT} message is format version ${version}; this router reads version ${STORE_WIRE_VERSION}`);
  }
  const keyCount = r.count(MAX_ENTRIES_PER_MESSAGE, 'keys');
  if (keyCount * (6 + KEY_BYTES) > r.remaining) throw DnsError.decode(WHAT, `claims ${keyCount} keys but only ${r.remaining} bytes follow`);
  const keys = new Map<PeerName, Uint8Array>();
  for (let i = 0; i < keyCount; i++) {
    const origin = r.peerName('key origin');
    if (keys.has(origin)) throw DnsError.decode(WHAT, `origin ${origin} has two keys`);
    keys.set(origin, r.bytes(KEY_BYTES, 'key').slice());
  }
  const count = r.count(MAX_ENTRIES_PER_MESSAGE, 'entries');
  const out: DnsEntry[] = [];
  for (let i = 0; i < count; i++) {
    const origin = r.peerName('origin');
    const originKey = keys.get(origin);
    if (originKey === undefined) throw DnsError.decode(WHAT, `entry ${i} names origin ${origin}, which has no key in the message`);
    const flags = r.u8('flags');
    if ((flags & ~KNOWN_FLAGS) !== 0) throw DnsError.decode(WHAT, `entry ${i} has unknown flags 0x${flags.toString(16)}`);
    const containerId = r.string(MAX_CONTAINER_ID_BYTES, 'container id');
    const name = r.string(MAX_NAME_BYTES, 'name');
    const family = r.u8('family');
    if (family !== 4 && family !== 6) throw DnsError.decode(WHAT, `entry ${i} has address family ${family}`);
    const address = formatIp(ipFromBytes(r.bytes(family === 4 ? 4 : 16, 'address')));
    const entryVersion = r.u32('version');
    const tombstone = (flags & FLAG_TOMBSTONE) !== 0;
    const removedAtMs = tombstone ? nowMs - r.u32('age') * 1000 : null;
    const signature = r.bytes(SIGNATURE_BYTES, 'signature').slice();
    const e: DnsEntry = { origin, containerId, name, address, version: entryVersion, tombstone, removedAtMs, originKey, signature };
    const problem = entryProblem(e);
    if (problem !== null) throw DnsError.decode(WHAT, `entry ${i}: ${problem}`);
    out.push(e);
  }
  return out;
}
