// Unit tests of host exposure without root: the nft rules it generates, the
// commands expose/hide/restore issue against a scripted host (bridge
// addresses with the kernel's secondary-address behaviour, an nftables
// ruleset with a foreign forward chain, ip_forward), idempotence, rollback
// of a failed expose, the state file, the API body checks, and the CLI's
// argument checks and `weave reset` sequence against a fake API.

import t from 'tap';
import http from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeCommandRunner } from '../../router/host/command-runner';
import type { RunResult } from '../../router/host/command-runner';
import { EXPOSE_TABLE, exposeComment, forwardAcceptRules, natTableCommands } from '../../router/host/expose-rules';
import { EXPOSE_STATE_FILE, loadExposeState } from '../../router/host/expose-state';
import { HostExposer } from '../../router/host/host-exposer';
import type { ExposeAddressSource } from '../../router/host/host-exposer';
import { exposeApi, parseAddressesBody } from '../../router/api/expose-api';
import { RouterError } from '../../router/mesh/errors';
import { ApiClient } from '../../cli/api-client';
import { checkExposeArgs, reset } from '../../cli/expose-commands';
import { tempSocketPath } from './temp-socket';

// ---------------------------------------------------------------------------
// A scripted host

interface FakeRule { family: string; table: string; chain: string; handle: number; comment: string | null; expr: unknown }

class FakeHost {
  /** CIDRs on the bridge, in the order added (the first of a subnet is primary). */
  bridge: string[] = ['169.254.0.1/32'];
  ipForward = '0';
  natTable: unknown[] | null = null;
  rules: FakeRule[] = [];
  nextHandle = 10;
  failOn: RegExp | null = null;
  readonly runner = new FakeCommandRunner((cmd, args) => this.respond(cmd, args));

  respond(cmd: string, args: string[]): Partial<RunResult> | undefined {
    const line = [cmd, ...args].join(' ');
    if (this.failOn !== null && this.failOn.test(line)) return { code: 1, stderr: `scripted failure of ${cmd} ${args[0]}` };
    if (cmd === 'sysctl') {
      if (args[0] === '-n') return { stdout: `${this.ipForward}\n` };
      this.ipForward = (args[2] ?? '').split('=')[1] ?? '?';
      return undefined;
    }
    if (cmd === 'ip' && args[0] === '-j') {
      const addr_info = this.bridge.map((c) => ({ family: 'inet', local: c.split('/')[0], prefixlen: Number(c.split('/')[1]) }));
      return { stdout: JSON.stringify([{ ifname: 'weave', addr_info }]) };
    }
    if (cmd === 'ip' && args[1] === 'add') {
      if (this.bridge.includes(args[2]!)) return { code: 2, stderr: 'RTNETLINK answers: File exists' };
      this.bridge.push(args[2]!);
      return undefined;
    }
    if (cmd === 'ip' && args[1] === 'del') {
      const cidr = args[2]!;
      const i = this.bridge.indexOf(cidr);
      if (i < 0) return { code: 2, stderr: 'RTNETLINK answers: Cannot assign requested address' };
      // The kernel drops a primary address's secondaries with it (no promote_secondaries).
      const primary = this.bridge.find((c) => subnetOf(c) === subnetOf(cidr)) === cidr;
      this.bridge = this.bridge.filter((c) => c !== cidr && !(primary && subnetOf(c) === subnetOf(cidr)));
      return undefined;
    }
    if (cmd === 'nft' && args[1] === 'list') return { stdout: JSON.stringify({ nftables: this.listing() }) };
    if (cmd === 'nft' && args[0] === '-j') {
      for (const c of (JSON.parse(args[1]!) as { nftables: Record<string, Record<string, Record<string, unknown>>>[] }).nftables) this.apply(c);
      return undefined;
    }
    return { code: 127, stderr: `unexpected command ${line}` };
  }

  private apply(c: Record<string, Record<string, Record<string, unknown>>>): void {
    const [verb, body] = Object.entries(c)[0]!;
    if (body['table'] !== undefined) {
      if (verb === 'add') this.natTable ??= [];
      else this.natTable = null;
    } else if (body['chain'] !== undefined) {
      this.natTable!.push({ chain: body['chain'] });
    } else if (body['rule'] !== undefined) {
      const r = body['rule'];
      if (r['table'] === EXPOSE_TABLE) {
        this.natTable!.push({ rule: r });
      } else if (verb === 'insert') {
        this.rules.unshift({ family: String(r['family']), table: String(r['table']), chain: String(r['chain']), handle: this.nextHandle++, comment: (r['comment'] as string) ?? null, expr: r['expr'] });
      } else if (verb === 'delete') {
        this.rules = this.rules.filter((x) => x.handle !== r['handle']);
      }
    }
  }

  private listing(): unknown[] {
    return [
      { chain: { family: 'inet', table: 'filter', name: 'forward', hook: 'forward' } },
      { chain: { family: 'bridge', table: 'br', name: 'forward', hook: 'forward' } },
      { chain: { family: 'inet', table: 'filter', name: 'input', hook: 'input' } },
      ...this.rules.map((r) => ({ rule: { family: r.family, table: r.table, chain: r.chain, handle: r.handle, ...(r.comment !== null ? { comment: r.comment } : {}) } })),
    ];
  }

  /** The masquerade rules' subnets, from the NAT table. */
  natSubnets(): string[] {
    return (this.natTable ?? []).flatMap((x) => {
      const r = (x as { rule?: { expr: { match?: { op: string; left: { payload?: { field: string } }; right: { prefix: { addr: string; len: number } } } }[] } }).rule;
      const m = r?.expr.find((e) => e.match?.op === '==' && e.match.left.payload?.field === 'saddr')?.match;
      return m ? [`${m.right.prefix.addr}/${m.right.prefix.len}`] : [];
    });
  }
}

function subnetOf(cidr: string): string {
  const [ip, len] = cidr.split('/') as [string, string];
  const n = ip.split('.').reduce((a, p) => a * 256 + Number(p), 0);
  const size = 2 ** (32 - Number(len));
  return `${n - (n % size)}/${len}`;
}

class FakeSource implements ExposeAddressSource {
  given: string[] = [];
  obtained: string[][] = [];
  next = '10.32.0.1/12';
  async obtain(requests: readonly string[]): Promise<string[]> {
    this.obtained.push([...requests]);
    return requests.length === 0 ? [this.next] : requests.map((r) => (r.startsWith('ip:') ? r.slice(3) : r));
  }
  giveBack(cidrs: readonly string[]): void { this.given.push(...cidrs); }
}

function setup(t: Tap): { host: FakeHost; source: FakeSource; exposer: HostExposer; datadir: string; make(): HostExposer } {
  const datadir = mkdtempSync(join(tmpdir(), 'weave-expose-'));
  t.teardown(() => rmSync(datadir, { recursive: true, force: true }));
  const host = new FakeHost();
  const source = new FakeSource();
  const make = (): HostExposer => new HostExposer({ runner: host.runner, addresses: source }, { bridge: 'weave', datadir });
  return { host, source, exposer: make(), datadir, make };
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

// ---------------------------------------------------------------------------
// Rules

t.test('the NAT table: replaced whole, one masquerade per subnet, deleted when empty', async (t) => {
  const table = { family: 'ip', name: EXPOSE_TABLE };
  t.same(natTableCommands('weave', []), [{ add: { table } }, { delete: { table } }], 'nothing exposed: the table goes, whether or not it was there');
  const cmds = natTableCommands('weave', ['10.32.0.0/12']);
  t.same(cmds.slice(0, 3), [{ add: { table } }, { delete: { table } }, { add: { table } }]);
  t.same(cmds[3], { add: { chain: { family: 'ip', table: EXPOSE_TABLE, name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } });
  t.same(cmds[4], {
    add: {
      rule: {
        family: 'ip', table: EXPOSE_TABLE, chain: 'postrouting', comment: 'weave-expose:weave',
        expr: [
          { match: { op: '!=', left: { meta: { key: 'oifname' } }, right: 'weave' } },
          { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '10.32.0.0', len: 12 } } } },
          { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.32.0.0', len: 12 } } } },
          { masquerade: null },
        ],
      },
    },
  }, 'from the subnet, to outside it, not onto the bridge: masquerade');
  t.equal(natTableCommands('weave', ['10.32.0.0/12', '192.168.5.0/24']).length, 6, 'one rule per subnet');
});

t.test('forward accepts: out of the bridge, and replies back in', async (t) => {
  const [out, back] = forwardAcceptRules({ family: 'inet', table: 'filter', chain: 'forward' }, 'weave') as Record<string, unknown>[];
  t.same(out, {
    family: 'inet', table: 'filter', chain: 'forward', comment: exposeComment('weave'),
    expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'weave' } }, { match: { op: '!=', left: { meta: { key: 'oifname' } }, right: 'weave' } }, { accept: null }],
  });
  t.same(back, {
    family: 'inet', table: 'filter', chain: 'forward', comment: exposeComment('weave'),
    expr: [
      { match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'weave' } },
      { match: { op: '!=', left: { meta: { key: 'iifname' } }, right: 'weave' } },
      { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } },
      { accept: null },
    ],
  });
});

// ---------------------------------------------------------------------------
// Expose and hide

t.test('expose: forwarding on, address on the bridge, NAT, forward accepts, state file; again changes nothing', async (t) => {
  const { host, source, exposer, datadir } = setup(t);
  t.same(await exposer.expose([]), ['10.32.0.1/12']);
  t.same(source.obtained, [[]], 'the address came from the source');
  t.equal(host.ipForward, '1');
  t.same(host.bridge, ['169.254.0.1/32', '10.32.0.1/12']);
  t.same(host.natSubnets(), ['10.32.0.0/12']);
  t.same(host.rules.map((r) => `${r.family} ${r.table} ${r.chain} ${r.comment}`), ['inet filter forward weave-expose:weave', 'inet filter forward weave-expose:weave'],
    'both accepts in the inet forward chain, none in the bridge family or in input chains');
  t.same(JSON.parse(readFileSync(join(datadir, EXPOSE_STATE_FILE), 'utf8')), { version: 1, addresses: ['10.32.0.1/12'], ipForwardEnabled: true });
  t.same(exposer.exposed(), ['10.32.0.1/12']);

  const snapshot = JSON.stringify([host.bridge, host.natTable, host.rules, host.ipForward]);
  t.same(await exposer.expose([]), ['10.32.0.1/12'], 'exposing again returns the same address');
  t.equal(JSON.stringify([host.bridge, host.natTable, host.rules, host.ipForward]), snapshot, 'and the host is the same');
  t.notOk(host.runner.lines().some((l) => /ip addr add .* dev weave$/.test(l) && l !== 'ip addr add 10.32.0.1/12 dev weave'), 'no other address was added');
});

t.test('hide: removes exactly what expose added, gives the address back, forgets the state', async (t) => {
  const { host, source, exposer, datadir } = setup(t);
  const before = { bridge: [...host.bridge], rules: [...host.rules] };
  host.rules.push({ family: 'inet', table: 'filter', chain: 'forward', handle: 1, comment: 'weave:weave', expr: [] });
  await exposer.expose([]);
  t.same(await exposer.hide(), ['10.32.0.1/12']);
  t.same(host.bridge, before.bridge, 'the bridge keeps only its other addresses');
  t.equal(host.natTable, null, 'our table is gone');
  t.same(host.rules.map((r) => r.comment), ['weave:weave'], 'only our forward accepts were deleted');
  t.equal(host.ipForward, '0', 'ip_forward is off again: we turned it on');
  t.same(source.given, ['10.32.0.1/12']);
  t.notOk(existsSync(join(datadir, EXPOSE_STATE_FILE)), 'no state file');
  t.same(await exposer.hide(), [], 'hiding again is fine');
});

t.test('ip_forward that was already on stays on', async (t) => {
  const { host, exposer } = setup(t);
  host.ipForward = '1';
  await exposer.expose([]);
  await exposer.hide();
  t.equal(host.ipForward, '1');
  t.notOk(host.runner.lines().some((l) => l.includes('ip_forward=')), 'never written');
});

t.test('two addresses in one subnet: one NAT rule; hiding the primary keeps the other on the bridge', async (t) => {
  const { host, exposer } = setup(t);
  await exposer.expose(['10.32.0.1/12']);
  await exposer.expose(['10.32.0.9/12', '192.168.7.1/24']);
  t.same(host.natSubnets(), ['10.32.0.0/12', '192.168.7.0/24']);
  t.same(await exposer.hide(['10.32.0.1']), ['10.32.0.1/12'], 'a plain IP names an exposed address');
  t.same(host.bridge, ['169.254.0.1/32', '192.168.7.1/24', '10.32.0.9/12'], 'the secondary the kernel dropped with the primary is back');
  t.same(host.natSubnets(), ['10.32.0.0/12', '192.168.7.0/24']);
  t.equal(host.ipForward, '1');
  await t.rejects(exposer.hide(['10.99.0.1/12']), { code: 'config', message: /"10\.99\.0\.1\/12" is not exposed \(exposed: 10\.32\.0\.9\/12 192\.168\.7\.1\/24\)/ });
  t.same(exposer.exposed(), ['10.32.0.9/12', '192.168.7.1/24'], 'a refused hide changes nothing');
});

t.test('the same IP with another prefix is refused, and not given back', async (t) => {
  const { source, exposer } = setup(t);
  await exposer.expose(['10.32.0.1/12']);
  await t.rejects(exposer.expose(['10.32.0.1/24']), { code: 'config', message: /10\.32\.0\.1 is already exposed as 10\.32\.0\.1\/12; hide it first/ });
  t.same(source.given, [], 'the allocator still holds 10.32.0.1 for the host');
});

t.test('a failed expose leaves the host as it was and gives the new address back', async (t) => {
  const { host, source, exposer, datadir } = setup(t);
  await exposer.expose(['10.32.0.1/12']);
  const state = readFileSync(join(datadir, EXPOSE_STATE_FILE), 'utf8');
  host.failOn = /^nft -j \{"nftables":\[\{"add":\{"table"/;
  await t.rejects(exposer.expose(['10.32.0.2/12']), { code: 'io', message: /nft -j .* failed/ });
  host.failOn = null;
  t.same(host.bridge, ['169.254.0.1/32', '10.32.0.1/12'], 'the new address left the bridge again');
  t.same(source.given, ['10.32.0.2/12']);
  t.same(exposer.exposed(), ['10.32.0.1/12']);
  t.equal(readFileSync(join(datadir, EXPOSE_STATE_FILE), 'utf8'), state, 'the state file is as before');
});

t.test('exposing again repairs what a firewall reload or a bridge flush removed, never duplicating rules', async (t) => {
  const { host, exposer } = setup(t);
  await exposer.expose([]);
  const whole = JSON.stringify([host.bridge, host.natTable]);
  const expr = host.rules.map((r) => r.expr);
  host.rules = host.rules.slice(1);
  host.natTable = null;
  host.bridge = host.bridge.slice(0, 1);
  await exposer.expose([]);
  t.equal(JSON.stringify([host.bridge, host.natTable]), whole, 'address and NAT table are back');
  t.same(host.rules.map((r) => r.expr), expr, 'both accepts, once each');
});

t.test('recheck repairs the same on its own, and does nothing when nothing is exposed', async (t) => {
  const { host, exposer } = setup(t);
  await exposer.recheck();
  t.equal(host.natTable, null, 'nothing exposed: nothing made');
  t.same(host.rules, []);
  await exposer.expose([]);
  const whole = JSON.stringify([host.bridge, host.natTable]);
  const expr = host.rules.map((r) => r.expr);
  host.rules = [];
  host.natTable = null;
  await exposer.recheck();
  t.equal(JSON.stringify([host.bridge, host.natTable]), whole, 'NAT table back');
  t.same(host.rules.map((r) => r.expr), expr, 'forward accepts back, once each');
  await exposer.recheck();
  t.same(host.rules.map((r) => r.expr), expr, 'a second recheck changes nothing');
});

t.test('restore re-applies the state file after a restart and has the source record the addresses', async (t) => {
  const { host, source, exposer, make } = setup(t);
  await exposer.expose(['10.32.0.1/12']);
  // The firewall was reloaded and the bridge recreated while the daemon was down.
  host.natTable = null;
  host.rules = [];
  host.bridge = [];
  const again = make();
  t.same(await again.restore(), ['10.32.0.1/12']);
  t.same(host.bridge, ['10.32.0.1/12']);
  t.same(host.natSubnets(), ['10.32.0.0/12']);
  t.equal(host.rules.length, 2);
  t.same(source.obtained.at(-1), ['10.32.0.1/12'], 'claimed again');
  await again.hide();
  t.equal(host.ipForward, '0', 'the restarted daemon still knew it had turned forwarding on');
});

t.test('restore: nothing recorded does nothing; a damaged file is a clear error', async (t) => {
  const { host, datadir, make } = setup(t);
  t.same(await make().restore(), []);
  t.same(host.runner.lines(), []);
  writeFileSync(join(datadir, EXPOSE_STATE_FILE), '{"version":1,"addresses":["10.32.0.0.1/12"]}');
  await t.rejects(make().restore(), { code: 'config', message: /IPv4 CIDR/ });
  writeFileSync(join(datadir, EXPOSE_STATE_FILE), '{"version":7,"addresses":[]}');
  t.throws(() => loadExposeState(datadir), { code: 'decode', message: /expected version 1, got 7/ });
  writeFileSync(join(datadir, EXPOSE_STATE_FILE), 'nope');
  t.throws(() => loadExposeState(datadir), { code: 'decode', message: /is not JSON/ });
});

t.test('operations run one at a time', async (t) => {
  const { host, exposer } = setup(t);
  const [a, b] = await Promise.all([exposer.expose(['10.32.0.1/12']), exposer.expose(['10.32.0.2/12'])]);
  t.same([a, b], [['10.32.0.1/12'], ['10.32.0.2/12']]);
  t.same(host.bridge.slice(1), ['10.32.0.1/12', '10.32.0.2/12']);
  t.same(exposer.exposed(), ['10.32.0.1/12', '10.32.0.2/12']);
});

// ---------------------------------------------------------------------------
// API and CLI

t.test('API bodies', async (t) => {
  t.same(parseAddressesBody(undefined, '/expose'), []);
  t.same(parseAddressesBody({ addresses: [' net:default '] }, '/expose'), ['net:default']);
  t.throws(() => parseAddressesBody([], '/expose'), { code: 'config', message: /expects a JSON object/ });
  t.throws(() => parseAddressesBody({ addresses: '10.32.0.1/12' }, '/expose'), { code: 'config', message: /must be an array/ });
  t.throws(() => parseAddressesBody({ addresses: [1] }, '/hide'), { code: 'config', message: /\/hide: each address/ });
  t.throws(() => parseAddressesBody({ addresses: new Array(65).fill('10.32.0.1/12') }, '/expose'), { code: 'config', message: /over the limit of 64/ });

  const { exposer } = setup(t);
  const endpoints = exposeApi(exposer);
  const routes = new Map(endpoints.routes.map((r) => [`${r.method} ${r.path}`, r.handler as (req: { body: unknown }) => unknown]));
  const sections = new Map(endpoints.reportSections.map((s) => [s.name, s.build]));
  t.same(await routes.get('POST /expose')!({ body: { addresses: ['10.32.0.7/12'] } }), { addresses: ['10.32.0.7/12'] });
  t.same(await routes.get('GET /expose')!({ body: undefined }), { addresses: ['10.32.0.7/12'] });
  t.same(sections.get('expose')!(), { addresses: ['10.32.0.7/12'] });
  t.same(await routes.get('POST /hide')!({ body: undefined }), { removed: ['10.32.0.7/12'] });
});

t.test('CLI argument checks', async (t) => {
  t.doesNotThrow(() => checkExposeArgs(['10.32.0.1/12', 'ip:10.32.0.2/12', 'net:10.32.1.0/24', 'net:default'], 'expose'));
  t.doesNotThrow(() => checkExposeArgs(['10.32.0.1', '10.32.0.1/12'], 'hide'));
  t.throws(() => checkExposeArgs(['10.32.0.1'], 'expose'), RouterError, 'expose needs a prefix length');
  t.throws(() => checkExposeArgs(['net:default'], 'hide'), { message: /weave hide takes the addresses weave expose printed/ });
  t.throws(() => checkExposeArgs(['nonsense'], 'hide'), { code: 'config' });
});

/** A stand-in router API that records calls and goes away on /stop. */
async function fakeApi(t: Tap, replies: Record<string, unknown>): Promise<{ client: ApiClient; calls: string[] }> {
  const calls: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const key = `${req.method} ${req.url}`;
      if (key !== 'GET /status') calls.push(body !== '' ? `${key} ${body}` : key);
      const reply = replies[key] ?? {};
      const status = reply instanceof Error ? 500 : 200;
      res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end(JSON.stringify(reply instanceof Error ? { error: reply.message } : reply));
      if (key === 'POST /stop') { server.close(); server.closeAllConnections(); }
    });
  });
  const sock = tempSocketPath(t);
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => { server.close(); server.closeAllConnections(); });
  return { client: new ApiClient(sock), calls };
}

function stateDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'weave-reset-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['ipam.json', 'peers.json', 'peer-name', 'peer-key', 'peer-pins.json', 'weave.log', 'ipam.json.corrupt-20261202T030405Z', 'containers.json']) writeFileSync(join(dir, f), '{}');
  return dir;
}

t.test('weave reset: hide, hand over, stop, remove the data directory', async (t) => {
  const { client, calls } = await fakeApi(t, {
    'GET /ps': { containers: [] },
    'POST /hide': { removed: [] },
    'POST /ipam/reset': { handedTo: 'aa:bb:cc:dd:ee:ff', addresses: 512 },
    'POST /reset/host': { done: ['docker-plugin'], failed: [], bridgeOnStop: true },
  });
  const dir = stateDir(t);
  await reset(client, { datadir: dir, force: false });
  t.same(calls, ['GET /ps', 'POST /hide {}', 'POST /ipam/reset', 'POST /reset/host {}', 'POST /stop']);
  t.notOk(existsSync(dir), 'the data directory is gone: state, identity, log, set-aside copies');
});

t.test('weave reset keeps a data directory that holds files weave did not make', async (t) => {
  const { client } = await fakeApi(t, {
    'GET /ps': { containers: [] },
    'POST /hide': { removed: [] },
    'POST /ipam/reset': { handedTo: 'aa:bb:cc:dd:ee:ff', addresses: 512 },
    'POST /reset/host': { done: [], failed: [], bridgeOnStop: true },
  });
  const dir = stateDir(t);
  writeFileSync(join(dir, 'notes.txt'), 'mine');
  await reset(client, { datadir: dir, force: false });
  t.same(readdirSync(dir), ['notes.txt'], 'only the user\'s own file is left');
});

t.test('weave reset refuses while containers are attached; --force detaches them', async (t) => {
  const containers = [{ id: 'netns:c1', name: 'c1' }, { id: 'abc123', name: 'web' }, { id: 'def456', name: 'viaplugin', joined: 'plugin' }];
  const { client, calls } = await fakeApi(t, { 'GET /ps': { containers }, 'POST /hide': { removed: ['10.32.0.1/12'] }, 'POST /ipam/reset': { handedTo: null, addresses: 0 }, 'POST /reset/host': { done: ['docker-plugin'], failed: [], bridgeOnStop: true } });
  const dir = stateDir(t);
  await t.rejects(reset(client, { datadir: dir, force: false }), { code: 'config', message: /^3 containers are still attached \(c1, web, viaplugin\); detach them first/ });
  t.same(calls, ['GET /ps'], 'nothing else was asked');
  t.ok(existsSync(join(dir, 'ipam.json')), 'nothing removed');
  await reset(client, { datadir: dir, force: true });
  t.same(calls.slice(1), ['GET /ps', 'POST /detach {"container":"netns:c1"}', 'POST /detach {"container":"abc123"}', 'POST /hide {}', 'POST /ipam/reset', 'POST /reset/host {}', 'POST /stop'],
    'the plugin\'s endpoint is left to its reset hook');
});

t.test('weave reset: no peer to hand over to keeps the router running unless --force', async (t) => {
  const { client, calls } = await fakeApi(t, { 'GET /ps': { containers: [] }, 'POST /hide': { removed: [] }, 'POST /ipam/reset': new Error('no reachable peer to hand our address space to') });
  const dir = stateDir(t);
  await t.rejects(reset(client, { datadir: dir, force: false }), { message: /cannot hand our address space to another peer: no reachable peer .*the router keeps running/ });
  t.notOk(calls.includes('POST /stop'));
  t.ok(existsSync(join(dir, 'ipam.json')));
});

t.test('weave reset with no router: refused, or with --force only the files go', async (t) => {
  const client = new ApiClient(tempSocketPath(t));
  const dir = stateDir(t);
  await t.rejects(reset(client, { datadir: dir, force: false }), { code: 'config', message: /weave router is not running .*cannot be handed to another peer/ });
  t.ok(existsSync(join(dir, 'ipam.json')));
  let bridgeRemoved = false;
  await reset(client, { datadir: dir, force: true, removeBridge: async () => { bridgeRemoved = true; } });
  t.notOk(existsSync(dir), 'the data directory is gone');
  t.ok(bridgeRemoved, 'the CLI removes the bridge itself when no router can');
});
