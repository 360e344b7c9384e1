// A GossipSigning for unit tests whose peers have made-up names: each name
// gets a fixed Ed25519 key (from a hash of the name), and a signature counts
// when it verifies under that name's key. Real signatures, but the name is not
// derived from the key; that binding and trust on first use are tested on the
// real GossipAuthority (test/unit/signed-gossip.test.ts). Like that authority,
// it remembers signatures that held (by a hash of key, signature and message),
// so property tests that merge the same entries thousands of times do not
// spend their minutes in Ed25519; a signature that fails is checked every time.

import { createHash } from 'node:crypto';
import type { GossipSigning } from '../../router/mesh/gossip';
import { PeerKey, verifySignature } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';

const keys = new Map<PeerName, PeerKey>();
/** Shared by every TestSigning: a signature's validity does not depend on who checks it. */
const verified = new Set<string>();

export function testKeyOf(name: PeerName): PeerKey {
  let key = keys.get(name);
  if (key === undefined) {
    key = PeerKey.fromSeed(createHash('sha256').update(`test key of ${name}`).digest());
    keys.set(name, key);
  }
  return key;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function verifiedOnce(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const digest = createHash('sha256').update(publicKey).update(signature).update(message).digest('base64');
  if (verified.has(digest)) return true;
  if (!verifySignature(publicKey, message, signature)) return false;
  verified.add(digest);
  return true;
}

export class TestSigning implements GossipSigning {
  readonly publicKey: Uint8Array;
  refused = 0;
  private readonly key: PeerKey;

  constructor(readonly name: PeerName) {
    this.key = testKeyOf(name);
    this.publicKey = this.key.publicKey;
  }

  sign(message: Uint8Array): Uint8Array {
    return this.key.sign(message);
  }

  verify(peer: PeerName, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    const ok = sameBytes(publicKey, testKeyOf(peer).publicKey) && verifiedOnce(publicKey, message, signature);
    if (!ok) this.refused++;
    return ok;
  }

  keyOf(peer: PeerName): Uint8Array | null {
    return testKeyOf(peer).publicKey;
  }
}

export function testSigning(name: PeerName): TestSigning {
  return new TestSigning(name);
}
