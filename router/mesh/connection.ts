// One control connection to a peer: drives the handshake over a ByteStream,
// then protects, frames and dispatches control messages, and keeps the
// connection alive with heartbeats. It owns no policy: whether an established
// connection is kept (self, name clash, duplicate, limits) is the router's call.

import type { Clock, Timer } from '../../common/clock';
import { MAX_CONNECTION_BACKLOG_BYTES, MAX_CONTROL_MESSAGE_BYTES, MAX_HANDSHAKE_MESSAGE_BYTES, RouterTimings } from './constants';
import { ControlSession, PlaintextSession } from './control-session';
import { RouterError, RouterErrorCode } from './errors';
import { errorMessage } from '../../common/errors';
import { frame, FrameDecoder } from './framing';
import { Handshake, HandshakeResult, PeerKeyRefused } from './handshake';
import type { HandshakeSigner, PeerKeyPins } from './key-proof';
import { DEFAULT_REKEY_OPTIONS, KeySchedule, KeyStatus, RekeyOptions } from './key-schedule';
import type { SleeveKeyRing } from './sleeve-keys';
import type { HelloInfo } from './handshake-messages';
import type { Logger } from '../../common/logger';
import { ControlMessage, decodeControlMessage, encodeHeartbeat, encodeRefuse } from './protocol';
import type { ByteStream } from './transport';

export type ConnectionPhase = 'handshaking' | 'established' | 'closed';

export interface ConnectionEvents {
  /** The handshake completed; the router decides whether to keep the connection. */
  onEstablished(conn: Connection): void;
  onMessage(conn: Connection, msg: ControlMessage): void;
  /** Called exactly once. `error` null means we closed it on purpose without a fault. */
  onClosed(conn: Connection, error: RouterError | null): void;
}

export interface ConnectionOptions {
  local: HelloInfo;
  /** Our peer key: proves local.name in the handshake. */
  key: HandshakeSigner;
  /** Keys known per name (the router's GossipAuthority): a peer's proof must match. */
  pins?: PeerKeyPins;
  passwordKey: Uint8Array | null;
  /** During a password roll: the old password, still accepted. */
  oldPasswordKey?: Uint8Array | null;
  /** When keys rotate; defaults to DEFAULT_REKEY_OPTIONS. */
  rekey?: RekeyOptions;
  /** Offer AES-256-GCM for the UDP sleeve (the data plane can do it). */
  offerAesGcm?: boolean;
  timings: RouterTimings;
  outbound: boolean;
  /** For outbound connections: the normalised target address we dialed. */
  targetAddress: string | null;
}

const KNOWN_REFUSE_CODES: ReadonlySet<string> = new Set<RouterErrorCode>([
  'self-connection', 'name-collision', 'duplicate-connection', 'conn-limit', 'config', 'peer-key',
]);

let nextConnectionId = 1;

export class Connection {
  readonly id = nextConnectionId++;
  phase: ConnectionPhase = 'handshaking';
  remote: HelloInfo | null = null;
  /** The Ed25519 key the peer proved in the handshake (it derives remote.name). */
  remoteKey: Uint8Array | null = null;
  encrypted = false;
  readonly startedMs: number;
  private handshake: Handshake;
  private session: ControlSession | null = null;
  /** Strangers get the handshake's small limit; the full one only once they have authenticated. */
  private readonly decoder = new FrameDecoder(MAX_HANDSHAKE_MESSAGE_BYTES);
  private lastReceivedMs: number;
  private timer: Timer | null = null;
  private readonly log: Logger;
  /** The keys of an encrypted connection once established; they rotate (key-schedule.ts). */
  private keys: KeySchedule | null = null;
  /** Which of our passwords the peer proved: 0 current, 1 old; null when plaintext. */
  passwordSlot: number | null = null;

  constructor(
    private readonly deps: { clock: Clock; logger: Logger },
    readonly stream: ByteStream,
    readonly opts: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.startedMs = deps.clock.now();
    this.lastReceivedMs = this.startedMs;
    this.log = deps.logger.child({ conn: this.id, addr: stream.remoteAddress, dir: opts.outbound ? 'out' : 'in' });
    const { handshake, hello } = Handshake.start({
      local: opts.local, key: opts.key, ...(opts.pins ? { pins: opts.pins } : {}),
      passwordKey: opts.passwordKey, oldPasswordKey: opts.oldPasswordKey ?? null, offerAesGcm: opts.offerAesGcm === true,
    });
    this.handshake = handshake;
    this.stream.start({ onData: (chunk) => this.handleData(chunk), onClose: (err) => this.handleStreamClosed(err) });
    this.stream.write(frame(hello));
    this.timer = deps.clock.setTimer(opts.timings.handshakeTimeoutMs, () => this.handleHandshakeTimeout());
  }

  /**
   * The address the remote peer accepts connections on: what we dialed, or
   * for inbound connections its source IP with the port it told us it listens on.
   */
  get remoteListenAddress(): string {
    if (this.opts.targetAddress !== null) return this.opts.targetAddress;
    const port = this.remote?.listenPort ?? 0;
    const host = this.stream.remoteHost;
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  /** Keys for the UDP data channel, when encrypted; they rotate in place. */
  get sleeveKeys(): SleeveKeyRing | null {
    return this.keys?.sleeve ?? null;
  }

  /** Key epoch and age, when encrypted and established. */
  keyStatus(): KeyStatus | null {
    return this.keys?.status() ?? null;
  }

  send(message: Uint8Array): void {
    if (this.phase !== 'established' || this.session === null) return;
    if (this.stream.pendingBytes > MAX_CONNECTION_BACKLOG_BYTES) {
      this.close(new RouterError('io', `peer is not reading: over ${MAX_CONNECTION_BACKLOG_BYTES} bytes queued`));
      return;
    }
    this.stream.write(frame(this.session.seal(message)));
  }

  /** Tells the peer why, then closes. */
  refuse(error: RouterError): void {
    if (this.phase === 'established') this.send(encodeRefuse(error.code, error.message));
    this.close(error);
  }

  close(error: RouterError | null = null): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.timer?.cancel();
    this.timer = null;
    this.stream.close();
    this.events.onClosed(this, error);
    this.keys?.dispose();
  }

  private handleData(chunk: Uint8Array): void {
    if (this.phase === 'closed') return;
    this.lastReceivedMs = this.deps.clock.now();
    this.decoder.push(chunk);
    // One payload at a time: the one that completes the handshake raises the
    // frame limit for the next, which may have arrived in the same chunk.
    for (;;) {
      if (this.isClosed()) return;
      try {
        const payload = this.decoder.next();
        if (payload === null) return;
        this.handlePayload(payload);
      } catch (err) {
        const error = asRouterError(err);
        this.log.debug('closing connection after a bad message', { code: error.code, error: error.message });
        this.close(error);
        return;
      }
    }
  }

  /** A method rather than a field test: handlers called in between may have closed us. */
  isClosed(): boolean {
    return this.phase === 'closed';
  }

  private handlePayload(payload: Uint8Array): void {
    if (this.phase === 'established') {
      const msg = decodeControlMessage(this.session!.open(payload));
      if (msg.type === 'heartbeat') return;
      if (msg.type === 'rekey') {
        for (const m of this.keys?.handle(msg.rekey, this.deps.clock.now()) ?? []) this.send(m);
        return;
      }
      if (msg.type === 'refuse') {
        const code = KNOWN_REFUSE_CODES.has(msg.code) ? (msg.code as RouterErrorCode) : 'closed';
        this.close(new RouterError(code, `refused by peer: ${msg.message}`));
        return;
      }
      this.events.onMessage(this, msg);
      return;
    }
    if (this.handshake.state === 'awaiting-hello') {
      const outcome = this.handshake.consumeHello(payload);
      this.encrypted = outcome.encrypted;
      this.stream.write(frame(outcome.auth));
      return;
    }
    let result: HandshakeResult;
    try {
      result = this.handshake.consumeAuth(payload);
    } catch (err) {
      if (err instanceof PeerKeyRefused) this.tellKeyRefused(err);
      throw err;
    }
    this.remote = result.remote;
    this.remoteKey = result.remoteKey;
    this.passwordSlot = result.passwordSlot;
    if (result.secrets !== null) this.keys = new KeySchedule(result.secrets, this.opts.rekey ?? DEFAULT_REKEY_OPTIONS, this.deps.clock.now());
    this.becomeEstablished();
  }

  /**
   * The peer's key proof failed, but its own check of ours passed, so it
   * counts itself established: one REFUSE under the session's keys (plain
   * without a password) tells it why before we close. Only a peer that
   * opened our Auth gets it, so strangers learn nothing from it.
   */
  private tellKeyRefused(err: PeerKeyRefused): void {
    const keys = err.secrets === null ? null : new KeySchedule(err.secrets, this.opts.rekey ?? DEFAULT_REKEY_OPTIONS, this.deps.clock.now());
    const session = keys?.control ?? new PlaintextSession();
    this.stream.write(frame(session.seal(encodeRefuse(err.code, err.message))));
    keys?.dispose();
  }

  private becomeEstablished(): void {
    this.session = this.keys?.control ?? new PlaintextSession();
    this.phase = 'established';
    this.decoder.setMaxPayloadBytes(MAX_CONTROL_MESSAGE_BYTES);
    this.timer?.cancel();
    this.scheduleHeartbeat();
    this.log.debug('handshake complete', { peer: this.remote?.name, encrypted: this.encrypted });
    this.events.onEstablished(this);
  }

  private scheduleHeartbeat(): void {
    this.timer = this.deps.clock.setTimer(this.opts.timings.heartbeatIntervalMs, () => {
      if (this.phase !== 'established') return;
      const silentMs = this.deps.clock.now() - this.lastReceivedMs;
      if (silentMs > this.opts.timings.heartbeatTimeoutMs) {
        this.close(new RouterError('heartbeat-timeout', `no message from peer for ${silentMs} ms`));
        return;
      }
      if (!this.tickKeys()) return;
      this.send(encodeHeartbeat());
      this.scheduleHeartbeat();
    });
  }

  /** Rotates keys when due (key-schedule.ts); false when a stalled rekey closed the connection. */
  private tickKeys(): boolean {
    if (this.keys === null) return true;
    try {
      for (const m of this.keys.tick(this.deps.clock.now())) this.send(m);
      return !this.isClosed();
    } catch (err) {
      this.close(asRouterError(err));
      return false;
    }
  }

  private handleHandshakeTimeout(): void {
    if (this.phase !== 'handshaking') return;
    this.close(new RouterError('heartbeat-timeout', `handshake not completed within ${this.opts.timings.handshakeTimeoutMs} ms`));
  }

  private handleStreamClosed(err: Error | null): void {
    if (this.phase === 'closed') return;
    const during = this.phase === 'handshaking' ? ' during the handshake' : '';
    this.close(new RouterError('closed', err ? `connection lost${during}: ${errorMessage(err)}` : `connection closed by peer${during}`));
  }
}

function asRouterError(err: unknown): RouterError {
  return err instanceof RouterError ? err : new RouterError('io', errorMessage(err), { cause: err });
}
