// A GossipSigning for unit tests whose peers have made-up names: each name
// gets a fixed Ed25519 key (from a hash of the name), and a signature counts
// when it verifies under that name's key. Real signatures, but the name is not
// derived from the key; that binding and trust on first use are tested on the
// real GossipAuthority (test/unit/signed-gossip.test.ts).

import { createHash } from 'node:crypto';
import type { GossipSigning } from '../../router/mesh/gossip';
import { PeerKey, verifySignature } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';

const keys = new Map<PeerName, PeerKey>();

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
    const ok = sameBytes(publicKey, testKeyOf(peer).publicKey) && verifySignature(publicKey, message, signature);
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
