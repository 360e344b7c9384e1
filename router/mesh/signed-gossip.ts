// Who may speak for a peer name: the GossipSigning the hub hands to every
// channel (router/mesh/gossip.ts), and the pins the handshake checks a
// connection's key proof against (key-proof.ts's PeerKeyPins: one trust on
// first use store for gossip and connections). It signs with our key and decides whether a
// signature by another peer counts: the key must derive the name
// (peer-key.ts), must be the key this peer first saw for that name (trust on
// first use, mesh-wide: every peer remembers), and must verify. Verified
// signatures are cached by digest, so periodic gossip of unchanged state costs
// a hash, not an Ed25519 verification (~90 us native, ~270 us WebAssembly).
// The pins outlive a restart: the daemon restores them and saves them when
// told of a new one (peer-pins.ts, identity.ts).
// Pure state plus crypto: no I/O, no clock; bounded memory.

import { createHash } from 'node:crypto';
import type { GossipSigning } from './gossip';
import type { PeerKey } from './peer-key';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, peerNameOfKey, verifySignature } from './peer-key';
import type { PeerName } from './peer-name';
import type { PeerPin } from './peer-pins';

export interface SigningCounters {
  gossipSignaturesVerified: number;
  gossipSignatureCacheHits: number;
  /** A signature that did not verify, or a key that does not derive the claimed name. */
  gossipSignaturesRefused: number;
  /** A valid signature by a key other than the one first seen for that name. */
  gossipKeyConflicts: number;
  /**
   * Names whose key was forgotten to stay within maxKnownKeys (oldest first):
   * their next key is believed as if first seen. Many of them mean a mesh
   * bigger than the cap or someone flooding it with names.
   */
  gossipKeysForgotten: number;
}

/**
 * Digests of (key, signature, message) triples that verified. Verification is
 * a pure function, so one cache may serve several authorities in one process
 * (the simulations share one across hundreds of routers); names and trust on
 * first use are still judged by each authority.
 */
export class VerifiedSignatures {
  private readonly digests = new Set<string>();

  constructor(private readonly maxCount: number = 16_384) {}

  has(digest: string): boolean {
    return this.digests.has(digest);
  }

  add(digest: string): void {
    this.digests.add(digest);
    for (const oldest of this.digests) {
      if (this.digests.size <= this.maxCount) break;
      this.digests.delete(oldest);
    }
  }
}

export interface AuthorityOptions {
  /** Names whose key we remember; beyond it the oldest is forgotten (never ours). */
  maxKnownKeys: number;
  /** Where verified signatures are remembered; by default one of our own. */
  verified: VerifiedSignatures | null;
  /** The name a key proves; only a test replaces peerNameOfKey (to make two keys share a name). */
  nameOfKey: (publicKey: Uint8Array) => PeerName;
}

export const DEFAULT_AUTHORITY_OPTIONS: AuthorityOptions = { maxKnownKeys: 40_000, verified: null, nameOfKey: peerNameOfKey };

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class GossipAuthority implements GossipSigning {
  readonly publicKey: Uint8Array;
  readonly localPeer: PeerName;
  readonly counters: SigningCounters = {
    gossipSignaturesVerified: 0, gossipSignatureCacheHits: 0, gossipSignaturesRefused: 0, gossipKeyConflicts: 0, gossipKeysForgotten: 0,
  };
  /** Insertion order is age: the first entries are evicted first. */
  private readonly known = new Map<PeerName, Uint8Array>();
  private readonly verified: VerifiedSignatures;
  private readonly opts: AuthorityOptions;
  /** Told after every new pin, so the daemon can keep them across restarts (peer-pins.ts). */
  onPinned: (() => void) | null = null;

  constructor(private readonly key: PeerKey, opts: Partial<AuthorityOptions> = {}) {
    this.opts = { ...DEFAULT_AUTHORITY_OPTIONS, ...opts };
    this.verified = this.opts.verified ?? new VerifiedSignatures();
    this.publicKey = key.publicKey;
    this.localPeer = key.name;
  }

  sign(message: Uint8Array): Uint8Array {
    return this.key.sign(message);
  }

  keyOf(peer: PeerName): Uint8Array | null {
    if (peer === this.localPeer) return this.publicKey;
    return this.known.get(peer) ?? null;
  }

  verify(peer: PeerName, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES || this.opts.nameOfKey(publicKey) !== peer) {
      this.counters.gossipSignaturesRefused++;
      return false;
    }
    const knownKey = this.keyOf(peer);
    if (knownKey !== null && !sameBytes(knownKey, publicKey)) {
      this.counters.gossipKeyConflicts++;
      return false;
    }
    const digest = createHash('sha256').update(publicKey).update(signature).update(message).digest('base64');
    if (this.verified.has(digest)) {
      this.counters.gossipSignatureCacheHits++;
      return true;
    }
    if (!verifySignature(publicKey, message, signature)) {
      this.counters.gossipSignaturesRefused++;
      return false;
    }
    this.counters.gossipSignaturesVerified++;
    this.verified.add(digest);
    if (knownKey === null) this.remember(peer, publicKey);
    return true;
  }

  /**
   * A key the peer proved another way (a connection's handshake, key-proof.ts,
   * which checked that it derives the name and matches any pin): pinned if
   * the name has none yet, as a verified signature would.
   */
  pin(peer: PeerName, publicKey: Uint8Array): void {
    if (this.isNewPin(peer, publicKey)) this.remember(peer, publicKey);
  }

  /**
   * Pins kept from an earlier run (peer-pins.ts), oldest first, before any
   * connection or gossip: each must derive its name, and a name already
   * pinned (or ours) keeps its key. Returns how many were taken.
   */
  restore(pins: readonly PeerPin[]): number {
    let taken = 0;
    for (const { peer, publicKey } of pins) {
      if (!this.isNewPin(peer, publicKey)) continue;
      this.store(peer, publicKey);
      taken++;
    }
    return taken;
  }

  /** A key that may be pinned: the right length, deriving its name, for a name with no key yet (ours always has one). */
  private isNewPin(peer: PeerName, publicKey: Uint8Array): boolean {
    return publicKey.length === PUBLIC_KEY_BYTES && this.keyOf(peer) === null && this.opts.nameOfKey(publicKey) === peer;
  }

  /** Every pin, oldest first: what peer-pins.ts writes. */
  pins(): PeerPin[] {
    return [...this.known].map(([peer, publicKey]) => ({ peer, publicKey: Uint8Array.from(publicKey) }));
  }

  private remember(peer: PeerName, publicKey: Uint8Array): void {
    this.store(peer, publicKey);
    this.onPinned?.();
  }

  private store(peer: PeerName, publicKey: Uint8Array): void {
    this.known.set(peer, Uint8Array.from(publicKey));
    for (const oldest of this.known.keys()) {
      if (this.known.size <= this.opts.maxKnownKeys) break;
      this.known.delete(oldest);
      this.counters.gossipKeysForgotten++;
    }
  }
}
