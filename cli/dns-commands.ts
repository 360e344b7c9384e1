// The DNS subcommands: `weave dns-add`, `weave dns-remove`, `weave dns-lookup`
// and the `dns` view and overview line of `weave status`. Plain API calls (dns/http-routes.ts
// serves them); arguments are sorted into addresses, a container and a name
// here so that a typo fails before the router is asked. Registered on the
// program by cli/weave.ts.

import type { Command } from 'commander';
import { clientFor } from './api-client';
import { sanitiseText } from './render-status';
import type { ExtraStatusSection } from './mesh-commands';
import type { DnsAddRequest, DnsChangeReply, DnsLookupReply, DnsReverseReply, DnsStatusReport } from '../dns/api-types';
import { canonicalIp } from '../common/ip';
import { RouterError } from '../router/mesh/errors';

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
}

/** `[ADDR...] [CONTAINER]` plus `-h NAME`, as in Weave Net: addresses first, the container (if any) last. */
export function parseDnsWords(words: readonly string[], hostname: string | undefined, command: 'dns-add' | 'dns-remove'): DnsAddRequest {
  const addresses: string[] = [];
  let container: string | undefined;
  words.forEach((w, i) => {
    if (canonicalIp(w) !== null) {
      if (container !== undefined) throw RouterError.config(`${command}: the container comes last, after the addresses (got ${w} after ${container})`);
      addresses.push(w);
    } else if (i === words.length - 1) {
      container = w;
    } else {
      throw RouterError.config(`${command}: ${JSON.stringify(w)} is not an IP address (only the last word may be a container)`);
    }
  });
  if (command === 'dns-add' && container === undefined && (hostname === undefined || addresses.length === 0)) {
    throw RouterError.config('dns-add needs addresses and -h NAME, or a container: weave dns-add [ADDR...] <container> [-h NAME]');
  }
  if (command === 'dns-remove' && container === undefined && hostname === undefined && addresses.length === 0) {
    throw RouterError.config('dns-remove needs something to remove: weave dns-remove [ADDR...] [<container>] [-h NAME]');
  }
  return {
    ...(hostname !== undefined ? { name: hostname } : {}),
    ...(addresses.length > 0 ? { addresses } : {}),
    ...(container !== undefined ? { container } : {}),
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export function renderDnsStatus(s: DnsStatusReport): string {
  const live = s.records.filter((r) => !r.tombstone).sort((a, b) => a.name.localeCompare(b.name) || a.address.localeCompare(b.address));
  const lines = [
    `        Domain: ${s.domain} (TTL ${s.ttlS} s)`,
    `       Address: ${s.address ?? '(none: DNS is not reachable from containers)'}`,
    `     Listening: ${s.listening.length > 0 ? s.listening.join(' ') : '(nothing)'}`,
    `     Upstreams: ${s.upstreams.length > 0 ? s.upstreams.join(' ') : '(none)'} (from ${s.upstreamSource})`,
    `          mDNS: ${s.mdns ? 'answering .local on the weave bridge' : 'off'}`,
    `       Records: ${live.length} (${live.filter((r) => r.visible).length} answered, ${s.records.length - live.length} removals remembered)`,
    `       Queries: ${s.counters.queries} (answered ${s.counters.answered}, no data ${s.counters.nodata}, nxdomain ${s.counters.nxdomain}, ` +
      `forwarded ${s.counters.forwarded}, failed upstream ${s.counters.forwardFailed}, malformed ${s.counters.formerr})`,
    ...s.warnings.map((w) => `       Warning: ${w}`),
  ];
  if (live.length > 0) {
    lines.push('');
    const nameWidth = Math.max(...live.map((r) => r.name.length)) + 2;
    const addrWidth = Math.max(...live.map((r) => r.address.length)) + 2;
    const shortId = (id: string): string => (/^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id);
    const idWidth = Math.max(...live.map((r) => shortId(r.container).length)) + 2;
    for (const r of live) {
      const origin = r.originNickname !== null ? `${r.origin}(${r.originNickname})` : r.origin;
      lines.push(`${pad(r.name, nameWidth)}${pad(r.address, addrWidth)}${pad(shortId(r.container), idWidth)}${origin}${r.visible ? '' : ' (unreachable)'}`);
    }
  }
  return lines.join('\n');
}

/**
 * What `weave dns-lookup` prints: one address (or, reversed, one name) a
 * line. A name weave DNS does not know is a failure, as for host(1) and
 * getent: "NAME: not found" on stderr and a non-zero exit, so scripts can
 * test for it.
 */
export function renderLookup(r: DnsLookupReply | DnsReverseReply): string {
  const [asked, found] = 'addresses' in r ? [r.name, r.addresses] : [r.address, r.names];
  if (found.length === 0) throw RouterError.config(`${sanitiseText(asked)}: not found`);
  return found.map(sanitiseText).join('\n');
}

/**
 * The DNS line of the `weave status` overview: the domain, the address
 * containers on this host ask, how many names it answers for, and a pointer
 * to `weave status dns` when it has warnings.
 */
export function dnsOverviewLine(s: DnsStatusReport): string {
  const names = new Set(s.records.filter((r) => !r.tombstone && r.visible).map((r) => r.name)).size;
  const where = s.address !== null ? `answering containers on ${s.address}` : 'not reachable from containers';
  let line = `${sanitiseText(s.domain)}, ${where}, ${names} name${names === 1 ? '' : 's'}`;
  if (s.warnings.length > 0) line += `; ${s.warnings.length} warning${s.warnings.length === 1 ? '' : 's'} (weave status dns)`;
  return line;
}

export const dnsStatusSection: ExtraStatusSection = {
  name: 'dns',
  async show(cmd: Command, json: boolean): Promise<string> {
    const s = await clientFor(cmd).get<DnsStatusReport>('/dns');
    return json ? JSON.stringify(s, null, 2) : renderDnsStatus(s);
  },
  overview: {
    label: 'DNS',
    async line(cmd: Command): Promise<string> {
      return dnsOverviewLine(await clientFor(cmd).get<DnsStatusReport>('/dns'));
    },
  },
};

export function registerDnsCommands(program: Command): void {
  program
    .command('dns-add')
    .description('add names to weave DNS: addresses with -h NAME, or a container attached here (its addresses, its name or -h NAME)')
    .usage('[options] [ADDR...] [<container>]')
    .argument('<address-or-container...>', 'addresses (with -h NAME), and/or last a container attached here')
    .option('-h, --hostname <name>', 'the name (relative names go under the weave domain)')
    .action(async (words: string[], opts: { hostname?: string }, cmd: Command) => {
      const reply = await clientFor(cmd).post<DnsChangeReply>('/dns/add', parseDnsWords(words, opts.hostname, 'dns-add'));
      write(reply.changed.map((c) => `${c.name} ${c.address}`).join('\n'));
    });

  program
    .command('dns-remove')
    .description('remove names this host added to weave DNS: by address, container and/or -h NAME')
    .usage('[options] [ADDR...] [<container>]')
    .argument('[address-or-container...]', 'addresses, and/or last a container attached here')
    .option('-h, --hostname <name>', 'the name')
    .action(async (words: string[], opts: { hostname?: string }, cmd: Command) => {
      const reply = await clientFor(cmd).post<DnsChangeReply>('/dns/remove', parseDnsWords(words, opts.hostname, 'dns-remove'));
      write(reply.changed.map((c) => `${c.name} ${c.address}`).join('\n'));
    });

  program
    .command('dns-lookup')
    .description('print the addresses weave DNS has for a name (or, with --reverse, the names of an address)')
    .argument('<name>', 'a name, relative to the weave domain or fully qualified; an address with --reverse')
    .option('-x, --reverse', 'look up the names of an address')
    .action(async (name: string, opts: { reverse?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      if (opts.reverse === true) {
        if (canonicalIp(name) === null) throw RouterError.config(`dns-lookup --reverse needs an IP address, got ${JSON.stringify(name)}`);
        write(renderLookup(await client.get<DnsReverseReply>(`/dns/lookup?address=${encodeURIComponent(name)}`)));
        return;
      }
      write(renderLookup(await client.get<DnsLookupReply>(`/dns/lookup?name=${encodeURIComponent(name)}`)));
    });
}
