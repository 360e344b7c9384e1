// The topology store: every known peer's entry, gossiped on the "topology"
// channel, plus the wire format for it. Each peer owns its entry and only it
// changes it; everywhere else the newest (incarnation, version) wins, with a
// content tie-break so merge is commutative, associative and idempotent.
// Each entry carries its owner's public key and the owner's signature over it
// (router/mesh/peer-key.ts): an entry that would change our state is applied
// only if the signature is good and the key is the one the name derives from
// and the mesh first saw for it (signed-gossip.ts), so nobody else can write a
// peer's entry. Forged entries are dropped and counted; the rest of the update
// still applies.
// Pure state: it must never do I/O, read a clock, or change any entry but our
// own except by merging an update; a rejected update leaves it untouched.
//
// Wire layout (all integers big-endian; strings are u16 length + UTF-8):
//
//   +--------+-----------------+
//   | u8 fmt | u16 entry count |   fmt = 2; count <= MAX_PEERS
//   +--------+-----------------+
//   then per entry:
//   +-----------+-----------------+-------------------+-----------------+-------------+----------------------+
//   | name (6B) | public key (32B)| nickname (<= 64B) | incarnation u53 | version u53 | u16 connection count |
//   +-----------+-----------------+-------------------+-----------------+-------------+----------------------+
//     (u53 = 8 bytes, high 11 bits zero)        connection count <= MAX_CONNECTIONS_PER_PEER
//   then per connection:
//   +-----------+--------------------+----------+
//   | name (6B) | address (<= 262B)  | u8 flags |   flags: bit0 outbound, bit1 established,
//   +-----------+--------------------+----------+          other bits must be zero
//   then the entry's signature (64 B, Ed25519 by the public key) over
//     "weave-ts topology entry v2" || the entry's bytes from its name to its
//     last connection, connections in canonical order (peer.ts).
//
// Format 1 (no key, no signature) is refused by name. Trailing bytes after the
// last entry are tolerated for forward compatibility (docs/architecture.md,
// wire formats); anything that changes the meaning of the fields bumps fmt.

import { MeshReader, MeshWriter } from './peer-name';
import { RouterError } from './errors';
import type { PeerName } from './peer-name';
import { PEER_NAME_BYTES, comparePeerNames } from './peer-name';
import type { PeerConnection, PeerEntry } from './peer';
import { canonicalConnections, comparePeerEntries, connectionFlags, sameConnections } from './peer';
import type { GossipSigning } from './gossip';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from './peer-key';
import { Reachability } from './reachability';

export const TOPOLOGY_FORMAT_VERSION = 2;
/** Entries per update, and also the most peers one store will hold, so its full encoding always decodes. */
export const MAX_PEERS = 10000;
export const MAX_CONNECTIONS_PER_PEER = 1024;
export const MAX_NICKNAME_BYTES = 64;
/** A bracketed IPv6 literal with zone plus ":65535" fits; DNS names are at most 253. */
export const MAX_ADDRESS_BYTES = 262;

const FLAG_OUTBOUND = 1;
const FLAG_ESTABLISHED = 2;
const KNOWN_FLAGS = FLAG_OUTBOUND | FLAG_ESTABLISHED;
/** name + key + nickname length + incarnation + version + connection count + signature: the least an entry can take. */
const MIN_ENTRY_BYTES = PEER_NAME_BYTES + PUBLIC_KEY_BYTES + 2 + 8 + 8 + 2 + SIGNATURE_BYTES;
/** name + address length + flags. */
const MIN_CONNECTION_BYTES = PEER_NAME_BYTES + 2 + 1;
const WHAT = 'topology update';
const SIGNATURE_LABEL = new TextEncoder().encode('weave-ts topology entry v2');

const textEncoder = new TextEncoder();

/** An entry as held and gossiped: with its owner's key and signature. */
export interface SignedPeerEntry extends PeerEntry {
  readonly publicKey: Uint8Array;
  readonly signature: Uint8Array;
}

export interface PeersCounters {
  /** Updates refused because an entry's signature or key did not hold. */
  topologyEntriesRefused: number;
}

function freezeEntry(e: SignedPeerEntry): SignedPeerEntry {
  const conns = e.connections.map((c) => Object.freeze({ ...c }));
  return Object.freeze({
    name: e.name, nickname: e.nickname, incarnation: e.incarnation, version: e.version,
    connections: Object.freeze(conns), publicKey: e.publicKey, signature: e.signature,
  });
}

/**
 * Each stored entry's body as encoded (name to last connection, canonical
 * order), made once when its signature is made or checked: an encoding then
 * copies bytes instead of re-encoding every entry, which in a large mesh was
 * much of what gossip cost. Keyed by the frozen entry, so it goes with it.
 */
const entryBodies = new WeakMap<SignedPeerEntry, Uint8Array>();

/** Whether `buf` holds exactly `body` at `offset`. */
function bytesAt(buf: Uint8Array, offset: number, body: Uint8Array): boolean {
  if (offset + body.length > buf.length) return false;
  for (let i = 0; i < body.length; i++) if (buf[offset + i] !== body[i]) return false;
  return true;
}

function writeEntryBody(w: MeshWriter, e: PeerEntry, publicKey: Uint8Array): void {
  w.peerName(e.name).bytes(publicKey).string(e.nickname).u53(e.incarnation).u53(e.version).count(e.connections.length);
  for (const c of e.connections) w.peerName(c.name).string(c.address).u8(connectionFlags(c));
}

/** What an entry's owner signs: the label and the entry's canonical bytes. */
export function topologySigningBytes(e: PeerEntry, publicKey: Uint8Array): Uint8Array {
  const w = new MeshWriter(128 + e.connections.length * 32);
  w.bytes(SIGNATURE_LABEL);
  writeEntryBody(w, { ...e, connections: canonicalConnections(e.connections) }, publicKey);
  return w.finish();
}

/**
 * Parses a whole update into canonical entries without looking at any state.
 * Throws RouterError 'decode' or 'limit'; counts are checked against both the
 * cap and the bytes actually present before anything sized by them is made.
 */
export function decodeTopologyUpdate(bytes: Uint8Array): SignedPeerEntry[] {
  return decodeEntries(bytes, null);
}

/**
 * decodeTopologyUpdate, leaving out every entry whose body is byte for byte
 * the one `heldBody` gives for its name: that is the entry we hold (a valid
 * encoding, so nothing in it needs checking), and most of a full state is
 * such entries, so they cost a comparison instead of a decode.
 */
function decodeEntries(bytes: Uint8Array, heldBody: ((name: PeerName) => Uint8Array | undefined) | null): SignedPeerEntry[] {
  const r = new MeshReader(bytes, WHAT);
  const fmt = r.u8('format version');
  if (fmt !== TOPOLOGY_FORMAT_VERSION) {
    throw RouterError.decode(WHAT, `unknown format version ${fmt} (this peer speaks ${TOPOLOGY_FORMAT_VERSION})`);
  }
  const entryCount = r.count(MAX_PEERS, 'entry');
  if (entryCount * MIN_ENTRY_BYTES > r.remaining) {
    throw RouterError.decode(WHAT, `claims ${entryCount} entries but only ${r.remaining} bytes follow`);
  }
  const seen = new Set<string>();
  const entries: SignedPeerEntry[] = [];
  for (let i = 0; i < entryCount; i++) {
    const bodyStart = r.offset;
    const name = r.peerName('entry name');
    if (seen.has(name)) throw RouterError.decode(WHAT, `peer ${name} appears twice`);
    seen.add(name);
    const held = heldBody?.(name);
    if (held !== undefined && bytesAt(bytes, bodyStart, held)) {
      r.bytes(held.length - PEER_NAME_BYTES, 'entry');
      r.bytes(SIGNATURE_BYTES, 'signature');
      continue;
    }
    const publicKey = r.bytes(PUBLIC_KEY_BYTES, 'public key').slice();
    const nickname = r.string(MAX_NICKNAME_BYTES, 'nickname');
    const incarnation = r.u53('incarnation');
    const version = r.u53('version');
    const connCount = r.count(MAX_CONNECTIONS_PER_PEER, 'connection');
    if (connCount * MIN_CONNECTION_BYTES > r.remaining) {
      throw RouterError.decode(WHAT, `peer ${name} claims ${connCount} connections but only ${r.remaining} bytes follow`);
    }
    const conns: PeerConnection[] = [];
    const remotes = new Set<string>();
    for (let j = 0; j < connCount; j++) {
      const remote = r.peerName('connection name');
      const address = r.string(MAX_ADDRESS_BYTES, 'connection address');
      const flags = r.u8('connection flags');
      if (remote === name) throw RouterError.decode(WHAT, `peer ${name} lists a connection to itself`);
      if (remotes.has(remote)) throw RouterError.decode(WHAT, `peer ${name} lists ${remote} twice`);
      if ((flags & ~KNOWN_FLAGS) !== 0) {
        throw RouterError.decode(WHAT, `peer ${name} connection to ${remote} has unknown flag bits 0x${flags.toString(16)}`);
      }
      remotes.add(remote);
      conns.push({ name: remote, address, outbound: (flags & FLAG_OUTBOUND) !== 0, established: (flags & FLAG_ESTABLISHED) !== 0 });
    }
    const signature = r.bytes(SIGNATURE_BYTES, 'signature').slice();
    entries.push({ name, nickname, incarnation, version, connections: canonicalConnections(conns), publicKey, signature });
  }
  return entries;
}

export class Peers {
  readonly localName: PeerName;
  readonly counters: PeersCounters = { topologyEntriesRefused: 0 };
  private readonly byName = new Map<PeerName, SignedPeerEntry>();
  private readonly reach: Reachability;
  private localEntry: SignedPeerEntry;

  /** `signing` signs our entry and checks everyone else's; its key must be the one `local.name` derives from. */
  constructor(local: { name: PeerName; nickname: string; incarnation: number }, private readonly signing: GossipSigning) {
    if (!Number.isSafeInteger(local.incarnation) || local.incarnation < 0) {
      throw RouterError.config(`incarnation must be an integer in [0, 2^53), got ${local.incarnation}`);
    }
    const nicknameBytes = textEncoder.encode(local.nickname).length;
    if (nicknameBytes > MAX_NICKNAME_BYTES) {
      throw RouterError.config(`nickname must be at most ${MAX_NICKNAME_BYTES} bytes of UTF-8, got ${nicknameBytes}`);
    }
    this.localName = local.name;
    this.reach = new Reachability(local.name, (n) => this.byName.get(n));
    // Version 1, not 0: the first entry of a new incarnation is already "a change".
    this.localEntry = this.signed({ name: local.name, nickname: local.nickname, incarnation: local.incarnation, version: 1, connections: [] });
    this.byName.set(local.name, this.localEntry);
  }

  local(): SignedPeerEntry {
    return this.localEntry;
  }

  get(name: PeerName): SignedPeerEntry | undefined {
    return this.byName.get(name);
  }

  /** Sorted by name, so encodings and status are deterministic. Entries are frozen. */
  entries(): SignedPeerEntry[] {
    return [...this.byName.values()].sort((a, b) => comparePeerNames(a.name, b.name));
  }

  size(): number {
    return this.byName.size;
  }

  /**
   * Replaces our connection list. Bumps our version iff the set changed
   * (order does not count); returns whether it did. Throws RouterError
   * ('self-connection', 'duplicate-connection', 'conn-limit', 'config') for a
   * list we could not put on the wire, leaving the entry as it was.
   */
  setLocalConnections(conns: readonly PeerConnection[]): boolean {
    if (conns.length > MAX_CONNECTIONS_PER_PEER) {
      throw new RouterError('conn-limit', `${conns.length} connections, over the limit of ${MAX_CONNECTIONS_PER_PEER}`);
    }
    const remotes = new Set<string>();
    for (const c of conns) {
      if (c.name === this.localName) throw new RouterError('self-connection', `connection list names ourselves (${c.name})`);
      if (remotes.has(c.name)) throw new RouterError('duplicate-connection', `connection list names ${c.name} twice`);
      remotes.add(c.name);
      const addressBytes = textEncoder.encode(c.address).length;
      if (addressBytes > MAX_ADDRESS_BYTES) {
        throw RouterError.config(`connection address to ${c.name} is ${addressBytes} bytes, over ${MAX_ADDRESS_BYTES}`);
      }
    }
    if (sameConnections(this.localEntry.connections, conns)) return false;
    this.replaceLocal(canonicalConnections(conns));
    return true;
  }

  private replaceLocal(connections: PeerConnection[]): void {
    const e = this.localEntry;
    this.localEntry = this.signed({ name: e.name, nickname: e.nickname, incarnation: e.incarnation, version: e.version + 1, connections });
    this.byName.set(this.localName, this.localEntry);
    this.reach.changed(e, this.localEntry);
  }

  private signed(e: PeerEntry): SignedPeerEntry {
    const publicKey = this.signing.publicKey;
    const message = topologySigningBytes(e, publicKey);
    return this.store({ ...e, publicKey, signature: this.signing.sign(message) }, message);
  }

  /** The entry as held: frozen, with its encoded body (from the bytes it was signed over) kept for encodings. */
  private store(e: SignedPeerEntry, signingBytes: Uint8Array): SignedPeerEntry {
    const frozen = freezeEntry(e);
    entryBodies.set(frozen, signingBytes.subarray(SIGNATURE_LABEL.length));
    return frozen;
  }

  private bodyOf(e: SignedPeerEntry): Uint8Array {
    let body = entryBodies.get(e);
    if (body === undefined) {
      body = topologySigningBytes(e, e.publicKey).subarray(SIGNATURE_LABEL.length);
      entryBodies.set(e, body);
    }
    return body;
  }


  /** Full topology, or only the named entries (unknown names skipped), in name order. */
  encode(names?: Iterable<PeerName>): Uint8Array {
    let list: SignedPeerEntry[];
    if (names === undefined) {
      list = this.entries();
    } else {
      const picked = new Map<PeerName, SignedPeerEntry>();
      for (const n of names) {
        const e = this.byName.get(n);
        if (e !== undefined) picked.set(n, e);
      }
      list = [...picked.values()].sort((a, b) => comparePeerNames(a.name, b.name));
    }
    const bodies = list.map((e) => this.bodyOf(e));
    const w = new MeshWriter(3 + bodies.reduce((sum, b) => sum + b.length + SIGNATURE_BYTES, 0));
    w.u8(TOPOLOGY_FORMAT_VERSION).count(list.length);
    list.forEach((e, i) => w.bytes(bodies[i]!).bytes(e.signature));
    return w.finish();
  }

  /**
   * Merges an update. Returns the names whose entry was new or newer, sorted
   * (the delta to relay; encode(delta) is what to pass on), or [] when nothing
   * was new. Decodes the whole update and checks the signature of every entry
   * that would change our state before anything is applied (an entry that
   * changes nothing costs no verification). Throws, leaving the store exactly
   * as it was:
   *  - 'decode' / 'limit': malformed or oversized bytes, or more peers than MAX_PEERS in total;
   *  - 'auth': an entry whose signature or key does not hold (forged, or a
   *    second key for a known name); counted in topologyEntriesRefused. An
   *    honest relay never passes one on, so the whole update goes, and a
   *    forger costs us at most one failed verification per message;
   *  - 'name-collision': an entry with our name, signed with our key, that we
   *    cannot have written: a newer incarnation (another live peer has our
   *    key: a copied data directory), or our own incarnation at a version we
   *    never reached, or at our current version with other content.
   * An older incarnation of our name is a stale entry of our previous run and
   * is ignored, as is our own entry echoed back; our entry is never replaced
   * from outside.
   */
  applyUpdate(bytes: Uint8Array): PeerName[] {
    const decoded = decodeEntries(bytes, (name) => {
      const held = this.byName.get(name);
      return held === undefined ? undefined : entryBodies.get(held);
    });

    const winners: SignedPeerEntry[] = [];
    let added = 0;
    for (const e of decoded) {
      if (e.name === this.localName) {
        if (!this.claimsOurName(e)) continue;
        this.checkAuthentic(e);
        this.throwCollision(e);
      }
      const existing = this.byName.get(e.name);
      if (existing !== undefined && comparePeerEntries(e, existing) <= 0) continue;
      if (existing === undefined) added++;
      winners.push(e);
    }
    // The cap first: it costs nothing, and bounds how much we verify.
    if (this.byName.size + added > MAX_PEERS) {
      throw RouterError.limit(`known peers after this ${WHAT}`, this.byName.size + added, MAX_PEERS);
    }
    const signed = winners.map((e) => this.checkAuthentic(e));

    // Validation is over; from here on nothing throws.
    winners.forEach((e, i) => {
      const stored = this.store(e, signed[i]!);
      this.reach.changed(this.byName.get(e.name), stored);
      this.byName.set(e.name, stored);
    });
    return winners.map((e) => e.name).sort(comparePeerNames);
  }

  /** Throws 'auth' unless the owner's signature holds (and its key is the one known for the name); returns the bytes it signed. */
  private checkAuthentic(e: SignedPeerEntry): Uint8Array {
    const message = topologySigningBytes(e, e.publicKey);
    if (this.signing.verify(e.name, e.publicKey, message, e.signature)) return message;
    this.counters.topologyEntriesRefused++;
    throw new RouterError('auth', `${WHAT}: the entry of ${e.name} (incarnation ${e.incarnation}, version ${e.version}) is not signed by that peer's key`);
  }

  /** An entry with our name that we did not write in this run (else it is stale or our echo). */
  private claimsOurName(e: PeerEntry): boolean {
    const ours = this.localEntry;
    if (e.incarnation !== ours.incarnation) return e.incarnation > ours.incarnation;
    if (e.version !== ours.version) return e.version > ours.version;
    // Our current version with other content: we wrote only one entry per version.
    return comparePeerEntries(e, ours) !== 0;
  }

  private throwCollision(e: PeerEntry): never {
    const ours = this.localEntry;
    if (e.incarnation > ours.incarnation) {
      throw new RouterError('name-collision',
        `another peer uses our name ${this.localName} and key: it has incarnation ${e.incarnation}, ours is ${ours.incarnation}`);
    }
    throw new RouterError('name-collision',
      `another peer uses our name ${this.localName}, key and incarnation ${e.incarnation}: its version ${e.version} differs from ours (${ours.version})`);
  }

  /** Peers reachable from us over symmetric established connections (both ends list each other as established), us included. */
  reachable(): Set<PeerName> {
    return new Set(this.reach.current());
  }

  /** Removes peers we cannot reach (never us); returns the removed names, sorted. */
  garbageCollect(): PeerName[] {
    const keep = this.reach.current();
    // Every entry reachable (the usual case after a merge): nothing to look through.
    if (keep.size === this.byName.size) return [];
    const removed: PeerName[] = [];
    for (const name of this.byName.keys()) if (!keep.has(name)) removed.push(name);
    for (const name of removed) this.byName.delete(name);
    return removed.sort(comparePeerNames);
  }
}
