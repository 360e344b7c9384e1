// Frames for the lane tests that drive a TAP in its own namespace
// (tap-namespace.ts): UDP datagrams sent from inside it and how they look
// when the TAP hands them over, and ICMP echo requests to write into it
// with the replies they bring (the packet built by spoof-frames.ts). Shared
// by lone-lane and far-lane.

import { execFileSync } from 'node:child_process';
import { VNET_HDR_BYTES } from '../../router/overlay/sleeve-codec';
import { NS_IP, SINK_IP, SINK_MAC } from './tap-namespace';
import { ipv4Echo } from './spoof-frames';

/** The static neighbour's MAC as bytes: the destination of the namespace's frames to SINK_IP. */
export const SINK = Buffer.from(SINK_MAC.split(':').map((h) => parseInt(h, 16)));
const ECHO_ID = 0x7777;

/** The TAP frame (vnet header included) of a UDP datagram with `payload` bytes. */
export const udpFrameBytes = (payload: number): number => VNET_HDR_BYTES + 14 + 20 + 8 + payload;

/** UDP datagrams of these sizes from the namespace to SINK_IP:9999, sent while our event loop is blocked: one TAP wakeup reads them all. */
export function sendFromNamespace(ns: string, sizes: number[]): void {
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', `
    const s = require('dgram').createSocket('udp4');
    const sizes = ${JSON.stringify(sizes)};
    let i = 0;
    const next = () => { if (i === sizes.length) return s.close(); const b = Buffer.alloc(sizes[i]).fill(0x40 + i); i++; s.send(b, 9999, '${SINK_IP}', next); };
    next();`]);
}

/** A frame the namespace sent to SINK_IP:9999 with a payload of `size` bytes of `fill`. */
export function isDatagramFrame(f: Buffer, tapMac: Buffer, size: number, fill: number): boolean {
  const e = f.subarray(VNET_HDR_BYTES);
  const payload = e.subarray(14 + 20 + 8);
  return f.length === udpFrameBytes(size) && f[1] === 0 && e.subarray(0, 6).equals(SINK) && e.subarray(6, 12).equals(tapMac) &&
    e.readUInt16BE(14 + 20 + 2) === 9999 && payload.length === size && payload.every((b) => b === fill);
}

/** An ICMP echo request from SINK_IP to the namespace's address, Ethernet dst -> src, vnet header (zeros) first. */
export function echoRequest(dst: Buffer, src: Buffer, seq: number): Buffer {
  return Buffer.concat([Buffer.alloc(VNET_HDR_BYTES), dst, src, Buffer.from([0x08, 0x00]), ipv4Echo(SINK_IP, NS_IP, ECHO_ID, seq, 32, 0x61)]);
}

/** Whether a frame the TAP gave JS is the namespace's echo reply to `seq`. */
export function isEchoReply(f: Buffer, seq: number): boolean {
  const e = f.subarray(VNET_HDR_BYTES);
  return e.subarray(0, 6).equals(SINK) && e.readUInt16BE(12) === 0x0800 && e[14 + 9] === 1 && e[14 + 20] === 0 && e.readUInt16BE(14 + 24) === ECHO_ID &&
    e.readUInt16BE(14 + 26) === seq;
}
