// Health as a list of named conditions (tailscale health/, in spirit), derived
// from a status snapshot so `weave status`, the status port and the metrics
// all agree. A code that is absent means healthy. Conditions that flap on a
// brief blip wait out a grace period before they show.

import { HANDSHAKE_DROPS_WARN_COUNT } from './constants';
import type { HandshakePressure, HealthWarning, RouterStatus } from './status';

/** A target must have failed this many times in a row before it is called unreachable. */
const UNREACHABLE_AFTER_ATTEMPTS = 3;

export function healthWarnings(status: RouterStatus, _nowMs: number): HealthWarning[] {
  const out: HealthWarning[] = [];
  if (!status.encryption) {
    out.push({
      code: 'plaintext-mesh',
      severity: 'warning',
      text: 'the mesh is NOT encrypted: anyone on the underlay can read and inject traffic; launch with --password',
    });
  }
  for (const t of status.targets) {
    if (t.state === 'failed' && t.attempts >= UNREACHABLE_AFTER_ATTEMPTS) {
      out.push({ code: 'peer-unreachable', severity: 'warning', text: `cannot reach ${t.address} after ${t.attempts} attempts: ${t.lastError}` });
    }
    if (t.state === 'suspended' && t.lastError !== '' && t.direct) {
      out.push({ code: 'target-suspended', severity: 'info', text: `not retrying ${t.address}: ${t.lastError}` });
    }
  }
  const refusals = status.connections.filter((c) => c.state === 'failed' && /password/i.test(c.info));
  if (refusals.length > 0) {
    out.push({
      code: 'password-mismatch',
      severity: 'error',
      text: `${refusals.length} connection(s) refused over the password: ${refusals[0]!.address}: ${refusals[0]!.info}`,
    });
  }
  const pressure = status.handshakes;
  if (pressure !== undefined && underHandshakePressure(pressure)) {
    out.push({ code: 'handshake-pressure', severity: 'warning', text: describeHandshakePressure(pressure) });
  }
  return out;
}

/**
 * Strangers are costing us: every handshake slot is taken, a cap forced drops
 * in the last minute, or handshakes fail at a rate no misconfigured peer
 * reaches (a port scan or a single bad peer stays below it).
 */
export function underHandshakePressure(p: HandshakePressure): boolean {
  return p.inProgress >= p.maxInProgress || p.evictedLastMinute > 0 || p.droppedLastMinute >= HANDSHAKE_DROPS_WARN_COUNT;
}

/** e.g. "64/64 inbound handshakes in progress, 1234 dropped in the last minute (1200 to make room at the cap ...)". */
export function describeHandshakePressure(p: HandshakePressure): string {
  const atCap = p.evictedLastMinute > 0 ? ` (${p.evictedLastMinute} to make room at the cap of ${p.maxInProgress}, ${p.maxPerSource} per source)` : '';
  return `${p.inProgress}/${p.maxInProgress} inbound handshakes in progress, ${p.droppedLastMinute} dropped in the last minute${atCap}; ` +
    'connections that have not authenticated are being dropped; established peers keep theirs';
}
