// Connections that failed or were refused recently, kept only for the status
// (`weave status connections` shows why a peer is not connected). Bounded in
// count (MAX_FAILED_CONNECTIONS_LISTED) and in age (failedConnectionRetentionMs);
// one entry per remote end and direction, the newest reason first. Owns no
// timer: entries age out whenever a new one is recorded. Each entry carries
// the failure's code, so status tells a refused handshake (wrong or missing
// password, no common version) from a peer that is merely unencrypted.

import { MAX_FAILED_CONNECTIONS_LISTED } from './constants';
import type { RouterErrorCode } from './errors';
import type { PeerName } from './peer-name';
import type { ConnectionStatus } from './status';

export interface FailedConnection {
  address: string;
  outbound: boolean;
  peer: PeerName | null;
  nickname: string | null;
  encrypted: boolean;
  /** Why it failed, for people. */
  info: string;
  /** Why it failed, for programs. */
  failure: RouterErrorCode;
}

export class FailedConnections {
  private readonly entries: ConnectionStatus[] = [];

  constructor(private readonly retentionMs: number) {}

  record(f: FailedConnection, nowMs: number): void {
    const status: ConnectionStatus = {
      address: f.address, outbound: f.outbound, state: 'failed', peer: f.peer, nickname: f.nickname,
      encrypted: f.encrypted, info: f.info, failure: f.failure, sinceMs: nowMs,
    };
    const k = endKey(status);
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i]!;
      if (endKey(e) === k || nowMs - e.sinceMs > this.retentionMs) this.entries.splice(i, 1);
    }
    this.entries.unshift(status);
    if (this.entries.length > MAX_FAILED_CONNECTIONS_LISTED) this.entries.length = MAX_FAILED_CONNECTIONS_LISTED;
  }

  /** Newest first. */
  list(): readonly ConnectionStatus[] {
    return this.entries;
  }
}

/** The remote end (its peer name once known, else its host) and the direction. */
function endKey(s: ConnectionStatus): string {
  return `${s.outbound}|${s.peer ?? s.address.replace(/:\d+$/, '')}`;
}

/**
 * How a connection that closed with `code` (and was not a kept peer) shows:
 * 'none' for the routine ends (a duplicate, ourselves); 'stranger' for an
 * inbound end that never identified itself and failed for no reason worth
 * naming (idle, oversize, not weave, dropped at a cap): counted in the
 * handshake pressure, never listed or logged one by one; 'loud' for
 * refusals an operator must fix (password, name, version, a key proof that
 * failed: an impostor or a broken peer): listed and logged
 * as warnings; 'quiet' for the rest: listed, logged at debug.
 */
export function failureVisibility(code: RouterErrorCode, outbound: boolean, identified: boolean): 'none' | 'stranger' | 'loud' | 'quiet' {
  if (code === 'duplicate-connection' || code === 'self-connection') return 'none';
  const loud = code.startsWith('password') || code === 'name-collision' || code === 'version' || code === 'peer-key';
  if (loud) return 'loud';
  return !outbound && !identified ? 'stranger' : 'quiet';
}
