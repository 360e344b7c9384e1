// The virtio_net_hdr check on the receive path: a table of headers a TAP with
// our offloads emits (accepted) and of hostile ones (refused by reason), plus
// seeded random headers that must yield a verdict, never a throw.

import t from 'tap';
import { SeededRng } from '../../common/rng';
import { MAX_SLEEVE_FRAME_BYTES, VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import { checkVnetHeader, VnetVerdict } from '../../router/overlay/vnet-header';

interface Hdr { flags?: number; gso?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }

/** A frame of `frameLen` bytes after the header, at offset 3 of its buffer (offsets must be honoured). */
function frame(h: Hdr, frameLen: number): { buf: Buffer; off: number; len: number } {
  const off = 3;
  const buf = Buffer.alloc(off + VNET_HDR_BYTES + frameLen);
  buf[off] = h.flags ?? 0;
  buf[off + 1] = h.gso ?? 0;
  buf.writeUInt16LE(h.hdrLen ?? 0, off + 2);
  buf.writeUInt16LE(h.gsoSize ?? 0, off + 4);
  buf.writeUInt16LE(h.csumStart ?? 0, off + 6);
  buf.writeUInt16LE(h.csumOffset ?? 0, off + 8);
  return { buf, off, len: VNET_HDR_BYTES + frameLen };
}

// Ethernet 14 + IPv4 20 = TCP header at 34; Ethernet 14 + IPv6 40 = 54.
const cases: [string, Hdr, number, VnetVerdict][] = [
  ['plain frame, no offload', {}, 60, 'ok'],
  ['plain frame the kernel already checked', { flags: 2 }, 1514, 'ok'],
  ['plain UDP frame with its checksum left to do', { flags: 1, csumStart: 34, csumOffset: 6 }, 300, 'ok'],
  ['plain TCP frame with its checksum left to do', { flags: 1, csumStart: 34, csumOffset: 16 }, 1514, 'ok'],
  ['TCPv4 super-frame', { flags: 1, gso: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 }, 64_000, 'ok'],
  ['TCPv6 super-frame', { flags: 1, gso: 4, hdrLen: 86, gsoSize: 1428, csumStart: 54, csumOffset: 16 }, 30_000, 'ok'],
  ['super-frame whose linear part is the whole frame', { flags: 1, gso: 1, hdrLen: 3000, gsoSize: 1448, csumStart: 34, csumOffset: 16 }, 3000, 'ok'],
  ['shorter than an Ethernet header', {}, 13, 'size'],
  ['bigger than a sleeve datagram carries', {}, MAX_SLEEVE_FRAME_BYTES, 'size'],
  ['unknown flag bit', { flags: 4 }, 60, 'flags'],
  ['both checksum flags', { flags: 3, csumStart: 34, csumOffset: 16 }, 100, 'flags'],
  ['UDP fragmentation offload (UFO)', { flags: 1, gso: 3, gsoSize: 1400, csumStart: 34, csumOffset: 6 }, 9000, 'gso-type'],
  ['UDP segmentation offload (USO), not one we emit', { flags: 1, gso: 5, gsoSize: 1400, csumStart: 34, csumOffset: 6 }, 9000, 'gso-type'],
  ['TCP with the ECN bit (we do not offer TSO_ECN)', { flags: 1, gso: 0x81, gsoSize: 1448, csumStart: 34, csumOffset: 16 }, 9000, 'gso-type'],
  ['ECN bit alone', { gso: 0x80 }, 60, 'gso-type'],
  ['super-frame without a checksum to finish', { gso: 1, gsoSize: 1448 }, 9000, 'flags'],
  ['super-frame with gso_size 0', { flags: 1, gso: 1, gsoSize: 0, csumStart: 34, csumOffset: 16 }, 9000, 'gso-size'],
  ['gso_size past the frame', { flags: 1, gso: 1, gsoSize: 9001, csumStart: 34, csumOffset: 16 }, 9000, 'gso-size'],
  ['plain frame with a gso_size', { gsoSize: 1448 }, 60, 'gso-size'],
  ['hdr_len past the frame', { flags: 1, gso: 1, hdrLen: 9001, gsoSize: 1448, csumStart: 34, csumOffset: 16 }, 9000, 'hdr-len'],
  ['super-frame with a UDP checksum offset', { flags: 1, gso: 1, gsoSize: 1448, csumStart: 34, csumOffset: 6 }, 9000, 'csum'],
  ['checksum field past the frame end', { flags: 1, csumStart: 50, csumOffset: 16 }, 67, 'csum'],
  ['checksum field exactly at the frame end', { flags: 1, csumStart: 50, csumOffset: 16 }, 68, 'ok'],
  ['checksum start inside the Ethernet header', { flags: 1, csumStart: 4, csumOffset: 6 }, 60, 'csum'],
  ['odd checksum offset', { flags: 1, csumStart: 34, csumOffset: 7 }, 60, 'csum'],
  ['huge checksum start (wraps nothing)', { flags: 1, csumStart: 0xffff, csumOffset: 16 }, 60, 'csum'],
  ['checksum fields without the flag', { csumStart: 34, csumOffset: 16 }, 60, 'csum'],
];

t.test('the header table', async (t) => {
  for (const [name, h, frameLen, want] of cases) {
    const f = frame(h, frameLen);
    t.equal(checkVnetHeader(f.buf, f.off, f.len), want, name);
  }
});

t.test('random headers give a verdict, never a throw', async (t) => {
  const seed = 42;
  const rng = new SeededRng(seed);
  const verdicts = new Set<VnetVerdict>();
  let thrown = 0;
  for (let i = 0; i < 20_000; i++) {
    const len = VNET_HDR_BYTES + Math.floor(rng.next() * 2000);
    const buf = Buffer.alloc(len);
    for (let j = 0; j < Math.min(len, VNET_HDR_BYTES + 64); j++) buf[j] = Math.floor(rng.next() * 256);
    // Keep the header plausible half the time, so the deeper checks get exercised too.
    if (rng.next() < 0.5) { buf[0]! &= 1; buf[1] = rng.next() < 0.5 ? 0 : 1; }
    try {
      verdicts.add(checkVnetHeader(buf, 0, len));
    } catch {
      thrown++;
    }
  }
  t.equal(thrown, 0, `no throws (seed ${seed})`);
  t.ok(verdicts.size >= 5, `many different verdicts seen: ${[...verdicts].join(', ')}`);
});
