// Test helper: a TCPv4 GSO super-frame as the TAP hands it to the router
// (virtio-net header, Ethernet, IPv4, TCP, payload), for data-path tests that
// need bulk frames with known bytes. Shared so the frame layout lives once.

import { VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';

/**
 * A super-frame of `payload` bytes from MAC 02:02:02:02:02:0a to 02:02:02:02:02:0b,
 * payload byte i = (i * 13 + seed) & 0xff; `plain` zeroes the vnet header (no GSO).
 */
export function tcpSuperFrame(payload: number, seed = 0, plain = false): Buffer {
  const hdr = 14 + 20 + 20;
  const f = Buffer.alloc(VNET_HDR_BYTES + hdr + payload);
  f[0] = 1; f[1] = 1; f.writeUInt16LE(hdr, 2); f.writeUInt16LE(1448, 4); f.writeUInt16LE(34, 6); f.writeUInt16LE(16, 8);
  f.fill(0x02, VNET_HDR_BYTES, VNET_HDR_BYTES + 12);
  f[VNET_HDR_BYTES + 5] = 0x0b; f[VNET_HDR_BYTES + 11] = 0x0a;
  f.writeUInt16BE(0x0800, VNET_HDR_BYTES + 12);
  const ip = VNET_HDR_BYTES + 14;
  f[ip] = 0x45; f.writeUInt16BE(40 + payload, ip + 2); f[ip + 8] = 64; f[ip + 9] = 6;
  f[ip + 32] = 0x50;
  for (let i = 0; i < payload; i++) f[ip + 40 + i] = (i * 13 + seed) & 0xff;
  if (plain) f.fill(0, 0, VNET_HDR_BYTES);
  return f;
}
