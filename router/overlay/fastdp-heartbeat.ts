// The fast path's heartbeat frame and the reserved MACs it travels between.
// A heartbeat proves, per peer and per direction, that our kernel's VXLAN
// reaches the peer's over UDP 6784: the router writes it into its heartbeat
// TAP, the bridge sends it out of the vxlan device (an FDB entry for the
// peer's heartbeat MAC), and the peer's bridge hands it to the peer's
// heartbeat TAP (a static entry for its own heartbeat MAC). Pure codec: no
// device, no timer.
//
//   +-----------------+-----------------+--------+-------+---------+-----------+-------------+---------+
//   | dst: 6 B        | src: 6 B        | 0x88b5 | 'WVFD'| version | sender    | receiver    | zeros   |
//   | hbMac(receiver) | hbMac(sender)   | u16    | 4 B   | u8 = 1  | peer 6 B  | peer 6 B    | to 60 B |
//   +-----------------+-----------------+--------+-------+---------+-----------+-------------+---------+
//
// 0x88b5 is the IEEE "local experimental" EtherType. A heartbeat MAC is the
// peer name with its first byte replaced by 0xae (unicast, locally
// administered), so it is fixed per peer and both ends compute it alike.
// A parser sees whatever reaches the heartbeat TAP: it checks every field and
// returns null for anything else. In a plaintext mesh anyone who can send UDP
// to 6784 can forge a heartbeat, which at worst makes a peer send its frames
// over VXLAN to the address it already pinned (they are lost if 6784 is
// blocked): no worse than the spoofing a plaintext sleeve already allows.

import { peerNameFromBytes, peerNameToBytes, type PeerName } from '../mesh/peer-name';

export const HEARTBEAT_ETHERTYPE = 0x88b5;
export const HEARTBEAT_VERSION = 1;
export const HEARTBEAT_MAC_PREFIX = 0xae;
export const HEARTBEAT_FRAME_BYTES = 60;
const MAGIC = [0x57, 0x56, 0x46, 0x44]; // 'WVFD'
const BODY_OFF = 14;

/** The reserved MAC a peer's heartbeats are addressed to, as "aa:bb:..". */
export function heartbeatMac(peer: PeerName): string {
  return `${HEARTBEAT_MAC_PREFIX.toString(16)}${peer.slice(2)}`;
}

function writeMac(out: Uint8Array, off: number, peer: PeerName): void {
  peerNameToBytes(peer, out, off);
  out[off] = HEARTBEAT_MAC_PREFIX;
}

export function encodeHeartbeat(sender: PeerName, receiver: PeerName): Buffer {
  const f = Buffer.alloc(HEARTBEAT_FRAME_BYTES);
  writeMac(f, 0, receiver);
  writeMac(f, 6, sender);
  f.writeUInt16BE(HEARTBEAT_ETHERTYPE, 12);
  f.set(MAGIC, BODY_OFF);
  f[BODY_OFF + 4] = HEARTBEAT_VERSION;
  peerNameToBytes(sender, f, BODY_OFF + 5);
  peerNameToBytes(receiver, f, BODY_OFF + 11);
  return f;
}

/** The sender of a heartbeat addressed to `self`, or null for any other frame. */
export function parseHeartbeat(buf: Uint8Array, off: number, len: number, self: PeerName): PeerName | null {
  if (len < BODY_OFF + 17) return null;
  if (((buf[off + 12]! << 8) | buf[off + 13]!) !== HEARTBEAT_ETHERTYPE) return null;
  for (let i = 0; i < 4; i++) if (buf[off + BODY_OFF + i] !== MAGIC[i]) return null;
  if (buf[off + BODY_OFF + 4] !== HEARTBEAT_VERSION) return null;
  if (peerNameFromBytes(buf, off + BODY_OFF + 11) !== self) return null;
  const sender = peerNameFromBytes(buf, off + BODY_OFF + 5);
  if (sender === self) return null;
  // The Ethernet source must be the sender's heartbeat MAC: a frame that merely copied a body is not one.
  if (buf[off + 6] !== HEARTBEAT_MAC_PREFIX || peerNameFromBytes(buf, off + 6).slice(2) !== sender.slice(2)) return null;
  return sender;
}
