// The mesh subcommands that are plain API calls: status (and its views),
// report, connect and forget. Registered on the program by cli/weave.ts; other
// subsystems (ipam, dns, containers) add their own register*Commands modules
// the same way. Commands print results to stdout and throw on failure; the
// entry point turns errors into `weave: <message>` and exit code 1.

import { Argument } from 'commander';
import type { Command } from 'commander';
import { clientFor } from './api-client';
import { renderConnections, renderPeers, renderStatus, renderTargets } from './render-status';
import type { StatusLine } from './render-status';
import { RouterError } from '../router/mesh/errors';
import { errorMessage } from '../common/errors';
import { normalisePeerAddress } from '../router/mesh/peer-address';
import type { RouterStatus } from '../router/mesh/status';

export const STATUS_SECTIONS = ['peers', 'connections', 'targets'] as const;
export type StatusSection = (typeof STATUS_SECTIONS)[number];

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
}

/** Normalises locally so a typo fails before the router is asked, with the same message. */
function normalisePeers(peers: readonly string[]): string[] {
  return peers.map((p) => normalisePeerAddress(p));
}

export function renderSection(status: RouterStatus, section: StatusSection | undefined, nowMs: number): string {
  switch (section) {
    case undefined:
      return renderStatus(status);
    case 'peers':
      return renderPeers(status);
    case 'connections':
      return renderConnections(status);
    case 'targets':
      return renderTargets(status, { nowMs });
  }
}

/** A view of `weave status` owned by another subsystem (`weave status dns`): it fetches and renders itself. */
export interface ExtraStatusSection {
  name: string;
  show(cmd: Command, json: boolean): Promise<string>;
  /** Its one line in the `weave status` overview, fetched alongside the router's status. */
  overview?: { label: string; line(cmd: Command): Promise<string> };
}

/**
 * The extra sections' overview lines, fetched in parallel. A section whose
 * endpoint fails shows why on its line: the rest of the overview still prints.
 */
export async function overviewLines(cmd: Command, sections: readonly ExtraStatusSection[]): Promise<StatusLine[]> {
  const withOverview = sections.flatMap((s) => (s.overview !== undefined ? [s.overview] : []));
  return Promise.all(withOverview.map(async (o): Promise<StatusLine> => {
    try {
      return { label: o.label, value: await o.line(cmd) };
    } catch (err) {
      return { label: o.label, value: `unavailable (${errorMessage(err)})` };
    }
  }));
}

export function registerMeshCommands(program: Command, extraSections: readonly ExtraStatusSection[] = []): void {
  const sections = [...STATUS_SECTIONS, ...extraSections.map((s) => s.name)];
  program
    .command('status')
    .description(`show the state of the local router (overview, or one of: ${sections.join(', ')})`)
    .addArgument(new Argument('[section]', 'what to show').choices(sections))
    .option('--json', 'print the status as JSON')
    .action(async (sectionName: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const extra = extraSections.find((s) => s.name === sectionName);
      if (extra !== undefined) {
        write(await extra.show(cmd, opts.json === true));
        return;
      }
      const section = sectionName as StatusSection | undefined;
      if (section === undefined && opts.json !== true) {
        const [status, lines] = await Promise.all([clientFor(cmd).get<RouterStatus>('/status'), overviewLines(cmd, extraSections)]);
        write(renderStatus(status, lines));
        return;
      }
      const status = await clientFor(cmd).get<RouterStatus>('/status');
      if (opts.json === true) {
        write(JSON.stringify(section === undefined ? status : status[section], null, 2));
      } else {
        write(renderSection(status, section, Date.now()));
      }
    });

  program
    .command('report')
    .description('print everything the router knows, as JSON')
    .action(async (_opts: unknown, cmd: Command) => {
      const report = await clientFor(cmd).get<unknown>('/report');
      write(JSON.stringify(report, null, 2));
    });

  program
    .command('connect')
    .description('connect to more peers (host[:port]); with --replace, drop the direct targets not listed')
    .argument('[peer...]', 'peer addresses, host[:port]')
    .option('--replace', 'replace the current direct targets with these')
    .action(async (peers: string[], opts: { replace?: boolean }, cmd: Command) => {
      const replace = opts.replace === true;
      if (peers.length === 0 && !replace) {
        throw RouterError.config('connect needs at least one peer address (or --replace alone to drop every direct target)');
      }
      await clientFor(cmd).post('/connect', { peers: normalisePeers(peers), replace });
    });

  program
    .command('forget')
    .description('stop connecting to these peers and close connections to them')
    .argument('<peer...>', 'peer addresses, host[:port]')
    .action(async (peers: string[], _opts: unknown, cmd: Command) => {
      await clientFor(cmd).post('/forget', { peers: normalisePeers(peers) });
    });
}
