// The `weave` command as a user meets it, without a daemon: argument
// checking (detach addresses), usage hints after a mistake, dns-lookup of an
// unknown name, the IPAM and DNS lines of the status overview, and the whole
// CLI run against a fake router API (node:http on loopback) to see exit codes
// and what reaches stdout and stderr. `weave attach` loads only what it needs.

import { execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { CommanderError } from 'commander';
import t from 'tap';
import type { Test } from 'tap';
import { parseDetachAddress, splitAddressesAndContainer } from '../../cli/container-commands';
import { dnsOverviewLine, renderLookup } from '../../cli/dns-commands';
import { ipamOverviewLine } from '../../cli/ipam-commands';
import { buildProgram, main } from '../../cli/weave';
import type { DnsStatusReport } from '../../dns/api-types';
import type { IpamStatus } from '../../ipam/status';
import type { PeerName } from '../../router/mesh/peer-name';
import { P1, P2, sampleStatus } from './sample-status';
import { tempSocketPath } from './temp-socket';

function ipamStatus(overrides: Partial<IpamStatus> = {}): IpamStatus {
  return {
    self: P1,
    range: '10.32.0.0/12',
    defaultSubnet: '10.32.0.0/12',
    rangeV6: null,
    mode: 'consensus',
    state: 'ready',
    waitingFor: null,
    consensus: null,
    seed: [],
    ringEntries: 2,
    peers: [
      { peer: P1, nickname: 'host1', self: true, reachable: true, owned: 262144, free: 262132, used: 12, unreachableOwner: false, ranges: [] },
      { peer: P2, nickname: 'host2', self: false, reachable: true, owned: 786432, free: 786432, used: 0, unreachableOwner: false, ranges: [] },
    ],
    local: { owned: 262144, used: 12, free: 262132 },
    allocations: [],
    pending: [],
    warnings: [],
    ...overrides,
  };
}

function record(name: string, address: string, extra: { tombstone?: boolean; visible?: boolean } = {}): DnsStatusReport['records'][number] {
  return {
    name, address, container: 'netns:x', origin: P1 as PeerName, originNickname: 'host1', version: 1,
    tombstone: extra.tombstone ?? false, visible: extra.visible ?? true,
  };
}

function dnsStatus(overrides: Partial<DnsStatusReport> = {}): DnsStatusReport {
  return {
    domain: 'weave.local',
    ttlS: 1,
    address: '169.254.7.1',
    listening: ['127.0.0.1:53', '169.254.7.1:53'],
    upstreams: ['10.0.0.53:53'],
    upstreamSource: '/etc/resolv.conf',
    mdns: true,
    warnings: [],
    records: [
      record('web.weave.local', '10.32.0.1'),
      record('web.weave.local', '10.32.0.2'),
      record('db.weave.local', '10.32.0.3'),
      record('old.weave.local', '10.32.0.4', { tombstone: true }),
    ],
    counters: {
      queries: 0, answered: 0, nodata: 0, nxdomain: 0, formerr: 0, notimp: 0, refused: 0, truncated: 0, forwarded: 0,
      forwardFailed: 0, dropped: 0, clientsRefused: 0, mdnsQueries: 0, mdnsAnswered: 0, mdnsLegacyAnswered: 0,
    },
    ...overrides,
  };
}

t.test('detach takes addresses as attach printed them, CIDRs and ip:CIDR; refuses net: and non-addresses by name', async (t) => {
  t.equal(parseDetachAddress('10.32.0.5'), '10.32.0.5/32', 'a bare address: the daemon matches on the address alone');
  t.equal(parseDetachAddress('10.32.0.5/12'), '10.32.0.5/12');
  t.equal(parseDetachAddress('ip:10.32.0.1/12'), '10.32.0.1/12', "attach's claim form");
  t.equal(parseDetachAddress('ip:10.32.0.1'), '10.32.0.1/32');
  t.equal(parseDetachAddress('fd00:77:1:0::5'), 'fd00:77:1::5/128', 'IPv6, canonical');
  t.equal(parseDetachAddress('fd00:77:1::5/48'), 'fd00:77:1::5/48');
  t.throws(() => parseDetachAddress('net:10.32.8.0/24'), { code: 'config', message: /takes the container's addresses, not "net:10\.32\.8\.0\/24"/ });
  t.throws(() => parseDetachAddress('foo:bar/12'), { code: 'config', message: /"foo:bar\/12" is not an address/ });
  t.throws(() => parseDetachAddress('ip:fd00:zz::1/48'), { code: 'config', message: /is not an address/ });
  t.throws(() => parseDetachAddress('web'), { code: 'config', message: /"web" is not an address/ });
  t.throws(() => parseDetachAddress('10.32.0.0/12'), /network address/);
  for (const word of ['ip:10.32.0.1/12', '10.32.0.1/12', 'fd00:77:1::5/48']) {
    t.notMatch(String((() => { try { parseDetachAddress(word); return ''; } catch (e) { return (e as Error).message; } })()), /IPv6 CIDR/, word);
  }
  t.same(splitAddressesAndContainer(['10.32.0.5', 'ip:10.32.0.6/12', 'c'], 'detach'), { container: 'c', addresses: ['10.32.0.5/32', '10.32.0.6/12'] });
  t.throws(() => splitAddressesAndContainer(['c', '10.32.0.5'], 'detach'), /the container comes last: weave detach c 10\.32\.0\.5 reads "10\.32\.0\.5" as the container/);
  t.same(splitAddressesAndContainer(['ip:10.32.0.9/12', 'web'], 'attach').addresses, ['ip:10.32.0.9/12'], 'attach passes ip: on to IPAM');
});

t.test('a missing argument shows the subcommand usage, naming what is missing', async (t) => {
  const cases: [string[], RegExp, RegExp][] = [
    [['attach'], /missing required argument 'container'/, /^Usage: weave attach \[options\] \[ADDR\.\.\.\] <container>$/m],
    [['detach'], /missing required argument 'container'/, /^Usage: weave detach \[options\] \[ADDR\.\.\.\] <container>$/m],
    [['dns-lookup'], /missing required argument 'name'/, /^Usage: weave dns-lookup \[options\] <name>$/m],
    [['rmpeer'], /missing required argument 'peer'/, /^Usage: weave rmpeer \[options\] <peer\.\.\.>$/m],
    [['status', '--bogus'], /unknown option '--bogus'/, /^Usage: weave status \[options\] \[section\]$/m],
  ];
  for (const [argv, error, usage] of cases) {
    const program = buildProgram();
    let err = '';
    for (const c of [program, ...program.commands]) c.configureOutput({ writeErr: (s) => { err += s; }, writeOut: () => undefined });
    await t.rejects(program.parseAsync(argv, { from: 'user' }), CommanderError, argv.join(' '));
    t.match(err, error, argv.join(' '));
    t.match(err, usage, argv.join(' '));
    t.match(err, new RegExp(`run weave ${argv[0]} --help`), argv.join(' '));
    t.notMatch(err, /run weave --help/, argv.join(' '));
  }
});

t.test('dns-lookup: addresses one a line; an unknown name is "NAME: not found"', async (t) => {
  t.equal(renderLookup({ name: 'web.weave.local', addresses: ['10.32.0.1', '10.32.0.2'] }), '10.32.0.1\n10.32.0.2');
  t.equal(renderLookup({ address: '10.32.0.1', names: ['web.weave.local'] }), 'web.weave.local');
  t.throws(() => renderLookup({ name: 'nope.weave.local', addresses: [] }), { message: 'nope.weave.local: not found' });
  t.throws(() => renderLookup({ address: '10.32.9.9', names: [] }), { message: '10.32.9.9: not found' });
  t.throws(() => renderLookup({ name: 'a\x1b[2Jb', addresses: [] }), { message: 'a\\x1b[2Jb: not found' }, 'no terminal escapes');
});

t.test('overview lines: IPAM range, readiness and share; DNS domain, address and names', async (t) => {
  t.equal(ipamOverviewLine(ipamStatus()), 'ready, range 10.32.0.0/12, 12 of 262144 addresses here in use, 25.0% of the range owned here');
  const waiting = ipamStatus({ state: 'awaiting-consensus', waitingFor: 'awaiting consensus: 1 of 3 peers known, need quorum 2', warnings: ['w'] });
  t.equal(ipamOverviewLine(waiting), 'range 10.32.0.0/12, awaiting consensus: 1 of 3 peers known, need quorum 2; 1 warning (weave status ipam)');
  t.equal(dnsOverviewLine(dnsStatus()), 'weave.local, answering containers on 169.254.7.1, 2 names');
  t.equal(dnsOverviewLine(dnsStatus({ address: null, records: [], warnings: ['a', 'b'] })),
    'weave.local, not reachable from containers, 0 names; 2 warnings (weave status dns)');
});

// A stand-in for the router API: fixed replies per path; a status of 500 answers with an error.
async function fakeApi(t: Test, replies: Record<string, [number, unknown]>): Promise<string> {
  const server = http.createServer((req, res) => {
    const [status, body] = replies[(req.url ?? '').split('?')[0] ?? ''] ?? [404, { error: `no route ${req.url}` }];
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  const sock = tempSocketPath(t);
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return sock;
}

/** Runs the CLI's main() with stdout and stderr captured. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const saved = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  process.stdout.write = ((s: string | Uint8Array) => { out += String(s); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { err += String(s); return true; }) as typeof process.stderr.write;
  try {
    const code = await main(['node', 'weave', ...args]);
    return { code, out, err };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
  }
}

t.test('attach, detach and ps load only the API client', async (t) => {
  // Every module is paid for by every `weave attach` (issue 14): the Docker
  // client, the logger, the router, node:http or even the address parser
  // (the router checks the words) must not come along.
  const root = path.resolve(__dirname, '..', '..');
  // Built-in modules are told by the names asked for: tap's loaders (in every child) have loaded some already.
  const script = `const Module = require('node:module');
    const asked = new Set();
    const original = Module.prototype.require;
    Module.prototype.require = function (id) { asked.add(id); return original.apply(this, arguments); };
    const preloaded = new Set(Object.keys(require.cache));
    require(${JSON.stringify(path.join(root, 'cli', 'container-commands.js'))});
    require(${JSON.stringify(path.join(root, 'cli', 'api-socket.js'))}).apiSocketFor('/tmp/weave-elsewhere');
    console.log(JSON.stringify({ files: Object.keys(require.cache).filter((f) => !preloaded.has(f)), builtins: [...asked].filter((id) => !id.startsWith('.')) }))`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as { files: string[]; builtins: string[] };
  t.same(out.files.map((f) => path.relative(root, f)).sort(), [
    'cli/api-client.js', 'cli/api-socket.js', 'cli/config.js', 'cli/container-commands.js', 'cli/http-reply.js',
    'common/errors.js', 'common/sha256.js', 'router/mesh/errors.js',
  ]);
  t.same(out.builtins.filter((m) => /http|crypto/.test(m)), [], 'neither node:http nor node:crypto is asked for');
});

t.test('attach: a typo in the words is named whether or not the router looks at them', async (t) => {
  const dead = path.join(path.dirname(tempSocketPath(t)), 'no-router.sock');
  const typo = await run(['--api', dead, 'attach', '10.32.0.0/12', 'netns:x']);
  t.equal(typo.code, 1);
  t.match(typo.err, /network address/, 'no router: the CLI checks the words itself');
  t.notMatch(typo.err, /not running/);
  const badRef = await run(['--api', dead, 'attach', '10.32.0.1/12', 'netns:a/b']);
  t.match(badRef.err, /netns:NAME needs a network namespace name/);
  const fine = await run(['--api', dead, 'attach', '10.32.0.1/12', 'netns:x']);
  t.match(fine.err, /weave router is not running \(no socket at /, 'good words: the router is the problem');
  const last = await run(['--api', dead, 'attach', 'netns:x', '10.32.0.1/12']);
  t.match(last.err, /the container comes last/, 'words the wrong way round are refused before anything is sent');
});

t.test('the CLI against a fake API: exit codes and where the words go', async (t) => {
  const api = await fakeApi(t, {
    '/status': [200, sampleStatus()],
    '/ipam/status': [500, { error: 'IPAM exploded' }],
    '/dns': [200, dnsStatus()],
    '/dns/lookup': [200, { name: 'nope.weave.local', addresses: [] }],
    '/ipam/rmpeer': [400, { error: 'peer aa:00:00:00:00:09 is not known here' }],
  });

  const lookup = await run(['--api', api, 'dns-lookup', 'nope']);
  t.equal(lookup.code, 1, 'an unknown name fails');
  t.equal(lookup.out, '');
  t.equal(lookup.err, 'weave: nope.weave.local: not found\n');

  const status = await run(['--api', api, 'status']);
  t.equal(status.code, 0, 'one failed endpoint does not fail the overview');
  t.match(status.out, /^ +Name: aa:00:00:00:00:01\(host1\)$/m, 'the router part prints');
  t.match(status.out, /^ +IPAM: unavailable \(IPAM exploded\)$/m);
  t.match(status.out, /^ +DNS: weave\.local, answering containers on 169\.254\.7\.1, 2 names$/m);
  t.ok(status.out.indexOf('IPAM:') < status.out.indexOf('DNS:') && status.out.indexOf('DNS:') < status.out.indexOf('Health:'),
    'IPAM, then DNS, before the health list');

  const rm = await run(['--api', api, 'rmpeer', 'aa:00:00:00:00:09']);
  t.equal(rm.code, 1, 'rmpeer of an unknown peer fails');
  t.match(rm.err, /not known/);
});
