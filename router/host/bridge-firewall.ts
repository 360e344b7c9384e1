// The firewall exceptions that keep traffic between ports of the `weave`
// bridge flowing: an accept rule at the head of every forward base chain, in
// whichever table it lives, each tagged with the comment `weave:<bridge>`, and
// a keeper that re-checks them on the injected clock.
//
// It must never touch a rule without our tag, never create a table or chain of
// its own, and never change the bridge-nf-call-* sysctls. All I/O goes through
// CommandRunner; time through Clock.
//
// Why rules inside other tables' chains: with bridge-nf-call-iptables=1 (a
// per-network-namespace sysctl since Linux 5.3, on by default here), frames
// bridged between two ports also traverse the ip/ip6/inet `forward` hook, with
// both the input and output device being the bridge. nftables runs every base
// chain registered at a hook; an `accept` ends only the chain it is in, while a
// `drop` anywhere is final. So an accept in a table of our own can never
// overrule another table's `policy drop` (shown in test/e2e/attach.test.ts).
// What works is what Weave Net does with iptables (`-I FORWARD -i weave -o
// weave -j ACCEPT`): put the accept at the head of every forward base chain,
// in whichever table it lives. Turning bridge-nf-call-iptables off instead
// would work too, but it changes behaviour for every other bridge in the
// namespace (Docker, Kubernetes rely on it), so we leave the sysctl alone.
// Chains created after us (a firewall reload, dockerd starting later) need
// ensureBridgeForwarding() again: it is cheap and idempotent, and
// keepBridgeForwarding() runs it on a timer.

import type { Clock, Timer } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { CommandRunner } from './command-runner';
import { VETH_PREFIX, validateIfName } from './host-link';
import { listRuleset } from './nft-ruleset';
import type { FirewallChainRef, NftRuleset } from './nft-ruleset';

export interface FirewallResult {
  /** Chains that got our accept rule in this call. */
  inserted: FirewallChainRef[];
  /** Chains that already had it. */
  present: FirewallChainRef[];
  /** Chains we could not change (e.g. a table owned by another process), with why. */
  failed: (FirewallChainRef & { error: string })[];
  /** Set when nft itself is unusable; then nothing was checked. */
  unavailable?: string;
}

/** The comment that marks our rules in other tables' chains. */
export function firewallComment(bridge: string): string {
  return `weave:${bridge}`;
}

/** Families whose `forward` hook sees bridged frames (ip/ip6/inet through br_netfilter). */
const FORWARD_FAMILIES = new Set(['ip', 'ip6', 'inet', 'bridge']);

function sameChain(a: FirewallChainRef, b: FirewallChainRef): boolean {
  return a.family === b.family && a.table === b.table && a.chain === b.chain;
}

function nameMatch(key: 'iifname' | 'oifname', right: string | { set: string[] }): unknown {
  return { match: { op: '==', left: { meta: { key } }, right } };
}

/**
 * The accept rule for one chain, as nft JSON (JSON input, so odd table names
 * never meet nft's parser). In ip/ip6/inet, br_netfilter presents bridged
 * frames with the bridge as both devices. In the bridge family the devices are
 * the ports; `meta ibrname` would say "on this bridge" but needs a kernel
 * module this machine lacks, so we name the ports: the TAP and our veths.
 */
export function acceptRule(chain: FirewallChainRef, bridge: string, tap: string): unknown {
  const expr =
    chain.family === 'bridge'
      ? [nameMatch('iifname', { set: [tap, `${VETH_PREFIX}*`] }), nameMatch('oifname', { set: [tap, `${VETH_PREFIX}*`] }), { accept: null }]
      : [nameMatch('iifname', bridge), nameMatch('oifname', bridge), { accept: null }];
  return { family: chain.family, table: chain.table, chain: chain.chain, comment: firewallComment(bridge), expr };
}

/**
 * Puts `accept bridge-local traffic` at the head of every forward base chain in
 * the ip, ip6, inet and bridge families that lacks it. Never throws for a chain
 * it cannot change (reported in `failed`, logged), nor when nft is missing
 * (reported in `unavailable`): a host without a firewall needs nothing.
 */
export async function ensureBridgeForwarding(
  opts: { bridge: string; tap: string },
  runner: CommandRunner,
  logger: Logger = silentLogger,
): Promise<FirewallResult> {
  const bridge = validateIfName(opts.bridge, 'bridge name');
  const tap = validateIfName(opts.tap, 'TAP device name');
  const result: FirewallResult = { inserted: [], present: [], failed: [] };
  let ruleset: NftRuleset;
  try {
    ruleset = await listRuleset(runner);
  } catch (err) {
    result.unavailable = errorMessage(err);
    logger.warn('cannot read the nftables ruleset; bridge-local traffic may be dropped by a host firewall', { error: result.unavailable });
    return result;
  }
  const comment = firewallComment(bridge);
  for (const chain of ruleset.chains) {
    if (chain.hook !== 'forward' || !FORWARD_FAMILIES.has(chain.family)) continue;
    const ref: FirewallChainRef = { family: chain.family, table: chain.table, chain: chain.chain };
    if (ruleset.rules.some((r) => sameChain(r, ref) && r.comment === comment)) {
      result.present.push(ref);
      continue;
    }
    const script = JSON.stringify({ nftables: [{ insert: { rule: acceptRule(ref, bridge, tap) } }] });
    // One argv element, not `-f -`: nft opens /dev/stdin, which fails on the
    // socket Node gives a child for stdin.
    const r = await runner.run('nft', ['-j', script], { allowFail: true });
    if (r.code === 0) {
      result.inserted.push(ref);
      logger.info('firewall: accepting bridge-local traffic', { bridge, family: ref.family, table: ref.table, chain: ref.chain });
    } else {
      const error = r.stderr.trim().split('\n')[0] ?? `exit ${r.code}`;
      result.failed.push({ ...ref, error });
      logger.warn('firewall: cannot add accept rule; bridge-local traffic may be dropped', {
        bridge, family: ref.family, table: ref.table, chain: ref.chain, error,
      });
    }
  }
  return result;
}

/** Re-checks the firewall every this often: a firewall reload or a dockerd start can add drop chains at any time. */
export const FIREWALL_RECHECK_MS = 30_000;

export interface FirewallKeeper {
  /** Checks now (also what the timer does); resolves when done. */
  check(): Promise<FirewallResult>;
  close(): void;
}

export interface FirewallKeeperDeps {
  runner: CommandRunner;
  /** Schedules the re-checks; SystemClock in the daemon, ManualClock in tests. */
  clock: Clock;
  logger?: Logger;
}

/**
 * Runs ensureBridgeForwarding now and then every `intervalMs` on the injected
 * clock, so forward chains created after the daemon started (another
 * firewall, dockerd's FORWARD DROP) get our accept too. Checks never overlap;
 * the next one is scheduled when the timer fires, so a slow check never piles
 * up others behind it. SystemClock timers do not keep the process alive.
 */
export function keepBridgeForwarding(
  opts: { bridge: string; tap: string },
  deps: FirewallKeeperDeps,
  intervalMs: number = FIREWALL_RECHECK_MS,
): FirewallKeeper {
  validateIfName(opts.bridge, 'bridge name');
  validateIfName(opts.tap, 'TAP device name');
  const { runner, clock } = deps;
  const logger = deps.logger ?? silentLogger;
  let running: Promise<FirewallResult> | null = null;
  let timer: Timer | null = null;
  let closed = false;
  const check = (): Promise<FirewallResult> => {
    if (running === null) {
      running = ensureBridgeForwarding(opts, runner, logger).finally(() => {
        running = null;
      });
    }
    return running;
  };
  const schedule = (): void => {
    timer = clock.setTimer(intervalMs, () => {
      if (closed) return;
      schedule();
      check().catch((err: unknown) => logger.warn('firewall re-check failed', { error: errorMessage(err) }));
    });
  };
  schedule();
  return {
    check,
    close: () => {
      closed = true;
      timer?.cancel();
      timer = null;
    },
  };
}

/** Deletes every rule tagged `weave:<bridge>`, wherever it is. Returns how many. */
export async function removeBridgeForwarding(opts: { bridge: string }, runner: CommandRunner, logger: Logger = silentLogger): Promise<number> {
  const bridge = validateIfName(opts.bridge, 'bridge name');
  let ruleset: NftRuleset;
  try {
    ruleset = await listRuleset(runner);
  } catch (err) {
    logger.warn('cannot read the nftables ruleset to remove our rules', { error: errorMessage(err) });
    return 0;
  }
  const comment = firewallComment(bridge);
  const ours = ruleset.rules.filter((r) => r.comment === comment);
  if (ours.length === 0) return 0;
  const script = JSON.stringify({
    nftables: ours.map((r) => ({ delete: { rule: { family: r.family, table: r.table, chain: r.chain, handle: r.handle } } })),
  });
  await runner.run('nft', ['-j', script]);
  return ours.length;
}
