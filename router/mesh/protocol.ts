// Control messages exchanged on an established connection, inside the
// session's protection (sealed with a password, plain otherwise).
//
// Every message starts with a type byte; the protocol version was agreed in
// the handshake, so message layouts are those of that version (1).
//
//   HEARTBEAT  +------+
//              | 0x01 |
//              +------+
//   GOSSIP     +------+------+--------------------+------------+--------------------+--------------------+
//              | 0x02 | kind | channel: u16 len + | src: 6 B   | dst: 6 B           | payload: u32 len + |
//              |      | u8   | ASCII (<= 32 B)    | peer name  | (kind=unicast only)| bytes              |
//              +------+------+--------------------+------------+--------------------+--------------------+
//              kind 0 = neighbour gossip (src = sender), 1 = broadcast (src = origin), 2 = unicast
//   REFUSE     +------+--------------------------+--------------------------+
//              | 0x03 | code: u16 len + UTF-8    | message: u16 len + UTF-8 |
//              +------+--------------------------+--------------------------+
//              sent just before closing, so the other side can show why.
//   FRAME      +------+------------------------------------------------+
//              | 0x04 | inner frame (sleeve-codec.ts): src, dst, hops, |
//              |      | Ethernet frame — the TCP fallback of the sleeve |
//              +------+------------------------------------------------+
//   UDP_STATUS +------+-------+------------------------------+-----------------------+
//              | 0x05 | flags | ms since last probe: u32     | echo: 8 B (optional)  |
//              +------+-------+------------------------------+-----------------------+
//              flags bit0: we hear your UDP probes. Tells the peer whether
//              its UDP reaches us, which it cannot know by itself. echo: the
//              last probe challenge we heard from the peer (plaintext meshes;
//              router/overlay/udp-endpoint.ts); absent from older peers.
//              flags bit1: we offer the kernel fast path (VXLAN on UDP 6784;
//              plaintext meshes only, router/overlay/fastdp.ts); bit2: we hear
//              your fast-path heartbeats. Older peers set neither and ignore
//              both, so they stay on the sleeve.
//              flags bit3: we accept sleeve version 3 (a frame cut into
//              MTU-sized UDP GSO segments, router/overlay/sleeve-segments.ts).
//              Only a framing choice; older peers neither set nor read it
//              and keep getting version 2. It travels inside the session's
//              protection, so with a password nobody in between can clear it.
//              flags bit4: we take and relay far sleeve messages (type 3,
//              sealed end to end, router/overlay/far-session.ts). Set only
//              with a password; older peers neither set nor read it.
//              flags bit5: we take far messages forwarded by a relay's kernel
//              (sleeve type 4, router/overlay/kernel-relay.ts); bit6: we grant
//              kernel relays (KERNEL_RELAY, kernel-relay-messages.ts). Both
//              only with bit 4; older peers neither set nor read them.
//   REKEY      +------+------+----------+--------------------------+
//              | 0x06 | kind | epoch u32| X25519 key (INIT, ACK)   |
//              +------+------+----------+--------------------------+
//              moves the connection's keys to the next epoch; the
//              codec is rekey-messages.ts, the exchange key-schedule.ts.
//   FAR_FRAME  +------+----------------+-----------------------------------------+
//              | 0x07 | 16 bytes, zero | a far sleeve message's body: inner and  |
//              |      | (sleeve header | far header, 16 unused bytes (the hop    |
//              |      | room)          | tag's place), the frame sealed end to   |
//              |      |                | end (router/overlay/far-session.ts)     |
//              +------+----------------+-----------------------------------------+
//              the TCP fallback of a far message a relay passes on, laid out as
//              on UDP so one parser reads both; sent only to a neighbour that
//              set UDP_STATUS bit 4 (older peers refuse the type by name).
//   KERNEL_RELAY 0x08: asks for, grants and releases a kernel relay;
//              the codec and layout are kernel-relay-messages.ts.
//
// Unknown message types are refused by name; trailing bytes are tolerated.

import { MeshReader, MeshWriter } from './peer-name';
import { MAX_CHANNEL_NAME_BYTES, MAX_CONTROL_MESSAGE_BYTES } from './constants';
import { RouterError } from './errors';
import { MSG_REKEY, readRekey, RekeyMessage } from './rekey-messages';
import { MSG_KERNEL_RELAY, readKernelRelay, type KernelRelayMessage } from './kernel-relay-messages';
import type { PeerName } from './peer-name';

export const MSG_HEARTBEAT = 1;
export const MSG_GOSSIP = 2;
export const MSG_REFUSE = 3;
export const MSG_FRAME = 4;
export const MSG_UDP_STATUS = 5;
export const MSG_FAR_FRAME = 7;

export type GossipKind = 'neighbour' | 'broadcast' | 'unicast';
const GOSSIP_KIND_CODES: Record<GossipKind, number> = { neighbour: 0, broadcast: 1, unicast: 2 };
const GOSSIP_KINDS: GossipKind[] = ['neighbour', 'broadcast', 'unicast'];

export type ControlMessage =
  | { type: 'heartbeat' }
  | { type: 'gossip'; kind: GossipKind; channel: string; src: PeerName; dst: PeerName | null; payload: Uint8Array }
  | { type: 'refuse'; code: string; message: string }
  | { type: 'frame'; inner: Uint8Array }
  | { type: 'far-frame'; message: Uint8Array }
  | { type: 'rekey'; rekey: RekeyMessage }
  | { type: 'kernel-relay'; relay: KernelRelayMessage }
  | ({ type: 'udp-status'; sinceProbeMs: number } & Required<UdpStatusReport>);

/**
 * What a UDP_STATUS says, as the data plane takes it: hearing (bit 0), the
 * last probe challenge the neighbour heard from us (plaintext meshes), its
 * fast-path bits (1, 2), whether it accepts sleeve version 3 (bit 3), takes
 * far messages (bit 4), and its kernel relay bits (5, 6). Absent: not set.
 */
export interface UdpStatusReport {
  hearing: boolean;
  echo?: Uint8Array | null;
  fastdp?: FastdpFlags;
  segments?: boolean;
  far?: boolean;
  kernel?: KernelRelayFlags;
}

/** The kernel relay bits of UDP_STATUS (flags bits 5 and 6). */
export interface KernelRelayFlags {
  /** Takes far messages a relay's kernel forwards (sleeve type 4). */
  takes: boolean;
  /** Grants kernel relays between its neighbours. */
  grants: boolean;
}

export const NO_KERNEL_RELAY: KernelRelayFlags = Object.freeze({ takes: false, grants: false });

/** The fast-path bits of UDP_STATUS (flags bits 1 and 2). */
export interface FastdpFlags {
  offered: boolean;
  hearing: boolean;
}

export const NO_FASTDP: FastdpFlags = Object.freeze({ offered: false, hearing: false });

const CHANNEL_RE = /^[a-z0-9][a-z0-9._-]*$/;
const MAX_REFUSE_TEXT_BYTES = 512;

export function isValidChannelName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_CHANNEL_NAME_BYTES && CHANNEL_RE.test(name);
}

export function encodeHeartbeat(): Uint8Array {
  return Uint8Array.of(MSG_HEARTBEAT);
}

export function encodeGossip(kind: GossipKind, channel: string, src: PeerName, dst: PeerName | null, payload: Uint8Array): Uint8Array {
  const w = new MeshWriter(payload.length + 64);
  w.u8(MSG_GOSSIP).u8(GOSSIP_KIND_CODES[kind]).string(channel).peerName(src);
  if (kind === 'unicast') {
    if (dst === null) throw new RangeError('unicast gossip needs a destination');
    w.peerName(dst);
  }
  w.longBytes(payload);
  return w.finish();
}

export function encodeRefuse(code: string, message: string): Uint8Array {
  return new MeshWriter(64 + message.length).u8(MSG_REFUSE).string(code.slice(0, 64)).string(message.slice(0, MAX_REFUSE_TEXT_BYTES / 4)).finish();
}

/** A FAR_FRAME message for a far message of `len` bytes (sleeve header room included), zeroed: callers write from offset 17. */
export function allocFarFrameMessage(len: number): Uint8Array {
  const msg = new Uint8Array(1 + len);
  msg[0] = MSG_FAR_FRAME;
  return msg;
}

/** The frame message with room reserved: callers write the inner frame at offset 1. */
export function allocFrameMessage(innerLen: number): Uint8Array {
  const msg = new Uint8Array(1 + innerLen);
  msg[0] = MSG_FRAME;
  return msg;
}

export const UDP_STATUS_ECHO_BYTES = 8;

export function encodeUdpStatus(hearing: boolean, sinceProbeMs: number, echo: Uint8Array | null = null, fastdp: FastdpFlags = NO_FASTDP,
  segments = false, far = false, kernel: KernelRelayFlags = NO_KERNEL_RELAY): Uint8Array {
  const flags = (hearing ? 1 : 0) | (fastdp.offered ? 2 : 0) | (fastdp.hearing ? 4 : 0) | (segments ? 8 : 0) | (far ? 16 : 0)
    | (kernel.takes ? 32 : 0) | (kernel.grants ? 64 : 0);
  const w = new MeshWriter(16).u8(MSG_UDP_STATUS).u8(flags).u32(Math.min(0xffffffff, Math.max(0, Math.round(sinceProbeMs))));
  if (echo !== null) {
    if (echo.length !== UDP_STATUS_ECHO_BYTES) throw new RangeError(`a UDP_STATUS echo is ${UDP_STATUS_ECHO_BYTES} bytes, got ${echo.length}`);
    w.bytes(echo);
  }
  return w.finish();
}

export function decodeControlMessage(bytes: Uint8Array): ControlMessage {
  const r = new MeshReader(bytes, 'control message');
  const type = r.u8('type');
  switch (type) {
    case MSG_HEARTBEAT:
      return { type: 'heartbeat' };
    case MSG_GOSSIP: {
      const kindCode = r.u8('gossip kind');
      const kind = GOSSIP_KINDS[kindCode];
      if (kind === undefined) throw RouterError.decode('gossip message', `unknown kind ${kindCode}`);
      const channel = r.string(MAX_CHANNEL_NAME_BYTES, 'channel');
      if (!isValidChannelName(channel)) throw RouterError.decode('gossip message', `invalid channel name ${JSON.stringify(channel)}`);
      const src = r.peerName('source');
      const dst = kind === 'unicast' ? r.peerName('destination') : null;
      const payload = r.longBytes(MAX_CONTROL_MESSAGE_BYTES, 'payload');
      return { type: 'gossip', kind, channel, src, dst, payload };
    }
    case MSG_REFUSE: {
      const code = r.string(MAX_REFUSE_TEXT_BYTES, 'code');
      const message = r.string(MAX_REFUSE_TEXT_BYTES, 'message');
      return { type: 'refuse', code, message };
    }
    case MSG_FRAME:
      return { type: 'frame', inner: bytes.subarray(1) };
    case MSG_FAR_FRAME:
      return { type: 'far-frame', message: bytes.subarray(1) };
    case MSG_UDP_STATUS: {
      const flags = r.u8('flags');
      const sinceProbeMs = r.u32('ms since probe');
      const echo = r.remaining >= UDP_STATUS_ECHO_BYTES ? r.bytes(UDP_STATUS_ECHO_BYTES, 'echo') : null;
      return { type: 'udp-status', hearing: (flags & 1) === 1, sinceProbeMs, echo, fastdp: { offered: (flags & 2) !== 0, hearing: (flags & 4) !== 0 },
        segments: (flags & 8) !== 0, far: (flags & 16) !== 0, kernel: { takes: (flags & 32) !== 0, grants: (flags & 64) !== 0 } };
    }
    case MSG_REKEY:
      return { type: 'rekey', rekey: readRekey(r) };
    case MSG_KERNEL_RELAY:
      return { type: 'kernel-relay', relay: readKernelRelay(r) };
    default:
      throw RouterError.decode('control message', `unknown type ${type}`);
  }
}
