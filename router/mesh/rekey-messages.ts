// The REKEY control message (type 0x06, protocol version 2) that moves a
// connection's keys to the next epoch (key-schedule.ts). It travels inside the
// sealed control session, so it is authenticated and private like any control
// message; this file is only its codec.
//
//   +------+------+---------------------+---------------------------------------+
//   | 0x06 | kind | epoch: u32          | X25519 public key (32 bytes),         |
//   |      | u8   | (the one being      | only for INIT and ACK                 |
//   |      |      |  moved to)          |                                       |
//   +------+------+---------------------+---------------------------------------+
//   kind 1 INIT: "let us move to epoch e, here is my fresh key"
//        2 ACK:  "agreed, here is mine" (the responder now accepts epoch e)
//        3 DONE: "I send under epoch e now" (sent under epoch e)
// Trailing bytes are tolerated, as for every control message.

import { RouterError } from './errors';
import { MeshReader, MeshWriter } from './peer-name';

export const MSG_REKEY = 6;
export const REKEY_PUBLIC_KEY_BYTES = 32;

export type RekeyMessage =
  | { kind: 'init'; epoch: number; publicKey: Uint8Array }
  | { kind: 'ack'; epoch: number; publicKey: Uint8Array }
  | { kind: 'done'; epoch: number };

const KIND_CODES = { init: 1, ack: 2, done: 3 } as const;

export function encodeRekey(msg: RekeyMessage): Uint8Array {
  const w = new MeshWriter(6 + REKEY_PUBLIC_KEY_BYTES).u8(MSG_REKEY).u8(KIND_CODES[msg.kind]).u32(msg.epoch);
  if (msg.kind !== 'done') {
    if (msg.publicKey.length !== REKEY_PUBLIC_KEY_BYTES) throw new RangeError(`a rekey public key is ${REKEY_PUBLIC_KEY_BYTES} bytes, got ${msg.publicKey.length}`);
    w.bytes(msg.publicKey);
  }
  return w.finish();
}

/** Reads the body after the type byte; throws RouterError('decode') on anything else. */
export function readRekey(r: MeshReader): RekeyMessage {
  const code = r.u8('rekey kind');
  const epoch = r.u32('epoch');
  switch (code) {
    case KIND_CODES.init:
      return { kind: 'init', epoch, publicKey: r.bytes(REKEY_PUBLIC_KEY_BYTES, 'public key').slice() };
    case KIND_CODES.ack:
      return { kind: 'ack', epoch, publicKey: r.bytes(REKEY_PUBLIC_KEY_BYTES, 'public key').slice() };
    case KIND_CODES.done:
      return { kind: 'done', epoch };
    default:
      throw RouterError.decode('rekey message', `unknown kind ${code}`);
  }
}
