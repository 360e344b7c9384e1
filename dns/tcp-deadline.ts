// When the DNS server closes a client's TCP connection. Only whole queries
// (and our answers to them) count as activity: a connection is closed idleMs
// after the last complete query or answer, and a query whose first bytes have
// arrived must be complete within queryMs. Bytes that trickle in without ever
// completing a query therefore buy nothing, so one container cannot hold the
// server's TCP slots by sending a byte every few seconds (RFC 7766 §6.2.3 asks
// servers to manage idle connections; §6.2.2 lets them close them).
// On an injected clock, so it is tested without waiting.

import type { Clock, Timer } from '../common/clock';

export class TcpDeadline {
  private lastActiveMs: number;
  private partialSinceMs: number | null = null;
  private timer: Timer | null = null;
  private stopped = false;

  constructor(private readonly clock: Clock, private readonly idleMs: number, private readonly queryMs: number, private readonly expire: () => void) {
    this.lastActiveMs = clock.now();
    this.arm();
  }

  /** A whole query was read; any bytes after it start a new one. */
  queryComplete(): void {
    this.lastActiveMs = this.clock.now();
    this.partialSinceMs = null;
    this.arm();
  }

  /** An answer went out. */
  answered(): void {
    this.lastActiveMs = this.clock.now();
    this.arm();
  }

  /** Bytes of an unfinished query are buffered; the first call starts its receive cap, later ones change nothing. */
  partial(): void {
    if (this.partialSinceMs !== null) return;
    this.partialSinceMs = this.clock.now();
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  /** When the connection will be closed unless a query completes first. */
  deadlineMs(): number {
    const idle = this.lastActiveMs + this.idleMs;
    return this.partialSinceMs === null ? idle : Math.min(idle, this.partialSinceMs + this.queryMs);
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = this.clock.setTimer(this.deadlineMs() - this.clock.now(), () => {
      this.timer = null;
      this.stopped = true;
      this.expire();
    });
  }
}
