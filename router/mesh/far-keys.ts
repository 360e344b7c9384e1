// End-to-end ("far") keys between two peers that are not neighbours, so a
// relay can pass their frames on without opening them (the data plane's far
// sleeve type, router/overlay/far-session.ts). One exchange gives one key for
// one direction, initiator -> responder: the sender of the traffic asks for
// its own key, so neither side ever waits for the other's choice and there is
// nothing to break a tie on.
//
// The exchange (far-messages.ts) travels as unicast gossip, hop by hop over
// the relays' sealed TCP connections: INIT carries a fresh X25519 key signed
// with the initiator's Ed25519 peer key, REPLY the responder's fresh key signed
// with its own, both bound to the two names, the key id and the initiator's
// share. A relay holds the mesh password but neither peer key, so it can
// neither read nor replace a share: it cannot sit in the middle, and the key
// (key-derivation.ts farKey) is forward secret, as both secrets are zeroed
// at once. The responder installs the receive key before it replies, so
// every datagram sealed under it finds it; the initiator seals under it only
// once REPLY verified. A replayed INIT costs the responder one exchange and a
// receive slot that nothing uses (the data plane evicts unused slots first).
//
// Rekey: every rekeyMs the initiator runs a new exchange and switches on its
// REPLY; the receiver keeps a few keys per origin, so datagrams in flight
// under the old one still open. A receiver that lost its keys (restarted)
// answers a datagram under an unknown id with UNKNOWN: we stop sealing end to
// end at once (frames go hop by hop) and exchange again.
// Pure of I/O: gossip, clock, randomness and signing are injected.

import type { Clock, Timer } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { Gossip, GossipData, Gossiper, GossipHub } from './gossip';
import { farKey } from './key-derivation';
import { decodeFarMessage, encodeInit, encodeReply, encodeUnknown, FAR_CHANNEL, initSigned, replySigned, X25519_BYTES } from './far-messages';
import { peerNameToBytes, type PeerName } from './peer-name';
import { sodium } from './sodium';

/** What the data plane does with far keys (the Overlay implements it; key bytes are copied, the caller zeroes them). */
export interface FarKeySink {
  /** Seal frames to `dst` end to end under `key` (id `keyId`) from the next one on; null: stop (hop by hop again). */
  farSendKey(dst: PeerName, keyId: number, key: Uint8Array | null): void;
  /** Open far datagrams from `origin` under `keyId` too; false, and nothing changes, when that id is already held. */
  farReceiveKey(origin: PeerName, keyId: number, key: Uint8Array): boolean;
  /** Drop every far key shared with `peer`. */
  farForget(peer: PeerName): void;
}

export interface FarTimings {
  /** How often pending exchanges are retried and keys aged. */
  tickMs: number;
  /** Age of a send key at which a new exchange starts. */
  rekeyMs: number;
  /** An exchange without REPLY after this long is started again; each further unanswered one waits twice as long. */
  retryMs: number;
  /** The longest wait between unanswered exchanges (a peer that cannot answer costs one INIT per this). */
  maxRetryMs: number;
  /** The least time between two INITs we answer from one peer, and between two UNKNOWNs we send it. */
  answerGapMs: number;
}

export const DEFAULT_FAR_TIMINGS: FarTimings = { tickMs: 1000, rekeyMs: 120_000, retryMs: 2000, maxRetryMs: 64_000, answerGapMs: 200 };

/** An exchange waiting for REPLY; `waitMs`: how long before it is started again (doubles while none is answered). */
interface Pending { keyId: number; secret: Uint8Array; share: Uint8Array; sentMs: number; waitMs: number }

export class FarKeys implements Gossiper {
  private readonly channel: Gossip;
  private readonly pending = new Map<PeerName, Pending>();
  private readonly sending = new Map<PeerName, { keyId: number; sinceMs: number }>();
  /** When we last answered an INIT from, or sent UNKNOWN to, a peer. */
  private readonly answered = new Map<PeerName, number>();
  private readonly told = new Map<PeerName, number>();
  private timer: Timer | null = null;
  private readonly self: Uint8Array;
  readonly counters = { farExchangesStarted: 0, farSendKeys: 0, farReceiveKeys: 0, farMessagesRefused: 0, farUnknownKeys: 0 };

  constructor(
    private readonly deps: { clock: Clock; logger: Logger; hub: GossipHub; sink: FarKeySink; random?: (n: number) => Uint8Array },
    private readonly timings: FarTimings = DEFAULT_FAR_TIMINGS,
  ) {
    this.self = peerNameToBytes(deps.hub.localPeer);
    this.channel = deps.hub.addChannel(FAR_CHANNEL, this);
    deps.hub.onReachablePeersChanged((reachable) => this.reachableChanged(reachable));
    this.schedule();
  }

  close(): void {
    this.timer?.cancel();
    this.timer = null;
    for (const p of this.pending.values()) sodium().memzero(p.secret);
    this.pending.clear();
  }

  /** The data plane would seal to `dst` end to end: start an exchange unless one runs or a key is there. */
  want(dst: PeerName): void {
    if (this.sending.has(dst) || this.pending.has(dst) || dst === this.deps.hub.localPeer) return;
    this.start(dst);
  }

  /** A far datagram from `origin` named a key id we do not hold: tell it (at most once per answerGapMs). */
  unknownKey(origin: PeerName, keyId: number): void {
    const now = this.deps.clock.now();
    if (now - (this.told.get(origin) ?? -Infinity) < this.timings.answerGapMs) return;
    this.told.set(origin, now);
    this.channel.gossipUnicast(origin, encodeUnknown(keyId));
  }

  onGossipUnicast(src: PeerName, msg: Uint8Array): void {
    const m = decodeFarMessage(msg);
    if (src === this.deps.hub.localPeer) return;
    switch (m.type) {
      case 'init': return this.answer(src, m.keyId, m.initiatorPublic, m.signerKey, m.signature);
      case 'reply': return this.finish(src, m.keyId, m.initiatorPublic, m.responderPublic, m.signerKey, m.signature);
      case 'unknown': {
        const s = this.sending.get(src);
        if (s === undefined || s.keyId !== m.keyId) return;
        this.counters.farUnknownKeys++;
        this.sending.delete(src);
        this.deps.sink.farSendKey(src, m.keyId, null);
        this.want(src);
        return;
      }
    }
  }

  onGossipBroadcast(): GossipData | null { return null; }
  gossip(): GossipData | null { return null; }
  onGossip(): GossipData | null { return null; }

  private start(dst: PeerName, waitMs = this.timings.retryMs): void {
    const random = this.deps.random ?? ((n: number): Uint8Array => sodium().randombytes_buf(n));
    const idBytes = random(4);
    const keyId = ((idBytes[0]! << 24) >>> 0) + (idBytes[1]! << 16) + (idBytes[2]! << 8) + idBytes[3]!;
    const secret = random(X25519_BYTES);
    const share = sodium().crypto_scalarmult_base(secret);
    const signing = this.deps.hub.signing;
    const init = encodeInit(keyId, share, signing.publicKey, signing.sign(initSigned(this.deps.hub.localPeer, dst, keyId, share)));
    this.counters.farExchangesStarted++;
    if (!this.channel.gossipUnicast(dst, init)) { sodium().memzero(secret); return; }
    this.pending.set(dst, { keyId, secret, share, sentMs: this.deps.clock.now(), waitMs });
  }

  /** INIT from `src`: install its key for receiving, then REPLY. */
  private answer(src: PeerName, keyId: number, share: Uint8Array, signerKey: Uint8Array, signature: Uint8Array): void {
    const now = this.deps.clock.now();
    const signing = this.deps.hub.signing;
    if (now - (this.answered.get(src) ?? -Infinity) < this.timings.answerGapMs
      || !signing.verify(src, signerKey, initSigned(src, this.deps.hub.localPeer, keyId, share), signature)) {
      this.counters.farMessagesRefused++;
      return;
    }
    this.answered.set(src, now);
    const random = this.deps.random ?? ((n: number): Uint8Array => sodium().randombytes_buf(n));
    const secret = random(X25519_BYTES);
    const ours = sodium().crypto_scalarmult_base(secret);
    const key = this.derive(secret, share, peerNameToBytes(src), this.self, keyId, share, ours);
    if (key === null) { this.counters.farMessagesRefused++; return; }
    const fresh = this.deps.sink.farReceiveKey(src, keyId, key);
    sodium().memzero(key);
    if (!fresh) return;
    this.counters.farReceiveKeys++;
    const reply = encodeReply(keyId, share, ours, signing.publicKey, signing.sign(replySigned(src, this.deps.hub.localPeer, keyId, share, ours)));
    this.channel.gossipUnicast(src, reply);
  }

  /** REPLY from `src` to our pending INIT: seal under the new key from now on. */
  private finish(src: PeerName, keyId: number, initiatorShare: Uint8Array, share: Uint8Array, signerKey: Uint8Array, signature: Uint8Array): void {
    const p = this.pending.get(src);
    if (p === undefined || p.keyId !== keyId || !sameBytes(p.share, initiatorShare)
      || !this.deps.hub.signing.verify(src, signerKey, replySigned(this.deps.hub.localPeer, src, keyId, p.share, share), signature)) {
      this.counters.farMessagesRefused++;
      return;
    }
    this.pending.delete(src);
    const key = this.derive(p.secret, share, this.self, peerNameToBytes(src), keyId, p.share, share);
    if (key === null) { this.counters.farMessagesRefused++; return; }
    this.deps.sink.farSendKey(src, keyId, key);
    sodium().memzero(key);
    this.counters.farSendKeys++;
    this.sending.set(src, { keyId, sinceMs: this.deps.clock.now() });
  }

  /** The exchange's key; null for a share that yields no secret (a low-order point). Zeroes `secret`. */
  private derive(secret: Uint8Array, peerShare: Uint8Array, initiator: Uint8Array, responder: Uint8Array, keyId: number,
    initiatorShare: Uint8Array, responderShare: Uint8Array): Uint8Array | null {
    let dh: Uint8Array;
    try {
      dh = sodium().crypto_scalarmult(secret, peerShare);
    } catch (err) {
      this.deps.logger.debug('far key exchange: unusable share', { error: errorMessage(err) });
      return null;
    } finally {
      sodium().memzero(secret);
    }
    if (dh.every((b) => b === 0)) return null;
    const key = farKey(dh, initiator, responder, keyId, initiatorShare, responderShare);
    sodium().memzero(dh);
    return key;
  }

  private schedule(): void {
    this.timer = this.deps.clock.setTimer(this.timings.tickMs, () => {
      this.tick(this.deps.clock.now());
      if (this.timer !== null) this.schedule();
    });
  }

  private tick(now: number): void {
    for (const [dst, p] of [...this.pending]) {
      // A peer that never answers (no AES-GCM, or a build without far keys) must not cost an INIT every retryMs forever.
      if (now - p.sentMs < p.waitMs) continue;
      sodium().memzero(p.secret);
      this.pending.delete(dst);
      this.start(dst, Math.min(this.timings.maxRetryMs, p.waitMs * 2));
    }
    for (const [dst, s] of this.sending) if (now - s.sinceMs >= this.timings.rekeyMs && !this.pending.has(dst)) this.start(dst);
  }

  private reachableChanged(reachable: ReadonlySet<PeerName>): void {
    const gone = new Set<PeerName>();
    for (const peers of [this.pending.keys(), this.sending.keys(), this.answered.keys()]) for (const p of peers) if (!reachable.has(p)) gone.add(p);
    for (const peer of gone) {
      const p = this.pending.get(peer);
      if (p !== undefined) sodium().memzero(p.secret);
      this.pending.delete(peer);
      this.sending.delete(peer);
      this.answered.delete(peer);
      this.told.delete(peer);
      this.deps.sink.farForget(peer);
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
