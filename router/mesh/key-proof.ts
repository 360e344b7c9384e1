// The proof, inside every handshake (protocol 3), that each side holds the
// Ed25519 key its peer name derives from (peer-key.ts), so a connection is
// bound to a key and not merely to a name someone typed. Pure functions over
// bytes and the two small interfaces the handshake is given; the trust on
// first use they consult is signed-gossip.ts's, not a second store.
//
// What is signed (by the sender, with its peer key):
//
//   "weave-ts peer key proof v3" || transcript (32) || u8 side || u32 len || identity
//
//   transcript: the hash of both Hellos (key-derivation.ts), so both sides'
//     fresh randomness (each Hello's nonce and CPace shares): the signature
//     is worth nothing in any other session, and a recording cannot be replayed.
//   side: 0 when the signer's Hello sorts low, 1 when high: a proof reflected
//     back at its signer claims the wrong side (and the signer's own name).
//   identity: the signer's name, nickname, incarnation and listen port exactly
//     as Auth carries them (handshake-messages.ts).
//
// The peer's name is not in it: it arrives in the same flight, so the signer
// does not know it yet, and binding it would cost a third message. What
// binding it would buy (a proof meant for one verifier used toward another)
// the transcript gives already: the verifier's own fresh Hello is in it.
//
// Checked in this order, cheapest first, and only after the password (the
// Auth that carries the proof is sealed under the PAKE's keys): the key
// derives the claimed name (one SHA-256), it is the key pinned for that name
// if one is (a comparison), then the signature (one Ed25519 verification).

import { RouterError } from './errors';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, verifySignature } from './peer-key';
import { MeshWriter, PeerName } from './peer-name';
import { TRANSCRIPT_BYTES } from './key-derivation';

/** Our side of the proof: the public key we show and what signs with it (peer-key.ts's PeerKey). */
export interface HandshakeSigner {
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Uint8Array;
}

/** The keys already known per name (trust on first use: signed-gossip.ts's GossipAuthority). */
export interface PeerKeyPins {
  /** The key pinned for `peer`, or null when none is known. */
  keyOf(peer: PeerName): Uint8Array | null;
}

/** The key and signature one side of a handshake presents. */
export interface KeyProof {
  publicKey: Uint8Array;
  signature: Uint8Array;
}

const PROOF_LABEL = new TextEncoder().encode('weave-ts peer key proof v3');

/** The bytes a side signs: see the file comment. */
export function keyProofMessage(transcript: Uint8Array, signerIsLow: boolean, identity: Uint8Array): Uint8Array {
  if (transcript.length !== TRANSCRIPT_BYTES) throw new RangeError(`a transcript is ${TRANSCRIPT_BYTES} bytes, got ${transcript.length}`);
  return new MeshWriter(PROOF_LABEL.length + TRANSCRIPT_BYTES + 5 + identity.length)
    .bytes(PROOF_LABEL).bytes(transcript).u8(signerIsLow ? 0 : 1).longBytes(identity).finish();
}

export function signKeyProof(signer: HandshakeSigner, transcript: Uint8Array, signerIsLow: boolean, identity: Uint8Array): KeyProof {
  return { publicKey: signer.publicKey, signature: signer.sign(keyProofMessage(transcript, signerIsLow, identity)) };
}

/**
 * Throws RouterError 'peer-key' unless `proof` shows that the sender of
 * `identity` holds the key `claimed` derives from, in this session. Never
 * throws anything else, whatever the bytes.
 */
export function checkKeyProof(
  claimed: PeerName, proof: KeyProof, transcript: Uint8Array, signerIsLow: boolean, identity: Uint8Array,
  pins: PeerKeyPins, nameOfKey: (publicKey: Uint8Array) => PeerName,
): void {
  const { publicKey, signature } = proof;
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) {
    throw new RouterError('peer-key', `peer ${claimed}: malformed key proof`);
  }
  const derived = nameOfKey(publicKey);
  if (derived !== claimed) {
    throw new RouterError('peer-key', `peer claims the name ${claimed}, but the key it shows derives ${derived}: refused as an impostor (names derive from keys)`);
  }
  const pinned = pins.keyOf(claimed);
  if (pinned !== null && !sameBytes(pinned, publicKey)) {
    throw new RouterError('peer-key', `peer ${claimed} shows a key other than the one already known for that name (trust on first use): refused`);
  }
  if (!verifySignature(publicKey, keyProofMessage(transcript, signerIsLow, identity), signature)) {
    throw new RouterError('peer-key', `peer ${claimed}: its signature over this handshake does not verify (forged, or replayed from another session): refused`);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
