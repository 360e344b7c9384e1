// Where we send one neighbour's sleeve datagrams, and what may move it. Pure
// (clock time and randomness come in as arguments); overlay.ts carries out
// the probes and status reports it asks for.
//
// With a password, a datagram that authenticated proves its sender, so its
// source becomes the address (NAT rebinding, roaming), as in WireGuard. An
// attacker who copies a fresh datagram and races it from elsewhere can still
// move it; the copy is the real peer's traffic, so he gains what an on-path
// attacker has anyway.
//
// Without a password nothing in a datagram proves who sent it: anyone can put
// a peer's name in a sleeve header. So the address starts pinned at the TCP
// peer's address and its listen port, and a datagram from anywhere else is
// dropped (drop reason 'source') and never counts as hearing the peer. It
// only earns a challenge: a probe carrying 8 random bytes, sent to that
// source. The neighbour echoes the last challenge it heard in its next
// UDP_STATUS over the TCP connection (router/mesh/protocol.ts); only that
// echo moves the address, to where the challenge went. The echo proves that
// datagrams sent there reach the neighbour, which is what we must know before
// sending its frames there; a spoofer off the path never sees the challenge.
// This is how a peer behind NAT, whose datagrams come from a port the NAT
// chose, gets onto UDP; until then its frames travel over TCP.
//
// Costs an attacker can impose: challenges are capped per probe interval
// (and one per source), so a flood of spoofed datagrams makes us send at most
// MAX_CHALLENGES_PER_TICK small probes per neighbour per interval, and can at
// worst delay a NAT'd peer's move to UDP (its frames keep flowing over TCP).
// It can never redirect frames to itself.

import { CHALLENGE_BYTES } from './sleeve-codec';

const MAX_PENDING_CHALLENGES = 8;
export const MAX_CHALLENGES_PER_TICK = 4;

interface PendingChallenge {
  nonce: Buffer;
  host: string;
  port: number;
  sentMs: number;
  tick: number;
}

/** What a datagram that opened (authenticated, with a password) means for the address. */
export type SourceVerdict = 'pinned' | 'moved' | 'unexpected';

export class UdpEndpoint {
  host: string;
  port: number;
  private readonly pending: PendingChallenge[] = [];
  private tickCount = 0;
  private challengesThisTick = 0;
  /** The neighbour's last challenge to us, echoed (once) in our next UDP_STATUS. */
  private heard: Buffer | null = null;
  private heardFromPinned = false;

  constructor(
    host: string,
    port: number,
    /** True with a password: the sleeve session authenticates every datagram. */
    readonly authenticated: boolean,
    private readonly challengeTtlMs: number,
  ) {
    this.host = host;
    this.port = port;
  }

  /** A datagram naming this neighbour arrived from host:port and passed the session's checks. */
  onDatagram(host: string, port: number): SourceVerdict {
    if (host === this.host && port === this.port) return 'pinned';
    if (!this.authenticated) return 'unexpected';
    this.host = host;
    this.port = port;
    return 'moved';
  }

  /**
   * Plaintext: a challenge to probe an unexpected source with, filled by `fill`
   * (a CSPRNG), or null when this source was challenged this interval or the
   * interval's budget is spent.
   */
  challenge(host: string, port: number, nowMs: number, fill: (out: Buffer) => void): Buffer | null {
    if (this.authenticated || this.challengesThisTick >= MAX_CHALLENGES_PER_TICK) return null;
    for (const p of this.pending) if (p.tick === this.tickCount && p.host === host && p.port === port) return null;
    const nonce = Buffer.alloc(CHALLENGE_BYTES);
    fill(nonce);
    if (this.pending.length >= MAX_PENDING_CHALLENGES) this.pending.shift();
    this.pending.push({ nonce, host, port, sentMs: nowMs, tick: this.tickCount });
    this.challengesThisTick++;
    return nonce;
  }

  /**
   * Plaintext: the neighbour echoed `echo` over its TCP connection. Moves the
   * address to where that challenge went; true when it moved.
   */
  confirm(echo: Uint8Array, nowMs: number): boolean {
    if (this.authenticated || echo.length !== CHALLENGE_BYTES) return false;
    const i = this.pending.findIndex((p) => nowMs - p.sentMs <= this.challengeTtlMs && p.nonce.equals(echo));
    if (i < 0) return false;
    const p = this.pending[i]!;
    this.pending.length = 0;
    const moved = p.host !== this.host || p.port !== this.port;
    this.host = p.host;
    this.port = p.port;
    return moved;
  }

  /**
   * The neighbour challenged us. A challenge from its pinned address wins over
   * one from elsewhere, so spoofed challenges cannot crowd out the real one.
   */
  heardChallenge(nonce: Uint8Array, fromPinned: boolean): void {
    if (!fromPinned && this.heard !== null && this.heardFromPinned) return;
    this.heard = Buffer.from(nonce);
    this.heardFromPinned = fromPinned;
  }

  /** The challenge to echo in this interval's UDP_STATUS, if any; starts a new interval. */
  tick(): Buffer | null {
    const echo = this.heard;
    this.heard = null;
    this.heardFromPinned = false;
    this.tickCount++;
    this.challengesThisTick = 0;
    return echo;
  }
}
