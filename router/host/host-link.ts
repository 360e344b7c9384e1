// Host network links as `ip` shows them: the rules for interface names and
// MTUs, reading one link (`ip -j -d link show`), and guessing the underlay MTU
// from the default route. Shared by the bridge, the firewall exceptions and the
// container veths.
//
// It only reads: it must never create, change or delete a link (host-bridge.ts
// and container-link.ts do that). All I/O goes through CommandRunner.

import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { CommandRunner } from './command-runner';

/** Host ends of container veths start with this; the bridge-family firewall rule matches on it. */
export const VETH_PREFIX = 'vethwe';
/**
 * The host end's prefix for each way a container joins. Other ports of ours
 * share VETH_PREFIX (the router's TAP vethwe-tap, the fast path's vethwe-hb),
 * so port security (port-security.ts) knows a container's port by these.
 */
export const CONTAINER_VETH_PREFIXES = {
  pid: `${VETH_PREFIX}pl`,
  netns: `${VETH_PREFIX}ns`,
  cni: `${VETH_PREFIX}c`,
  dockerPlugin: `${VETH_PREFIX}d`,
} as const;
/** Linux IFNAMSIZ minus the terminating NUL. */
export const MAX_IFNAME_CHARS = 15;
/** IPv4's minimum (RFC 791); anything smaller cannot carry an IP header and some data. */
export const MIN_MTU = 68;
export const MAX_MTU = 65535;
export const DEFAULT_MTU = 1500;

const IFNAME_RE = /^[A-Za-z0-9_.-]+$/;

/** Refuses names the kernel would refuse (or `ip` would read as a keyword). */
export function validateIfName(name: string, what: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_IFNAME_CHARS || !IFNAME_RE.test(name) || name === '.' || name === '..') {
    throw RouterError.config(
      `${what} must be 1 to ${MAX_IFNAME_CHARS} letters, digits, '_', '.' or '-', got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

export function validateMtu(mtu: number, what = 'MTU'): number {
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
    throw RouterError.config(`${what} must be an integer from ${MIN_MTU} to ${MAX_MTU}, got ${String(mtu)}`);
  }
  return mtu;
}

export interface LinkInfo {
  ifname: string;
  mtu: number;
  kind: string | null;
  master: string | null;
  up: boolean;
}

/** `ip -j -d link show dev NAME`, or null when there is no such link. */
export async function showLink(runner: CommandRunner, name: string): Promise<LinkInfo | null> {
  const r = await runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', name], { allowFail: true });
  if (r.code !== 0) {
    if (/does not exist|Cannot find device/i.test(r.stderr)) return null;
    throw new RouterError('io', `ip link show dev ${name} failed: ${r.stderr.trim()}`);
  }
  const parsed = parseJsonArray(r.stdout, 'ip -j link show');
  const first = parsed[0];
  if (first === undefined) return null;
  return linkInfoOf(first);
}

function linkInfoOf(entry: Record<string, unknown>): LinkInfo {
  const linkinfo = entry['linkinfo'] as Record<string, unknown> | undefined;
  const kind = linkinfo !== undefined && typeof linkinfo['info_kind'] === 'string' ? linkinfo['info_kind'] : null;
  const flags = Array.isArray(entry['flags']) ? (entry['flags'] as unknown[]) : [];
  return {
    ifname: String(entry['ifname'] ?? ''),
    mtu: typeof entry['mtu'] === 'number' ? entry['mtu'] : 0,
    kind,
    master: typeof entry['master'] === 'string' ? entry['master'] : null,
    up: flags.includes('UP'),
  };
}

function parseJsonArray(text: string, what: string): Record<string, unknown>[] {
  if (text.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RouterError('io', `${what} printed something that is not JSON: ${errorMessage(err)}`);
  }
  if (!Array.isArray(parsed)) throw new RouterError('io', `${what} printed JSON that is not an array`);
  return parsed.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null);
}

/**
 * The MTU of the interface carrying the default route; failing that, the
 * largest MTU among up, non-loopback interfaces; failing that, 1500.
 */
export async function detectUnderlayMtu(runner: CommandRunner): Promise<number> {
  for (const family of ['-4', '-6']) {
    const r = await runner.run('ip', ['-j', family, 'route', 'show', 'default'], { allowFail: true });
    if (r.code !== 0) continue;
    let routes: Record<string, unknown>[];
    try {
      routes = parseJsonArray(r.stdout, 'ip -j route');
    } catch {
      continue;
    }
    for (const route of routes) {
      const dev = route['dev'];
      if (typeof dev !== 'string') continue;
      const link = await showLink(runner, dev).catch(() => null);
      if (link !== null && link.mtu >= MIN_MTU) return link.mtu;
    }
  }
  const r = await runner.run('ip', ['-j', 'link', 'show', 'up'], { allowFail: true });
  if (r.code === 0) {
    let best = 0;
    try {
      for (const entry of parseJsonArray(r.stdout, 'ip -j link')) {
        const flags = Array.isArray(entry['flags']) ? (entry['flags'] as unknown[]) : [];
        if (entry['link_type'] === 'loopback' || flags.includes('LOOPBACK')) continue;
        const mtu = entry['mtu'];
        if (typeof mtu === 'number' && mtu > best) best = mtu;
      }
    } catch {
      best = 0;
    }
    if (best >= MIN_MTU) return best;
  }
  return DEFAULT_MTU;
}
