// CNI CHECK for one attachment, as the host sees it now: the host end of the
// veth on the weave bridge, the container's interface up with its MAC and
// every recorded address, and every route the ADD made. Returns what is
// wrong, in words, so the runtime's log says which part drifted.
//
// Read-only: it runs `ip -j` and `nsenter ... ip -j`, never changes anything.

import type { CniRecord } from './cni-state';
import type { CommandRunner } from './command-runner';

export interface CniCheckProbe {
  runner: CommandRunner;
}

interface LinkJson {
  ifname?: unknown;
  master?: unknown;
  address?: unknown;
  flags?: unknown;
  addr_info?: { local?: unknown; prefixlen?: unknown }[];
}

function parseJsonList<T>(text: string): T[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    return [];
  }
}

/** "10.32.0.0/12" as ip prints it: a host route has no prefix length. */
function routeKey(dst: string): string {
  if (dst.includes('/')) return dst;
  return dst.includes(':') ? `${dst}/128` : `${dst}/32`;
}

export async function checkAttachment(probe: CniCheckProbe, r: CniRecord, opts: { bridge: string; routes: readonly string[] }): Promise<string[]> {
  const problems: string[] = [];
  const host = await probe.runner.run('ip', ['-j', 'link', 'show', 'dev', r.hostIfname], { allowFail: true });
  const hostLink = parseJsonList<LinkJson>(host.stdout)[0];
  if (host.code !== 0 || hostLink === undefined) problems.push(`host interface ${r.hostIfname} is missing`);
  else if (hostLink.master !== opts.bridge) problems.push(`host interface ${r.hostIfname} is not on bridge ${opts.bridge}`);

  const inNs = (args: string[]) => probe.runner.run('nsenter', [`--net=${r.netns}`, 'ip', '-j', ...args], { allowFail: true });
  const addr = await inNs(['addr', 'show', 'dev', r.ifName]);
  const link = parseJsonList<LinkJson>(addr.stdout)[0];
  if (addr.code !== 0 || link === undefined) {
    problems.push(`interface ${r.ifName} is missing in ${r.netns}`);
    return problems;
  }
  if (link.address !== r.mac) problems.push(`${r.ifName} has MAC ${String(link.address)}, not ${r.mac}`);
  if (!Array.isArray(link.flags) || !link.flags.includes('UP')) problems.push(`${r.ifName} is down`);
  const have = new Set((link.addr_info ?? []).map((a) => `${String(a.local)}/${String(a.prefixlen)}`));
  for (const a of r.addresses) if (!have.has(a.address)) problems.push(`${r.ifName} lacks address ${a.address}`);

  const v6 = r.addresses.some((a) => a.address.includes(':'));
  const wanted = [...opts.routes.filter((d) => v6 || !d.includes(':')), ...r.routes.map((x) => x.dst)];
  const present = new Set<string>();
  for (const family of v6 ? ['-4', '-6'] : ['-4']) {
    const out = await inNs([family, 'route', 'show', 'dev', r.ifName]);
    for (const route of parseJsonList<{ dst?: unknown }>(out.stdout)) if (typeof route.dst === 'string') present.add(routeKey(route.dst));
  }
  for (const dst of wanted) if (!present.has(routeKey(dst))) problems.push(`route ${dst} via ${r.ifName} is missing`);
  return problems;
}
