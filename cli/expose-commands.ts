// `weave expose [ADDR...]`, `weave hide [ADDR...]` and `weave reset
// [--force]`. Expose and hide are plain calls of the daemon's /expose and
// /hide (router/api/expose-api.ts). Reset strings API calls together and then
// removes state files: hand our IPAM space to a live peer, stop the router,
// delete ipam.json and peers.json so the next launch starts afresh (the peer
// name stays). Like `weave stop`, the CLI never changes host state itself:
// the daemon hides the exposed addresses and detaches containers before it
// stops. Results go to stdout, progress to stderr; failures throw.

import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ApiClient, clientFor } from './api-client';
import { DEFAULT_DATADIR } from './config';
import { stop } from './launch';
import { sanitiseText } from './render-status';
import type { PsReply } from '../router/api/container-api';
import { parseAttachCidr } from '../router/host/attach-address';
import { RouterError } from '../router/mesh/errors';
import { errorMessage } from '../common/errors';
import type { ExposeReply, HideReply } from '../router/api/expose-api';
import { TARGETS_FILE } from '../router/mesh/identity';
import { IPAM_STATE_FILE } from '../ipam/persistence';
import { hostStateFiles, removeBridgeWithoutRouter, removeDataDirectory, requestHostReset } from './reset-host';

/** Longer than IPAM's own wait for its initial split, so its explanation arrives rather than a client timeout. */
const EXPOSE_TIMEOUT_MS = 120_000;
/** What `weave reset` deletes from the data directory once the router has stopped. */
export const RESET_FILES: readonly string[] = [IPAM_STATE_FILE, TARGETS_FILE];

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
}

function note(text: string): void {
  process.stderr.write(`weave reset: ${text}\n`);
}

function ipOf(cidr: string): string {
  const i = cidr.indexOf('/');
  return i < 0 ? cidr : cidr.slice(0, i);
}

/** Fails on a typo before the router is asked: CIDR, ip:CIDR, net:CIDR, net:default (expose); CIDR or IP (hide). */
export function checkExposeArgs(args: readonly string[], command: 'expose' | 'hide'): void {
  for (const a of args) {
    if (a.startsWith('net:')) {
      if (command === 'expose') continue;
      throw RouterError.config(`weave hide takes the addresses weave expose printed, not ${JSON.stringify(a)}`);
    }
    const text = a.startsWith('ip:') ? a.slice(3) : a;
    parseAttachCidr(command === 'hide' && !text.includes('/') ? `${text}/32` : text);
  }
}

function datadirOf(flag: string | undefined): string {
  const env = process.env['WEAVE_DATADIR'];
  return path.resolve(flag ?? (env !== undefined && env !== '' ? env : DEFAULT_DATADIR));
}

export interface ResetOptions {
  datadir: string;
  force: boolean;
  /** With no router to ask: removes the bridge (default: the CLI does, reset-host.ts); tests pass a fake. */
  removeBridge?: (note: (text: string) => void) => Promise<void>;
}

/** Deletes RESET_FILES (and `extra`) from `datadir`; returns the ones that were there. */
export function removeResetFiles(datadir: string, extra: readonly string[] = []): string[] {
  const removed: string[] = [];
  for (const name of [...RESET_FILES, ...extra]) {
    try {
      fs.unlinkSync(path.join(datadir, name));
      removed.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RouterError('io', `cannot remove ${path.join(datadir, name)}: ${errorMessage(err)}`, { cause: err });
    }
  }
  return removed;
}

/**
 * `weave reset`: refuses while containers are attached (with --force it has
 * the router detach them, as their addresses are about to belong to another
 * peer), hides the host, hands our IPAM space to a live peer, stops the
 * router, removes RESET_FILES and then the data directory (reset-host.ts).
 * A router that is not running cannot hand anything over, so that needs
 * --force too.
 */
export async function reset(client: ApiClient, opts: ResetOptions): Promise<void> {
  if (!(await client.ping())) {
    if (!opts.force) {
      throw RouterError.config(`weave router is not running (no answer on ${client.address}), so its address space cannot be handed to another peer; ` +
        'start it (weave launch) and retry, or use weave reset --force to discard the state anyway (then run weave rmpeer with this peer\'s name on another peer)');
    }
    note('the router is not running: its address space was not handed over');
    await (opts.removeBridge ?? removeBridgeWithoutRouter)(note);
  } else {
    const { containers } = await client.get<PsReply>('/ps');
    if (containers.length > 0 && !opts.force) {
      const names = containers.slice(0, 5).map((c) => sanitiseText(c.name)).join(', ') + (containers.length > 5 ? ', ...' : '');
      throw RouterError.config(`${containers.length} container${containers.length === 1 ? ' is' : 's are'} still attached (${names}); ` +
        'detach them first (weave detach <container>), or use weave reset --force to detach them');
    }
    // The Docker plugin's endpoints are Docker's to remove: its reset hook does (reset-host.ts).
    for (const c of containers.filter((x) => x.joined !== 'plugin')) {
      await client.post('/detach', { container: c.id });
      note(`detached ${sanitiseText(c.name)}`);
    }
    const hidden = await client.post<HideReply>('/hide', {});
    if (hidden.removed.length > 0) note(`hid ${hidden.removed.map(ipOf).join(' ')}`);
    try {
      const r = await client.post<{ handedTo: string | null; addresses: number }>('/ipam/reset');
      write(r.handedTo !== null ? `${r.addresses} addresses handed to ${r.handedTo}` : 'this peer owned no addresses');
    } catch (err) {
      if (!opts.force) {
        throw new RouterError('io', `cannot hand our address space to another peer: ${errorMessage(err)}; the router keeps running (weave reset --force resets anyway)`);
      }
      note(`address space not handed over: ${errorMessage(err)}`);
    }
    // The parts' reset hooks now; the bridge and its rules when the router stops.
    await requestHostReset(client, note);
    await stop(client, { datadir: opts.datadir });
  }
  const removed = removeResetFiles(opts.datadir, await hostStateFiles());
  if (removed.length > 0) note(`removed ${removed.join(', ')} from ${opts.datadir}`);
  if (removeDataDirectory(opts.datadir, note)) note(`removed ${opts.datadir}`);
}

export function registerExposeCommands(program: Command): void {
  program
    .command('expose')
    .description("give this host addresses on the weave network (allocated by IPAM when none are given), with NAT for containers' outbound traffic; prints them")
    .argument('[addr...]', 'CIDR (10.32.0.1/12) or ip:CIDR to claim, net:CIDR or net:default to allocate there')
    .action(async (addrs: string[], _opts: unknown, cmd: Command) => {
      checkExposeArgs(addrs, 'expose');
      const reply = await clientFor(cmd).post<ExposeReply>('/expose', addrs.length > 0 ? { addresses: addrs } : {}, EXPOSE_TIMEOUT_MS);
      // Like Weave Net: the addresses, without prefix lengths, on one line.
      write(reply.addresses.map(ipOf).join(' '));
    });

  program
    .command('hide')
    .description('remove addresses weave expose gave this host (all of them when none are given), with their NAT; prints what was removed')
    .argument('[addr...]', 'addresses as weave expose printed them, or CIDRs')
    .action(async (addrs: string[], _opts: unknown, cmd: Command) => {
      checkExposeArgs(addrs, 'hide');
      const reply = await clientFor(cmd).post<HideReply>('/hide', addrs.length > 0 ? { addresses: addrs } : {});
      write(reply.removed.map(ipOf).join(' '));
    });

  program
    .command('reset')
    .description('leave for good: hand our address space to another peer, stop the router and forget the IPAM ring and the peer list')
    .option('--force', 'detach attached containers, and reset even when the space cannot be handed over')
    .option('--datadir <dir>', `router data directory (env WEAVE_DATADIR, default: ${DEFAULT_DATADIR})`)
    .action(async (opts: { force?: boolean; datadir?: string }, cmd: Command) => {
      const datadir = datadirOf(opts.datadir);
      // The router of that data directory, unless --api names a socket.
      await reset(clientFor(cmd, { datadir }), { datadir, force: opts.force === true });
    });
}
