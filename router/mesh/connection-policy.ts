// Which connections a router makes and keeps, decided in one place. Kept:
// both ends of a pair reach the same verdict without talking about it; a
// connection to ourselves, to a peer using our name, or a second connection
// to a peer we are already connected to is refused. Made: besides the
// user's targets, the addresses other peers report established connections
// to (discovery). Pure: it looks at who dialed, the names and incarnations
// the handshake reported and the topology; the router carries it out.

import type { HelloInfo } from './handshake-messages';
import type { PeerEntry } from './peer';
import { comparePeerNames, PeerName } from './peer-name';

/** What the policy needs of a connection. */
export interface EstablishedEnd {
  readonly opts: { readonly outbound: boolean };
  readonly remote: HelloInfo | null;
}

export type EstablishedVerdict<C> =
  /** The address is ourselves (same name and incarnation): close it and never dial it again. */
  | { action: 'self' }
  /** Another peer uses our name: refuse, loudly. */
  | { action: 'name-collision' }
  /** Already connected to this peer through a connection both ends keep: refuse the new one. */
  | { action: 'refuse-duplicate' }
  /** Keep the new connection; `replaced` (if any) is the one it supersedes and must be refused. */
  | { action: 'keep'; replaced: C | null };

/**
 * The verdict on `incoming`, just established, given `existing`, the
 * connection kept so far to the same peer (if any).
 */
export function judgeEstablished<C extends EstablishedEnd>(
  local: { name: PeerName; incarnation: number },
  incoming: C,
  existing: C | undefined,
): EstablishedVerdict<C> {
  const remote = incoming.remote!;
  if (remote.name === local.name) {
    return remote.incarnation === local.incarnation ? { action: 'self' } : { action: 'name-collision' };
  }
  if (existing === undefined || existing === incoming) return { action: 'keep', replaced: null };
  if (keepsExisting(local.name, existing, incoming)) return { action: 'refuse-duplicate' };
  return { action: 'keep', replaced: existing };
}

/**
 * Of two connections to the same peer, both ends must keep the same one. A
 * restarted peer's new connection always wins; otherwise the connection
 * dialed by the peer with the smaller name wins, and with equal dialers the
 * older one stays.
 */
export function keepsExisting(localName: PeerName, existing: EstablishedEnd, incoming: EstablishedEnd): boolean {
  const a = existing.remote!;
  const b = incoming.remote!;
  if (a.incarnation !== b.incarnation) return a.incarnation > b.incarnation;
  const dialerOf = (c: EstablishedEnd): PeerName => (c.opts.outbound ? localName : c.remote!.name);
  const da = dialerOf(existing);
  const db = dialerOf(incoming);
  if (da === db) return true;
  return comparePeerNames(da, db) < 0;
}

/**
 * Addresses other peers reach peers at, for discovery; those we are connected
 * to show up as connected targets. Addresses that turned out to be ourselves
 * are left out.
 */
export function discoveredAddresses(entries: readonly PeerEntry[], localName: PeerName, selfAddresses: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  for (const entry of entries) {
    for (const c of entry.connections) {
      if (c.name === localName || c.address === '') continue;
      if (!c.established || selfAddresses.has(c.address)) continue;
      out.add(c.address);
    }
  }
  return out;
}
