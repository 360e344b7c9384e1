// Health as a list of named conditions (tailscale health/, in spirit), derived
// from a status snapshot so `weave status`, the status port and the metrics
// all agree. A code that is absent means healthy. Conditions that flap on a
// brief blip wait out a grace period before they show.

import type { HealthWarning, RouterStatus } from './status';

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
  return out;
}
