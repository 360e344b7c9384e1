// The overlay's per-neighbour links and how each one's path is chosen: UDP
// probes every probe interval, the neighbour's UDP_STATUS reports over TCP
// (whether it hears our probes, the challenge it last heard, its fast-path,
// far and kernel relay bits, whether it takes sleeve version 3), and the
// status line `weave status` shows. The overlay (overlay.ts) moves frames;
// this file makes and frees the links, decides which path each uses and
// keeps the count of links that take version 3. Nothing here runs per frame.

import { randomFillSync } from 'node:crypto';
import type { Clock, Timer } from '../../common/clock';
import type { Logger } from '../../common/logger';
import type { LinkStatus, OverlayNeighbour } from '../mesh/data-plane';
import type { PeerName } from '../mesh/peer-name';
import { encodeUdpStatus, KernelRelayFlags, NO_FASTDP, NO_KERNEL_RELAY, type UdpStatusReport } from '../mesh/protocol';
import type { Fastdp } from './fastdp';
import type { DatagramPort } from './ports';
import { SLEEVE_HEADER_BYTES, SLEEVE_TYPE_PROBE } from './sleeve-codec';
import type { SleeveSession } from './sleeve-session';
import { UdpEndpoint } from './udp-endpoint';

export interface OverlayTimings {
  probeIntervalMs: number;
  /** UDP counts as working while a probe got through within this time. */
  udpTimeoutMs: number;
  macMaxAgeMs: number;
  /** How long the sleeve stays quiet after a burst before its buffers go back to the kernel (idle-memory.ts). */
  idleReleaseMs: number;
}

export const DEFAULT_OVERLAY_TIMINGS: OverlayTimings = { probeIntervalMs: 1_000, udpTimeoutMs: 3_500, macMaxAgeMs: 10 * 60_000, idleReleaseMs: 20_000 };
export const FAST_OVERLAY_TIMINGS: OverlayTimings = { probeIntervalMs: 250, udpTimeoutMs: 1_000, macMaxAgeMs: 10 * 60_000, idleReleaseMs: 2_000 };

export interface Link {
  n: OverlayNeighbour;
  session: SleeveSession;
  udp: UdpEndpoint;
  /** Last authenticated datagram of any kind from this neighbour. */
  lastUdpRxMs: number;
  /** What the neighbour last told us about hearing our probes. */
  peerHearsUs: boolean;
  peerStatusMs: number;
  /** The neighbour accepts sleeve version 3. */
  segmented: boolean;
  /** The neighbour takes and relays far messages (UDP_STATUS bit 4, far-path.ts). */
  far: boolean;
  /** The neighbour's kernel relay bits (UDP_STATUS bits 5 and 6, kernel-relay.ts). */
  kernel: KernelRelayFlags;
}

export interface ProbeDeps {
  clock: Clock;
  logger: Logger;
  udp: DatagramPort;
  fastdp?: Fastdp;
  timings: OverlayTimings;
  /** Body bytes per version 3 segment; 0 when our port cannot send segments (then no link is segmented). */
  stride: number;
  /** Called on every probe tick after the probes left (the MAC table's ageing). */
  tick(nowMs: number): void;
  /** We take far messages (UDP_STATUS bit 4). */
  far(): boolean;
  /** Our kernel relay bits (UDP_STATUS bits 5 and 6). */
  kernel(): KernelRelayFlags;
}

export class LinkProbes {
  /** Links that take version 3: while there are any, super-frames are split to fit one version 3 message. */
  segmentedLinks = 0;
  private timer: Timer | null = null;
  private closed = false;
  /** The socket option is the socket's for good: set once, at the first sealed link. */
  private checksumsOmitted = false;

  constructor(private readonly links: Map<PeerName, Link>, private readonly deps: ProbeDeps) {}

  /** A new neighbour's link (replacing any old one), probed at once. */
  add(n: OverlayNeighbour, session: SleeveSession): void {
    this.remove(n.name);
    const udp = new UdpEndpoint(n.host, n.udpPort, n.keys !== null, this.deps.timings.udpTimeoutMs);
    // With a password every link is sealed (a mesh has one password or none), so the UDP checksum adds nothing.
    // UDP GSO refuses a socket without checksums (EINVAL), and with GSO the checksum is offloaded anyway.
    if (n.keys !== null && !this.checksumsOmitted && this.deps.stride === 0) {
      this.checksumsOmitted = true;
      this.deps.udp.omitChecksums?.();
    }
    const link: Link = {
      n, session, udp, lastUdpRxMs: -Infinity, peerHearsUs: false, peerStatusMs: -Infinity, segmented: false, far: false, kernel: NO_KERNEL_RELAY,
    };
    this.links.set(n.name, link);
    this.sendProbe(link, null, n.host, n.udpPort);
    this.deps.udp.flush();
  }

  /** Frees a link's cipher state and takes it out of the version 3 count. */
  remove(name: PeerName): void {
    const link = this.links.get(name);
    if (link === undefined) return;
    link.session.close();
    if (link.segmented) this.segmentedLinks--;
    this.links.delete(name);
  }

  start(): void {
    this.schedule();
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
  }

  status(l: Link): LinkStatus {
    const now = this.deps.clock.now();
    const hearing = now - l.lastUdpRxMs <= this.deps.timings.udpTimeoutMs;
    let reason: string;
    if (l.peerHearsUs) reason = hearing ? 'UDP works both ways' : 'peer hears our UDP; we hear none of its probes';
    else if (l.peerStatusMs === -Infinity) reason = 'waiting for the first UDP probe report';
    else reason = hearing ? 'peer hears none of our UDP probes (blocked one way?)' : 'no UDP probes get through either way (UDP blocked?)';
    const udpAddress = `${l.udp.host}:${l.udp.port}`;
    const fast = this.deps.fastdp?.decision(l.n.name) ?? null;
    if (fast?.fast) return { path: 'fastdp', reason: `VXLAN: ${fast.reason}`, udpAddress, encrypted: l.session.encrypted };
    if (fast !== null) reason += `; fast path: ${fast.reason}`;
    return { path: l.peerHearsUs ? 'udp' : 'tcp', reason, udpAddress, encrypted: l.session.encrypted };
  }

  /** A UDP_STATUS control message: whether the neighbour hears our probes, and the last challenge it heard. */
  handleUdpStatus(l: Link, report: UdpStatusReport): void {
    const { hearing, echo = null } = report;
    l.far = report.far === true;
    l.kernel = report.kernel ?? NO_KERNEL_RELAY;
    const segmented = report.segments === true && this.deps.stride > 0;
    if (l.segmented !== segmented) {
      l.segmented = segmented;
      this.segmentedLinks += segmented ? 1 : -1;
    }
    const from = l.n.name;
    this.deps.fastdp?.onReport(from, report.fastdp ?? NO_FASTDP);
    if (echo !== null && l.udp.confirm(echo, this.deps.clock.now()) && this.deps.logger.enabled('info')) {
      this.deps.logger.info('UDP address confirmed over TCP', { peer: from, addr: `${l.udp.host}:${l.udp.port}` });
    }
    if (l.peerHearsUs !== hearing && this.deps.logger.enabled('info')) {
      this.deps.logger.info(hearing ? 'UDP path works, sending frames over UDP' : 'UDP path lost, sending frames over the TCP connection', { peer: from });
    }
    l.peerHearsUs = hearing;
    l.peerStatusMs = this.deps.clock.now();
  }

  /** A datagram from an address a plaintext link cannot trust: challenge it (udp-endpoint.ts) with a probe there. */
  challenge(link: Link, host: string, port: number): void {
    const nonce = link.udp.challenge(host, port, this.deps.clock.now(), randomFillSync);
    if (nonce !== null) this.sendProbe(link, nonce, host, port);
  }

  /** A probe to host:port, carrying a challenge (plaintext meshes) or nothing. */
  sendProbe(link: Link, challenge: Buffer | null, host: string, port: number): void {
    const udp = this.deps.udp;
    const slab = udp.stageSlab();
    const at = udp.stageOffset();
    if (challenge !== null) challenge.copy(slab, at + SLEEVE_HEADER_BYTES);
    const n = link.session.seal(slab, at, SLEEVE_TYPE_PROBE, challenge !== null ? challenge.length : 0);
    if (n > 0) udp.commit(n, host, port);
  }

  private schedule(): void {
    if (this.closed) return;
    const t = this.deps.timings;
    this.timer = this.deps.clock.setTimer(t.probeIntervalMs, () => {
      const now = this.deps.clock.now();
      for (const link of this.links.values()) {
        this.sendProbe(link, null, link.udp.host, link.udp.port);
        const sinceMs = now - link.lastUdpRxMs;
        const echo = link.udp.tick();
        const fastdp = this.deps.fastdp?.flags(link.n.name) ?? NO_FASTDP;
        // Bit 3: every overlay of this version reassembles version 3, whatever its port can send.
        link.n.sendControl(encodeUdpStatus(sinceMs <= t.udpTimeoutMs, Number.isFinite(sinceMs) ? sinceMs : 0xffffffff, echo, fastdp, true, this.deps.far(),
          this.deps.kernel()));
        // A neighbour that stopped reporting (old version, overload) is not trusted with UDP.
        if (now - link.peerStatusMs > 2 * t.udpTimeoutMs && link.peerHearsUs) this.handleUdpStatus(link, { hearing: false });
      }
      this.deps.fastdp?.tick();
      this.deps.udp.flush();
      this.deps.tick(now);
      this.schedule();
    });
  }
}
