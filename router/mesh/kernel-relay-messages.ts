// The KERNEL_RELAY control message (type 0x08): how two peers that cannot
// reach each other get a relay between them to forward their far messages in
// its kernel instead of its router (router/overlay/kernel-relay.ts). It
// travels inside the sealed control session between neighbours, so only a
// neighbour can ask or grant; this file is only its codec.
//
//   +------+------+-----------------------+-------------+
//   | 0x08 | kind | peer: 6 bytes         | port: u16   |
//   +------+------+-----------------------+-------------+
//   kind 1 REQUEST (origin -> relay): "forward between me and `peer`"; port 0.
//        2 GRANT (relay -> each end): "send what is for `peer` to my `port`";
//          what the relay sends on from that port's partner arrives from it.
//        3 RELEASE (either way): the pair of `peer` through that port is over
//          (relay: it no longer forwards; end: it no longer needs it).
// Sent only to a neighbour that set UDP_STATUS bit 5 (takes kernel-relayed
// far messages) or bit 6 (grants kernel relays); older peers refuse the type
// by name. Trailing bytes are tolerated, as for every control message.

import { RouterError } from './errors';
import { MeshReader, MeshWriter, type PeerName } from './peer-name';

export const MSG_KERNEL_RELAY = 8;

export type KernelRelayKind = 'request' | 'grant' | 'release';

export interface KernelRelayMessage {
  kind: KernelRelayKind;
  peer: PeerName;
  /** The relay's UDP port for this pair; 0 in a request. */
  port: number;
}

const KIND_CODES: Record<KernelRelayKind, number> = { request: 1, grant: 2, release: 3 };

export function encodeKernelRelay(msg: KernelRelayMessage): Uint8Array {
  if (!Number.isInteger(msg.port) || msg.port < 0 || msg.port > 0xffff) throw new RangeError(`not a UDP port: ${msg.port}`);
  return new MeshWriter(10).u8(MSG_KERNEL_RELAY).u8(KIND_CODES[msg.kind]).peerName(msg.peer).u16(msg.port).finish();
}

/** Reads the body after the type byte; throws RouterError('decode') on anything else. */
export function readKernelRelay(r: MeshReader): KernelRelayMessage {
  const code = r.u8('kernel relay kind');
  const peer = r.peerName('kernel relay peer');
  const port = r.u16('kernel relay port');
  switch (code) {
    case KIND_CODES.request:
      if (port !== 0) throw RouterError.decode('kernel relay message', `a request carries port 0, got ${port}`);
      return { kind: 'request', peer, port };
    case KIND_CODES.grant:
    case KIND_CODES.release:
      if (port === 0) throw RouterError.decode('kernel relay message', 'a grant or release names the relay\'s port, got 0');
      return { kind: code === KIND_CODES.grant ? 'grant' : 'release', peer, port };
    default:
      throw RouterError.decode('kernel relay message', `unknown kind ${code}`);
  }
}
