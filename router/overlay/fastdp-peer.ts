// Which path one neighbour's frames take, the kernel fast path (VXLAN) or the
// sleeve, and why: the pure state machine behind the per-peer fallback. Time
// comes in as `nowMs`; nothing here sends, reads a clock or owns a timer.
//
// As with the sleeve's probes, each direction decides for itself: we send
// heartbeats through our VXLAN device to every neighbour that offers the fast
// path, and the neighbour tells us over TCP (UDP_STATUS bit 2) whether it
// hears them. Frames go to it over VXLAN only while it says so, the link is
// plaintext and the fast path is on here; they fall back to the sleeve as soon
// as it says otherwise or stops saying anything (an old version never offers,
// so it is never tried).

import type { FastdpFlags } from '../mesh/protocol';

export interface FastdpTimings {
  /** A heartbeat or a report counts while it is at most this old. */
  timeoutMs: number;
}

/** Why the fast path is off on this host, or null when it is on. */
export type FastdpLocal = { on: true } | { on: false; reason: string };

export interface FastdpDecision {
  fast: boolean;
  reason: string;
}

export class FastdpPeer {
  private offeredMs = -Infinity;
  private offered = false;
  private firstOfferMs = Infinity;
  /** Last report that the peer hears our heartbeats (and that it offers the fast path). */
  private hearsUsMs = -Infinity;
  private reportMs = -Infinity;
  private lastHeartbeatMs = -Infinity;
  private heartbeats = 0;

  constructor(readonly encrypted: boolean, readonly host: string | null) {}

  /** A UDP_STATUS from the peer: its fast-path bits. */
  onReport(flags: FastdpFlags, nowMs: number): void {
    this.reportMs = nowMs;
    this.offered = flags.offered;
    if (flags.offered) {
      this.offeredMs = nowMs;
      if (this.firstOfferMs === Infinity) this.firstOfferMs = nowMs;
    }
    if (flags.offered && flags.hearing) this.hearsUsMs = nowMs;
    else this.hearsUsMs = -Infinity;
  }

  /** A heartbeat from the peer arrived through our VXLAN device. */
  onHeartbeat(nowMs: number): void {
    this.lastHeartbeatMs = nowMs;
    this.heartbeats++;
  }

  get heartbeatsHeard(): number {
    return this.heartbeats;
  }

  /** Whether the peer offered the fast path recently: we send it heartbeats and keep its heartbeat FDB entry. */
  offers(nowMs: number, t: FastdpTimings): boolean {
    return this.offered && nowMs - this.offeredMs <= 2 * t.timeoutMs;
  }

  hearing(nowMs: number, t: FastdpTimings): boolean {
    return nowMs - this.lastHeartbeatMs <= t.timeoutMs;
  }

  /** What we tell the peer in our UDP_STATUS. */
  flags(local: FastdpLocal, nowMs: number, t: FastdpTimings): FastdpFlags {
    const offered = local.on && !this.encrypted && this.host !== null;
    return { offered, hearing: offered && this.hearing(nowMs, t) };
  }

  decide(local: FastdpLocal, nowMs: number, t: FastdpTimings): FastdpDecision {
    if (!local.on) return { fast: false, reason: local.reason };
    // Encrypted traffic never takes an unencrypted path, whatever the peer says.
    if (this.encrypted) return { fast: false, reason: 'encrypted connection: never the fast path' };
    if (this.host === null) return { fast: false, reason: 'fast path is IPv4 only' };
    const hearing = this.hearing(nowMs, t);
    if (!this.offers(nowMs, t)) {
      if (this.reportMs === -Infinity) return { fast: false, reason: 'waiting for the peer to report' };
      if (this.offered) return { fast: false, reason: 'no fast-path report from the peer lately' };
      return { fast: false, reason: 'peer does not offer the fast path (older version, password or --no-fastdp)' };
    }
    if (nowMs - this.hearsUsMs <= 2 * t.timeoutMs) {
      return { fast: true, reason: hearing ? 'VXLAN heartbeats get through both ways' : 'peer hears our VXLAN heartbeats; we hear none of its' };
    }
    if (nowMs - this.firstOfferMs <= 2 * t.timeoutMs) return { fast: false, reason: 'waiting for the first VXLAN heartbeats' };
    return {
      fast: false,
      reason: hearing ? 'peer hears none of our VXLAN heartbeats (UDP 6784 blocked one way?)' : 'no VXLAN heartbeats get through either way (UDP 6784 blocked?)',
    };
  }
}

/** The IPv4 address VXLAN can send to, from a TCP peer address (IPv4-mapped IPv6 unwrapped), or null. */
export function fastdpHost(host: string): string | null {
  const h = host.startsWith('::ffff:') ? host.slice(7) : host;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) return null;
  return h;
}
