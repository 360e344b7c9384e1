// Owns every key derivation of the encrypted mesh, in one place so the whole
// schedule reads top to bottom: the transcript of a handshake, the key of one
// CPace pairing (cpace.ts), the handshake's authentication keys, the chain key
// of a connection, the four keys of each epoch, and the next chain key at a
// rekey. Pure functions over byte arrays (libsodium's keyed BLAKE2b); callers
// own, and zero, what they get back. Never a socket, a timer or a logger.
//
// All of it is keyed BLAKE2b-256, BLAKE2b(key, message), with a distinct label
// per use ("... v2": introduced in protocol version 2, unchanged in 3, whose
// key proof is key-proof.ts's and signs the transcript below):
//
//   transcript  = BLAKE2b("weave-ts transcript v2" || u32 len || Hello_low
//                                                  || u32 len || Hello_high)
//   pair        = BLAKE2b(key = K, "weave-ts cpace pair v2" || u8 low slot
//                                  || u8 high slot || transcript)
//                 K = the CPace secret of one pairing of passwords (one of
//                 ours, one of the peer's; "slot" 0 = current, 1 = old)
//   auth[d]     = BLAKE2b(key = pair, "weave-ts auth v2" || u8 d)
//                 d = 0: low->high, 1: high->low; seals the identity in Auth
//   chain[0]    = BLAKE2b(key = pair, "weave-ts chain v2")
//   key[e][i]   = BLAKE2b(key = chain[e], "weave-ts epoch keys v2" || u8 i)
//                 i = 0: control low->high  1: control high->low
//                     2: sleeve low->high   3: sleeve high->low
//                        (ChaCha20-Poly1305 sleeve)
//                     4: sleeve low->high   5: sleeve high->low
//                        (AES-256-GCM sleeve, when both Hellos offer it)
//                 A connection derives the sleeve pair of its one cipher
//                 only: no key is ever used under two ciphers.
//   chain[e+1]  = BLAKE2b(key = chain[e], "weave-ts rekey v2" || u32 e+1
//                          || X25519(e_i, E_r) || E_i || E_r)
//                 E_i, E_r: the rekey's fresh ephemeral keys (initiator,
//                 responder), exchanged inside the sealed control session.
//   far[k]      = BLAKE2b(key = X25519(e_i, E_r), "weave-ts far key v1"
//                          || initiator || responder || u32 k || E_i || E_r)
//                 the end-to-end key of one far exchange (far-keys.ts) with
//                 key id k, for AES-256-GCM from the initiator to the
//                 responder only; names are the 6-byte peer names.
//
// "low" is the side whose Hello sorts lower bytewise (the Hellos carry random
// shares, so they differ; identical ones are refused as a reflection).
// Why a chain: chain[e+1] needs chain[e], and chain[e] is zeroed once the
// next exists, so a memory dump in epoch e+1 does not open epoch e's traffic;
// the fresh X25519 in each step means a dump in epoch e does not open e+1's
// either, to an attacker who only listens.

import { MeshWriter } from './peer-name';
import type { SleeveCipher } from './sleeve-keys';
import { sodium } from './sodium';

export const KEY_BYTES = 32;
export const TRANSCRIPT_BYTES = 32;

const enc = new TextEncoder();
const TRANSCRIPT_LABEL = enc.encode('weave-ts transcript v2');
const PAIR_LABEL = enc.encode('weave-ts cpace pair v2');
const AUTH_LABEL = enc.encode('weave-ts auth v2');
const CHAIN_LABEL = enc.encode('weave-ts chain v2');
const EPOCH_LABEL = enc.encode('weave-ts epoch keys v2');
const REKEY_LABEL = enc.encode('weave-ts rekey v2');
const FAR_LABEL = enc.encode('weave-ts far key v1');

export const KEY_CONTROL_LOW_TO_HIGH = 0;
export const KEY_CONTROL_HIGH_TO_LOW = 1;
export const KEY_SLEEVE_LOW_TO_HIGH = 2;
export const KEY_SLEEVE_HIGH_TO_LOW = 3;
export const KEY_SLEEVE_AES_LOW_TO_HIGH = 4;
export const KEY_SLEEVE_AES_HIGH_TO_LOW = 5;

/** BLAKE2b-256 keyed with `key` over the concatenation of `parts`; the input copy is zeroed. */
function keyed(key: Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const input = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    input.set(p, off);
    off += p.length;
  }
  const out = sodium().crypto_generichash(KEY_BYTES, input, key);
  sodium().memzero(input);
  return out;
}

export function transcriptHash(helloLow: Uint8Array, helloHigh: Uint8Array): Uint8Array {
  const input = new MeshWriter(TRANSCRIPT_LABEL.length + 8 + helloLow.length + helloHigh.length)
    .bytes(TRANSCRIPT_LABEL).longBytes(helloLow).longBytes(helloHigh).finish();
  return sodium().crypto_generichash(TRANSCRIPT_BYTES, input, null);
}

export function pairKey(cpaceSecret: Uint8Array, lowSlot: number, highSlot: number, transcript: Uint8Array): Uint8Array {
  return keyed(cpaceSecret, [PAIR_LABEL, Uint8Array.of(lowSlot, highSlot), transcript]);
}

/** The two keys that seal the identity in Auth: [low->high, high->low]. */
export function authKeys(pair: Uint8Array): [Uint8Array, Uint8Array] {
  return [keyed(pair, [AUTH_LABEL, Uint8Array.of(0)]), keyed(pair, [AUTH_LABEL, Uint8Array.of(1)])];
}

export function initialChainKey(pair: Uint8Array): Uint8Array {
  return keyed(pair, [CHAIN_LABEL]);
}

export interface EpochKeys {
  controlSend: Uint8Array;
  controlReceive: Uint8Array;
  sleeveSend: Uint8Array;
  sleeveReceive: Uint8Array;
}

/** The four keys of one epoch, oriented for our side; the sleeve's for `cipher`. */
export function epochKeys(chain: Uint8Array, weAreLow: boolean, cipher: SleeveCipher): EpochKeys {
  const aes = cipher === 'aes-256-gcm';
  const indices = [KEY_CONTROL_LOW_TO_HIGH, KEY_CONTROL_HIGH_TO_LOW,
    aes ? KEY_SLEEVE_AES_LOW_TO_HIGH : KEY_SLEEVE_LOW_TO_HIGH, aes ? KEY_SLEEVE_AES_HIGH_TO_LOW : KEY_SLEEVE_HIGH_TO_LOW];
  const [cLH, cHL, sLH, sHL] = indices.map((i) => keyed(chain, [EPOCH_LABEL, Uint8Array.of(i)])) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  return weAreLow
    ? { controlSend: cLH, controlReceive: cHL, sleeveSend: sLH, sleeveReceive: sHL }
    : { controlSend: cHL, controlReceive: cLH, sleeveSend: sHL, sleeveReceive: sLH };
}

export function nextChainKey(chain: Uint8Array, nextEpoch: number, dh: Uint8Array, initiatorPublic: Uint8Array, responderPublic: Uint8Array): Uint8Array {
  const epoch = new Uint8Array(4);
  new DataView(epoch.buffer).setUint32(0, nextEpoch);
  return keyed(chain, [REKEY_LABEL, epoch, dh, initiatorPublic, responderPublic]);
}

export function zeroEpochKeys(keys: EpochKeys): void {
  const na = sodium();
  na.memzero(keys.controlSend);
  na.memzero(keys.controlReceive);
  na.memzero(keys.sleeveSend);
  na.memzero(keys.sleeveReceive);
}

/** far[k] above: the initiator->responder key of one end-to-end exchange. */
export function farKey(dh: Uint8Array, initiator: Uint8Array, responder: Uint8Array, keyId: number, initiatorPublic: Uint8Array,
  responderPublic: Uint8Array): Uint8Array {
  const id = new Uint8Array(4);
  new DataView(id.buffer).setUint32(0, keyId);
  return keyed(dh, [FAR_LABEL, initiator, responder, id, initiatorPublic, responderPublic]);
}
