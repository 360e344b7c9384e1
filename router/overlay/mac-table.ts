// Which peer owns which MAC address, learnt from the frames we see: a frame
// captured from our bridge teaches that its source MAC is ours, a frame from
// the overlay that its source MAC belongs to the peer that captured it.
// Entries expire so a container that moves or vanishes is not black-holed;
// aging runs on the owner's tick, this owns no timer.

import type { PeerName } from '../mesh/peer-name';
import { MacMap } from './mac-map';

export interface MacEntry {
  peer: PeerName;
  lastSeenMs: number;
}

export class MacTable {
  private readonly entries = new MacMap<MacEntry>();
  /** Called when a MAC moved to another peer or an entry went (aged, evicted, forgotten): decisions cached from the table are stale. */
  onChange: (() => void) | null = null;

  constructor(private readonly maxAgeMs: number, private readonly maxEntries: number) {}

  /**
   * Records that `mac` (48 bits as a number) was seen at `peer`. Returns the
   * previous owner when the MAC moved to another peer, else null.
   */
  learn(mac: number, peer: PeerName, nowMs: number): PeerName | null {
    const e = this.entries.getKey(mac);
    if (e !== undefined) return this.refresh(e, peer, nowMs);
    this.makeRoom();
    this.entries.setKey(mac, { peer, lastSeenMs: nowMs });
    return null;
  }

  /**
   * learn() of the MAC at buf[off], for the frame path (no number made of it).
   * No closure here: a function that makes one allocates the context of the
   * variables it captures on every call, whichever branch runs.
   */
  learnAt(buf: Uint8Array, off: number, peer: PeerName, nowMs: number): PeerName | null {
    const e = this.entries.get(buf, off);
    if (e !== undefined) return this.refresh(e, peer, nowMs);
    this.makeRoom();
    this.entries.set(buf, off, { peer, lastSeenMs: nowMs });
    return null;
  }

  lookup(mac: number, nowMs: number): PeerName | null {
    return this.live(this.entries.getKey(mac), nowMs);
  }

  /** lookup() of the MAC at buf[off], for the frame path. */
  lookupAt(buf: Uint8Array, off: number, nowMs: number): PeerName | null {
    return this.live(this.entries.get(buf, off), nowMs);
  }

  private live(e: MacEntry | undefined, nowMs: number): PeerName | null {
    if (!e || nowMs - e.lastSeenMs > this.maxAgeMs) return null;
    return e.peer;
  }

  /** A known MAC seen again at `peer`: the previous owner when it moved, else null. */
  private refresh(e: MacEntry, peer: PeerName, nowMs: number): PeerName | null {
    const moved = e.peer !== peer ? e.peer : null;
    e.peer = peer;
    e.lastSeenMs = nowMs;
    if (moved !== null) this.onChange?.();
    return moved;
  }

  private makeRoom(): void {
    if (this.entries.size >= this.maxEntries) this.evictOldest();
  }

  /** Forgets every MAC of a peer (it left the mesh). */
  forgetPeer(peer: PeerName): void {
    const before = this.entries.size;
    this.entries.forEach((e, mac) => { if (e.peer === peer) this.entries.deleteKey(mac); });
    if (this.entries.size !== before) this.onChange?.();
  }

  /** Keeps a peer's MACs from ageing (the fast path carries their frames past us; fastdp.ts). */
  touchPeer(peer: PeerName, nowMs: number): void {
    this.entries.forEach((e) => { if (e.peer === peer) e.lastSeenMs = nowMs; });
  }

  /**
   * Runs every probe tick, mostly in unoptimized code: forEach, unlike
   * `for (const [mac, e] of ...)`, allocates no iterator results or entry
   * arrays per MAC (deleting the current entry inside forEach is allowed).
   */
  tick(nowMs: number): void {
    const before = this.entries.size;
    this.entries.forEach((e, mac) => { if (nowMs - e.lastSeenMs > this.maxAgeMs) this.entries.deleteKey(mac); });
    if (this.entries.size !== before) this.onChange?.();
  }

  get size(): number {
    return this.entries.size;
  }

  snapshot(): { mac: string; peer: PeerName; lastSeenMs: number }[] {
    const out: { mac: string; peer: PeerName; lastSeenMs: number }[] = [];
    this.entries.forEach((e, mac) => out.push({ mac: formatMac(mac), peer: e.peer, lastSeenMs: e.lastSeenMs }));
    return out;
  }

  private evictOldest(): void {
    let oldestMac = -1;
    let oldestMs = Infinity;
    this.entries.forEach((e, mac) => { if (e.lastSeenMs < oldestMs) { oldestMs = e.lastSeenMs; oldestMac = mac; } });
    if (oldestMac >= 0 && this.entries.deleteKey(oldestMac)) this.onChange?.();
  }
}

/**
 * Reads 6 bytes as a 48-bit number (exact in a double). Two 24-bit halves
 * stay small integers, so unoptimized code (a lightly used router runs the
 * frame path so) allocates two heap numbers per call instead of about eight.
 */
export function readMac(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!) * 0x1000000 + ((buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!);
}

/** Group bit set: broadcast or multicast. */
export function isGroupMac(buf: Uint8Array, off: number): boolean {
  return (buf[off]! & 1) === 1;
}

export function formatMac(mac: number): string {
  const parts: string[] = [];
  for (let i = 5; i >= 0; i--) parts.push((Math.floor(mac / 2 ** (8 * i)) % 256).toString(16).padStart(2, '0'));
  return parts.join(':');
}
