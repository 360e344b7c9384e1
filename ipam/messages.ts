// The IPAM wire format: every message on the 'ipam' gossip channel, and the
// ring bytes kept on disk. Codec only: bytes to typed values and back, no
// state. Decoding treats input as hostile: each count is checked against a
// cap before anything is allocated, unknown versions and kinds are refused by
// name, and the whole message is decoded and validated before the caller
// applies any of it. Trailing bytes are tolerated (forward compatibility).
//
// Envelope (all integers big-endian):
//
//   0        1        2
//   +--------+--------+---------------------------------------
//   | ver=1  | kind   | body
//   +--------+--------+---------------------------------------
//   kind 1 = ring, 2 = consensus, 3 = space request, 4 = space denied
//
// range / cidr (used by all bodies):
//   +--------+------------------------------+--------+
//   | family | network address: 4 or 16 B   | prefix |
//   +--------+------------------------------+--------+
//   family 4 or 6; host bits must be zero
//
// ring body (version 2; version 1 had no keys, flags, grants or signatures):
//   range | seedCount u16 | seedCount x peer name (6 B, sorted, distinct)
//         | keyCount u16 | keyCount x (peer name 6 B | Ed25519 public key 32 B)
//         | entryCount u16 | entryCount x entry
//   entry (23 B, plus 88 B with a grant, plus 64 B when signed):
//   +-----------+-----------+-----------------+----------+--------+
//   | token u32 | owner 6 B | version u64<2^53| free u32 | flags  |
//   +-----------+-----------+-----------------+----------+--------+
//   flags bit 0: a grant follows: grantor 6 B | grantee 6 B | end u32 | grant version u64 | signature 64 B
//   flags bit 2: earlier grants follow: count u8 (<= MAX_GRANT_HISTORY) x grant as above
//   flags bit 1: the state signature follows (64 B), last; other bits must be zero.
//   What the signatures cover and who makes them: ipam/ring-signature.ts. The
//   key table holds each signer once; its names must be distinct. Decoding does
//   not verify: the ring does, for the entries that would change it.
//
// consensus body:
//   range | initPeerCount u16 | nodeCount u16 | nodeCount x record
//   record:
//   +---------+-----------------+--------+---------------------+-------------------------------+
//   | node 6B | version u64     | flags  | promise (if bit 0)  | accepted (if bit 1)           |
//   +---------+-----------------+--------+---------------------+-------------------------------+
//   promise  = round u32 | proposer 6 B
//   accepted = round u32 | proposer 6 B | valueCount u16 | valueCount x peer name
//
// space request body (unicast to a peer that owns space), and
// space denied body (its answer when it has nothing to give there):
//   range | subnet cidr (inside range; a single address asks for exactly it)

import { ipFromBytes, ipToBytes } from '../common/ip';
import { Cidr } from '../common/ip-cidr';
import { MeshReader, MeshWriter } from '../router/mesh/peer-name';
import type { PeerName } from '../router/mesh/peer-name';
import { AddressRange } from './address-range';
import { IPAM_WIRE_VERSION, MAX_CONSENSUS_NODES, MAX_GRANT_HISTORY, MAX_IPAM_MESSAGE_BYTES, MAX_RING_ENTRIES, MAX_SEED_PEERS } from './constants';
import { IpamError } from './errors';
import type { AcceptedValue, Claims, NodeClaim, ProposalId } from './paxos';
import { validateClaim } from './paxos';
import type { RingEntry, RingState } from './ring';
import { validateRingState } from './ring';
import type { RingGrant } from './ring-signature';
import { KEY_BYTES, SIGNATURE_BYTES } from './ring-signature';

const ENTRY_FLAG_GRANT = 1;
const ENTRY_FLAG_SIGNED = 2;
const ENTRY_FLAG_EARLIER = 4;
/** token + owner + version + free + flags: the least an entry takes. */
const MIN_ENTRY_BYTES = 4 + 6 + 8 + 4 + 1;

export type IpamMessageKind = 'ring' | 'consensus' | 'space-request' | 'space-denied';

const KIND_CODE: Record<IpamMessageKind, number> = { ring: 1, consensus: 2, 'space-request': 3, 'space-denied': 4 };

export interface ConsensusMessage {
  range: AddressRange;
  initPeerCount: number;
  claims: Claims;
}

export interface SpaceRequest {
  range: AddressRange;
  subnet: Cidr;
}

export type IpamMessage =
  | { kind: 'ring'; ring: RingState }
  | { kind: 'consensus'; consensus: ConsensusMessage }
  | { kind: 'space-request'; request: SpaceRequest }
  | { kind: 'space-denied'; request: SpaceRequest };

// ---------------------------------------------------------------------------
// encode

function writeCidr(w: MeshWriter, c: Cidr): void {
  w.u8(c.family).bytes(ipToBytes(c.network)).u8(c.prefixLen);
}

function writeRingBody(w: MeshWriter, ring: RingState): void {
  writeCidr(w, ring.range.cidr);
  w.count(ring.seed.length);
  for (const p of ring.seed) w.peerName(p);
  w.count(ring.keys.size);
  for (const [p, key] of ring.keys) w.peerName(p).bytes(key);
  w.count(ring.entries.length);
  for (const e of ring.entries) {
    w.u32(e.token).peerName(e.owner).u53(e.version).u32(e.free);
    const earlier = e.earlier.length > 0 ? ENTRY_FLAG_EARLIER : 0;
    w.u8((e.grant !== null ? ENTRY_FLAG_GRANT : 0) | (e.signature !== null ? ENTRY_FLAG_SIGNED : 0) | earlier);
    if (e.grant !== null) writeGrant(w, e.grant);
    if (earlier !== 0) {
      w.u8(e.earlier.length);
      for (const g of e.earlier) writeGrant(w, g);
    }
    if (e.signature !== null) w.bytes(e.signature);
  }
}

function writeGrant(w: MeshWriter, g: RingGrant): void {
  w.peerName(g.grantor).peerName(g.grantee).u32(g.end).u53(g.version).bytes(g.signature);
}

function readGrant(r: MeshReader): RingGrant {
  const grantor = r.peerName('grantor');
  const grantee = r.peerName('grantee');
  const end = r.u32('grant end');
  return { grantor, grantee, end, version: r.u53('grant version'), signature: r.bytes(SIGNATURE_BYTES, 'grant signature').slice() };
}

function writeId(w: MeshWriter, id: ProposalId): void {
  w.u32(id.round).peerName(id.proposer);
}

function writeConsensusBody(w: MeshWriter, m: ConsensusMessage): void {
  writeCidr(w, m.range.cidr);
  w.u16(m.initPeerCount);
  w.count(m.claims.size);
  for (const [node, c] of m.claims) {
    w.peerName(node).u53(c.version).u8((c.promise ? 1 : 0) | (c.accepted ? 2 : 0));
    if (c.promise) writeId(w, c.promise);
    if (c.accepted) {
      writeId(w, c.accepted.id);
      w.count(c.accepted.value.length);
      for (const p of c.accepted.value) w.peerName(p);
    }
  }
}

export function encodeIpamMessage(msg: IpamMessage): Uint8Array {
  const w = new MeshWriter(512);
  w.u8(IPAM_WIRE_VERSION).u8(KIND_CODE[msg.kind]);
  switch (msg.kind) {
    case 'ring': writeRingBody(w, msg.ring); break;
    case 'consensus': writeConsensusBody(w, msg.consensus); break;
    case 'space-request':
    case 'space-denied':
      writeCidr(w, msg.request.range.cidr);
      writeCidr(w, msg.request.subnet);
      break;
  }
  return w.finish();
}

/** The ring alone (no envelope), as persisted. */
export function encodeRing(ring: RingState): Uint8Array {
  const w = new MeshWriter(512);
  w.u8(IPAM_WIRE_VERSION);
  writeRingBody(w, ring);
  return w.finish();
}

export function encodeClaims(m: ConsensusMessage): Uint8Array {
  const w = new MeshWriter(256);
  w.u8(IPAM_WIRE_VERSION);
  writeConsensusBody(w, m);
  return w.finish();
}

// ---------------------------------------------------------------------------
// decode

/** MeshReader throws the router's error type; IPAM callers see IpamError only. */
function asIpamError(err: unknown, what: string): IpamError {
  if (err instanceof IpamError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return code === 'limit' ? new IpamError('limit', message, { cause: err }) : IpamError.decode(what, message, err);
}

function readCidr(r: MeshReader, what: string, field: string): Cidr {
  const family = r.u8(`${field} family`);
  if (family !== 4 && family !== 6) throw IpamError.decode(what, `${field} family ${family} is neither 4 nor 6`);
  const address = ipFromBytes(r.bytes(family === 4 ? 4 : 16, `${field} address`));
  const prefixLen = r.u8(`${field} prefix`);
  if (prefixLen > (family === 4 ? 32 : 128)) throw IpamError.decode(what, `${field} prefix /${prefixLen} for IPv${family}`);
  const c = Cidr.containing(address, prefixLen);
  if (c.base !== address.value) throw IpamError.decode(what, `${field} ${c.toString()} has host bits set`);
  return c;
}

function readRange(r: MeshReader, what: string): AddressRange {
  const c = readCidr(r, what, 'range');
  try {
    return new AddressRange(c);
  } catch (err) {
    throw IpamError.decode(what, err instanceof Error ? err.message : String(err));
  }
}

function readRingBody(r: MeshReader, what: string): RingState {
  const range = readRange(r, what);
  const seedCount = r.count(MAX_SEED_PEERS, 'seed');
  const seed: PeerName[] = [];
  for (let i = 0; i < seedCount; i++) seed.push(r.peerName('seed peer'));
  const keyCount = r.count(MAX_RING_ENTRIES, 'key');
  if (r.remaining < keyCount * (6 + KEY_BYTES)) throw IpamError.decode(what, `${keyCount} keys announced, only ${r.remaining} bytes left`);
  const keys = new Map<PeerName, Uint8Array>();
  for (let i = 0; i < keyCount; i++) {
    const p = r.peerName('key owner');
    if (keys.has(p)) throw IpamError.decode(what, `two keys for ${p}`);
    keys.set(p, r.bytes(KEY_BYTES, 'key').slice());
  }
  const entryCount = r.count(MAX_RING_ENTRIES, 'entry');
  // Refuse a count the message cannot hold before looping.
  if (r.remaining < entryCount * MIN_ENTRY_BYTES) throw IpamError.decode(what, `${entryCount} entries announced, only ${r.remaining} bytes left`);
  const entries: RingEntry[] = [];
  for (let i = 0; i < entryCount; i++) {
    const token = r.u32('token');
    const owner = r.peerName('owner');
    const version = r.u53('version');
    const free = r.u32('free');
    const flags = r.u8('entry flags');
    if ((flags & ~(ENTRY_FLAG_GRANT | ENTRY_FLAG_SIGNED | ENTRY_FLAG_EARLIER)) !== 0) {
      throw IpamError.decode(what, `entry ${i} has unknown flags 0x${flags.toString(16)}`);
    }
    const grant = (flags & ENTRY_FLAG_GRANT) !== 0 ? readGrant(r) : null;
    const earlier: RingGrant[] = [];
    if ((flags & ENTRY_FLAG_EARLIER) !== 0) {
      const n = r.u8('earlier grants');
      if (n === 0 || n > MAX_GRANT_HISTORY) throw IpamError.decode(what, `entry ${i} carries ${n} earlier grants (1 to ${MAX_GRANT_HISTORY})`);
      for (let k = 0; k < n; k++) earlier.push(readGrant(r));
    }
    const signature = (flags & ENTRY_FLAG_SIGNED) !== 0 ? r.bytes(SIGNATURE_BYTES, 'state signature').slice() : null;
    entries.push({ token, owner, version, free, grant, earlier, signature });
  }
  const ring: RingState = { range, seed, entries, keys };
  validateRingState(ring, what);
  return ring;
}

function readId(r: MeshReader): ProposalId {
  return { round: r.u32('round'), proposer: r.peerName('proposer') };
}

function readConsensusBody(r: MeshReader, what: string): ConsensusMessage {
  const range = readRange(r, what);
  const initPeerCount = r.u16('initPeerCount');
  if (initPeerCount < 1) throw IpamError.decode(what, 'initPeerCount is 0');
  const n = r.count(MAX_CONSENSUS_NODES, 'node');
  const claims = new Map<PeerName, NodeClaim>();
  for (let i = 0; i < n; i++) {
    const node = r.peerName('node');
    const version = r.u53('version');
    const flags = r.u8('flags');
    if ((flags & ~3) !== 0) throw IpamError.decode(what, `unknown record flags 0x${flags.toString(16)}`);
    const promise = (flags & 1) !== 0 ? readId(r) : null;
    let accepted: AcceptedValue | null = null;
    if ((flags & 2) !== 0) {
      const id = readId(r);
      const count = r.count(MAX_SEED_PEERS, 'value');
      const value: PeerName[] = [];
      for (let k = 0; k < count; k++) value.push(r.peerName('value peer'));
      accepted = { id, value };
    }
    if (claims.has(node)) throw IpamError.decode(what, `node ${node} appears twice`);
    const claim: NodeClaim = { version, promise, accepted };
    validateClaim(node, claim, what);
    claims.set(node, claim);
  }
  return { range, initPeerCount, claims };
}

function checkVersion(r: MeshReader, what: string): void {
  const v = r.u8('version');
  if (v !== IPAM_WIRE_VERSION) throw IpamError.decode(what, `version ${v}, we speak ${IPAM_WIRE_VERSION}`);
}

export function decodeIpamMessage(bytes: Uint8Array): IpamMessage {
  const what = 'ipam message';
  if (bytes.length > MAX_IPAM_MESSAGE_BYTES) throw IpamError.limit(`${what} size`, bytes.length, MAX_IPAM_MESSAGE_BYTES);
  try {
    const r = new MeshReader(bytes, what);
    checkVersion(r, what);
    const kind = r.u8('kind');
    switch (kind) {
      case 1: return { kind: 'ring', ring: readRingBody(r, 'ipam ring') };
      case 2: return { kind: 'consensus', consensus: readConsensusBody(r, 'ipam consensus') };
      case 3:
      case 4: {
        const range = readRange(r, what);
        const subnet = readCidr(r, what, 'subnet');
        if (!range.cidr.covers(subnet)) throw IpamError.decode(what, `requested ${subnet.toString()} is outside ${range.toString()}`);
        return { kind: kind === 3 ? 'space-request' : 'space-denied', request: { range, subnet } };
      }
      default:
        throw IpamError.decode(what, `unknown kind ${kind}`);
    }
  } catch (err) {
    throw asIpamError(err, what);
  }
}

export function decodeRing(bytes: Uint8Array): RingState {
  try {
    const r = new MeshReader(bytes, 'stored ring');
    checkVersion(r, 'stored ring');
    return readRingBody(r, 'stored ring');
  } catch (err) {
    throw asIpamError(err, 'stored ring');
  }
}

export function decodeClaims(bytes: Uint8Array): ConsensusMessage {
  try {
    const r = new MeshReader(bytes, 'stored consensus');
    checkVersion(r, 'stored consensus');
    return readConsensusBody(r, 'stored consensus');
  } catch (err) {
    throw asIpamError(err, 'stored consensus');
  }
}
