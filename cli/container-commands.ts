// The container subcommands: `weave attach [ADDR...] <container>`, `weave
// detach [ADDR...] <container>` and `weave ps` (every attached container and
// how it joined: manual, label, env, plugin). Plain API calls: the daemon does
// all the work (docs/architecture.md). Registered on the program by cli/weave.ts.
//
// `weave attach` sends its words as typed (issue 14: a CLI start is part of
// every attach, and the address parser was ~2 ms of it): the API checks them
// first, with the same functions, so a typo gets the same message. Only when
// the router cannot be asked (not running, no permission, no answer) are they
// checked here, so the typo is still what the user hears about first.
// Detach and ps load what they need when they run.

import type { Command } from 'commander';
import { ApiClient, ApiError, clientFor } from './api-client';
import type { AttachReply, DetachReply, PsReply } from '../router/api/container-api';
import type { AttachedContainer } from '../router/host/attached-container';
import { RouterError } from '../router/mesh/errors';

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
}

/** One address word of `weave detach`, as the CIDR the daemon will match (router/host/attach-address.ts). */
export function parseDetachAddress(word: string): string {
  const { parseDetachCidr } = require('../router/host/attach-address') as typeof import('../router/host/attach-address');
  return parseDetachCidr(word).cidr;
}

/**
 * `[ADDR...] <container>`: the container is the last word, as in Weave Net.
 * Refuses only words the wrong way round (an address last); the words
 * themselves are checked by splitAddressesAndContainer.
 */
function splitWords(words: string[], command: 'attach' | 'detach'): { container: string; given: string[] } {
  if (words.length === 0) throw RouterError.config(`${command} needs a container: weave ${command} [ADDR...] <container>`);
  const container = words[words.length - 1] as string;
  // An address last (a CIDR, a dotted quad, ip:/net:) means the words are the wrong way round.
  if (/^[\d.]+\/\d+$/.test(container) || /^\d{1,3}(\.\d{1,3}){3}$/.test(container) ||
      /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\/\d+$/.test(container) || /^(ip|net):/.test(container)) {
    throw RouterError.config(`the container comes last: weave ${command} ${words.join(' ')} reads ${JSON.stringify(container)} as the container; ` +
      `write weave ${command} [ADDR...] <container>`);
  }
  return { container, given: words.slice(0, -1) };
}

/**
 * The words split and checked: the container reference, and the addresses
 * (attach: passed on as written, the daemon resolves net: and ip: with IPAM;
 * detach: normalised by parseDetachAddress).
 */
export function splitAddressesAndContainer(words: string[], command: 'attach' | 'detach'): { container: string; addresses: string[] } {
  const { container, given } = splitWords(words, command);
  (require('../router/host/container-ref') as typeof import('../router/host/container-ref')).parseContainerRef(container);
  if (command === 'detach') return { container, addresses: given.map(parseDetachAddress) };
  (require('../router/host/attach-address') as typeof import('../router/host/attach-address')).checkAttachWords(given);
  return { container, addresses: given };
}

/** Longer than IPAM's own wait for consensus, so its explanation arrives rather than a client timeout. */
const ATTACH_TIMEOUT_MS = 120_000;
const PROGRESS_POLL_MS = 1_000;

/** Polls IPAM while an attach is pending and prints what it waits for, once per change, to stderr. */
function showIpamProgress(client: ApiClient): { stop(): void } {
  let last = '';
  let stopped = false;
  const timer = setInterval(() => {
    void client.get<{ waitingFor?: string | null; pending?: { waitingFor: string | null }[] }>('/ipam/status', 2_000).then((s) => {
      const why = s.pending?.find((p) => p.waitingFor)?.waitingFor ?? s.waitingFor ?? '';
      if (!stopped && why !== '' && why !== last) {
        process.stderr.write(`weave attach: waiting: ${why}\n`);
        last = why;
      }
    }, () => undefined);
  }, PROGRESS_POLL_MS);
  timer.unref();
  return { stop: () => { stopped = true; clearInterval(timer); } };
}

function ipOf(cidr: string): string {
  const i = cidr.indexOf('/');
  return i < 0 ? cidr : cidr.slice(0, i);
}

/**
 * One line per container: id (12 characters for Docker), name, how it joined
 * (manual, label, env, plugin), MAC, CIDRs. Names come from whoever started
 * the container: sanitised before they reach a terminal.
 */
/** Docker ids as `docker ps` shows them (12 hex digits); a CNI one as cni:ID/IFNAME with its id shortened the same way. */
function shortId(c: AttachedContainer): string {
  if (c.kind === 'docker') return c.id.slice(0, 12);
  const cni = c.kind === 'cni' ? /^cni:([^/]*)\/(.*)$/.exec(c.id) : null;
  return cni === null ? c.id : `cni:${cni[1]!.slice(0, 12)}/${cni[2]!}`;
}

export function renderPs(containers: readonly AttachedContainer[]): string {
  const { sanitiseText } = require('./render-status') as typeof import('./render-status');
  return containers
    .map((c) => [shortId(c), sanitiseText(c.name), c.joined ?? 'manual', c.mac, ...c.addresses].join(' '))
    .join('\n');
}

export function registerContainerCommands(program: Command): void {
  program
    .command('attach')
    .description('attach a container to the weave network; addresses (CIDR), net:CIDR or none to allocate with IPAM; prints them')
    .usage('[options] [ADDR...] <container>')
    .argument('<container...>', 'addresses to give it (CIDR such as 10.32.0.1/12, ip:CIDR to claim, net:CIDR or net:default to allocate there; ' +
      'none: IPAM allocates), then the container: a Docker name or id, netns:NAME or pid:PID')
    .option('--name <name>', "the name to register in weave DNS (default: the container's name; pid: containers get none)")
    .option('--without-dns', "register no name in weave DNS and leave the container's resolver alone")
    .option('--no-port-security', 'let it send as any MAC or address (a container that routes for others); by default it may use only its own. ' +
      'Set when it is attached: detach it to change that')
    .action(async (words: string[], opts: { name?: string; withoutDns?: boolean; portSecurity?: boolean }, cmd: Command) => {
      const { container, given: addresses } = splitWords(words, 'attach');
      if (opts.name !== undefined && opts.withoutDns === true) throw RouterError.config('--name and --without-dns contradict each other');
      const client = clientFor(cmd);
      // Allocation may wait for IPAM to agree on its initial split: say what it waits for
      // instead of hanging silently. The daemon gives up (with the reason) after its own timeout.
      const progress = showIpamProgress(client);
      let reply: AttachReply;
      try {
        reply = await client.post<AttachReply>('/attach', {
          container, addresses,
          ...(opts.name !== undefined ? { name: opts.name } : {}),
          ...(opts.withoutDns === true ? { withoutDns: true } : {}),
          ...(opts.portSecurity === false ? { portSecurity: false } : {}),
        }, ATTACH_TIMEOUT_MS);
      } catch (err) {
        // The router did not look at the words: a typo among them is the error to show.
        if (err instanceof ApiError && err.kind !== 'http') splitAddressesAndContainer(words, 'attach');
        throw err;
      } finally {
        progress.stop();
      }
      // Like Weave Net: the addresses, without prefix lengths, on one line.
      write(reply.container.addresses.map(ipOf).join(' '));
    });

  program
    .command('detach')
    .description('remove the given addresses from a container, or detach it completely when none are given')
    .usage('[options] [ADDR...] <container>')
    .argument('<container...>', 'addresses to remove (as weave attach printed them, or CIDRs; none: detach completely), then the container')
    .action(async (words: string[], _opts: unknown, cmd: Command) => {
      const { container, addresses } = splitAddressesAndContainer(words, 'detach');
      const reply = await clientFor(cmd).post<DetachReply>('/detach', addresses.length > 0 ? { container, addresses } : { container });
      write(reply.removed.map(ipOf).join(' '));
    });

  program
    .command('ps')
    .description('list attached containers: id, name, how it joined (manual, label, env, plugin, cni), MAC, addresses')
    .option('--json', 'print the list as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const reply = await clientFor(cmd).get<PsReply>('/ps');
      write(opts.json === true ? JSON.stringify(reply.containers, null, 2) : renderPs(reply.containers));
    });
}
