// Kernel relay rules (router/host/kernel-relay-rules.ts) without root: the nft
// JSON a pair becomes (the base chain's rule, both variants of a leg's rule,
// expression by expression, and the order of a transaction), what is refused
// before anything runs, `ip route get` and `nft list` answers good and odd,
// and KernelRelayRules over a scripted host: leaving nothing behind when an
// open fails at any step, close removing exactly its pair, idempotent, and
// keeping the ports while its rules stay, the cap, one table change at a
// time, counters, closeAll. Plus the real port reservation (held, released,
// not keeping node alive).

import t from 'tap';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { FakeCommandRunner, type RunResult } from '../../router/host/command-runner';
import {
  KernelRelayRules, MAX_KERNEL_RELAY_PAIRS, checkRelayEndpoints, parseRelayListing, parseRouteGet, relayBaseChain,
  relayChainName, relayCloseScript, relayOpenScript, relayRule, removeKernelRelayTable, reserveUdpPort,
  type KernelRelayEndpoint, type RelayLeg, type ReservedPort,
} from '../../router/host/kernel-relay-rules';
import { TextLogger } from '../../common/logger';

const A: KernelRelayEndpoint = { host: '10.1.0.1', port: 6783 };
const B: KernelRelayEndpoint = { host: '192.168.7.3', port: 6784 };
const TABLE = { family: 'netdev', table: 'weave-krelay' };

// a on-link via eth0, b behind a gateway via eth1.
const TO_A = { dev: 'eth0', via: '10.1.0.1', src: '10.1.0.2' };
const TO_B = { dev: 'eth1', via: '10.2.0.254', src: '10.2.0.2' };
const LEG_AB: RelayLeg = { from: A, inDev: 'eth0', inPort: 40001, to: B, out: TO_B, outPort: 40003 };
const LEG_BA: RelayLeg = { from: B, inDev: 'eth1', inPort: 40003, to: A, out: TO_A, outPort: 40001 };

interface Op { [verb: string]: Record<string, Record<string, unknown>> }
const ops = (script: string): Op[] => (JSON.parse(script) as { nftables: Op[] }).nftables;

/** Each operation of a script in a few words: `add rule leg-40001 40001/40003`, `delete element 1,2`. */
function summary(script: string | Op[]): string[] {
  return (typeof script === 'string' ? ops(script) : script).map((op) => {
    const [verb, body] = Object.entries(op)[0]!;
    const [kind, o] = Object.entries(body)[0]!;
    if (kind === 'rule') return `${verb} rule ${String(o['chain'])}${o['comment'] === undefined ? '' : ` ${String(o['comment'])}`}`;
    if (kind === 'element') return `${verb} element ${(o['elem'] as unknown[]).map((e) => (Array.isArray(e) ? `${String(e[0])}:${JSON.stringify(e[1])}` : String(e))).join(',')}`;
    return `${verb} ${kind} ${String(o['name'])}${o['dev'] === undefined ? '' : ` dev ${String(o['dev'])}`}`;
  });
}

t.test('a leg becomes two rules in its chain: checksum-updating writes, and raw port writes for checksum 0', async (t) => {
  const pay = (protocol: string, field: string) => ({ payload: { protocol, field } });
  const matches = (zero: boolean) => [
    { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth0' } },
    { match: { op: '==', left: pay('ip', 'saddr'), right: '10.1.0.1' } },
    { match: { op: '==', left: pay('udp', 'sport'), right: 6783 } },
    { match: { op: zero ? '==' : '!=', left: pay('udp', 'checksum'), right: 0 } },
    { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } },
    { counter: null },
    { mangle: { key: pay('ip', 'saddr'), value: '10.2.0.2' } },
    { mangle: { key: pay('ip', 'daddr'), value: '192.168.7.3' } },
  ];
  const fwd = { fwd: { dev: 'eth1', family: 'ip', addr: '10.2.0.254' } };
  t.same(relayRule(LEG_AB, '40001/40003', false), { add: { rule: { ...TABLE, chain: 'leg-40001', comment: '40001/40003', expr: [
    ...matches(false),
    { mangle: { key: pay('udp', 'sport'), value: 40003 } },
    { mangle: { key: pay('udp', 'dport'), value: 6784 } },
    fwd,
  ] } } });
  t.same(relayRule(LEG_AB, '40001/40003', true), { add: { rule: { ...TABLE, chain: 'leg-40001', comment: '40001/40003', expr: [
    ...matches(true),
    { mangle: { key: { payload: { base: 'th', offset: 0, len: 32 } }, value: 40003 * 65536 + 6784 } },
    fwd,
  ] } } });
  t.same(relayBaseChain('eth0'), [
    { add: { chain: { ...TABLE, name: 'in-eth0', type: 'filter', hook: 'ingress', prio: 0, dev: 'eth0', policy: 'accept' } } },
    { add: { rule: { ...TABLE, chain: 'in-eth0', expr: [
      { match: { op: '==', left: { meta: { key: 'pkttype' } }, right: 'host' } },
      { match: { op: '==', left: pay('ip', 'protocol'), right: 'udp' } },
      { match: { op: '==', left: { '&': [pay('ip', 'frag-off'), 0x3fff] }, right: 0 } },
      { vmap: { key: pay('udp', 'dport'), data: '@legs' } },
    ] } } },
  ], 'the base chain: only unfragmented UDP to our MAC, looked up by port');
});

t.test('open script: fresh replaces a leftover table, then base chains, leg chains with their rules, map entries', async (t) => {
  const jump = (port: number) => `${port}:{"jump":{"target":"leg-${port}"}}`;
  const legs = [
    'add chain leg-40001', 'add rule leg-40001 40001/40003', 'add rule leg-40001 40001/40003',
    'add chain leg-40003', 'add rule leg-40003 40001/40003', 'add rule leg-40003 40001/40003',
    `add element ${jump(40001)},${jump(40003)}`,
  ];
  t.same(summary(relayOpenScript([LEG_AB, LEG_BA], '40001/40003', ['eth0', 'eth1'], true)), [
    'add table weave-krelay', 'delete table weave-krelay', 'add table weave-krelay', 'add map legs',
    'add chain in-eth0 dev eth0', 'add rule in-eth0', 'add chain in-eth1 dev eth1', 'add rule in-eth1',
    ...legs,
  ]);
  const map = ops(relayOpenScript([LEG_AB, LEG_BA], 'k', [], true))[3]!;
  t.same(map, { add: { map: { ...TABLE, name: 'legs', type: 'inet_service', map: 'verdict' } } });
  t.same(summary(relayOpenScript([LEG_AB, LEG_BA], '40001/40003', [], false)), legs, 'not fresh: no table, map or base chain');
  const rules = ops(relayOpenScript([LEG_AB, LEG_BA], 'k', [], false)).flatMap((o) => (o['add']?.['rule'] === undefined ? [] : [o['add']['rule']]));
  t.same((rules[2]!['expr'] as unknown[]).at(-1), { fwd: { dev: 'eth0', family: 'ip', addr: '10.1.0.1' } }, 'on-link: the next hop is a itself');
});

t.test('refused before anything runs', async (t) => {
  const bad: Array<[unknown, unknown, RegExp]> = [
    [{ host: 'fd00::1', port: 6783 }, B, /kernel relay is IPv4 only/],
    [A, { host: '::ffff:10.0.0.1', port: 6783 }, /kernel relay is IPv4 only/],
    [{ host: '010.1.0.1', port: 6783 }, B, /not a dotted IPv4 address/],
    [{ host: '10.1.0.1 ', port: 6783 }, B, /not a dotted IPv4 address/],
    [{ host: 'relay.example', port: 6783 }, B, /not a dotted IPv4 address/],
    [{ host: 42, port: 6783 }, B, /not a string/],
    [{ host: '127.0.0.1', port: 6783 }, B, /loopback/],
    [A, { host: '239.1.2.3', port: 6783 }, /multicast/],
    [{ host: '0.0.0.0', port: 6783 }, B, /unspecified/],
    [A, { host: '255.255.255.255', port: 6783 }, /broadcast/],
    [{ host: '10.1.0.1', port: 0 }, B, /not a UDP port/],
    [{ host: '10.1.0.1', port: 65536 }, B, /not a UDP port/],
    [A, { host: '10.1.0.9', port: 1.5 }, /not a UDP port/],
    [A, { host: '10.1.0.9', port: '6783' }, /not a UDP port/],
    [null, B, /not an endpoint/],
    [A, { ...A }, /both ends are 10\.1\.0\.1:6783/],
  ];
  for (const [a, b, why] of bad) {
    t.throws(() => checkRelayEndpoints(a as KernelRelayEndpoint, b as KernelRelayEndpoint), why, JSON.stringify([a, b]));
  }
  t.doesNotThrow(() => checkRelayEndpoints(A, { host: A.host, port: 6784 }), 'one host, two ports is fine');
  for (const dev of ['', 'eth0/x', 'a'.repeat(16), '..', 'eth 0', 'eth0"']) t.throws(() => relayChainName(dev), /not a network device name/, dev);
  t.equal(relayChainName('a'.repeat(15)), `in-${'a'.repeat(15)}`);
  t.throws(() => relayOpenScript([{ ...LEG_AB, outPort: 70000 }], 'k', [], false), /not a UDP port/);
  t.throws(() => relayOpenScript([{ ...LEG_AB, out: { ...TO_B, via: 'fe80::1' } }], 'k', [], false), /IPv4 only/);
  t.throws(() => relayOpenScript([{ ...LEG_AB, out: { ...TO_B, dev: 'x/y' } }], 'k', [], false), /device name/);
});

t.test('ip route get: on-link, gateway, and every odd answer an error naming what', async (t) => {
  const onLink = '[{"dst":"10.98.0.3","dev":"eth0","prefsrc":"10.98.0.2","flags":[],"uid":0,"cache":[]}]';
  t.same(parseRouteGet(onLink, '10.98.0.3'), { dev: 'eth0', via: '10.98.0.3', src: '10.98.0.2' });
  const gw = '[{"dst":"192.0.2.9","gateway":"10.98.0.1","dev":"ens3","prefsrc":"10.98.0.2","flags":["onlink"],"uid":0,"cache":[]}]';
  t.same(parseRouteGet(gw, '192.0.2.9'), { dev: 'ens3', via: '10.98.0.1', src: '10.98.0.2' });
  const route = (o: object) => JSON.stringify([{ dst: '10.98.0.3', dev: 'eth0', prefsrc: '10.98.0.2', ...o }]);
  const bad: Array<[string, RegExp]> = [
    ['', /not JSON/],
    ['RTNETLINK answers: Network is unreachable', /not JSON/],
    ['[]', /printed no route/],
    ['{}', /printed no route/],
    ['[null]', /printed no route/],
    ['[[1]]', /printed no route/],
    ['"eth0"', /printed no route/],
    [route({ type: 'local', dev: 'lo' }), /10\.98\.0\.3 is an address of this host/],
    [route({ type: 'broadcast' }), /type "broadcast", not unicast/],
    [route({ type: { toString: 1 } }), /not unicast/],
    [route({ dst: '10.98.0.4' }), /answered for "10\.98\.0\.4"/],
    [route({ dev: undefined }), /no usable device: undefined/],
    [route({ dev: { name: 'eth0' } }), /no usable device/],
    [route({ dev: 'eth0;rm' }), /no usable device/],
    [route({ dev: 'lo' }), /leaves through lo/],
    [route({ prefsrc: undefined }), /no IPv4 source address/],
    [route({ prefsrc: 'fe80::2' }), /no IPv4 source address/],
    [route({ prefsrc: '0.0.0.0' }), /no IPv4 source address/],
    [route({ gateway: 'fe80::1' }), /gateway is not an IPv4 address/],
    [route({ gateway: 7 }), /gateway is not an IPv4 address/],
  ];
  for (const [text, why] of bad) {
    t.throws(() => parseRouteGet(text, '10.98.0.3'), why, text);
    t.throws(() => parseRouteGet(text, '10.98.0.3'), /^ip route get 10\.98\.0\.3: /);
  }
});

// A listing as nft 1.0.6 prints it (a netdev chain shows no device there).
interface FakeRule { chain: string; comment?: string; packets?: number; bytes?: number }
function listing(rules: FakeRule[], chains: string[] = [...new Set(rules.map((r) => r.chain))], extra: unknown[] = []): string {
  return JSON.stringify({ nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'netdev', name: 'weave-krelay', handle: 5 } },
    { map: { family: 'netdev', name: 'legs', table: 'weave-krelay', type: 'inet_service', handle: 1, map: 'verdict', elem: [[40001, { jump: { target: 'leg-40001' } }]] } },
    ...chains.map((name, i) => ({ chain: { ...TABLE, name, handle: i + 2, ...(name.startsWith('in-') ? { type: 'filter', hook: 'ingress', prio: 0, policy: 'accept' } : {}) } })),
    ...rules.map((r, i) => ({ rule: { ...TABLE, chain: r.chain, handle: 100 + i, ...(r.comment === undefined ? {} : { comment: r.comment }), expr: [
      { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth0' } },
      { counter: { packets: r.packets ?? 0, bytes: r.bytes ?? 0 } },
      { fwd: { dev: 'eth0', family: 'ip', addr: '10.98.0.3' } },
    ] } })),
    ...extra,
  ] });
}

t.test('nft list: chains, and rules with chain, comment and counter; other tables and odd items are ignored, garbage is an error', async (t) => {
  const text = listing([{ chain: 'leg-40001', comment: '40001/40003', packets: 3, bytes: 402 }, { chain: 'in-eth1' }], ['in-eth1', 'leg-40001', 'leg-40003'], [
    { rule: { family: 'inet', table: 'weave-krelay', chain: 'leg-40001', handle: 9, comment: '40001/40003', expr: [] } },
    { chain: { family: 'netdev', table: 'other', name: 'leg-1' } },
    { rule: { ...TABLE, chain: 7, handle: 4 } },
    { rule: { ...TABLE, chain: 'leg-40003', handle: 8, comment: 5, expr: [{ counter: { packets: '1', bytes: 2 } }, null, 3] } },
    null, 7, 'rule', { chain: null }, { rule: [] },
  ]);
  t.same(parseRelayListing(text), {
    chains: ['in-eth1', 'leg-40001', 'leg-40003'],
    rules: [
      { chain: 'leg-40001', comment: '40001/40003', packets: 3, bytes: 402 },
      { chain: 'in-eth1', comment: null, packets: 0, bytes: 0 },
      { chain: 'leg-40003', comment: null, packets: 0, bytes: 0 },
    ],
  });
  t.throws(() => parseRelayListing('Error: x'), /^nft list table weave-krelay printed something that is not JSON/);
  t.throws(() => parseRelayListing('{"nftables":{}}'), /without an nftables array/);
  t.throws(() => parseRelayListing('null'), /without an nftables array/);
  t.same(summary(relayCloseScript([40001, 40003], ['in-eth0'])), [
    'delete element 40001,40003',
    'flush chain leg-40001', 'delete chain leg-40001', 'flush chain leg-40003', 'delete chain leg-40003',
    'flush chain in-eth0', 'delete chain in-eth0',
  ]);
  t.same(summary(relayCloseScript([], ['in-eth0'])), ['flush chain in-eth0', 'delete chain in-eth0'], 'no element list when no leg is left');
});

// ---------------------------------------------------------------------------
// KernelRelayRules over a scripted host

type Answer = Partial<RunResult> | undefined;

interface Host {
  runner: FakeCommandRunner;
  relay: KernelRelayRules;
  /** Ports reserved and not released. */
  held: Set<number>;
  logs: string[];
  /** The table as the fake nft keeps it. */
  chains: Set<string>;
  rules: FakeRule[];
  /** The table exists. */
  present: boolean;
  /** Answers a command instead of the host (a failure nothing was done for). */
  fail: (cmd: string, args: string[]) => Answer;
  /** Answers a command after the host did it (a failure reported after the fact). */
  failAfter: (cmd: string, args: string[]) => Answer;
  /** The nft -j scripts run, as summary() lines. */
  scripts(): string[][];
  /** Each command as a word: route, add, remove, list, drop-table. */
  steps(): string[];
}

/**
 * Routes: 10.1.x.x on eth0, the rest on eth1. The fake nft keeps chains and
 * rules as scripts change them, so listings, flushes and deletes behave.
 */
function host(reserve?: () => Promise<ReservedPort>): Host {
  let nextPort = 40001;
  const play = (cmd: string, args: string[]): Answer => {
    if (cmd === 'ip') {
      const dst = args.at(-1)!;
      const dev = dst.startsWith('10.1.') ? 'eth0' : 'eth1';
      return { stdout: JSON.stringify([{ dst, dev, prefsrc: dev === 'eth0' ? '10.1.0.2' : '10.2.0.2', flags: [] }]) };
    }
    if (args[1] === 'list') return h.present ? { stdout: listing(h.rules, [...h.chains]) } : { code: 1, stderr: 'Error: No such file or directory\n' };
    if (args[0] === 'delete') { h.chains.clear(); h.rules = []; h.present = false; return undefined; }
    for (const op of ops(args[1]!)) {
      const [verb, body] = Object.entries(op)[0]!;
      const [kind, o] = Object.entries(body)[0]!;
      const name = String(o['name']);
      if (kind === 'table' && verb === 'delete') { h.chains.clear(); h.rules = []; h.present = false; }
      if (kind === 'table' && verb === 'add') h.present = true;
      if (kind === 'chain' && verb === 'add') h.chains.add(name);
      if (kind === 'chain' && verb === 'flush') h.rules = h.rules.filter((r) => r.chain !== name);
      if (kind === 'chain' && verb === 'delete') h.chains.delete(name);
      if (kind === 'rule') h.rules.push({ chain: String(o['chain']), ...(typeof o['comment'] === 'string' ? { comment: o['comment'] } : {}) });
    }
    return undefined;
  };
  const h: Host = {
    runner: new FakeCommandRunner((cmd, args) => {
      const early = h.fail(cmd, args);
      if (early !== undefined) return early;
      const r = play(cmd, args);
      return h.failAfter(cmd, args) ?? r;
    }),
    relay: null as unknown as KernelRelayRules,
    held: new Set(),
    logs: [],
    chains: new Set(),
    rules: [],
    present: false,
    fail: () => undefined,
    failAfter: () => undefined,
    scripts: () => h.runner.commands.filter((c) => c.cmd === 'nft' && c.args[1]!.startsWith('{')).map((c) => summary(c.args[1]!)),
    steps: () => h.runner.commands.map((c) => (c.cmd === 'ip' ? 'route' : c.args[1] === 'list' ? 'list' : c.args[0] === 'delete' ? 'drop-table'
      : c.args[1]!.includes('"add":{"rule"') ? 'add' : 'remove')),
  };
  h.relay = new KernelRelayRules(h.runner, new TextLogger('debug', (l) => h.logs.push(l)), {
    reservePort: reserve ?? (async () => {
      const port = nextPort++;
      h.held.add(port);
      return { port, release: () => { h.held.delete(port); } };
    }),
  });
  return h;
}

const C: KernelRelayEndpoint = { host: '10.1.0.5', port: 6783 };
const isNftAdd = (cmd: string, args: string[]): boolean => cmd === 'nft' && args[1]?.includes('"add":{"rule"') === true;
const ruleChains = (h: Host): string[] => h.rules.map((r) => r.chain).sort();

t.test('open: two ports, two routes, one transaction; a second pair adds no base chain and keeps the table', async (t) => {
  const h = host();
  t.same(await h.relay.open(A, B), { portA: 40001, portB: 40002 });
  t.same(h.runner.lines().slice(0, 2), ['ip -j -4 route get 10.1.0.1', 'ip -j -4 route get 192.168.7.3']);
  t.same(await h.relay.open(C, B), { portA: 40003, portB: 40004 });
  const [first, second] = h.scripts() as [string[], string[]];
  t.same(first.slice(0, 8), ['add table weave-krelay', 'delete table weave-krelay', 'add table weave-krelay', 'add map legs',
    'add chain in-eth0 dev eth0', 'add rule in-eth0', 'add chain in-eth1 dev eth1', 'add rule in-eth1']);
  t.same(second, ['add chain leg-40003', 'add rule leg-40003 40003/40004', 'add rule leg-40003 40003/40004',
    'add chain leg-40004', 'add rule leg-40004 40003/40004', 'add rule leg-40004 40003/40004',
    'add element 40003:{"jump":{"target":"leg-40003"}},40004:{"jump":{"target":"leg-40004"}}']);
  t.same([...h.held].sort(), [40001, 40002, 40003, 40004]);
  t.match(h.logs.at(-1), /INFO kernel relay opened pair=40003\/40004 a=10\.1\.0\.5:6783 b=192\.168\.7\.3:6784 devA=eth0 devB=eth1/);
});

t.test('a table that went under us (an admin, weave reset) is made afresh by the next open', async (t) => {
  const h = host();
  const first = await h.relay.open(A, B);
  h.present = false;
  h.chains.clear();
  h.rules = [];
  await h.relay.close(first);
  t.same(h.steps().slice(-1), ['list'], 'closing the pair whose rules went finds nothing to remove');
  await h.relay.open(A, B);
  t.same(h.scripts().at(-1)!.slice(0, 5), ['add table weave-krelay', 'delete table weave-krelay', 'add table weave-krelay', 'add map legs',
    'add chain in-eth0 dev eth0'], 'a new table, map and base chains');
  t.same(ruleChains(h), ['in-eth0', 'in-eth1', 'leg-40003', 'leg-40003', 'leg-40004', 'leg-40004']);
});

t.test('a failed open leaves nothing behind, whichever step failed, and says which', async (t) => {
  // nft reports a failure after committing (killed on a timeout, say): what got in is found and removed.
  const h = host();
  const first = await h.relay.open(A, B);
  h.failAfter = (cmd, args) => (isNftAdd(cmd, args) ? { code: 1, stderr: 'Error: Could not process rule: Interrupted system call\n' } : undefined);
  await t.rejects(h.relay.open(C, B), /^kernel relay 10\.1\.0\.5:6783 <-> 192\.168\.7\.3:6784: adding the rules: nft failed \(exit 1\): Error: Could not process rule/);
  t.same(h.steps(), ['route', 'route', 'list', 'add', 'route', 'route', 'list', 'add', 'list', 'remove']);
  t.same(h.scripts().at(-1), ['delete element 40003,40004', 'flush chain leg-40003', 'delete chain leg-40003',
    'flush chain leg-40004', 'delete chain leg-40004'], 'exactly the legs that got in; the base chains carry the first pair');
  t.same(ruleChains(h), ['in-eth0', 'in-eth1', 'leg-40001', 'leg-40001', 'leg-40002', 'leg-40002']);
  t.same([...h.held].sort(), [40001, 40002], 'its ports are free again');
  h.failAfter = () => undefined;
  t.same(await h.relay.counters(), new Map([[`${first.portA}/${first.portB}`, { packets: 0, bytes: 0 }]]));

  const lonely = host();
  lonely.failAfter = (cmd, args) => (isNftAdd(cmd, args) ? { code: 1, stderr: 'Error: Interrupted system call\n' } : undefined);
  await t.rejects(lonely.relay.open(A, B), /adding the rules/);
  t.same(lonely.scripts().at(-1)!.filter((l) => l.startsWith('delete chain')),
    ['delete chain leg-40001', 'delete chain leg-40002', 'delete chain in-eth0', 'delete chain in-eth1'], 'the first pair\'s base chains go with its legs');
  t.same([...lonely.chains], []);
  t.equal(lonely.held.size, 0);

  const refused = host();
  refused.fail = (cmd, args) => (isNftAdd(cmd, args) ? { code: 1, stderr: 'Error: Could not process rule: No such device\n' } : undefined);
  await t.rejects(refused.relay.open(A, B), { name: 'RouterError', code: 'io', message: /No such device/ });
  t.equal(refused.held.size, 0);
  t.same(refused.steps(), ['route', 'route', 'list', 'add', 'list'], 'nothing in the table, nothing to remove');

  const noRoute = host();
  noRoute.fail = (cmd, args) => (cmd === 'ip' && args.at(-1) === B.host ? { code: 2, stderr: 'RTNETLINK answers: Network is unreachable\n' } : undefined);
  await t.rejects(noRoute.relay.open(A, B), /route to 192\.168\.7\.3: ip route get 192\.168\.7\.3 failed \(exit 2\): RTNETLINK answers: Network is unreachable/);
  t.equal(noRoute.held.size, 0);
  t.same(noRoute.steps(), ['route', 'route'], 'nothing was added');

  let calls = 0;
  const released: number[] = [];
  const noPort = host(async () => {
    if (++calls === 2) throw new Error('bind EADDRINUSE');
    return { port: 40100, release: () => released.push(40100) };
  });
  await t.rejects(noPort.relay.open(A, B), /reserving a UDP port: bind EADDRINUSE/);
  t.same(released, [40100]);

  // A reservation that hands out a port twice (never the real one) must not get near the map.
  const ports = [40200, 40200, 40201, 40300, 40301, 40300];
  const twice = host(async () => ({ port: ports.shift()!, release: () => undefined }));
  await t.rejects(twice.relay.open(A, B), /reserving UDP ports: 40200 and 40200 are not two free ports/);
  t.same(twice.steps(), []);
  await twice.relay.open(A, B);
  await t.rejects(twice.relay.open(C, B), /reserving UDP ports: 40301 and 40300 are not two free ports/);
  t.same(twice.steps(), ['route', 'route', 'list', 'add'], 'the open pair\'s legs were never touched');
  const syncThrow = host(() => { throw new Error('no sockets left'); });
  await t.rejects(syncThrow.relay.open(A, B), /reserving a UDP port: no sockets left/);

  const bad = host();
  await t.rejects(bad.relay.open({ host: 'fd00::1', port: 6783 }, B), /kernel relay is IPv4 only/);
  t.same(bad.steps(), []);
  t.equal(bad.held.size, 0);
});

t.test('close: exactly that pair, base chains nobody uses, idempotent, never throws, keeps ports while rules stay', async (t) => {
  const h = host();
  const p1 = await h.relay.open(A, B);
  const p2 = await h.relay.open(C, B);
  await h.relay.close(p1);
  t.same(h.scripts().at(-1), ['delete element 40001,40002', 'flush chain leg-40001', 'delete chain leg-40001',
    'flush chain leg-40002', 'delete chain leg-40002'], 'both base chains still carry the other pair');
  t.same(ruleChains(h), ['in-eth0', 'in-eth1', 'leg-40003', 'leg-40003', 'leg-40004', 'leg-40004']);
  t.same([...h.held].sort(), [40003, 40004]);
  const before = h.runner.commands.length;
  await h.relay.close(p1);
  await h.relay.close({ portA: 1, portB: 2 });
  t.equal(h.runner.commands.length, before, 'closing again or closing a stranger runs nothing');
  t.same([...(await h.relay.counters()).keys()], ['40003/40004']);

  // The last pair on both base chains: they go too. But first nft fails.
  h.fail = (cmd, args) => (cmd === 'nft' && args[1]?.includes('"delete"') ? { code: 1, stderr: 'Error: Device or resource busy\n' } : undefined);
  await h.relay.close(p2);
  t.match(h.logs.at(-1), /ERROR kernel relay: cannot remove a pair's rules pair=40003\/40004 error=.*Device or resource busy/);
  t.same([...h.held].sort(), [40003, 40004], 'ports stay held while the rules may forward them');
  h.fail = () => undefined;
  await h.relay.close(p2);
  t.same(h.scripts().at(-1)!.filter((l) => l.startsWith('delete chain')),
    ['delete chain leg-40003', 'delete chain leg-40004', 'delete chain in-eth0', 'delete chain in-eth1']);
  t.same([...h.chains], []);
  t.equal(h.held.size, 0);
  t.match(h.logs.at(-1), /INFO kernel relay closed pair=40003\/40004/);

  // Someone flushed our table: nothing left to remove, and the ports still go.
  const p3 = await h.relay.open(A, B);
  h.chains.clear();
  h.rules = [];
  const n = h.runner.commands.length;
  await h.relay.close(p3);
  t.same(h.steps().slice(n), ['list']);
  t.equal(h.held.size, 0);
});

t.test(`at most ${MAX_KERNEL_RELAY_PAIRS} pairs`, async (t) => {
  const h = host();
  const pairs = [];
  for (let i = 0; i < MAX_KERNEL_RELAY_PAIRS; i++) pairs.push(await h.relay.open({ host: `10.1.${i >> 7}.${(i & 127) + 1}`, port: 6783 }, B));
  await t.rejects(h.relay.open(C, { host: '10.9.9.9', port: 1 }), {
    name: 'RouterError', code: 'limit', message: `open kernel relay pairs is ${MAX_KERNEL_RELAY_PAIRS + 1}, over the limit of ${MAX_KERNEL_RELAY_PAIRS}`,
  });
  t.equal(h.held.size, 2 * MAX_KERNEL_RELAY_PAIRS, 'the refused one reserved nothing');
  await h.relay.close(pairs[0]!);
  t.ok(await h.relay.open(C, B), 'room again after a close');
});

t.test('concurrent opens and closes change the table one at a time', async (t) => {
  const h = host();
  const [p1, p2] = await Promise.all([h.relay.open(A, B), h.relay.open(C, B)]);
  t.same(h.steps(), ['route', 'route', 'list', 'add', 'route', 'route', 'list', 'add']);
  t.same(h.scripts()[1]!.filter((l) => l.includes(' in-') || l.includes('table')), [], 'the second saw the first\'s base chains and table');
  await Promise.all([h.relay.close(p1), h.relay.open(A, { host: '10.1.0.9', port: 7 }), h.relay.close(p2)]);
  t.same(h.steps().slice(8), ['list', 'remove', 'route', 'route', 'list', 'add', 'list', 'remove']);
  t.same(h.scripts().at(-1)!.filter((l) => l.startsWith('delete chain')), ['delete chain leg-40003', 'delete chain leg-40004', 'delete chain in-eth1'],
    'eth0 still carries the pair opened in between');
  // A failure in one does not stall the next.
  h.fail = (cmd, args) => (cmd === 'ip' && args.at(-1) === '10.9.9.9' ? { code: 2, stderr: 'RTNETLINK answers: Network is unreachable\n' } : undefined);
  const [failed, opened] = await Promise.allSettled([h.relay.open(C, { host: '10.9.9.9', port: 1 }), h.relay.open(C, B)]);
  t.equal(failed.status, 'rejected');
  t.equal(opened.status, 'fulfilled');
});

t.test('counters: per pair, both legs\' rules summed, strangers ignored', async (t) => {
  const h = host();
  const p = await h.relay.open(A, B);
  const rules: FakeRule[] = [
    { chain: 'leg-40001', comment: '40001/40002', packets: 3, bytes: 402 },
    { chain: 'leg-40001', comment: '40001/40002', packets: 1, bytes: 100 },
    { chain: 'leg-40002', packets: 2, bytes: 40 },
    { chain: 'leg-9', comment: '40001/40002', packets: 99, bytes: 99 },
    { chain: 'in-eth0', packets: 7, bytes: 7 },
  ];
  h.fail = (cmd, args) => (cmd === 'nft' && args[1] === 'list' ? { stdout: listing(rules) } : undefined);
  t.same(await h.relay.counters(), new Map([[`${p.portA}/${p.portB}`, { packets: 6, bytes: 542 }]]));
  h.fail = (cmd, args) => (cmd === 'nft' && args[1] === 'list' ? { code: 1, stderr: 'Error: No such file or directory\n' } : undefined);
  t.same(await h.relay.counters(), new Map([['40001/40002', { packets: 0, bytes: 0 }]]), 'no table: nothing counted yet');
  h.fail = (cmd, args) => (cmd === 'nft' && args[1] === 'list' ? { code: 1, stderr: 'Error: Operation not permitted\n' } : undefined);
  await t.rejects(h.relay.counters(), /nft list table netdev weave-krelay failed \(exit 1\): Error: Operation not permitted/);
});

t.test('closeAll: the table goes, every port is freed, the next open starts afresh; never throws', async (t) => {
  const h = host();
  await h.relay.open(A, B);
  await h.relay.open(C, B);
  await h.relay.closeAll();
  t.same(h.runner.lines().at(-1), 'nft delete table netdev weave-krelay');
  t.equal(h.held.size, 0);
  t.same(await h.relay.counters(), new Map());
  await h.relay.open(A, B);
  t.same(h.scripts().at(-1)!.filter((l) => l.includes(' in-') || l.includes('table') || l.includes('map')), ['add table weave-krelay',
    'delete table weave-krelay', 'add table weave-krelay', 'add map legs', 'add chain in-eth0 dev eth0', 'add rule in-eth0',
    'add chain in-eth1 dev eth1', 'add rule in-eth1'], 'base chains made again, leftovers replaced again');

  h.fail = (_cmd, args) => (args[0] === 'delete' ? { code: 1, stderr: 'Error: No such file or directory\n' } : undefined);
  await h.relay.closeAll();
  t.notMatch(h.logs.join('\n'), /ERROR/, 'no table is what we wanted');
  await h.relay.open(A, B);
  h.fail = (_cmd, args) => (args[0] === 'delete' ? { code: 1, stderr: 'Error: Operation not permitted\n' } : undefined);
  await h.relay.closeAll();
  t.match(h.logs.at(-1), /ERROR kernel relay: cannot delete the nftables table table=weave-krelay error="Error: Operation not permitted"/);
  t.equal(h.held.size, 0, 'shutting down: the ports go regardless');

  const gone = new FakeCommandRunner(() => { throw new Error('spawn nft ENOENT'); });
  const orphan = new KernelRelayRules(gone, new TextLogger('debug', (l) => h.logs.push(l)));
  await orphan.closeAll();
  t.match(h.logs.at(-1), /cannot delete the nftables table .*ENOENT/);
  await removeKernelRelayTable(gone);
  const r = new FakeCommandRunner(() => ({ code: 1, stderr: 'Error: No such file or directory' }));
  await removeKernelRelayTable(r);
  t.same(r.lines(), ['nft delete table netdev weave-krelay']);
});

t.test('the real port reservation: held until released, and never keeping node alive', async (t) => {
  const p = await reserveUdpPort();
  t.ok(p.port >= 1 && p.port <= 65535);
  const bindTo = (port: number) => new Promise<string>((resolve) => {
    const s = createSocket('udp4');
    s.once('error', (e: NodeJS.ErrnoException) => { s.close(); resolve(e.code ?? 'error'); });
    s.bind(port, () => { s.close(); resolve('bound'); });
  });
  t.equal(await bindTo(p.port), 'EADDRINUSE');
  p.release();
  p.release();
  t.equal(await bindTo(p.port), 'bound');

  const module = join(__dirname, '..', '..', 'router', 'host', 'kernel-relay-rules.js');
  const started = Date.now();
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['-e', `require(${JSON.stringify(module)}).reserveUdpPort().then((p) => console.log(p.port))`], { timeout: 10_000 },
      (err, stdout) => (err === null ? resolve(stdout) : reject(err)));
  });
  t.match(out, /^\d+\n$/, 'a node that only holds a port exits by itself');
  t.ok(Date.now() - started < 9_000);
});
