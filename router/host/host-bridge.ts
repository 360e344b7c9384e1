// Host plumbing for the data path's bridge: the Linux bridge (`weave`), the TAP
// device's membership of it, MTUs, and the firewall exceptions that keep
// traffic between ports of the bridge flowing. Also guesses the underlay MTU.
//
// It owns exactly: the bridge it creates, the TAP's master/MTU/up state (the
// TAP itself belongs to the data path's addon), and the nftables rules it
// inserts, each tagged with the comment `weave:<bridge>` so that removal
// deletes exactly those and nothing else. All I/O goes through CommandRunner.
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

import { RouterError, errorMessage } from '../mesh/errors';
import type { CommandRunner } from './command-runner';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';

/** Host ends of container veths start with this; the bridge-family firewall rule matches on it. */
export const VETH_PREFIX = 'vethwe';
export const DEFAULT_BRIDGE = 'weave';
/** Linux IFNAMSIZ minus the terminating NUL. */
export const MAX_IFNAME_CHARS = 15;
/** IPv4's minimum (RFC 791); anything smaller cannot carry an IP header and some data. */
export const MIN_MTU = 68;
export const MAX_MTU = 65535;
export const DEFAULT_MTU = 1500;

export interface BridgeOptions {
  /** Bridge name, normally 'weave'. */
  bridge: string;
  /** TAP device of the data path, already created. */
  tap: string;
  mtu: number;
}

export interface FirewallChainRef {
  family: string;
  table: string;
  chain: string;
}

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

export interface BridgeResult {
  created: boolean;
  firewall: FirewallResult;
}

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

/** The comment that marks our rules in other tables' chains. */
export function firewallComment(bridge: string): string {
  return `weave:${bridge}`;
}

// ---------------------------------------------------------------------------
// Links

interface LinkInfo {
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
 * Creates the bridge if missing, sets MTUs, enslaves the TAP and brings both
 * up, then makes sure the firewall lets bridge-local traffic through.
 * Idempotent. If the bridge was created here and a later step fails, it is
 * deleted again, so a failed call leaves no half-made bridge.
 */
export async function ensureBridge(opts: BridgeOptions, runner: CommandRunner, logger: Logger = silentLogger): Promise<BridgeResult> {
  const bridge = validateIfName(opts.bridge, 'bridge name');
  const tap = validateIfName(opts.tap, 'TAP device name');
  const mtu = validateMtu(opts.mtu);
  if (bridge === tap) throw RouterError.config(`the bridge and the TAP device need different names, both are ${JSON.stringify(bridge)}`);

  const existing = await showLink(runner, bridge);
  if (existing !== null && existing.kind !== 'bridge') {
    throw RouterError.config(`${bridge} exists but is a ${existing.kind ?? 'plain'} device, not a bridge; remove it or choose another bridge name`);
  }
  const tapLink = await showLink(runner, tap);
  if (tapLink === null) {
    throw new RouterError('io', `TAP device ${tap} does not exist; the data path must create it before the bridge is set up`);
  }
  if (tapLink.master !== null && tapLink.master !== bridge) {
    throw RouterError.config(`TAP device ${tap} is already a port of ${tapLink.master}, not of ${bridge}`);
  }

  let created = false;
  if (existing === null) {
    const r = await runner.run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge'], { allowFail: true });
    if (r.code === 0) created = true;
    // Someone else created it between our check and now: fine, as long as it is a bridge.
    else if (!/File exists/i.test(r.stderr) || (await showLink(runner, bridge))?.kind !== 'bridge') {
      throw new RouterError('io', `cannot create bridge ${bridge}: ${r.stderr.trim()}`);
    }
    if (created) logger.info('created bridge', { bridge });
  }

  try {
    // TAP MTU first: a bridge without a user-set MTU follows its smallest port.
    await runner.run('ip', ['link', 'set', 'dev', tap, 'mtu', String(mtu)]);
    if (tapLink.master !== bridge) await runner.run('ip', ['link', 'set', 'dev', tap, 'master', bridge]);
    await runner.run('ip', ['link', 'set', 'dev', bridge, 'mtu', String(mtu)]);
    await runner.run('ip', ['link', 'set', 'dev', bridge, 'up']);
    await runner.run('ip', ['link', 'set', 'dev', tap, 'up']);
  } catch (err) {
    if (created) await runner.run('ip', ['link', 'del', 'dev', bridge], { allowFail: true });
    throw err;
  }

  const firewall = await ensureBridgeForwarding({ bridge, tap }, runner, logger);
  return { created, firewall };
}

/**
 * Deletes what ensureBridge made: our firewall rules and the bridge (its ports,
 * the TAP and any veths, are released, not deleted; container veths belong to
 * the ContainerManager). Missing pieces are not an error.
 */
export async function removeBridge(opts: { bridge: string }, runner: CommandRunner, logger: Logger = silentLogger): Promise<void> {
  const bridge = validateIfName(opts.bridge, 'bridge name');
  await removeBridgeForwarding({ bridge }, runner, logger);
  const link = await showLink(runner, bridge);
  if (link === null) return;
  if (link.kind !== 'bridge') throw RouterError.config(`${bridge} is not a bridge; not deleting it`);
  await runner.run('ip', ['link', 'del', 'dev', bridge]);
  logger.info('deleted bridge', { bridge });
}

// ---------------------------------------------------------------------------
// Firewall

/** Families whose `forward` hook sees bridged frames (ip/ip6/inet through br_netfilter). */
const FORWARD_FAMILIES = new Set(['ip', 'ip6', 'inet', 'bridge']);

export interface NftChain extends FirewallChainRef {
  hook: string | null;
}

export interface NftRule extends FirewallChainRef {
  handle: number;
  comment: string | null;
}

export interface NftRuleset {
  chains: NftChain[];
  rules: NftRule[];
}

/** `nft -j list ruleset`: base chains with their hooks, and rules with their handles and comments. */
export async function listRuleset(runner: CommandRunner): Promise<NftRuleset> {
  const r = await runner.run('nft', ['-j', 'list', 'ruleset']);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout);
  } catch (err) {
    throw new RouterError('io', `nft -j list ruleset printed something that is not JSON: ${errorMessage(err)}`);
  }
  const items = (parsed as { nftables?: unknown }).nftables;
  const out: NftRuleset = { chains: [], rules: [] };
  if (!Array.isArray(items)) return out;
  for (const item of items as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const chain = (item as { chain?: Record<string, unknown> }).chain;
    if (chain !== undefined) {
      out.chains.push({
        family: String(chain['family']),
        table: String(chain['table']),
        chain: String(chain['name']),
        hook: typeof chain['hook'] === 'string' ? chain['hook'] : null,
      });
    }
    const rule = (item as { rule?: Record<string, unknown> }).rule;
    if (rule !== undefined && typeof rule['handle'] === 'number') {
      out.rules.push({
        family: String(rule['family']),
        table: String(rule['table']),
        chain: String(rule['chain']),
        handle: rule['handle'],
        comment: typeof rule['comment'] === 'string' ? rule['comment'] : null,
      });
    }
  }
  return out;
}

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

/**
 * Runs ensureBridgeForwarding now and then every `intervalMs`, so forward
 * chains created after the daemon started (another firewall, dockerd's FORWARD
 * DROP) get our accept too. Checks never overlap; the timer does not keep the
 * process alive.
 */
export function keepBridgeForwarding(
  opts: { bridge: string; tap: string },
  runner: CommandRunner,
  logger: Logger = silentLogger,
  intervalMs: number = FIREWALL_RECHECK_MS,
): FirewallKeeper {
  validateIfName(opts.bridge, 'bridge name');
  validateIfName(opts.tap, 'TAP device name');
  let running: Promise<FirewallResult> | null = null;
  const check = (): Promise<FirewallResult> => {
    if (running === null) {
      running = ensureBridgeForwarding(opts, runner, logger).finally(() => {
        running = null;
      });
    }
    return running;
  };
  const timer = setInterval(() => {
    check().catch((err: unknown) => logger.warn('firewall re-check failed', { error: errorMessage(err) }));
  }, intervalMs);
  timer.unref();
  return { check, close: () => clearInterval(timer) };
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

// ---------------------------------------------------------------------------
// MTU

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
