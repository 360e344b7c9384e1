// The IPAM subcommands, plain calls of the daemon's /ipam API: `weave prime`
// (start the initial split and wait for it, showing what it waits for) and
// `weave rmpeer <peer...>` (take over dead peers' space), plus the rendering
// of `weave status ipam` and of the IPAM overview line for mesh-commands.ts
// to dispatch to. Commands print results to stdout, progress to stderr, and
// throw on failure.

import type { Command } from 'commander';
import { clientFor } from './api-client';
import type { ExtraStatusSection } from './mesh-commands';
import { sanitiseText } from './render-status';
import { RouterError } from '../router/mesh/errors';
import type { IpamStatus } from '../ipam/ipam';
import type { PrimeReply } from '../ipam/http-routes';

export const DEFAULT_PRIME_TIMEOUT_S = 120;
/** Each /ipam/prime call waits this long, so progress shows about every two seconds. */
const PRIME_POLL_MS = 2_000;

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
}

function columns(rows: string[][], indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => { if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, cell.length); });
  return rows.map((row) => indent + row.map((c, i) => (i < row.length - 1 ? c.padEnd(widths[i] ?? 0) : c)).join('  ').trimEnd() + '\n').join('');
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '0%' : `${((100 * part) / whole).toFixed(part * 1000 < whole ? 2 : 1)}%`;
}

/** One line for the `weave status` overview: "ready, 12 of 349524 addresses used here" or what it waits for. */
export function ipamSummaryLine(s: IpamStatus): string {
  if (s.waitingFor !== null) return sanitiseText(s.waitingFor);
  return `ready, range ${s.range}, ${s.local.used} of ${s.local.owned} addresses here in use`;
}

/**
 * The IPAM line of the `weave status` overview: the summary above plus this
 * peer's share of the range, or what IPAM waits for and on which range, and
 * a pointer to `weave status ipam` when it has warnings.
 */
export function ipamOverviewLine(s: IpamStatus): string {
  let line: string;
  if (s.waitingFor !== null) {
    line = `range ${s.range}, ${sanitiseText(s.waitingFor)}`;
  } else {
    const total = s.peers.reduce((n, p) => n + p.owned, 0);
    line = `${ipamSummaryLine(s)}, ${percent(s.local.owned, total)} of the range owned here`;
  }
  if (s.warnings.length > 0) line += `; ${s.warnings.length} warning${s.warnings.length === 1 ? '' : 's'} (weave status ipam)`;
  return line;
}

/** `weave status ipam`: each peer's share, used and free, unreachable owners flagged. */
export function renderIpamStatus(s: IpamStatus): string {
  let out = '\n';
  out += `  Range: ${s.range} (default subnet ${s.defaultSubnet})${s.rangeV6 !== null ? `, IPv6 ${s.rangeV6}` : ''}\n`;
  const init = s.mode === 'consensus' && s.consensus !== null ? `consensus among ${s.consensus.initPeerCount} (quorum ${s.consensus.quorum})` : s.mode;
  out += `  Initial split: ${init}\n`;
  out += `  Status: ${s.state === 'ready' ? 'ready' : sanitiseText(s.waitingFor ?? s.state)}\n`;
  if (s.peers.length > 0) {
    const total = s.peers.reduce((n, p) => n + p.owned, 0);
    const rows: string[][] = [['PEER', 'OWNED', 'SHARE', 'USED', 'FREE', '']];
    for (const p of s.peers) {
      const name = p.nickname !== '' ? `${p.peer}(${sanitiseText(p.nickname)})` : p.peer;
      const flags = [p.self ? 'self' : '', p.unreachableOwner ? 'UNREACHABLE: weave rmpeer if it is gone for good' : ''].filter((x) => x !== '').join(', ');
      rows.push([name, String(p.owned), percent(p.owned, total), String(p.used), String(p.free), flags]);
    }
    out += '\n' + columns(rows);
  }
  if (s.pending.length > 0) {
    out += `\n  Waiting requests: ${s.pending.length}\n`;
    for (const p of s.pending.slice(0, 10)) {
      out += `    ${sanitiseText(p.container)} ${p.kind} ${p.subnet} for ${Math.round(p.waitingMs / 1000)} s: ${sanitiseText(p.waitingFor ?? '')}\n`;
    }
  }
  if (s.warnings.length > 0) {
    out += '\n  Warnings:\n';
    for (const w of s.warnings) out += `    ${sanitiseText(w)}\n`;
  }
  return out;
}

/** `weave status ipam [--json]`: pass to registerMeshCommands with the other extra sections. */
export const ipamStatusSection: ExtraStatusSection = {
  name: 'ipam',
  async show(cmd: Command, json: boolean): Promise<string> {
    const status = await clientFor(cmd).get<IpamStatus>('/ipam/status');
    return json ? JSON.stringify(status, null, 2) : renderIpamStatus(status);
  },
  overview: {
    label: 'IPAM',
    async line(cmd: Command): Promise<string> {
      return ipamOverviewLine(await clientFor(cmd).get<IpamStatus>('/ipam/status'));
    },
  },
};

function parseTimeoutSeconds(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PRIME_TIMEOUT_S;
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1) throw RouterError.config(`--timeout must be a whole number of seconds, got ${JSON.stringify(text)}`);
  return Number(text);
}

export function registerIpamCommands(program: Command): void {
  program
    .command('prime')
    .description('start the initial split of the IPAM range now and wait until this peer has its space')
    .option('--timeout <seconds>', `give up after this long (default ${DEFAULT_PRIME_TIMEOUT_S})`)
    .action(async (opts: { timeout?: string }, cmd: Command) => {
      const timeoutS = parseTimeoutSeconds(opts.timeout);
      const client = clientFor(cmd, { timeoutMs: PRIME_POLL_MS + 10_000 });
      const deadline = Date.now() + timeoutS * 1000;
      let last: string | null = null;
      for (;;) {
        const reply = await client.post<PrimeReply>('/ipam/prime', { waitMs: PRIME_POLL_MS });
        if (reply.ready) {
          write('IPAM ready');
          return;
        }
        const why = reply.waitingFor ?? 'waiting';
        if (why !== last) process.stderr.write(`weave: ${sanitiseText(why)}\n`);
        last = why;
        if (Date.now() >= deadline) throw RouterError.config(`IPAM not ready after ${timeoutS} s: ${sanitiseText(why)}`);
      }
    });

  program
    .command('rmpeer')
    .description('take over the address space of peers that are gone for good (run it on one peer only)')
    .argument('<peer...>', 'peer names (aa:bb:cc:dd:ee:ff), as listed by weave status ipam')
    .action(async (peers: string[], _opts: unknown, cmd: Command) => {
      const client = clientFor(cmd);
      for (const peer of peers) {
        const r = await client.post<{ peer: string; addresses: number }>('/ipam/rmpeer', { peer });
        write(r.addresses > 0 ? `${r.addresses} addresses taken over from ${r.peer}` : `${r.peer} owned no addresses`);
      }
    });
}
