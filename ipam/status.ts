// The IPAM status snapshot: built on demand from state, shared by the HTTP
// API, `weave status ipam` and the report (docs/architecture.md: status is a
// snapshot).
// Pure: it reads the ring, allocator and consensus progress and formats
// them; it changes nothing.

import { formatIp } from '../common/ip';
import type { Cidr } from '../common/ip-cidr';
import type { PeerName } from '../router/mesh/peer-name';
import type { Allocator } from './allocator';
import type { IpamConfig } from './config';
import type { Paxos } from './paxos';
import { Ring, RingState, usableCount } from './ring';
import { freeCount } from './space';

export type IpamState = 'ready' | 'awaiting-consensus' | 'awaiting-ring' | 'left';

export interface IpamPeerStatus {
  peer: PeerName;
  nickname: string;
  self: boolean;
  reachable: boolean;
  /** Addresses in the peer's share of the range. */
  owned: number;
  /** Of those, how many it reported free (exact for ourselves). */
  free: number;
  used: number;
  /** The peer is unreachable but owns space: candidates for `weave rmpeer`. */
  unreachableOwner: boolean;
  /** Its spans, "first-last". */
  ranges: string[];
}

export interface IpamStatus {
  self: PeerName;
  range: string;
  defaultSubnet: string;
  rangeV6: string | null;
  mode: 'consensus' | 'seed' | 'observer';
  state: IpamState;
  /** Exactly what the peer waits for; null when ready. */
  waitingFor: string | null;
  consensus: {
    /** N as used now: our --ipalloc-init count, or the participants we reach if more. */
    initPeerCount: number;
    quorum: number;
    known: { peer: PeerName; nickname: string; reachable: boolean }[];
    started: boolean;
    round: number | null;
    promises: number;
    accepts: number;
  } | null;
  seed: PeerName[];
  ringEntries: number;
  peers: IpamPeerStatus[];
  local: { owned: number; used: number; free: number };
  allocations: { container: string; address: string; addressV6: string | null; releaseAtMs: number | null }[];
  pending: { container: string; kind: 'allocate' | 'claim'; subnet: string; waitingMs: number; waitingFor: string | null }[];
  warnings: string[];
}

/** Everything the status is made of, gathered by Ipam.status(). */
export interface StatusSource {
  self: PeerName;
  config: IpamConfig;
  ring: Ring;
  allocator: Allocator;
  paxos: Paxos | null;
  reachable: ReadonlySet<PeerName>;
  nicknames: ReadonlyMap<PeerName, string>;
  consensusStarted: boolean;
  left: boolean;
  nowMs: number;
  pending: { container: string; kind: 'allocate' | 'claim'; subnet: string; startedMs: number; why: string | null }[];
  warnings: readonly string[];
}

function describe(src: StatusSource, peer: PeerName): string {
  const nick = src.nicknames.get(peer);
  return nick ? `${peer}(${nick})` : peer;
}

/**
 * Exactly what the peer waits for; null when it has the ring. The consensus
 * text always starts "awaiting consensus: K of N peers known, need quorum Q",
 * then says who is unreachable and how far the current round got.
 */
export function waitingText(src: StatusSource): string | null {
  if (src.left) return 'IPAM was reset on this peer';
  if (src.ring.isSeeded()) return null;
  const init = src.config.init;
  if (init.mode === 'observer') return 'observer: waiting to receive the address ring from a peer that takes part in the initial split';
  if (init.mode === 'seed' || src.paxos === null) return 'waiting for the seed ring';
  const p = src.paxos.progress();
  const known = p.known.length;
  // Known peers beyond N are out of reach (N counts every reachable one).
  let text = known <= p.peerCount
    ? `awaiting consensus: ${known} of ${p.peerCount} peers known, need quorum ${p.quorum}`
    : `awaiting consensus: ${known} peers known, consensus among ${p.peerCount}, need quorum ${p.quorum}`;
  const unreachable = p.known.filter((k) => k !== src.self && !src.reachable.has(k));
  if (unreachable.length > 0) text += ` (unreachable now: ${unreachable.map((u) => describe(src, u)).join(', ')})`;
  if (!src.consensusStarted) return `${text}; not started (starts on the first allocation or weave prime)`;
  if (p.proposal !== null) text += `; round ${p.proposal.round}: ${p.promisesForOurs} of ${p.quorum} promises`;
  if (p.bestAcceptCount > 0) text += `, ${p.bestAcceptCount} of ${p.quorum} accepts`;
  // Every reachable participant answers, so only missing peers can keep us waiting: say how to bring them.
  const missing = p.quorum - p.reachable;
  if (missing > 0) {
    text += `; needs ${missing} more reachable peer${missing === 1 ? '' : 's'}: launch ${missing === 1 ? 'it' : 'them'} with this host's address, or run weave connect <address> here`;
  }
  return text;
}

export function buildIpamStatus(src: StatusSource): IpamStatus {
  const { ring, allocator, config } = src;
  const range = config.range;
  const peers: IpamPeerStatus[] = [];
  const localOwned = ring.isSeeded() ? ring.ownedSpans() : [];
  const localFree = freeCount(localOwned, allocator.used, { rangeSize: range.size, within: { start: 0, end: range.size } });
  for (const [peer, s] of [...ring.shares()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const isSelf = peer === src.self;
    const spans = ring.ownedSpans(peer);
    const usable = spans.reduce((n, sp) => n + usableCount(range, sp), 0);
    const free = isSelf ? localFree : s.free;
    const reachable = src.reachable.has(peer);
    peers.push({
      peer,
      nickname: src.nicknames.get(peer) ?? '',
      self: isSelf,
      reachable,
      owned: s.owned,
      free,
      used: isSelf ? allocator.count : Math.max(0, usable - free),
      unreachableOwner: !reachable && s.owned > 0,
      ranges: spans.map((sp) => `${range.formatOffset(sp.start)}-${range.formatOffset(sp.end - 1)}`),
    });
  }
  let consensus: IpamStatus['consensus'] = null;
  if (config.init.mode === 'consensus' && src.paxos) {
    const p = src.paxos.progress();
    consensus = {
      initPeerCount: p.peerCount,
      quorum: p.quorum,
      known: p.known.map((k) => ({ peer: k, nickname: src.nicknames.get(k) ?? '', reachable: src.reachable.has(k) })),
      started: src.consensusStarted,
      round: p.proposal?.round ?? null,
      promises: p.promisesForOurs,
      accepts: p.bestAcceptCount,
    };
  }
  const v6 = config.rangeV6;
  return {
    self: src.self,
    range: range.toString(),
    defaultSubnet: config.defaultSubnet.toString(),
    rangeV6: v6?.toString() ?? null,
    mode: config.init.mode,
    state: src.left ? 'left' : ring.isSeeded() ? 'ready' : config.init.mode === 'consensus' ? 'awaiting-consensus' : 'awaiting-ring',
    waitingFor: waitingText(src),
    consensus,
    seed: ring.seed().slice(),
    ringEntries: ring.entries().length,
    peers,
    local: {
      owned: localOwned.reduce((n, sp) => n + sp.end - sp.start, 0),
      used: allocator.count,
      free: localFree,
    },
    allocations: allocator.all().map((a) => ({
      container: a.container,
      address: `${range.formatOffset(a.offset)}/${a.prefixLen}`,
      addressV6: v6 === null ? null : v6TwinOf(v6, a.offset),
      releaseAtMs: a.releaseAtMs,
    })),
    pending: src.pending.map((p) => ({
      container: p.container,
      kind: p.kind,
      subnet: p.subnet,
      waitingMs: src.nowMs - p.startedMs,
      waitingFor: p.why,
    })),
    warnings: src.warnings.slice(),
  };
}

/** Dual stack: the IPv6 address with the same offset in the IPv6 block, with its prefix. */
export function v6TwinOf(v6: Cidr, offset: number): string {
  return `${formatIp(v6.at(offset))}/${v6.prefixLen}`;
}

/** Addresses in use by a ring's own account (its free counts). */
function ringUsed(ring: Ring): number {
  let used = 0;
  ring.entries().forEach((e, i) => { used += Math.max(0, usableCount(ring.range, ring.spanAt(i)) - e.free); });
  return used;
}

/**
 * A true split: two rings agreed on independently (each side reached
 * consensus alone) cannot be merged, and no peer may pick for the other.
 * Both sides make the same choice, keep the ring with more addresses in use
 * (ties: the lower seed), so each peer's status says exactly what to type on
 * it: nothing where the ring is kept, a reset and relaunch where it is not.
 */
export function splitAdvice(ours: Ring, incoming: RingState, describePeer: (p: PeerName) => string): string {
  const theirs = new Ring(ours.range, ours.self, ours.guard);
  theirs.merge(incoming);
  const usedOurs = ringUsed(ours);
  const usedTheirs = ringUsed(theirs);
  const seedText = (r: Ring): string => `[${r.seed().map(describePeer).join(', ')}]`;
  const keepOurs = usedOurs !== usedTheirs ? usedOurs > usedTheirs : ours.seed().join(',') < theirs.seed().join(',');
  const inUse = (n: number): string => `${n} address${n === 1 ? '' : 'es'} in use`;
  const facts = `two address rings met that were set up independently: ours, seeded by ${seedText(ours)} with ${inUse(usedOurs)}, ` +
    `and one seeded by ${seedText(theirs)} with ${inUse(usedTheirs)}`;
  if (keepOurs) return `${facts}; ours is kept, nothing to do here: the peers of the other ring are told to reset`;
  const other = theirs.seed()[0]!;
  return `${facts}; theirs is kept: on this peer run weave reset --force, then weave launch <address of ${describePeer(other)}>, ` +
    'then attach its containers again (every peer of our ring is told the same)';
}
