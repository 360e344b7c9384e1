// The end-to-end ("far") key exchange's messages: unicast gossip on channel
// "far" between two peers that are not neighbours, carried hop by hop over the
// relays' sealed TCP connections (far-keys.ts runs the exchange). All integers
// big-endian; every message starts with version 1 and a type byte.
//
//   INIT   | ver=1 | type=1 | key id u32 | E_i (32) | initiator's Ed25519 key (32) | signature (64) |
//   REPLY  | ver=1 | type=2 | key id u32 | E_i (32) | E_r (32) | responder's Ed25519 key (32) | signature (64) |
//   UNKNOWN| ver=1 | type=3 | key id u32 |   "a far datagram of yours named this key id and I hold no such key"
//
//   E_i, E_r: fresh X25519 public keys of the initiator and the responder.
//   INIT is signed over  "weave-ts far init v1"  || initiator || responder || key id || E_i
//   REPLY is signed over "weave-ts far reply v1" || initiator || responder || key id || E_i || E_r
//   (names are the 6-byte peer names; the receiver checks the key against the
//   name it claims, as for signed gossip: signed-gossip.ts.)
//
// UNKNOWN is not signed: it only makes the initiator stop sealing end to end
// and run a new exchange, which a mesh member could make it do anyway. Anything
// else, a wrong length or a trailing byte included, is refused: these are
// fixed-size messages.

import { MeshReader, MeshWriter, PEER_NAME_BYTES, type PeerName } from './peer-name';
import { RouterError } from './errors';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from './peer-key';

export const FAR_CHANNEL = 'far';
export const FAR_VERSION = 1;
export const X25519_BYTES = 32;

export type FarMessage =
  | { type: 'init'; keyId: number; initiatorPublic: Uint8Array; signerKey: Uint8Array; signature: Uint8Array }
  | { type: 'reply'; keyId: number; initiatorPublic: Uint8Array; responderPublic: Uint8Array; signerKey: Uint8Array; signature: Uint8Array }
  | { type: 'unknown'; keyId: number };

const TYPE_INIT = 1;
const TYPE_REPLY = 2;
const TYPE_UNKNOWN = 3;
const enc = new TextEncoder();
const INIT_LABEL = enc.encode('weave-ts far init v1');
const REPLY_LABEL = enc.encode('weave-ts far reply v1');
const WHAT = 'far key message';

export function encodeInit(keyId: number, initiatorPublic: Uint8Array, signerKey: Uint8Array, signature: Uint8Array): Uint8Array {
  return new MeshWriter(6 + X25519_BYTES + PUBLIC_KEY_BYTES + SIGNATURE_BYTES)
    .u8(FAR_VERSION).u8(TYPE_INIT).u32(keyId).bytes(initiatorPublic).bytes(signerKey).bytes(signature).finish();
}

export function encodeReply(keyId: number, initiatorPublic: Uint8Array, responderPublic: Uint8Array, signerKey: Uint8Array, signature: Uint8Array): Uint8Array {
  return new MeshWriter(6 + 2 * X25519_BYTES + PUBLIC_KEY_BYTES + SIGNATURE_BYTES)
    .u8(FAR_VERSION).u8(TYPE_REPLY).u32(keyId).bytes(initiatorPublic).bytes(responderPublic).bytes(signerKey).bytes(signature).finish();
}

export function encodeUnknown(keyId: number): Uint8Array {
  return new MeshWriter(6).u8(FAR_VERSION).u8(TYPE_UNKNOWN).u32(keyId).finish();
}

/** Parses one message; throws a RouterError on anything malformed (the gossip hub counts it). */
export function decodeFarMessage(bytes: Uint8Array): FarMessage {
  const r = new MeshReader(bytes, WHAT);
  const version = r.u8('version');
  if (version !== FAR_VERSION) throw RouterError.decode(WHAT, `unknown version ${version}`);
  const type = r.u8('type');
  const keyId = r.u32('key id');
  let m: FarMessage;
  if (type === TYPE_INIT) {
    m = { type: 'init', keyId, initiatorPublic: r.bytes(X25519_BYTES, 'E_i'), signerKey: r.bytes(PUBLIC_KEY_BYTES, 'key'),
      signature: r.bytes(SIGNATURE_BYTES, 'signature') };
  } else if (type === TYPE_REPLY) {
    m = { type: 'reply', keyId, initiatorPublic: r.bytes(X25519_BYTES, 'E_i'), responderPublic: r.bytes(X25519_BYTES, 'E_r'),
      signerKey: r.bytes(PUBLIC_KEY_BYTES, 'key'), signature: r.bytes(SIGNATURE_BYTES, 'signature') };
  } else if (type === TYPE_UNKNOWN) {
    m = { type: 'unknown', keyId };
  } else {
    throw RouterError.decode(WHAT, `unknown type ${type}`);
  }
  r.expectEnd();
  return m;
}

/** What INIT's signature covers. */
export function initSigned(initiator: PeerName, responder: PeerName, keyId: number, initiatorPublic: Uint8Array): Uint8Array {
  return new MeshWriter(INIT_LABEL.length + 2 * PEER_NAME_BYTES + 4 + X25519_BYTES)
    .bytes(INIT_LABEL).peerName(initiator).peerName(responder).u32(keyId).bytes(initiatorPublic).finish();
}

/** What REPLY's signature covers. */
export function replySigned(initiator: PeerName, responder: PeerName, keyId: number, initiatorPublic: Uint8Array, responderPublic: Uint8Array): Uint8Array {
  return new MeshWriter(REPLY_LABEL.length + 2 * PEER_NAME_BYTES + 4 + 2 * X25519_BYTES)
    .bytes(REPLY_LABEL).peerName(initiator).peerName(responder).u32(keyId).bytes(initiatorPublic).bytes(responderPublic).finish();
}
