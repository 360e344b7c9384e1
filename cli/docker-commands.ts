// Docker from the command line: `weave dns-args` and `weave env` (the
// --dns/--dns-search flags for `docker run`, for users who prefer flags to
// the resolver weave writes into attached containers), and `weave status
// docker` (is the engine reachable, is auto-attach on, which containers it
// could not attach and why). Plain API calls (GET /dns, GET /docker); the
// text comes from the daemon and other users' containers, so it is sanitised
// before it reaches a terminal.

import type { Command } from 'commander';
import { clientFor } from './api-client';
import type { ExtraStatusSection } from './mesh-commands';
import { sanitiseText } from './render-status';
import type { DockerReply } from '../router/api/container-api';
import type { DockerWatchStatus } from '../router/host/docker-auto-attach';
import type { DnsStatusReport } from '../dns/api-types';
import { RouterError } from '../router/mesh/errors';

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
}

/** `--dns=ADDR --dns-search=DOMAIN` for this host's weave DNS; throws when DNS has no address here. */
export function dnsArgs(s: Pick<DnsStatusReport, 'address' | 'domain'>): string[] {
  if (s.address === null) {
    throw RouterError.config('weave DNS has no address on this host (see weave status dns and the router log)');
  }
  return [`--dns=${sanitiseText(s.address)}`, `--dns-search=${sanitiseText(s.domain)}`];
}

/** The one overview line of `weave status`. */
export function dockerOverviewLine(d: DockerWatchStatus | null): string {
  if (d === null) return 'not watched';
  const auto = d.autoAttach ? 'auto-attach on' : 'auto-attach off (--no-auto-attach)';
  const problems = d.problems.length === 0 ? '' : `, ${d.problems.length} not attached (weave status docker)`;
  if (d.engine === null) return `connecting; ${auto}`;
  if (d.engine.reachable) return `engine at ${sanitiseText(d.engine.socket)}; ${auto}${problems}`;
  return `not reachable (${sanitiseText(d.engine.error ?? 'unknown')}); ${d.autoAttach ? 'auto-attach waits for it' : auto}${problems}`;
}

/** `weave status docker`: the overview line, then each problem with its container. */
export function renderDockerStatus(d: DockerWatchStatus | null, nowMs: number): string {
  const lines = [`Docker: ${dockerOverviewLine(d)}`];
  for (const p of d?.problems ?? []) {
    const ago = Math.max(0, Math.round((nowMs - p.atMs) / 1000));
    lines.push(`  ${sanitiseText(p.container)} (${sanitiseText(p.id.slice(0, 12))}), ${ago}s ago: ${sanitiseText(p.error)}`);
  }
  return lines.join('\n');
}

export const dockerStatusSection: ExtraStatusSection = {
  name: 'docker',
  async show(cmd: Command, json: boolean): Promise<string> {
    const r = await clientFor(cmd).get<DockerReply>('/docker');
    return json ? JSON.stringify(r.docker, null, 2) : renderDockerStatus(r.docker, Date.now());
  },
  overview: {
    label: 'Docker',
    async line(cmd: Command): Promise<string> {
      return dockerOverviewLine((await clientFor(cmd).get<DockerReply>('/docker')).docker);
    },
  },
};

export function registerDockerCommands(program: Command): void {
  program
    .command('dns-args')
    .description('print the docker run flags that point a container at weave DNS (--dns, --dns-search)')
    .action(async (_opts: unknown, cmd: Command) => {
      write(dnsArgs(await clientFor(cmd).get<DnsStatusReport>('/dns')).join(' '));
    });

  program
    .command('env')
    .description('print shell commands that set WEAVE_DNS_ARGS to the docker run flags for weave DNS: eval "$(weave env)"; docker run $WEAVE_DNS_ARGS ...')
    .action(async (_opts: unknown, cmd: Command) => {
      write(`export WEAVE_DNS_ARGS='${dnsArgs(await clientFor(cmd).get<DnsStatusReport>('/dns')).join(' ')}'`);
    });
}
