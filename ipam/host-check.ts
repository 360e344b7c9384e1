// Refuses, at launch, an IPAM range that overlaps a route already on the host:
// containers would get addresses the host routes elsewhere (a LAN, a VPN, a
// Docker bridge). Reads `ip -j route show table all` through an injected
// runner (router/host/command-runner.ts's CommandRunner fits; typed structurally
// here so ipam/ does not import router internals). Routes on our own bridge
// are ours from a previous run and are ignored.

import { tryParseIp } from '../common/ip';
import { Cidr } from '../common/ip-cidr';
import { parseIpamCidr } from './address-range';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';

export interface RouteRunner {
  run(cmd: string, args: string[], opts?: { allowFail?: boolean }): Promise<{ code: number; stdout: string; stderr: string }>;
}

export interface HostRoute {
  dst: Cidr;
  dev: string | null;
  table: string | null;
  text: string;
}

export interface RangeCheckOptions {
  /** Devices whose routes are ours (the weave bridge); default ['weave']. */
  ignoreDevices?: string[];
  /** Names the flag in the error; default --ipalloc-range. */
  what?: string;
}

/** Parses `ip -j route` output; entries without a usable destination (default, malformed) are skipped. */
export function parseIpRouteJson(stdout: string, family: 4 | 6): HostRoute[] {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout === '' ? '[]' : stdout);
  } catch (err) {
    throw new IpamError('io', `cannot parse the output of ip -j route: ${errorMessage(err)}`);
  }
  if (!Array.isArray(raw)) throw new IpamError('io', 'ip -j route did not print a JSON list');
  const out: HostRoute[] = [];
  for (const r of raw) {
    if (typeof r !== 'object' || r === null) continue;
    const rec = r as Record<string, unknown>;
    const dstText = rec['dst'];
    if (typeof dstText !== 'string' || dstText === 'default') continue;
    const slash = dstText.indexOf('/');
    const addr = tryParseIp(slash < 0 ? dstText : dstText.slice(0, slash));
    if (addr === null || addr.family !== family) continue;
    const prefixLen = slash < 0 ? (family === 4 ? 32 : 128) : Number(dstText.slice(slash + 1));
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > (family === 4 ? 32 : 128)) continue;
    // A default route written as 0.0.0.0/0 or ::/0 covers everything and conflicts with nothing.
    if (prefixLen === 0) continue;
    const dev = typeof rec['dev'] === 'string' ? rec['dev'] : null;
    const table = typeof rec['table'] === 'string' ? rec['table'] : null;
    const type = typeof rec['type'] === 'string' ? `${rec['type']} ` : '';
    out.push({ dst: Cidr.containing(addr, prefixLen), dev, table, text: `${type}${dstText}${dev ? ` dev ${dev}` : ''}${table ? ` table ${table}` : ''}` });
  }
  return out;
}

/** The host routes that overlap `range`, ignoring our own devices. */
export function overlappingRoutes(range: Cidr, routes: HostRoute[], ignoreDevices: readonly string[]): HostRoute[] {
  return routes.filter((r) => !(r.dev !== null && ignoreDevices.includes(r.dev)) && r.dst.overlaps(range));
}

/** Throws IpamError('config') naming the first overlapping routes; resolves when the range is free. */
export async function checkRangeFreeOnHost(range: string, runner: RouteRunner, opts: RangeCheckOptions = {}): Promise<void> {
  const what = opts.what ?? '--ipalloc-range';
  const cidr = parseIpamCidr(range, what);
  const args = [cidr.family === 4 ? '-4' : '-6', '-j', 'route', 'show', 'table', 'all'];
  const res = await runner.run('ip', args, { allowFail: true });
  if (res.code !== 0) throw new IpamError('io', `ip ${args.join(' ')} failed (exit ${res.code}): ${res.stderr.trim()}`);
  const hits = overlappingRoutes(cidr, parseIpRouteJson(res.stdout, cidr.family), opts.ignoreDevices ?? ['weave']);
  if (hits.length === 0) return;
  const shown = hits.slice(0, 3).map((h) => h.text).join('; ');
  throw IpamError.config(
    `${what} ${cidr.toString()} overlaps ${hits.length === 1 ? 'a route' : `${hits.length} routes`} on this host (${shown}${hits.length > 3 ? '; ...' : ''}): ` +
      `containers would get addresses the host sends elsewhere; choose another range with ${what}`,
  );
}
