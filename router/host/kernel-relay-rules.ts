// Kernel relays: this host forwards UDP datagrams between two peers that cannot
// reach each other, in its kernel instead of its router. A pair owns two UDP
// ports of ours: a datagram from endpoint a to portA leaves to b from portB,
// and b's to portB leaves to a from portA. a and b seal them end to end
// (AEAD), so nothing here looks inside.
//
// How: nftables table `netdev weave-krelay`. Ingress comes before routing,
// conntrack and forward chains: no ip_forward, no conntrack entry, no other
// table's policy. One ingress base chain per device datagrams arrive on holds
// one rule: unfragmented UDP to our MAC (`meta pkttype host`) is looked up by
// destination port in the verdict map `legs` (one hash lookup per packet
// however many pairs). A relay port's entry jumps to its leg's chain
// `leg-<port>`, whose rules check the arrival device, the sender and that the
// packet is for an address of ours (`fib daddr type local`: nothing passing
// through for someone else is taken), rewrite addresses and ports, and `fwd`.
//
// Why two rules per direction: nft updates the UDP checksum when it rewrites a
// port, even when the checksum is 0 ("none", what the sealed sleeve sends), so
// a zero checksum would leave as garbage and the far end would drop the
// datagram. Datagrams with checksum 0 get the ports written raw (no checksum
// update; the address rewrite skips checksum 0 by itself), the others get the
// checksum-updating writes. Fragments are not taken (a relayed first fragment
// alone is useless); they reach the port's socket and die there.
//
// Why a socket per port: the port must stay ours, or another program could
// bind it and lose its datagrams to our rules. The socket never sees what the
// rules take; node drains the rest (tiny buffer, no listener).
//
// The scripts are nft JSON built by pure functions (as fastdp-firewall.ts);
// a pair's map entries and leg chains come and go in one transaction each, so
// close() removes exactly its pair. Table changes run one at a time.

import { createSocket } from 'node:dgram';
import { errorMessage } from '../../common/errors';
import { formatIpv4, tryParseIpv4, tryParseIpv6 } from '../../common/ip';
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import type { CommandRunner, RunResult } from './command-runner';
import { runQuietly } from './command-runner';

export const KERNEL_RELAY_NFT_TABLE = 'weave-krelay'; // family netdev
export const KERNEL_RELAY_NFT_FAMILY = 'netdev';
/** The verdict map from a relay port to its leg's chain. */
export const KERNEL_RELAY_NFT_MAP = 'legs';
/** Pairs one host relays at most; the router caps per peer itself. */
export const MAX_KERNEL_RELAY_PAIRS = 256;

export interface KernelRelayEndpoint { host: string; port: number }   // IPv4 dotted quad, UDP port 1..65535
export interface KernelRelayPair { portA: number; portB: number }
export interface ReservedPort { port: number; release(): void }

/** The way to one address, as `ip route get` says: out of `dev`, to the next hop `via`, from our `src`. */
export interface RelayRoute { dev: string; via: string; src: string }

/** One direction of a pair: datagrams from `from` to our `inPort` (arriving on `inDev`) leave to `to` from `outPort`. */
export interface RelayLeg { from: KernelRelayEndpoint; inDev: string; inPort: number; to: KernelRelayEndpoint; out: RelayRoute; outPort: number }

const T = { family: KERNEL_RELAY_NFT_FAMILY, table: KERNEL_RELAY_NFT_TABLE };
// The kernel's own limit (IFNAMSIZ - 1) and the characters we pass on; '/' or ':' never reach nft.
const DEVICE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export const pairKey = (pair: KernelRelayPair): string => `${pair.portA}/${pair.portB}`;
// What nft says when our table is not there, which for a removal is success.
const NO_TABLE = /No such file or directory/;

/** The ingress base chain for datagrams arriving on `dev`. */
export function relayChainName(dev: string): string {
  if (typeof dev !== 'string' || !DEVICE_RE.test(dev) || dev === '.' || dev === '..') {
    throw RouterError.config(`kernel relay: not a network device name: ${JSON.stringify(dev)}`);
  }
  return `in-${dev}`;
}

/** The chain of the leg whose datagrams arrive at our `port`. */
export const legChainName = (port: number): string => `leg-${port}`;

function checkPort(port: unknown, what: string): void {
  if (typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535) return;
  throw RouterError.config(`kernel relay ${what}: not a UDP port (1..65535): ${JSON.stringify(port)}`);
}

/** A unicast IPv4 address in canonical dotted form, or RouterError 'config' saying why not. */
export function checkRelayAddress(host: unknown, what: string): string {
  if (typeof host !== 'string') throw RouterError.config(`kernel relay ${what}: address is not a string`);
  if (host.includes(':') && tryParseIpv6(host) !== null) throw RouterError.config(`kernel relay is IPv4 only: ${what} is ${JSON.stringify(host)}`);
  const v = tryParseIpv4(host);
  if (v === null || formatIpv4(v) !== host) throw RouterError.config(`kernel relay ${what}: ${JSON.stringify(host.slice(0, 64))} is not a dotted IPv4 address`);
  const first = v >>> 24;
  const kind = first === 0 ? 'unspecified' : first === 127 ? 'loopback' : first >= 224 && first < 240 ? 'multicast'
    : v >>> 0 === 0xffffffff ? 'broadcast' : null;
  if (kind !== null) throw RouterError.config(`kernel relay ${what}: ${host} is a ${kind} address`);
  return host;
}

/** Checks both ends of a pair; throws RouterError 'config'. */
export function checkRelayEndpoints(a: KernelRelayEndpoint, b: KernelRelayEndpoint): void {
  for (const [e, what] of [[a, 'endpoint a'], [b, 'endpoint b']] as const) {
    if (typeof e !== 'object' || e === null) throw RouterError.config(`kernel relay ${what}: not an endpoint`);
    checkRelayAddress(e.host, what);
    checkPort(e.port, what);
  }
  if (a.host === b.host && a.port === b.port) throw RouterError.config(`kernel relay: both ends are ${a.host}:${a.port}`);
}

/**
 * `ip -j -4 route get ADDR`'s answer as a RelayRoute. Anything but one
 * unicast route out of a named device, from an IPv4 address of ours, to an
 * IPv4 next hop is an error saying what was wrong: a relay must never guess.
 */
export function parseRouteGet(stdout: string, dst: string): RelayRoute {
  const fail = (why: string): RouterError => new RouterError('io', `ip route get ${dst}: ${why}`);
  const parsed = parseJson(stdout, fail);
  const route: unknown = Array.isArray(parsed) ? parsed[0] : undefined;
  if (typeof route !== 'object' || route === null || Array.isArray(route)) throw fail('printed no route');
  const r = route as Record<string, unknown>;
  if (r['type'] !== undefined && r['type'] !== 'unicast') {
    throw fail(r['type'] === 'local' ? `${dst} is an address of this host` : `the route is of type ${JSON.stringify(r['type'])}, not unicast`);
  }
  if (r['dst'] !== undefined && r['dst'] !== dst) throw fail(`answered for ${JSON.stringify(r['dst'])}`);
  const dev = r['dev'];
  if (typeof dev !== 'string' || !DEVICE_RE.test(dev)) throw fail(`no usable device: ${JSON.stringify(dev)}`);
  if (dev === 'lo') throw fail('the route leaves through lo');
  const { prefsrc: src, gateway } = r;
  const ipv4 = (x: unknown): boolean => typeof x === 'string' && tryParseIpv4(x) !== null && formatIpv4(tryParseIpv4(x)!) === x && x !== '0.0.0.0';
  if (!ipv4(src)) throw fail(`no IPv4 source address of ours: ${JSON.stringify(src)}`);
  if (gateway !== undefined && !ipv4(gateway)) throw fail(`the gateway is not an IPv4 address: ${JSON.stringify(gateway)}`);
  return { dev, via: (gateway ?? dst) as string, src: src as string };
}

function parseJson(text: string, fail: (why: string) => Error): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fail(`printed something that is not JSON: ${errorMessage(err)}`);
  }
}

const match = (left: unknown, right: unknown, op = '=='): unknown => ({ match: { op, left, right } });
const field = (protocol: string, name: string): unknown => ({ payload: { protocol, field: name } });
const set = (key: unknown, value: unknown): unknown => ({ mangle: { key, value } });

/** The rule for one leg; `zeroChecksum` picks the variant for datagrams with UDP checksum 0 (the file comment says why). */
export function relayRule(leg: RelayLeg, key: string, zeroChecksum: boolean): unknown {
  const ports = zeroChecksum
    // sport and dport as one raw 32-bit write: raw payloads get no checksum update.
    ? [set({ payload: { base: 'th', offset: 0, len: 32 } }, (leg.outPort * 0x10000 + leg.to.port))]
    : [set(field('udp', 'sport'), leg.outPort), set(field('udp', 'dport'), leg.to.port)];
  return {
    add: { rule: { ...T, chain: legChainName(leg.inPort), comment: key, expr: [
      match({ meta: { key: 'iifname' } }, leg.inDev),
      match(field('ip', 'saddr'), leg.from.host),
      match(field('udp', 'sport'), leg.from.port),
      match(field('udp', 'checksum'), 0, zeroChecksum ? '==' : '!='),
      // Last of the matches: a route lookup, paid only by datagrams that got this far.
      match({ fib: { result: 'type', flags: ['daddr'] } }, 'local'),
      { counter: null },
      set(field('ip', 'saddr'), leg.out.src),
      set(field('ip', 'daddr'), leg.to.host),
      ...ports,
      { fwd: { dev: leg.out.dev, family: 'ip', addr: leg.out.via } },
    ] } },
  };
}

/** The base chain on `dev` and its one rule, which hands relay ports' datagrams to their legs. */
export function relayBaseChain(dev: string): unknown[] {
  const chain = relayChainName(dev);
  return [
    { add: { chain: { ...T, name: chain, type: 'filter', hook: 'ingress', prio: 0, dev, policy: 'accept' } } },
    { add: { rule: { ...T, chain, expr: [
      match({ meta: { key: 'pkttype' } }, 'host'),
      match(field('ip', 'protocol'), 'udp'),
      match({ '&': [field('ip', 'frag-off'), 0x3fff] }, 0),
      { vmap: { key: field('udp', 'dport'), data: `@${KERNEL_RELAY_NFT_MAP}` } },
    ] } } },
  ];
}

/**
 * One transaction adding a pair: the base chains of `newDevices`, a chain per
 * leg with its two rules, the map entries leading there. `fresh` first replaces
 * a table a crashed router left (add-then-delete is valid with none): its rules
 * would forward ports no socket of ours holds any more.
 */
export function relayOpenScript(legs: readonly RelayLeg[], key: string, newDevices: readonly string[], fresh: boolean): string {
  const table = { family: T.family, name: T.table };
  const ops: unknown[] = fresh
    ? [{ add: { table } }, { delete: { table } }, { add: { table } }, { add: { map: { ...T, name: KERNEL_RELAY_NFT_MAP, type: 'inet_service', map: 'verdict' } } }]
    : [];
  for (const dev of newDevices) ops.push(...relayBaseChain(dev));
  for (const leg of legs) {
    checkRelayEndpoints(leg.from, leg.to);
    for (const port of [leg.inPort, leg.outPort, leg.to.port]) checkPort(port, 'port');
    checkRelayAddress(leg.out.src, 'source');
    checkRelayAddress(leg.out.via, 'next hop');
    [leg.inDev, leg.out.dev].forEach(relayChainName);
    ops.push({ add: { chain: { ...T, name: legChainName(leg.inPort) } } }, relayRule(leg, key, false), relayRule(leg, key, true));
  }
  const elem = legs.map((l) => [l.inPort, { jump: { target: legChainName(l.inPort) } }]);
  ops.push({ add: { element: { ...T, name: KERNEL_RELAY_NFT_MAP, elem } } });
  return JSON.stringify({ nftables: ops });
}

export interface ListedRule { chain: string; comment: string | null; packets: number; bytes: number }

/** One transaction removing the legs of `ports` (map entries first: a chain still jumped to cannot go), and `dropChains`. */
export function relayCloseScript(ports: readonly number[], dropChains: readonly string[]): string {
  const ops: unknown[] = ports.length > 0 ? [{ delete: { element: { ...T, name: KERNEL_RELAY_NFT_MAP, elem: [...ports] } } }] : [];
  for (const name of [...ports.map(legChainName), ...dropChains]) ops.push({ flush: { chain: { ...T, name } } }, { delete: { chain: { ...T, name } } });
  return JSON.stringify({ nftables: ops });
}

/** `nft -j list table netdev weave-krelay`: our chains, and rules with their chain, comment and counter. */
export function parseRelayListing(stdout: string): { chains: string[]; rules: ListedRule[] } {
  const parsed = parseJson(stdout, (why) => new RouterError('io', `nft list table ${T.table} ${why}`));
  const items = (parsed as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) throw new RouterError('io', `nft list table ${T.table} printed JSON without an nftables array`);
  const chains: string[] = [];
  const rules: ListedRule[] = [];
  const ours = (o: Record<string, unknown>): boolean => o['family'] === T.family && o['table'] === T.table;
  for (const item of items as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const { chain, rule } = item as { chain?: Record<string, unknown>; rule?: Record<string, unknown> };
    if (typeof chain === 'object' && chain !== null && ours(chain) && typeof chain['name'] === 'string') chains.push(chain['name']);
    if (typeof rule !== 'object' || rule === null || !ours(rule) || typeof rule['chain'] !== 'string') continue;
    let packets = 0;
    let bytes = 0;
    for (const e of Array.isArray(rule['expr']) ? (rule['expr'] as unknown[]) : []) {
      const c = (e as { counter?: { packets?: unknown; bytes?: unknown } } | null)?.counter;
      if (typeof c?.packets === 'number' && typeof c.bytes === 'number') { packets += c.packets; bytes += c.bytes; }
    }
    rules.push({ chain: rule['chain'], comment: typeof rule['comment'] === 'string' ? rule['comment'] : null, packets, bytes });
  }
  return { chains, rules };
}

/** Holds a UDP port of this host (namespace) until released: bound, never read, not keeping node alive. */
export function reserveUdpPort(): Promise<ReservedPort> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: 'udp4', recvBufferSize: 1 });
    socket.once('error', reject);
    socket.bind(0, () => {
      socket.off('error', reject);
      socket.on('error', () => undefined); // nothing is ever read or sent: no error of it matters
      socket.unref();
      let open = true;
      resolve({ port: socket.address().port, release: () => { if (open) { open = false; socket.close(); } } });
    });
  });
}

/** For `weave reset` without a router: removes the table if present; never throws. */
export async function removeKernelRelayTable(runner: CommandRunner): Promise<void> {
  await runQuietly(runner, 'nft', ['delete', 'table', KERNEL_RELAY_NFT_FAMILY, KERNEL_RELAY_NFT_TABLE]);
}

interface OpenPair { pair: KernelRelayPair; ports: ReservedPort[]; devices: string[] }

export class KernelRelayRules {
  private readonly pairs = new Map<string, OpenPair>();
  /** True once this instance has replaced any leftover table. */
  private tableOurs = false;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly reservePort: () => Promise<ReservedPort>;

  constructor(private readonly runner: CommandRunner, private readonly logger: Logger, opts: { reservePort?: () => Promise<ReservedPort> } = {}) {
    this.reservePort = opts.reservePort ?? reserveUdpPort;
  }

  /** Datagrams from a to this host's portA leave to b from this host's portB, and from b to portB leave to a from portA. */
  open(a: KernelRelayEndpoint, b: KernelRelayEndpoint): Promise<KernelRelayPair> {
    return this.serial(async () => {
      checkRelayEndpoints(a, b);
      if (this.pairs.size >= MAX_KERNEL_RELAY_PAIRS) throw RouterError.limit('open kernel relay pairs', this.pairs.size + 1, MAX_KERNEL_RELAY_PAIRS);
      const ports: ReservedPort[] = [];
      const fail = (what: string, err: unknown): RouterError => new RouterError(err instanceof RouterError ? err.code : 'io',
        `kernel relay ${a.host}:${a.port} <-> ${b.host}:${b.port}: ${what}: ${errorMessage(err)}`, { cause: err });
      const step = <R>(what: string, fn: () => Promise<R>): Promise<R> => Promise.resolve().then(fn).catch((err: unknown) => { throw fail(what, err); });
      try {
        for (let i = 0; i < 2; i++) ports.push(await step('reserving a UDP port', this.reservePort));
        const [pa, pb] = ports as [ReservedPort, ReservedPort];
        const pair = { portA: pa.port, portB: pb.port };
        // A port already in the map would fail the open, and the cleanup would then remove another pair's leg.
        const taken = [pa.port, ...[...this.pairs.values()].flatMap((o) => [o.pair.portA, o.pair.portB])];
        if (taken.includes(pb.port) || taken.indexOf(pa.port, 1) > 0) throw fail('reserving UDP ports', `${pa.port} and ${pb.port} are not two free ports`);
        const toA = await step(`route to ${a.host}`, () => this.route(a.host));
        const toB = await step(`route to ${b.host}`, () => this.route(b.host));
        const key = pairKey(pair);
        const legs: RelayLeg[] = [
          { from: a, inDev: toA.dev, inPort: pair.portA, to: b, out: toB, outPort: pair.portB },
          { from: b, inDev: toB.dev, inPort: pair.portB, to: a, out: toA, outPort: pair.portA },
        ];
        const devices = [...new Set([toA.dev, toB.dev])];
        // What the kernel holds, not what we remember: the table may have gone under us (an admin, `weave reset`).
        const held = await step('reading the table', () => this.list());
        const fresh = !this.tableOurs || !held.present;
        const newDevices = fresh ? devices : devices.filter((d) => !held.chains.includes(relayChainName(d)));
        const script = relayOpenScript(legs, key, newDevices, fresh);
        try {
          await step('adding the rules', () => this.nft(script));
        } catch (err) {
          // A failure report does not prove nothing was committed (nft killed on a timeout after it).
          await this.removePair(pair, newDevices).catch((e: unknown) => this.logger.warn('kernel relay: cleanup after a failed open failed', { pair: key, error: errorMessage(e) }));
          throw err;
        }
        this.tableOurs = true;
        this.pairs.set(key, { pair, ports, devices });
        this.logger.info('kernel relay opened', { pair: key, a: `${a.host}:${a.port}`, b: `${b.host}:${b.port}`, devA: toA.dev, devB: toB.dev });
        return pair;
      } catch (err) {
        for (const p of ports) p.release();
        throw err;
      }
    });
  }

  /**
   * Removes that pair's rules and frees its ports; idempotent, never throws
   * (logs). When the rules cannot be removed the ports stay held (another
   * program on them would lose its datagrams to our rules) and the pair stays
   * open, for a later close() or closeAll() to finish.
   */
  close(pair: KernelRelayPair): Promise<void> {
    const key = pairKey(pair);
    return this.serial(async () => {
      const open = this.pairs.get(key);
      if (open === undefined) return;
      await this.removePair(pair, open.devices.filter((d) => !this.inUse(d, open)));
      this.pairs.delete(key);
      for (const p of open.ports) p.release();
      this.logger.info('kernel relay closed', { pair: key });
    }).catch((err: unknown) => this.logger.error('kernel relay: cannot remove a pair\'s rules', { pair: key, error: errorMessage(err) }));
  }

  /** Removes every pair and the table (router shutdown); never throws (logs). */
  closeAll(): Promise<void> {
    return this.serial(async () => {
      const r = await this.runner.run('nft', ['delete', 'table', T.family, T.table], { allowFail: true })
        .catch((err: unknown) => ({ code: -1, stderr: errorMessage(err) }));
      if (r.code !== 0 && !NO_TABLE.test(r.stderr)) this.logger.error('kernel relay: cannot delete the nftables table', { table: T.table, error: r.stderr.trim() });
      for (const open of this.pairs.values()) for (const p of open.ports) p.release();
      this.pairs.clear();
      this.tableOurs = false;
    });
  }

  /** Packets and bytes each pair's rules forwarded so far (for status/metrics and tests): keyed `${portA}/${portB}`. */
  async counters(): Promise<Map<string, { packets: number; bytes: number }>> {
    const { rules } = await this.list();
    const out = new Map<string, { packets: number; bytes: number }>();
    for (const [key, { pair }] of this.pairs) {
      const legs = [legChainName(pair.portA), legChainName(pair.portB)];
      const mine = rules.filter((r) => legs.includes(r.chain));
      out.set(key, { packets: mine.reduce((n, r) => n + r.packets, 0), bytes: mine.reduce((n, r) => n + r.bytes, 0) });
    }
    return out;
  }

  private inUse(dev: string, except?: OpenPair): boolean {
    return [...this.pairs.values()].some((p) => p !== except && p.devices.includes(dev));
  }

  private serial<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // Our own failure messages: the runner's would quote the whole JSON script.
  private async run(what: string, cmd: string, args: string[], absentOk = false): Promise<RunResult> {
    const r = await this.runner.run(cmd, args, { allowFail: true });
    if (r.code === 0 || (absentOk && NO_TABLE.test(r.stderr))) return r;
    throw new RouterError('io', `${what} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(0, 3).join('; ')}`);
  }

  private async route(host: string): Promise<RelayRoute> {
    return parseRouteGet((await this.run(`ip route get ${host}`, 'ip', ['-j', '-4', 'route', 'get', host])).stdout, host);
  }

  private async nft(script: string): Promise<void> {
    await this.run('nft', 'nft', ['-j', script]);
  }

  /** The table as it is; empty and not present when there is none. */
  private async list(): Promise<{ present: boolean; chains: string[]; rules: ListedRule[] }> {
    const r = await this.run(`nft list table ${T.family} ${T.table}`, 'nft', ['-j', 'list', 'table', T.family, T.table], true);
    return r.code === 0 ? { present: true, ...parseRelayListing(r.stdout) } : { present: false, chains: [], rules: [] };
  }

  /** Removes the legs of `pair` and the base chains of `devices`, whichever the table has, in one transaction. */
  private async removePair(pair: KernelRelayPair, devices: readonly string[]): Promise<void> {
    const { chains } = await this.list();
    const ports = [pair.portA, pair.portB].filter((p) => chains.includes(legChainName(p)));
    const drop = devices.map(relayChainName).filter((c) => chains.includes(c));
    if (ports.length > 0 || drop.length > 0) await this.nft(relayCloseScript(ports, drop));
  }
}
