// The kernel fast path: frames to a neighbour go through Linux VXLAN on UDP
// 6784 instead of the router, when the mesh is plaintext, the fast path is on
// at both ends and heartbeats prove the VXLAN path per direction. This file
// ties the pure parts together: per-neighbour state and decisions
// (fastdp-peer.ts), heartbeat frames (fastdp-heartbeat.ts) through the
// heartbeat TAP (a FramePort), and the vxlan device's FDB (fastdp-fdb.ts),
// reconciled against what the kernel holds through an FdbDevice. The
// composition root (cli/fastdp-device.ts) makes the devices and the batches.
//
// The overlay drives it: neighbours come and go with addPeer/removePeer, the
// peer's UDP_STATUS bits arrive in onReport, ours leave with flags(), and
// tick() runs on the overlay's probe timer. The addresses the FDB tunnels to
// are also the only ones the host's firewall lets send to the VXLAN port
// (FdbDevice.allowPeers). Only neighbours are ever on the
// fast path: a peer reached through another keeps the sleeve, since its MACs
// get no entry and its frames reach the router's TAP as before. Everything
// here tolerates a failing device: an error is logged and counted, and the
// next tick tries again from what the kernel says it holds.

import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import type { PeerName } from '../mesh/peer-name';
import type { FastdpFlags } from '../mesh/protocol';
import { desiredFdb, diffFdb, fdbBatch, fdbPeerAddresses, FdbTable, parseFdbShow } from './fastdp-fdb';
import { encodeHeartbeat, heartbeatMac, parseHeartbeat } from './fastdp-heartbeat';
import { FastdpDecision, fastdpHost, FastdpLocal, FastdpPeer, FastdpTimings } from './fastdp-peer';
import type { FramePort } from './ports';

/** The vxlan device's FDB as the kernel keeps it. */
export interface FdbDevice {
  readonly name: string;
  /** `bridge -j fdb show dev NAME`. */
  show(): Promise<string>;
  /** Runs `bridge -batch` lines. */
  apply(lines: string[]): Promise<void>;
  /** Only these addresses may send to the VXLAN port (the fast path's nftables set). */
  allowPeers(addresses: readonly string[]): Promise<void>;
}

/** What the fast path needs of the MAC table. */
export interface FastdpMacs {
  snapshot(): { mac: string; peer: PeerName }[];
  /** Frames to a fast-path neighbour bypass the router, so its MACs would age out while in use. */
  touchPeer(peer: PeerName, nowMs: number): void;
}

/** Resynchronise with the kernel at least this often, even when nothing changed here. */
const RESYNC_MS = 10_000;

export class Fastdp {
  private readonly peers = new Map<PeerName, { state: FastdpPeer; heartbeat: Buffer; fast: boolean }>();
  private macs: FastdpMacs | null = null;
  private lastApplied: FdbTable | null = null;
  /** The firewall set as last written, joined; null: unknown (at start, after an error). */
  private lastAllowed: string | null = null;
  private lastSyncMs = -Infinity;
  private busy = false;
  private again = false;
  private closed = false;
  readonly counters = { fastdpHeartbeatsSent: 0, fastdpHeartbeatsReceived: 0, fastdpFdbErrors: 0 };
  private fdbEntries = 0;
  private fastPeers = 0;

  constructor(
    /** heartbeats and fdb are null when the fast path is off here (opts.local says why). */
    private readonly deps: { clock: Clock; logger: Logger; heartbeats: FramePort | null; fdb: FdbDevice | null },
    private readonly opts: { localPeer: PeerName; local: FastdpLocal; timings: FastdpTimings },
  ) {}

  /** For status: on or why not, neighbours on it now, and entries in the vxlan device's FDB. */
  summary(): { on: boolean; reason: string; peers: number; fdbEntries: number } {
    const l = this.opts.local;
    return { on: l.on, reason: l.on ? 'VXLAN on UDP 6784' : l.reason, peers: this.fastPeers, fdbEntries: this.fdbEntries };
  }

  start(macs: FastdpMacs): void {
    this.macs = macs;
    this.deps.heartbeats?.start((buf, off, len) => this.handleFrame(buf, off, len), () => undefined);
  }

  close(): void {
    this.closed = true;
    this.deps.heartbeats?.close();
  }

  addPeer(name: PeerName, host: string, encrypted: boolean): void {
    this.peers.set(name, { state: new FastdpPeer(encrypted, fastdpHost(host)), heartbeat: encodeHeartbeat(this.opts.localPeer, name), fast: false });
  }

  removePeer(name: PeerName): void {
    const p = this.peers.get(name);
    this.peers.delete(name);
    if (p?.fast) this.reconcile();
  }

  onReport(name: PeerName, flags: FastdpFlags): void {
    const p = this.peers.get(name);
    if (!p) return;
    p.state.onReport(flags, this.deps.clock.now());
    this.update(false);
  }

  /** Our fast-path bits for the peer's UDP_STATUS. */
  flags(name: PeerName): FastdpFlags {
    const p = this.peers.get(name);
    if (!p || this.closed) return { offered: false, hearing: false };
    return p.state.flags(this.opts.local, this.deps.clock.now(), this.opts.timings);
  }

  decision(name: PeerName): FastdpDecision | null {
    const p = this.peers.get(name);
    return p ? p.state.decide(this.opts.local, this.deps.clock.now(), this.opts.timings) : null;
  }

  /** On the overlay's probe timer: heartbeats out, decisions refreshed, the FDB reconciled. */
  tick(): void {
    const port = this.deps.heartbeats;
    if (!this.opts.local.on || this.closed || port === null) return;
    const now = this.deps.clock.now();
    for (const [name, p] of this.peers) {
      if (!p.state.flags(this.opts.local, now, this.opts.timings).offered || !p.state.offers(now, this.opts.timings)) continue;
      // Only once its entry is in: a heartbeat to an unknown MAC would flood to the router's TAP and down
      // the broadcast tree, and the peer would hear it over the sleeve and wrongly report the VXLAN path works.
      if (p.state.host === null || this.lastApplied?.get(heartbeatMac(name)) !== p.state.host) continue;
      port.write(p.heartbeat, 0, p.heartbeat.length);
      this.counters.fastdpHeartbeatsSent++;
    }
    this.update(true);
  }

  /**
   * Re-decides every neighbour's path; the FDB follows when a decision changed,
   * and on ticks also when the MAC table did, or on the resync interval.
   */
  private update(onTick: boolean): void {
    if (!this.opts.local.on || this.closed) return;
    const now = this.deps.clock.now();
    let changed = false;
    let fastCount = 0;
    for (const [name, p] of this.peers) {
      const d = p.state.decide(this.opts.local, now, this.opts.timings);
      if (d.fast !== p.fast) {
        changed = true;
        p.fast = d.fast;
        if (this.deps.logger.enabled('info')) this.deps.logger.info(d.fast ? 'fast path (VXLAN) in use' : 'fast path not in use, frames take the sleeve', { peer: name, reason: d.reason });
      }
      if (p.fast) {
        fastCount++;
        if (onTick) this.macs?.touchPeer(name, now);
      }
    }
    this.fastPeers = fastCount;
    if (changed || (onTick && (now - this.lastSyncMs >= RESYNC_MS || !sameTable(this.desired(now), this.lastApplied)))) this.reconcile();
  }

  private desired(now: number): FdbTable {
    const fast = new Map<PeerName, string>();
    const offering = new Map<PeerName, string>();
    for (const [name, p] of this.peers) {
      const host = p.state.host;
      if (host === null || !p.state.flags(this.opts.local, now, this.opts.timings).offered) continue;
      if (p.state.offers(now, this.opts.timings)) offering.set(name, host);
      if (p.fast) fast.set(name, host);
    }
    return desiredFdb(this.macs?.snapshot() ?? [], fast, offering);
  }

  /** Brings the kernel's FDB to the desired table; one run at a time, and one more if asked meanwhile. */
  private reconcile(): void {
    if (this.closed || this.deps.fdb === null) return;
    if (this.busy) { this.again = true; return; }
    this.busy = true;
    void this.sync().finally(() => {
      this.busy = false;
      if (this.again && !this.closed) { this.again = false; this.reconcile(); }
    });
  }

  private async sync(): Promise<void> {
    const fdb = this.deps.fdb;
    if (fdb === null) return;
    this.lastSyncMs = this.deps.clock.now();
    try {
      const actual = parseFdbShow(await fdb.show());
      // Decided after the read, so a change made while it ran is not undone by an old plan.
      const desired = this.desired(this.deps.clock.now());
      const lines = fdbBatch(diffFdb(actual, desired), actual, fdb.name);
      const allowed = fdbPeerAddresses(desired);
      // Before the entries, so a new neighbour's heartbeats are let in by the time ours leave.
      if (allowed.join(' ') !== this.lastAllowed) {
        await fdb.allowPeers(allowed);
        this.lastAllowed = allowed.join(' ');
      }
      if (lines.length > 0) await fdb.apply(lines);
      this.lastApplied = desired;
      this.fdbEntries = desired.size;
    } catch (err) {
      this.lastApplied = null;
      this.lastAllowed = null;
      this.counters.fastdpFdbErrors++;
      this.deps.logger.warn('fast path: cannot update the VXLAN forwarding entries', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private handleFrame(buf: Buffer, off: number, len: number): void {
    const sender = parseHeartbeat(buf, off, len, this.opts.localPeer);
    if (sender === null) return;
    const p = this.peers.get(sender);
    if (!p) return;
    p.state.onHeartbeat(this.deps.clock.now());
    this.counters.fastdpHeartbeatsReceived++;
  }
}

function sameTable(a: FdbTable, b: FdbTable | null): boolean {
  if (b === null || a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
