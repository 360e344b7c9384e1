// The live mutation runner's inputs (scripts/mutate-live.ts): valid messages
// built with the repository's own codecs (handshake Hello and Auth, control
// messages, sleeve datagrams, DNS queries and mDNS packets), and a seeded
// mutator that damages them the ways parsers get hurt: flipped bits,
// boundary values over length fields, truncation, extension, spliced and
// duplicated ranges. Valid messages go through unmutated now and then, so the
// deeper paths behind a successful decode are reached too. Pure: no sockets.

import * as packet from 'dns-packet';
import { encodeHello, HELLO_NONCE_BYTES, SHARE_BYTES } from '../router/mesh/handshake-messages';
import { encodeGossip, encodeHeartbeat, encodeUdpStatus, allocFrameMessage } from '../router/mesh/protocol';
import type { PeerName } from '../router/mesh/peer-name';
import {
  BROADCAST_PEER, INNER_HEADER_BYTES, peerNameBytes, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, SLEEVE_TYPE_PROBE,
  VNET_HDR_BYTES, writeInnerHeader, writeSleeveHeader,
} from '../router/overlay/sleeve-codec';
import { SeededRng } from './chaos-faults';

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x20];

/** A damaged copy of `base` (never `base` itself); `keep` leaves that many leading bytes alone (e.g. a frame's length). */
export function mutate(rng: SeededRng, base: Uint8Array, keep = 0): Uint8Array {
  let out = Uint8Array.from(base);
  const rounds = rng.int(1, 4);
  for (let r = 0; r < rounds; r++) {
    const span = out.length - keep;
    const at = (): number => keep + Math.floor(rng.next() * Math.max(1, span));
    switch (rng.int(0, 7)) {
      case 0: // flip bits
        if (span > 0) { const i = at(); out[i] = out[i]! ^ (1 << rng.int(0, 7)); }
        break;
      case 1: // an interesting byte
        if (span > 0) out[at()] = rng.pick(INTERESTING);
        break;
      case 2: { // an interesting 16 or 32 bit value (length fields)
        if (span < 4) break;
        const i = Math.min(at(), out.length - 4);
        const v = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0xffffffff]);
        const dv = new DataView(out.buffer, out.byteOffset, out.length);
        if (rng.next() < 0.5) dv.setUint16(i, v & 0xffff); else dv.setUint32(i, v >>> 0);
        break;
      }
      case 3: // truncate
        out = out.slice(0, keep + Math.floor(rng.next() * (span + 1)));
        break;
      case 4: { // extend with random bytes
        const extra = new Uint8Array(rng.int(1, rng.next() < 0.9 ? 16 : 600));
        for (let i = 0; i < extra.length; i++) extra[i] = rng.int(0, 255);
        const grown = new Uint8Array(out.length + extra.length);
        grown.set(out);
        grown.set(extra, out.length);
        out = grown;
        break;
      }
      case 5: { // duplicate a range in place
        if (span < 2) break;
        const from = at();
        const len = rng.int(1, Math.min(64, out.length - from));
        const grown = new Uint8Array(out.length + len);
        grown.set(out.subarray(0, from + len));
        grown.set(out.subarray(from, from + len), from + len);
        grown.set(out.subarray(from + len), from + 2 * len);
        out = grown;
        break;
      }
      case 6: // random byte
        if (span > 0) out[at()] = rng.int(0, 255);
        break;
      default: { // remove a range
        if (span < 2) break;
        const from = at();
        const len = rng.int(1, Math.min(32, out.length - from));
        out = Uint8Array.from([...out.subarray(0, from), ...out.subarray(from + len)]);
      }
    }
  }
  return out;
}

function randomBytes(rng: SeededRng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(0, 255);
  return b;
}

/** A random locally administered unicast peer name. */
export function randomPeerName(rng: SeededRng): PeerName {
  const b = randomBytes(rng, 6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':') as PeerName;
}

/** A Hello of any shape a peer may send: no password, one share or two. */
export function someHello(rng: SeededRng): Uint8Array {
  const shares = Array.from({ length: rng.int(0, 2) }, () => randomBytes(rng, SHARE_BYTES));
  return encodeHello({ minVersion: rng.next() < 0.8 ? 3 : rng.int(1, 4), maxVersion: 3 + rng.int(0, 1), nonce: randomBytes(rng, HELLO_NONCE_BYTES), shares, ciphers: 0 });
}

/** An Ethernet frame: ARP, IPv4 UDP or junk, to a container MAC or broadcast. */
function someEthernet(rng: SeededRng): Uint8Array {
  const len = rng.pick([14, 42, 60, 98, 1514, rng.int(14, 3000)]);
  const f = randomBytes(rng, len);
  if (rng.next() < 0.5) f.fill(0xff, 0, 6);
  f[12] = rng.pick([0x08, 0x86, 0x81]);
  f[13] = rng.pick([0x00, 0x06, 0xdd]);
  return f;
}

/** Inner frame (sleeve-codec.ts): src, dst, hops, virtio_net_hdr, Ethernet. */
export function someInnerFrame(rng: SeededRng, src: PeerName, dst: PeerName): Uint8Array {
  const eth = someEthernet(rng);
  const out = new Uint8Array(INNER_HEADER_BYTES + VNET_HDR_BYTES + eth.length);
  writeInnerHeader(out, 0, peerNameBytes(src), peerNameBytes(rng.next() < 0.3 ? BROADCAST_PEER : dst), rng.int(0, 33));
  if (rng.next() < 0.2) out.set(randomBytes(rng, VNET_HDR_BYTES), INNER_HEADER_BYTES);
  out.set(eth, INNER_HEADER_BYTES + VNET_HDR_BYTES);
  return out;
}

/** A sleeve datagram as a peer named `sender` sends it (plaintext body; sealed ones are random bytes to the receiver). */
export function someSleeveDatagram(rng: SeededRng, sender: PeerName, receiver: PeerName): Uint8Array {
  const probe = rng.next() < 0.3;
  const body = probe ? (rng.next() < 0.5 ? randomBytes(rng, 8) : new Uint8Array(0)) : someInnerFrame(rng, sender, receiver);
  const out = new Uint8Array(SLEEVE_HEADER_BYTES + body.length + (rng.next() < 0.5 ? 16 : 0));
  const phase = rng.next() < 0.5 ? 0x80 : 0;
  writeSleeveHeader(out, 0, (probe ? SLEEVE_TYPE_PROBE : SLEEVE_TYPE_FRAME) | phase, peerNameBytes(sender), rng.next() < 0.1 ? 2 ** 53 - 1 : rng.int(0, 1_000_000));
  out.set(body, SLEEVE_HEADER_BYTES);
  return out;
}

/** A control message other than gossip (gossip seeds come from what the daemon sent us). */
export function someControlMessage(rng: SeededRng, self: PeerName, peer: PeerName): Uint8Array {
  switch (rng.int(0, 5)) {
    case 0: return encodeHeartbeat();
    case 1: return encodeUdpStatus(rng.next() < 0.5, rng.int(0, 100_000), rng.next() < 0.5 ? randomBytes(rng, 8) : null);
    case 2: {
      const inner = someInnerFrame(rng, self, peer);
      const msg = allocFrameMessage(inner.length);
      msg.set(inner, 1);
      return msg;
    }
    case 3: return Uint8Array.from([6, rng.int(0, 3), ...randomBytes(rng, 4), ...randomBytes(rng, 32)]);
    case 4: return Uint8Array.from([rng.int(7, 255), ...randomBytes(rng, rng.int(0, 20))]);
    default: return encodeGossip(rng.pick(['neighbour', 'broadcast', 'unicast'] as const), rng.pick(['topology', 'ipam', 'dns', 'x']), self, peer, randomBytes(rng, rng.int(0, 200)));
  }
}

const QTYPES: packet.RecordType[] = ['A', 'AAAA', 'PTR', 'SRV', 'TXT', 'MX', 'CNAME', 'NS', 'SOA'];

/** A DNS query (or, for mDNS, sometimes a response) about names weave answers for. */
export function someDnsPacket(rng: SeededRng, names: string[], allowResponse: boolean): Uint8Array {
  const name = rng.pick(names);
  const type = rng.pick(QTYPES);
  if (allowResponse && rng.next() < 0.3) {
    return packet.encode({
      type: 'response', id: 0, flags: packet.AUTHORITATIVE_ANSWER,
      answers: [{ type: 'A', name, ttl: rng.int(0, 5000), data: `10.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(1, 254)}` }],
    });
  }
  const q: packet.Packet = {
    type: 'query', id: rng.int(0, 0xffff), flags: packet.RECURSION_DESIRED,
    questions: Array.from({ length: rng.next() < 0.9 ? 1 : rng.int(0, 3) }, (): packet.Question => ({ type, name, class: 'IN' })),
  };
  if (rng.next() < 0.3) q.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: rng.pick([512, 1232, 4096, 65535]), flags: 0, options: [] } as unknown as packet.Answer];
  return packet.encode(q);
}
