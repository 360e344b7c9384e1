// The overlay's counters, as the metrics renderer and `weave status` show
// them: the traffic it moves (frames and bytes by way), the frames it drops
// by reason, and the one table built from those and the parts that count on
// their own (the lane, the fast path, the far key exchange, reassembly).
// Counters are plain numbers in objects made once, bumped in place on the
// frame path.

import type { DropReason } from './forwarder';

export type OverlayCounters = Record<string, number>;

export function newTrafficCounters(): OverlayCounters {
  return {
    framesFromBridge: 0, framesToBridge: 0, framesSentUdp: 0, framesSentTcp: 0, framesReceivedUdp: 0, framesReceivedTcp: 0,
    framesRelayed: 0, framesRelayedInPlace: 0, framesSplit: 0, framesMarkedCe: 0, bytesSentUdp: 0, bytesReceivedUdp: 0, framesSentSegmented: 0,
    framesSentFar: 0, framesReceivedFar: 0, framesRelayedFar: 0, framesRelayedUnmoved: 0, memoryReleasedBytes: 0,
    framesSentKernelRelay: 0, framesReceivedKernelRelay: 0, kernelProbesSent: 0, kernelProbesReceived: 0,
    bytesSentTcp: 0, bytesReceivedTcp: 0,
  };
}

export function newDropCounters(): Record<DropReason, number> {
  return {
    short: 0, version: 0, type: 0, 'unknown-sender': 0, auth: 0, replay: 0, 'no-route': 0, hops: 0, local: 0, 'too-big': 0, loop: 0, backlog: 0,
    source: 0, vnet: 0, congestion: 0, segment: 0, duplicate: 0, 'far-key': 0, 'kernel-source': 0,
  };
}

/** One table: `parts` over the traffic (a part may restate a total it adds to), then each drop as frames_dropped{reason="..."}. */
export function counterTable(traffic: OverlayCounters, drops: Readonly<Record<DropReason, number>>, ...parts: (OverlayCounters | undefined)[]): OverlayCounters {
  const out: OverlayCounters = Object.assign({ ...traffic }, ...parts);
  for (const [reason, n] of Object.entries(drops)) out[`frames_dropped{reason="${reason}"}`] = n;
  return out;
}
