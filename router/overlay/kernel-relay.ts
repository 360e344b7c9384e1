// Kernel relays: two peers that cannot reach each other, but both reach a
// relay, have the relay's kernel forward their far messages instead of its
// router. The relay maps a UDP port of its own to each end (stateless
// nftables rules in its ingress, router/host/kernel-relay-rules.ts), and each
// end sends its far messages for the other to its port as sleeve type 4
// (sleeve-codec.ts; far-path.ts builds and opens them). Nothing changes for
// security: far messages are sealed end to end already (far-session.ts), so
// the relay reads and forges nothing, exactly as when its router relays them;
// what a relay's router adds per hop (the hop tag) only ever protected the
// relay itself, which no longer looks at these datagrams. A datagram someone
// else sends through the port reaches the far end only to fail its AEAD there,
// as one sent to it directly would, and an end takes type 4 only from the
// relay address and port a grant named for that origin.
//
// The conversation (KERNEL_RELAY, router/mesh/kernel-relay-messages.ts), over
// the control connections the three already have:
//   - an origin sending far to a peer two hops away, whose next hop grants
//     kernel relays (UDP_STATUS bit 6), asks it (REQUEST), at most once per
//     REQUEST_RETRY_TIMEOUTS UDP timeouts;
//   - the relay, when both ends take type 4 (bit 5), hear its UDP and are
//     within its caps, opens the pair and GRANTs each end its port;
//   - each end probes through its port every probe interval (a far-sealed
//     probe that says whether it hears the other end) and sends frames that
//     way only while the other end's probes arrive and say they hear it; any
//     gap and frames go back through the relay's router, which never stopped
//     working (the same far messages, type 3);
//   - whoever stops needing the pair (routes moved, a connection went, the
//     relay's view of an end's address moved, a path that has not worked for
//     GIVE_BACK_TIMEOUTS UDP timeouts) RELEASEs it, and the relay closes its
//     rules and tells the other end; an origin that still sends far asks
//     again later, for fresh rules.
// This file is the state of both roles and their decisions; it seals and
// sends nothing itself (the far path does) and runs nothing per frame but
// `sendPath` and `receivePath` (one map lookup each).

import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { encodeKernelRelay, type KernelRelayMessage } from '../mesh/kernel-relay-messages';
import type { PeerName } from '../mesh/peer-name';
import type { KernelRelayFlags } from '../mesh/protocol';
import type { RouteView } from './forwarder';
import type { Link } from './udp-probes';

/** The relay host's side: its kernel's forwarding rules (router/host/kernel-relay-rules.ts). */
export interface KernelRelayRulesPort {
  open(a: { host: string; port: number }, b: { host: string; port: number }): Promise<{ portA: number; portB: number }>;
  close(pair: { portA: number; portB: number }): Promise<void>;
}

/** One end's way to a far peer through a relay's kernel. */
export interface KernelPath {
  readonly far: PeerName;
  readonly relay: PeerName;
  /** Where to send: the relay's address as our link to it knows it, and the port it granted us. */
  readonly host: string;
  readonly port: number;
  lastHeardMs: number;
  /** What the far end's last probe said: it hears ours. */
  farHearsUs: boolean;
  farReportMs: number;
  /** Frames take this path (decided on the probe tick). */
  inUse: boolean;
  readonly grantedMs: number;
}

/** What the reassembler keys a lone type 4 segment on, with its replay check (segment-receiver.ts). */
export interface KernelSegmentSender { session: { stale(typeByte: number, counter: number): boolean } }

interface RelayPair {
  a: PeerName;
  b: PeerName;
  aAt: string;
  bAt: string;
  /** null while the rules are being opened. */
  ports: { portA: number; portB: number } | null;
}

/** An origin asks again no sooner than this many UDP timeouts after its last request. */
export const REQUEST_RETRY_TIMEOUTS = 10;
/** A path not in use this many UDP timeouts after its grant or its last probe is given back (the relay may have lost its rules). */
export const GIVE_BACK_TIMEOUTS = 4;
/** Pairs one relay opens for one end at most. */
export const MAX_PAIRS_PER_PEER = 8;
/** Kernel paths one end keeps at most (one per far peer). */
export const MAX_PATHS = 256;

/** Type 4 has no hop counter to check before reassembly: the far window checks after the open. */
const NEVER_STALE: KernelSegmentSender = { session: { stale: (): boolean => false } };

export interface KernelRelayDeps {
  clock: Clock;
  logger: Logger;
  links: ReadonlyMap<PeerName, Link>;
  routes(): RouteView;
  self: PeerName;
  /** Null: we grant no kernel relays here (--no-kernel-relay, or no nftables). */
  rules: KernelRelayRulesPort | null;
  /** We take type 4 at all (far messages on, and not --no-kernel-relay). */
  takes(): boolean;
  /** The far peers we hold a send key to (those we send far to). */
  farDestinations(): Iterable<PeerName>;
  /** Starts the far key exchange towards a peer (we probe it, so we need a send key). */
  want(peer: PeerName): void;
  /** A path came into use or went out of it: the lane's far entries must follow. */
  changed(): void;
  timings: { udpTimeoutMs: number };
}

export class KernelRelays {
  private readonly paths = new Map<PeerName, KernelPath>();
  private readonly lastRequestMs = new Map<PeerName, number>();
  private readonly pairs = new Set<RelayPair>();
  private closed = false;
  readonly counters = { kernelRelayGrants: 0, kernelRelayRefused: 0, kernelRelayErrors: 0, kernelPathsInUse: 0 };

  constructor(private readonly deps: KernelRelayDeps) {}

  flags(): KernelRelayFlags {
    const takes = this.deps.takes();
    return { takes, grants: takes && this.deps.rules !== null };
  }

  /** The path frames to `far` take now, or undefined: per frame. */
  sendPath(far: PeerName): KernelPath | undefined {
    const p = this.paths.get(far);
    return p !== undefined && p.inUse ? p : undefined;
  }

  /** The path a type 4 datagram from host:port naming `origin` came by, or undefined (refused): per datagram. */
  receivePath(origin: PeerName, host: string, port: number): KernelPath | undefined {
    const p = this.paths.get(origin);
    return p !== undefined && p.port === port && p.host === host ? p : undefined;
  }

  /** For lone type 4 segments (segment-receiver.ts): a far peer we hold a path to, else null. */
  segmentSender(origin: PeerName): KernelSegmentSender | null {
    return this.paths.has(origin) ? NEVER_STALE : null;
  }

  /** An authenticated type 4 datagram arrived by `p`; probe: the far end's flags byte (bit 0: it hears us), or -1 for a frame. */
  heard(p: KernelPath, probeFlags: number): void {
    const now = this.deps.clock.now();
    p.lastHeardMs = now;
    if (probeFlags >= 0) {
      p.farHearsUs = (probeFlags & 1) === 1;
      p.farReportMs = now;
    }
  }

  /** The paths to probe on this tick, each with whether we hear its far end. */
  probeTick(nowMs: number, probe: (p: KernelPath, hearing: boolean) => void): void {
    const t = this.deps.timings.udpTimeoutMs;
    this.endTick(nowMs);
    let changed = false;
    let inUse = 0;
    for (const p of this.paths.values()) {
      const hearing = nowMs - p.lastHeardMs <= t;
      probe(p, hearing);
      const use = hearing && p.farHearsUs && nowMs - p.farReportMs <= t;
      if (use !== p.inUse) {
        p.inUse = use;
        changed = true;
        if (this.deps.logger.enabled('info')) {
          this.deps.logger.info(use ? 'kernel relay path works, far frames take it' : 'kernel relay path lost, far frames go through the relay\'s router',
            { peer: p.far, relay: p.relay });
        }
      }
      if (use) inUse++;
      else if (nowMs - Math.max(p.grantedMs, p.lastHeardMs) > GIVE_BACK_TIMEOUTS * t) this.dropPath(p, true);
    }
    this.counters.kernelPathsInUse = inUse;
    if (changed) this.deps.changed();
    this.relayTick();
  }

  handle(from: PeerName, msg: KernelRelayMessage): void {
    if (this.closed) return;
    switch (msg.kind) {
      case 'request': this.request(from, msg.peer); return;
      case 'grant': this.grant(from, msg.peer, msg.port); return;
      case 'release': this.release(from, msg.peer, msg.port); return;
    }
  }

  /** A neighbour's connection went: paths through it and pairs with it end. */
  removeNeighbour(name: PeerName): void {
    for (const p of [...this.paths.values()]) if (p.relay === name) this.dropPath(p, false);
    for (const pair of [...this.pairs]) if (pair.a === name || pair.b === name) this.closePair(pair, true);
  }

  summary(): { grants: boolean; pairs: number; paths: { peer: PeerName; via: PeerName; inUse: boolean }[] } {
    return {
      grants: this.flags().grants,
      pairs: this.pairs.size,
      paths: [...this.paths.values()].map((p) => ({ peer: p.far, via: p.relay, inUse: p.inUse })),
    };
  }

  /** Forgets every pair and path; the rules are their owner's to remove (KernelRelayRulesPort.closeAll). */
  close(): void {
    this.closed = true;
    this.pairs.clear();
    this.paths.clear();
  }

  // ---- as an end ----

  /** Asks for paths we lack, lets go of those whose relay is no longer our way to their far end. */
  private endTick(nowMs: number): void {
    const routes = this.deps.routes();
    for (const p of [...this.paths.values()]) {
      if (routes.hops?.(p.far) !== 2 || routes.nextHop(p.far) !== p.relay) this.dropPath(p, true);
    }
    if (!this.deps.takes()) return;
    const retryMs = REQUEST_RETRY_TIMEOUTS * this.deps.timings.udpTimeoutMs;
    for (const [far, ms] of this.lastRequestMs) if (nowMs - ms >= retryMs) this.lastRequestMs.delete(far);
    for (const far of this.deps.farDestinations()) {
      if (this.paths.has(far) || routes.hops?.(far) !== 2) continue;
      const via = routes.nextHop(far);
      const link = via === null ? undefined : this.deps.links.get(via);
      if (link === undefined || !link.far || !link.kernel.grants || !link.peerHearsUs) continue;
      if (this.lastRequestMs.has(far)) continue;
      this.lastRequestMs.set(far, nowMs);
      link.n.sendControl(encodeKernelRelay({ kind: 'request', peer: far, port: 0 }));
    }
  }

  private grant(relay: PeerName, far: PeerName, port: number): void {
    const link = this.deps.links.get(relay);
    const routes = this.deps.routes();
    // Only from our way to that peer: a neighbour cannot make us send elsewhere, nor fill the table with names.
    // Two hops away through this relay: never ourselves, nor the relay (0 and 1 hops).
    if (link === undefined || !link.kernel.grants || !this.deps.takes() || routes.hops?.(far) !== 2 || routes.nextHop(far) !== relay) {
      this.counters.kernelRelayRefused++;
      if (link !== undefined) link.n.sendControl(encodeKernelRelay({ kind: 'release', peer: far, port }));
      return;
    }
    const old = this.paths.get(far);
    if (old !== undefined) {
      if (old.relay === relay && old.port === port) return;
      this.dropPath(old, true);
    } else if (this.paths.size >= MAX_PATHS) {
      this.counters.kernelRelayRefused++;
      link.n.sendControl(encodeKernelRelay({ kind: 'release', peer: far, port }));
      return;
    }
    this.paths.set(far, {
      far, relay, host: link.udp.host, port, lastHeardMs: -Infinity, farHearsUs: false, farReportMs: -Infinity, inUse: false,
      grantedMs: this.deps.clock.now(),
    });
    this.deps.want(far);
    this.deps.logger.debug('kernel relay granted', { peer: far, relay, port });
  }

  private dropPath(p: KernelPath, tellRelay: boolean): void {
    this.paths.delete(p.far);
    if (tellRelay) this.deps.links.get(p.relay)?.n.sendControl(encodeKernelRelay({ kind: 'release', peer: p.far, port: p.port }));
    if (p.inUse) this.deps.changed();
  }

  // ---- as the relay ----

  private request(from: PeerName, to: PeerName): void {
    const rules = this.deps.rules;
    const a = this.deps.links.get(from);
    const b = this.deps.links.get(to);
    // Only what we announced (bit 6: a password mesh with far keys, so every link is sealed).
    if (rules === null || !this.flags().grants || a === undefined || b === undefined || to === from || !this.usableEnd(a) || !this.usableEnd(b)) {
      this.counters.kernelRelayRefused++;
      return;
    }
    for (const pair of this.pairs) {
      if (!((pair.a === from && pair.b === to) || (pair.a === to && pair.b === from))) continue;
      // Asked again: the grants were lost, or the asker let go and wants it back.
      if (pair.ports !== null) this.sendGrants(pair);
      return;
    }
    let mine = 0;
    for (const pair of this.pairs) if (pair.a === from || pair.b === from || pair.a === to || pair.b === to) mine++;
    if (mine >= MAX_PAIRS_PER_PEER) { this.counters.kernelRelayRefused++; return; }
    const pair: RelayPair = { a: from, b: to, aAt: endpointOf(a), bAt: endpointOf(b), ports: null };
    this.pairs.add(pair);
    rules.open({ host: a.udp.host, port: a.udp.port }, { host: b.udp.host, port: b.udp.port }).then((ports) => {
      if (!this.pairs.has(pair)) { void rules.close(ports); return; }
      pair.ports = ports;
      this.counters.kernelRelayGrants++;
      this.sendGrants(pair);
      this.deps.logger.info('kernel relay opened', { a: from, b: to, portA: ports.portA, portB: ports.portB });
    }, (err: unknown) => {
      this.pairs.delete(pair);
      this.counters.kernelRelayErrors++;
      this.deps.logger.warn('kernel relay not opened', { a: from, b: to, error: err instanceof Error ? err.message : String(err) });
    });
  }

  /** The rules are IPv4 only (router/host/kernel-relay-rules.ts): an IPv6 end is not asked about at all. */
  private usableEnd(l: Link): boolean {
    return l.far && l.kernel.takes && l.peerHearsUs && !l.udp.host.includes(':');
  }

  private sendGrants(pair: RelayPair): void {
    const { ports } = pair;
    if (ports === null) return;
    this.deps.links.get(pair.a)?.n.sendControl(encodeKernelRelay({ kind: 'grant', peer: pair.b, port: ports.portA }));
    this.deps.links.get(pair.b)?.n.sendControl(encodeKernelRelay({ kind: 'grant', peer: pair.a, port: ports.portB }));
  }

  private release(from: PeerName, far: PeerName, port: number): void {
    // From our relay: the path is gone.
    const p = this.paths.get(far);
    if (p !== undefined && p.relay === from && p.port === port) this.dropPath(p, false);
    // From an end: it no longer needs the pair.
    for (const pair of this.pairs) {
      if (pair.ports === null) continue;
      if ((pair.a === from && pair.b === far && pair.ports.portA === port) || (pair.b === from && pair.a === far && pair.ports.portB === port)) {
        this.closePair(pair, true);
        return;
      }
    }
  }

  /** Pairs whose ends are gone, no longer hear us, or moved address close (the rules name the old addresses). */
  private relayTick(): void {
    for (const pair of [...this.pairs]) {
      if (pair.ports === null) continue;
      const a = this.deps.links.get(pair.a);
      const b = this.deps.links.get(pair.b);
      if (a === undefined || b === undefined || !this.usableEnd(a) || !this.usableEnd(b) || endpointOf(a) !== pair.aAt || endpointOf(b) !== pair.bAt) {
        this.closePair(pair, true);
      }
    }
  }

  private closePair(pair: RelayPair, tell: boolean): void {
    this.pairs.delete(pair);
    const { ports } = pair;
    if (ports === null) return;
    if (tell) {
      this.deps.links.get(pair.a)?.n.sendControl(encodeKernelRelay({ kind: 'release', peer: pair.b, port: ports.portA }));
      this.deps.links.get(pair.b)?.n.sendControl(encodeKernelRelay({ kind: 'release', peer: pair.a, port: ports.portB }));
    }
    void this.deps.rules?.close(ports);
    this.deps.logger.info('kernel relay closed', { a: pair.a, b: pair.b });
  }
}

function endpointOf(l: Link): string {
  return `${l.udp.host}:${l.udp.port}`;
}
