// A simulated mesh: N real Router instances on one MemoryNetwork and one
// ManualClock, in one process. Used by the simulation tests; the expectations
// read like topology facts (who is connected, what everyone agrees on).

import { createHash } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { FAST_TIMINGS, RouterTimings } from '../../router/mesh/constants';
import { silentLogger } from '../../common/logger';
import { PeerKey } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';
import { SeededRng } from '../../common/rng';
import { Router } from '../../router/mesh/router';
import { VerifiedSignatures } from '../../router/mesh/signed-gossip';
import { loadSodium } from '../../router/mesh/sodium';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { MemoryBridge, MemoryNetwork } from './memory-network';
import type { RekeyOptions } from '../../router/mesh/key-schedule';

export interface SimPeer {
  index: number;
  host: string;
  name: PeerName;
  router: Router;
  alive: boolean;
  /** With `dataPlane: true`: the overlay and its in-memory bridge. */
  overlay: Overlay | null;
  bridge: MemoryBridge | null;
}

export interface SimMeshOptions {
  seed?: number;
  passwordKey?: Uint8Array | null;
  discovery?: boolean;
  timings?: RouterTimings;
  connLimit?: number;
  /** Give every peer an Overlay on in-memory UDP and bridge ports. */
  dataPlane?: boolean;
  /** Key rotation for every peer (router default otherwise). */
  rekey?: RekeyOptions;
}

export interface PeerOverrides {
  /** Another peer's key (and so its name): a second peer that holds the first one's key. */
  key?: PeerKey;
  passwordKey?: Uint8Array | null;
  /** A password roll: the old password, accepted beside passwordKey. */
  oldPasswordKey?: Uint8Array | null;
  connLimit?: number;
}

export const SIM_PORT = 6783;

export function simAddress(index: number): string {
  return `${simHost(index)}:${SIM_PORT}`;
}

const simKeys = new Map<number, PeerKey>();

/** Peer `index`'s key: fixed per index, so runs repeat, and names are derived from keys as in the daemon. */
export function simPeerKey(index: number): PeerKey {
  let key = simKeys.get(index);
  if (key === undefined) {
    key = PeerKey.fromSeed(createHash('sha256').update(`weave-ts sim peer ${index}`).digest());
    simKeys.set(index, key);
  }
  return key;
}

export function simPeerName(index: number): PeerName {
  return simPeerKey(index).name;
}

export function simHost(index: number): string {
  return `10.${(index >> 16) & 0xff}.${(index >> 8) & 0xff}.${index & 0xff}`;
}

export class SimMesh {
  readonly clock = new ManualClock();
  readonly net = new MemoryNetwork(this.clock);
  readonly peers: SimPeer[] = [];
  /** Ed25519 verification is a pure function: one cache for every router here keeps large simulations fast. */
  readonly verifiedSignatures = new VerifiedSignatures(1 << 18);
  private readonly rngSeed: number;
  private incarnations = 0;

  constructor(private readonly opts: SimMeshOptions = {}) {
    this.rngSeed = opts.seed ?? 1;
  }

  /** Starts a router on a new host (or restarts a stopped one) with the given targets. */
  async addPeer(targets: number[], index = this.peers.length, overrides: PeerOverrides = {}): Promise<SimPeer> {
    // Every handshake signs and draws a nonce, plaintext ones too (the daemon loads it at start).
    await loadSodium();
    const host = simHost(index);
    const key = overrides.key ?? simPeerKey(index);
    const name = key.name;
    let overlay: Overlay | null = null;
    let bridge: MemoryBridge | null = null;
    if (this.opts.dataPlane) {
      bridge = new MemoryBridge();
      overlay = new Overlay(
        { clock: this.clock, logger: silentLogger, aead: frameAead(), bridge, udp: this.net.udp(host, SIM_PORT) },
        { localPeer: name, mtu: 1400, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS },
      );
      overlay.start();
    }
    const router = new Router(
      {
        clock: this.clock, rng: new SeededRng(this.rngSeed * 100_003 + index * 7919 + this.incarnations), logger: silentLogger,
        transport: this.net.transport(host), verifiedSignatures: this.verifiedSignatures, ...(overlay ? { dataPlane: overlay } : {}),
      },
      {
        name,
        key,
        nickname: `p${index}`,
        incarnation: this.clock.now() + ++this.incarnations,
        port: SIM_PORT,
        passwordKey: overrides.passwordKey !== undefined ? overrides.passwordKey : this.opts.passwordKey ?? null,
        oldPasswordKey: overrides.oldPasswordKey ?? null,
        ...(this.opts.rekey ? { rekey: this.opts.rekey } : {}),
        discovery: this.opts.discovery ?? false,
        connLimit: overrides.connLimit ?? this.opts.connLimit ?? 100,
        timings: this.opts.timings ?? FAST_TIMINGS,
        version: 'sim',
      },
    );
    await router.start(targets.map(simAddress));
    const peer: SimPeer = { index, host, name, router, alive: true, overlay, bridge };
    this.peers[index] = peer;
    return peer;
  }

  stopPeer(index: number): void {
    const p = this.peers[index];
    if (!p || !p.alive) return;
    p.router.shutdown();
    p.overlay?.close();
    p.alive = false;
  }

  alive(): SimPeer[] {
    return this.peers.filter((p) => p.alive);
  }

  /** What a peer believes the topology is: each known peer's name, incarnation and version. */
  static topologyDigest(p: SimPeer): string {
    return p.router.peers.entries().map((e) => `${e.name}/${e.incarnation}/${e.version}`).join(' ');
  }

  /** True when every peer in `group` holds the same topology, made of exactly the peers of `group`. */
  converged(group: SimPeer[] = this.alive()): boolean {
    const expected = new Set(group.map((p) => p.name));
    const first = group[0];
    if (!first) return true;
    const digest = SimMesh.topologyDigest(first);
    for (const p of group) {
      const entries = p.router.peers.entries();
      if (entries.length !== expected.size) return false;
      if (!entries.every((e) => expected.has(e.name))) return false;
      if (SimMesh.topologyDigest(p) !== digest) return false;
      if (p.router.currentRoutes().reachable().size !== expected.size) return false;
    }
    return true;
  }

  shutdown(): void {
    for (const p of this.alive()) this.stopPeer(p.index);
    this.net.drain();
  }
}
