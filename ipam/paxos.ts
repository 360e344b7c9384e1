// Consensus on the initial peers: single-decree Paxos whose messages are the
// participants' gossiped records. Pure: no timers (the owner decides when to
// propose again) and no I/O (the owner persists our record before gossiping
// it, because Paxos needs promises that survive a restart).
//
// Each participant X publishes one record, and only X changes it:
//   promise  - the highest proposal id X has promised (a proposer announces a
//              proposal by promising it itself),
//   accepted - the highest proposal id X has accepted, with its value,
//   version  - bumped on each change; merging keeps the higher version.
// Gossip delivers records late, out of order or twice; for Paxos that is the
// same as slow messages, which it tolerates.
//
// Why this is safe (never two different rings), in Paxos terms:
// - Proposal ids (round, proposer) are unique and totally ordered.
// - A record showing X.promise = p is X's promise for p; the `accepted` in
//   that same record is the highest proposal X accepted before promising p,
//   because X never accepts an id below its promise and accepting q > p would
//   have raised its promise to q.
// - An acceptor accepts an id only if it has not promised a higher one.
// - A proposer with promises for p from a quorum takes the value of the
//   highest accepted id among those promisers, or its own value if none; so
//   once a value is chosen (accepted by a quorum), every higher proposal
//   carries the same value (the classic Paxos argument: any two quorums of
//   floor(N/2)+1 out of N intersect).
// - The value is the sorted set of participants the proposer knew; every
//   peer that learns the decision seeds the identical ring from it.
//
// How many take part (N, hence the quorum) is each peer's own view: the
// larger of its --ipalloc-init count and the participants it reaches now
// (their records known, the mesh says reachable). Users give different
// counts in the getting-started order (the first host launched alone has
// consensus=1, the next ones 2), so, as in Weave Net, an acceptor answers
// every proposal whatever its own count, and never refuses a peer for its
// count. Peers that reach each other see the same participants and so use
// the same N: the classic argument holds among them. A smaller count only
// matters when the others are out of reach, and then it is what the user
// asked for (a host launched alone may decide alone); two sides that each
// decide out of reach of the other are a true split, which the ring merge
// refuses and the status explains.
//
// Liveness needs a quorum reachable and proposers that back off: the owner
// retries with a jittered, growing delay (initial-split.ts).

import { MAX_SEED_PEERS } from './constants';
import { IpamError } from './errors';
import type { PeerName } from '../router/mesh/peer-name';

export interface ProposalId {
  readonly round: number;
  readonly proposer: PeerName;
}

export interface AcceptedValue {
  readonly id: ProposalId;
  readonly value: readonly PeerName[];
}

export interface NodeClaim {
  readonly version: number;
  readonly promise: ProposalId | null;
  readonly accepted: AcceptedValue | null;
}

export type Claims = ReadonlyMap<PeerName, NodeClaim>;

/** Orders proposal ids; null (nothing) is below every id. */
export function compareIds(a: ProposalId | null, b: ProposalId | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return a.proposer < b.proposer ? -1 : a.proposer > b.proposer ? 1 : 0;
}

function sameValue(a: readonly PeerName[], b: readonly PeerName[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}

/** Total order on two records of one node, for merges (version first). */
function compareClaims(a: NodeClaim, b: NodeClaim): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  const p = compareIds(a.promise, b.promise);
  if (p !== 0) return p;
  return compareIds(a.accepted?.id ?? null, b.accepted?.id ?? null);
}

export function quorumFor(initPeerCount: number): number {
  return Math.floor(initPeerCount / 2) + 1;
}

/** Checks a record that came from outside. */
export function validateClaim(node: PeerName, c: NodeClaim, what: string): void {
  const bad = (d: string): IpamError => IpamError.decode(what, `record of ${node}: ${d}`);
  if (!Number.isSafeInteger(c.version) || c.version < 0) throw bad(`version ${c.version}`);
  if (c.accepted !== null) {
    if (compareIds(c.accepted.id, c.promise) > 0) throw bad('accepted a proposal above its promise');
    const v = c.accepted.value;
    if (v.length === 0 || v.length > MAX_SEED_PEERS) throw bad(`value has ${v.length} peers`);
    for (let i = 1; i < v.length; i++) if (!(v[i - 1]! < v[i]!)) throw bad('value peers are not sorted and distinct');
  }
}

export interface ConsensusProgress {
  /** N as used now (see Paxos.peerCount). */
  peerCount: number;
  /** Our own --ipalloc-init count. */
  configuredPeerCount: number;
  quorum: number;
  /** Participants whose record we have (us included), sorted. */
  known: PeerName[];
  /** Of those, how many we reach now (us included). */
  reachable: number;
  /** Our live proposal, if we are proposing. */
  proposal: ProposalId | null;
  /** Participants that promised our live proposal. */
  promisesForOurs: number;
  /** Most participants that accepted one same proposal. */
  bestAcceptCount: number;
}

export class Paxos {
  private readonly claims = new Map<PeerName, NodeClaim>();
  /** The peers the mesh says we reach now (us always included). */
  private live: ReadonlySet<PeerName>;

  constructor(readonly self: PeerName, readonly initPeerCount: number) {
    if (!Number.isInteger(initPeerCount) || initPeerCount < 1) throw IpamError.config(`consensus needs at least 1 peer, got ${initPeerCount}`);
    this.live = new Set([self]);
  }

  /** Tells who is reachable now; the participant count (and so the quorum) follows. */
  setLive(live: ReadonlySet<PeerName>): void {
    this.live = new Set(live);
  }

  /** Participants whose record we have and that we reach now, us included. */
  reachableParticipants(): number {
    let n = 0;
    for (const node of this.claims.keys()) if (node === this.self || this.live.has(node)) n++;
    return n;
  }

  /** N: our --ipalloc-init count, or more when we reach more participants. */
  peerCount(): number {
    return Math.max(this.initPeerCount, this.reachableParticipants());
  }

  get quorum(): number {
    return quorumFor(this.peerCount());
  }

  /** Publishes our (empty) record, so proposers count us as a participant. True when new. */
  join(): boolean {
    if (this.claims.has(this.self)) return false;
    this.claims.set(this.self, { version: 0, promise: null, accepted: null });
    return true;
  }

  joined(): boolean {
    return this.claims.has(this.self);
  }

  records(): Claims {
    return this.claims;
  }

  ownRecord(): NodeClaim | null {
    return this.claims.get(this.self) ?? null;
  }

  /** Folds records from elsewhere (already validated); true when anything changed. */
  merge(incoming: Claims): boolean {
    let changed = false;
    for (const [node, claim] of incoming) {
      const mine = this.claims.get(node);
      // Our own record coming back newer than ours means we lost state; taking
      // it back restores our promises, which is what safety needs.
      if (!mine || compareClaims(claim, mine) > 0) {
        this.claims.set(node, claim);
        changed = true;
      }
    }
    return changed;
  }

  /** The highest round anyone has used, so a new proposal can go above it. */
  private maxRound(): number {
    let max = 0;
    for (const c of this.claims.values()) {
      max = Math.max(max, c.promise?.round ?? 0, c.accepted?.id.round ?? 0);
    }
    return max;
  }

  private update(next: Omit<NodeClaim, 'version'>): void {
    const cur = this.claims.get(this.self);
    this.claims.set(this.self, { ...next, version: (cur?.version ?? -1) + 1 });
  }

  /** Starts a new proposal above every round seen. Returns its id. */
  propose(): ProposalId {
    this.join();
    const me = this.claims.get(this.self)!;
    const id: ProposalId = { round: this.maxRound() + 1, proposer: this.self };
    this.update({ promise: id, accepted: me.accepted });
    return id;
  }

  /** Our proposal, while our promise is still to ourselves. */
  liveProposal(): ProposalId | null {
    const me = this.claims.get(this.self);
    return me?.promise?.proposer === this.self ? me.promise : null;
  }

  /**
   * Runs the acceptor and proposer rules on what we know; true when our
   * record changed (then it must be persisted and gossiped).
   */
  think(): boolean {
    if (!this.claims.has(this.self)) return false;
    let changed = false;
    for (let step = 0; step < 4; step++) {
      if (!this.thinkOnce()) break;
      changed = true;
    }
    return changed;
  }

  private thinkOnce(): boolean {
    const me = this.claims.get(this.self)!;
    // Acceptor, promise: the highest proposal announced by its own proposer.
    let highest: ProposalId | null = null;
    for (const [node, c] of this.claims) {
      if (c.promise !== null && c.promise.proposer === node && compareIds(c.promise, highest) > 0) highest = c.promise;
    }
    if (highest !== null && compareIds(highest, me.promise) > 0) {
      this.update({ promise: highest, accepted: me.accepted });
      return true;
    }
    // Acceptor, accept: the highest accept request (a proposer's own
    // acceptance of its proposal) not below our promise.
    let request: AcceptedValue | null = null;
    for (const [node, c] of this.claims) {
      const a = c.accepted;
      if (a !== null && a.id.proposer === node && compareIds(a.id, me.promise) >= 0 && compareIds(a.id, request?.id ?? null) > 0) request = a;
    }
    if (request !== null && compareIds(request.id, me.accepted?.id ?? null) > 0) {
      this.update({ promise: request.id, accepted: request });
      return true;
    }
    // Proposer: with a quorum of promises for our live proposal, choose its value.
    const ours = this.liveProposal();
    const quorum = this.quorum;
    if (ours !== null && compareIds(me.accepted?.id ?? null, ours) !== 0) {
      let promisers = 0;
      let prior: AcceptedValue | null = null;
      for (const c of this.claims.values()) {
        if (compareIds(c.promise, ours) !== 0) continue;
        promisers++;
        if (c.accepted !== null && compareIds(c.accepted.id, prior?.id ?? null) > 0) prior = c.accepted;
      }
      if (promisers >= quorum) {
        const value = prior !== null ? prior.value : this.participants();
        this.update({ promise: ours, accepted: { id: ours, value } });
        return true;
      }
    }
    return false;
  }

  /** The participants we know of (records seen, us included), sorted. */
  participants(): PeerName[] {
    return [...this.claims.keys()].sort();
  }

  /** The chosen value once a quorum accepted one same proposal; null before. */
  decision(): readonly PeerName[] | null {
    const groups = new Map<string, { count: number; value: readonly PeerName[] }>();
    for (const c of this.claims.values()) {
      if (c.accepted === null) continue;
      const key = `${c.accepted.id.round}/${c.accepted.id.proposer}`;
      const g = groups.get(key);
      if (!g) groups.set(key, { count: 1, value: c.accepted.value });
      else if (sameValue(g.value, c.accepted.value)) g.count++;
    }
    const quorum = this.quorum;
    for (const g of groups.values()) if (g.count >= quorum) return g.value;
    return null;
  }

  progress(): ConsensusProgress {
    const ours = this.liveProposal();
    let promisesForOurs = 0;
    const acceptCounts = new Map<string, number>();
    for (const c of this.claims.values()) {
      if (ours !== null && compareIds(c.promise, ours) === 0) promisesForOurs++;
      if (c.accepted !== null) {
        const key = `${c.accepted.id.round}/${c.accepted.id.proposer}`;
        acceptCounts.set(key, (acceptCounts.get(key) ?? 0) + 1);
      }
    }
    return {
      peerCount: this.peerCount(),
      configuredPeerCount: this.initPeerCount,
      quorum: this.quorum,
      known: this.participants(),
      reachable: this.reachableParticipants(),
      proposal: ours,
      promisesForOurs,
      bestAcceptCount: Math.max(0, ...acceptCounts.values()),
    };
  }
}
