// Unit tests of port security without root: the nft table built from the
// attachments (each port's own MAC, addresses and neighbour-advert targets;
// malformed or ambiguous records left without a chain, so their frames are
// dropped; ports that are not containers left alone), the change scripts
// that touch only the ports that differ, and the PortGuard that applies
// them: the whole table at start, changes after, a failed change healed by a
// rebuild, failures reported in status and never thrown, syncs asked for
// meanwhile folded into one, the periodic check that puts back a table a
// firewall reload removed, and libnftables in-process with the nft command
// as the fallback. test/e2e/port-security.test.ts sends spoofed frames for real.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { FakeCommandRunner } from '../../router/host/command-runner';
import type { RunResult } from '../../router/host/command-runner';
import type { GuardedPort } from '../../router/host/port-security-rules';
import {
  PORT_SECURITY_COUNTER, PORT_SECURITY_MAP, PORT_SECURITY_TABLE, changeScript, planPorts, portChainName, tableScript,
} from '../../router/host/port-security-rules';
import { NFT_UNLOAD_AFTER_MS, PORT_SECURITY_RECHECK_MS, PortGuard, nftApplier, removePortSecurity } from '../../router/host/port-security';

type Op = Record<string, Record<string, Record<string, unknown>>>;

const A: GuardedPort = { hostIfname: 'vethwepl100', mac: '02:AA:00:00:00:01', addresses: ['10.32.0.1/12', 'fd00:1::1/64'] };
const B: GuardedPort = { hostIfname: 'vethwens0123abc', mac: '02:bb:00:00:00:02', addresses: ['10.32.0.2/12'] };

function ops(script: string): Op[] {
  return (JSON.parse(script) as { nftables: Op[] }).nftables;
}

/** The rules' expressions of one chain, as JSON text each (easy to search). */
function rulesOf(script: string, chain: string): string[] {
  return ops(script).filter((o) => o['add']?.['rule']?.['chain'] === chain).map((o) => JSON.stringify(o['add']!['rule']!['expr']));
}

/** The map elements a script adds, as JSON text each. */
function elementsAdded(script: string): string[] {
  return ops(script).filter((o) => o['add']?.['element'] !== undefined).map((o) => JSON.stringify(o['add']!['element']!['elem']));
}

const plans = (...ports: GuardedPort[]) => planPorts(ports).plans;

t.test('each port may speak only for its own MAC and addresses', async (t) => {
  const script = tableScript(plans(A, B));
  t.same(ops(script).slice(0, 3).map((o) => Object.keys(o)[0]), ['add', 'delete', 'add'], 'replaces any table of that name in the same transaction');
  const a = rulesOf(script, portChainName('vethwepl100'));
  t.ok(a.some((r) => r.includes('"field":"saddr"') && r.includes('"ether"') && r.includes('02:aa:00:00:00:01')), 'its MAC, lower case');
  t.ok(a.some((r) => r.includes('"ip","field":"saddr"') && r.includes('{"set":["10.32.0.1"]}')), 'IPv4 source: its address without the prefix');
  t.ok(a.some((r) => r.includes('saddr ip') && r.includes('"0.0.0.0","10.32.0.1"')), 'ARP sender: its address, or 0.0.0.0 for probes');
  t.ok(a.some((r) => r.includes('saddr ether') && r.includes('02:aa:00:00:00:01')), 'ARP sender MAC: its MAC');
  t.ok(a.some((r) => r.includes('"ip6","field":"saddr"') && r.includes('"::"') && r.includes('fe80::') && r.includes('fd00:1::1')),
    'IPv6 source: its address, link-local or ::');
  t.ok(a.some((r) => r.includes('nd-neighbor-advert') && r.includes('0xfd000001000000000000000000000001')), 'adverts only for its own targets');
  t.ok(a.some((r) => r.includes('nd-router-advert') && r.includes('nd-redirect') && r.includes('"drop"')), 'never router adverts or redirects');
  t.ok(a.some((r) => r.includes('"ether","field":"type"') && r.includes('["ip","arp","ip6"]')), 'no other ethertype (no VLAN tags)');
  t.equal(a[a.length - 1], '[{"accept":null}]', 'what passes every check is accepted');
  for (const r of a.slice(0, -1)) t.ok(r.endsWith(`{"counter":"${PORT_SECURITY_COUNTER}"},{"drop":null}]`), `every check counts its drops: ${r.slice(0, 60)}`);
  const b = rulesOf(script, portChainName('vethwens0123abc'));
  t.notOk(b.some((r) => r.includes('fd00')), 'no IPv6 address: only link-local and :: sources');
  t.ok(b.some((r) => r.includes('nd-neighbor-advert') && !r.includes('"len":128') && r.includes('1018')), 'and adverts only for link-local targets');
  const base = rulesOf(script, 'prerouting');
  t.equal(base[0], `[{"vmap":{"key":{"meta":{"key":"iifname"}},"data":"@${PORT_SECURITY_MAP}"}}]`, 'each port looks up its verdict in the map');
  t.same(base.slice(1).map((r) => /"right":"(vethwe[a-z]+)\*"/.exec(r)?.[1]), ['vethwepl', 'vethwens', 'vethwec', 'vethwed'],
    "a container port without an element is dropped; others (the router's TAP vethwe-tap, the fast path's vethwe-hb) pass untouched");
  for (const r of base.slice(1)) t.ok(r.endsWith(`{"counter":"${PORT_SECURITY_COUNTER}"},{"drop":null}]`));
  t.notOk(script.includes('"vethwepl*",'), 'no set of wildcards: nft 1.0.6 merges adjacent ones into a range its JSON listing aborts on');
  t.same(elementsAdded(script), [
    '[["vethwepl100",{"jump":{"target":"port-vethwepl100"}}]]', '[["vethwens0123abc",{"jump":{"target":"port-vethwens0123abc"}}]]',
  ], 'each port jumps to its own chain');
  t.ok(ops(script).some((o) => o['add']?.['chain']?.['hook'] === 'prerouting' && o['add']['chain']['prio'] === -300), 'hooked early at bridge prerouting');
  t.notOk(tableScript(new Map()).includes('"element"'), 'no ports: an empty map, and every container port is dropped');
});

t.test('no attachment without addresses of a family may send that family', async (t) => {
  const script = tableScript(plans({ hostIfname: 'vethwepl7', mac: '02:00:00:00:00:07', addresses: ['fd00::7'] }));
  t.ok(rulesOf(script, 'port-vethwepl7').some((r) => r === `[{"match":{"op":"==","left":{"payload":{"protocol":"ether","field":"type"}},"right":"ip"}},{"counter":"${PORT_SECURITY_COUNTER}"},{"drop":null}]`),
    'no IPv4 address: no IPv4 at all');
});

t.test('port security off for one port: accepted whatever it sends, no chain', async (t) => {
  const script = tableScript(plans(A, { ...B, portSecurity: false }));
  t.notOk(script.includes(portChainName(B.hostIfname)), 'no chain');
  t.ok(elementsAdded(script).includes(`[["${B.hostIfname}",{"accept":null}]]`), 'its map element accepts');
  t.same(planPorts([{ ...B, portSecurity: false, mac: 'bad' }]).refused.length, 1, 'its record must still be sound');
});

t.test('malformed or ambiguous records get no chain, and say why; the others keep theirs', async (t) => {
  const cases: [GuardedPort, RegExp][] = [
    [{ ...B, hostIfname: 'vethwepl9', mac: '02:bb:00:00:00' }, /not a unicast MAC/],
    [{ ...B, hostIfname: 'vethwepl9', mac: '03:bb:00:00:00:02' }, /not a unicast MAC/],
    [{ ...B, hostIfname: 'vethwepl9', addresses: ['10.32.0.300/12'] }, /10\.32\.0\.300/],
    [{ ...B, hostIfname: 'eth0' }, /not a container port of ours/],
    [{ ...B, hostIfname: 'vethwe-hb' }, /not a container port of ours/],
    [{ ...B, hostIfname: 'vethwe-tap' }, /not a container port of ours/],
    [{ ...B, hostIfname: 'vethwe;drop' }, /port must be/],
  ];
  for (const [bad, why] of cases) {
    const planned = planPorts([A, bad]);
    t.same([...planned.plans.keys()], ['vethwepl100'], `${JSON.stringify(bad)}: only the good port`);
    t.match(planned.refused[0]?.reason, why);
  }
  const twice = planPorts([A, B, { ...A, mac: '02:cc:00:00:00:03' }]);
  t.same(twice.refused.map((r) => r.hostIfname), ['vethwepl100'], 'a port two records name is refused');
  t.same([...twice.plans.keys()], ['vethwens0123abc'], 'for both records: neither is believed');
});

t.test('a change touches only the ports that differ', async (t) => {
  const before = plans(A);
  t.equal(changeScript(before, plans(A)), null, 'nothing differs: nothing to do');
  const added = changeScript(before, plans(A, B))!;
  t.notOk(added.includes('port-vethwepl100'), 'the neighbour is untouched');
  t.same(ops(added).map((o) => `${Object.keys(o)[0]} ${Object.keys(Object.values(o)[0]!)[0]}`).slice(0, 1), ['add chain']);
  t.same(elementsAdded(added), ['[["vethwens0123abc",{"jump":{"target":"port-vethwens0123abc"}}]]']);
  const removed = changeScript(plans(A, B), before)!;
  t.same(ops(removed).map((o) => `${Object.keys(o)[0]} ${Object.keys(Object.values(o)[0]!)[0]}`), ['delete element', 'flush chain', 'delete chain'],
    'its element first (it references the chain), then the chain');
  const readdressed = changeScript(before, plans({ ...A, addresses: [...A.addresses, '10.32.0.9/12'] }))!;
  t.equal(Object.keys(ops(readdressed)[0]!)[0], 'flush', 'new addresses: the same chain flushed and filled again');
  t.same(elementsAdded(readdressed), [], 'its element untouched');
  t.match(rulesOf(readdressed, 'port-vethwepl100').join(), /"10\.32\.0\.1","10\.32\.0\.9"/);
  const opened = changeScript(before, plans({ ...A, portSecurity: false }))!;
  t.same(elementsAdded(opened), ['[["vethwepl100",{"accept":null}]]'], 'turned off: out and in again, now accepted');
  t.ok(opened.includes('"delete":{"chain"'), 'its chain goes');
});

function guardRig(nftResult: (script: string) => string | null = () => null, present = () => true) {
  const runner = new FakeCommandRunner((cmd, args): Partial<RunResult> | undefined =>
    (cmd === 'nft' && args[0] === 'list' && !present() ? { code: 1, stderr: 'Error: No such file or directory' } : undefined));
  const clock = new ManualClock();
  const scripts: string[] = [];
  let ports: GuardedPort[] = [A];
  const guard = new PortGuard({ runner, clock, ports: () => ports, nft: async (s) => { scripts.push(s); return nftResult(s); } });
  return { runner, clock, guard, scripts, setPorts: (p: GuardedPort[]) => { ports = p; } };
}

const isWhole = (script: string): boolean => script.includes('"delete":{"table"');

t.test('PortGuard: the whole table at start, then only changes; none when nothing changed', async (t) => {
  const r = guardRig();
  await r.guard.start();
  t.same(r.scripts.map(isWhole), [true]);
  t.same(r.guard.status(), { ports: 1, unguarded: 0, problem: null });
  r.setPorts([A, { ...B, portSecurity: false }]);
  await r.guard.sync();
  t.same(r.scripts.map(isWhole), [true, false], 'an attach is a change');
  t.same(r.guard.status(), { ports: 1, unguarded: 1, problem: null });
  await r.guard.sync();
  t.equal(r.scripts.length, 2, 'nothing changed: nft not called');
  r.guard.close();
});

t.test('PortGuard: syncs asked for meanwhile are folded into one, with the latest ports', async (t) => {
  const r = guardRig();
  await r.guard.sync();
  r.setPorts([A, B]);
  await Promise.all([r.guard.sync(), r.guard.sync(), r.guard.sync()]);
  t.equal(r.scripts.length, 2, 'one running, then one more for the two asked for meanwhile (which had nothing left to do)');
  t.ok(r.scripts[1]!.includes('port-vethwens0123abc'));
});

t.test('PortGuard: a failed change is healed by a rebuild; a failed rebuild is reported, never thrown, and retried whole', async (t) => {
  let failChanges = true;
  let failAll = false;
  const r = guardRig((s) => (failAll || (failChanges && !isWhole(s)) ? 'Error: Could not process rule: No such file or directory' : null));
  await r.guard.sync();
  r.setPorts([A, B]);
  await r.guard.sync();
  t.same(r.scripts.map(isWhole), [true, false, true], 'the change failed: the table rebuilt from the attachments');
  t.same(r.guard.status(), { ports: 2, unguarded: 0, problem: null });
  failAll = true;
  r.setPorts([A]);
  await r.guard.sync();
  t.match(r.guard.status().problem, /port security not applied.*No such file or directory/);
  failAll = false;
  failChanges = false;
  await r.guard.sync();
  t.ok(isWhole(r.scripts.at(-1)!), 'after a failure the kernel state is unknown: the next sync rebuilds whole');
  t.same(r.guard.status(), { ports: 1, unguarded: 0, problem: null });
  r.setPorts([A, { ...B, mac: 'nonsense' }]);
  await r.guard.sync();
  t.match(r.guard.status().problem, /vethwens0123abc \(not a unicast MAC/, 'a refused port is a problem too');
  const throwing = new PortGuard({ runner: new FakeCommandRunner(), clock: new ManualClock(), nft: async () => null, ports: () => { throw new Error('record unreadable'); } });
  await throwing.sync();
  t.match(throwing.status().problem, /cannot list the container ports: record unreadable/);
});

t.test('PortGuard: a table a firewall reload removed is put back whole at the next check; one still there is left alone', async (t) => {
  let present = true;
  const r = guardRig(() => null, () => present);
  await r.guard.start();
  r.clock.advance(PORT_SECURITY_RECHECK_MS);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(r.scripts.length, 1, 'still there: not rebuilt (its counter keeps counting)');
  t.ok(r.runner.commands.some((c) => c.args.join(' ') === `list table bridge ${PORT_SECURITY_TABLE}`));
  present = false;
  r.clock.advance(PORT_SECURITY_RECHECK_MS);
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  t.same(r.scripts.map(isWhole), [true, true], 'gone: rebuilt whole');
  r.guard.close();
  const before = r.runner.commands.length;
  r.clock.advance(PORT_SECURITY_RECHECK_MS * 3);
  t.equal(r.runner.commands.length, before, 'closed: no more checks');
});

t.test('nftApplier: libnftables in-process and unloaded once idle, else the nft command', async (t) => {
  const runner = new FakeCommandRunner((_cmd, args) => (args[1] === 'bad' ? { code: 1, stderr: 'Error: syntax error\n' } : undefined));
  const clock = new ManualClock();
  const seen: string[] = [];
  let unloads = 0;
  const fake = { nftRun: (s: string) => { seen.push(s); return s === 'bad' ? 'Error: refused' : null; }, nftUnload: () => { unloads++; return true; } };
  const inProcess = nftApplier(runner, clock, undefined, () => fake);
  t.equal(await inProcess('good'), null);
  clock.advance(NFT_UNLOAD_AFTER_MS - 1);
  t.equal(await inProcess('bad'), 'Error: refused');
  t.same([seen, runner.commands.length], [['good', 'bad'], 0], 'no process');
  clock.advance(NFT_UNLOAD_AFTER_MS - 1);
  t.equal(unloads, 0, 'kept loaded while transactions keep coming');
  clock.advance(1);
  t.equal(unloads, 1, 'unloaded once they stop');
  t.equal(await inProcess('good'), null, 'and used again after');
  const noAddon = nftApplier(runner, clock, undefined, () => { throw new Error('the native addon is not built'); });
  t.equal(await noAddon('good'), null);
  t.equal(await noAddon('bad'), 'Error: syntax error');
  t.same(runner.commands.map((c) => c.args), [['-j', 'good'], ['-j', 'bad']], 'the nft command, the script as one argument');
  const noLibrary = nftApplier(runner, clock, undefined, () => ({ ...fake, nftRun: () => { throw new Error('libnftables.so.1: cannot open shared object file'); } }));
  t.equal(await noLibrary('good'), null, 'the library missing: the nft command too');
  t.equal(runner.commands.length, 3);
  const noNft = nftApplier({ run: () => Promise.reject(new Error('spawn nft ENOENT')) }, clock, undefined, () => { throw new Error('no addon'); });
  t.match(await noNft('good'), /ENOENT/, 'neither: an error, not a throw');
});

t.test('removePortSecurity deletes only our table and never throws', async (t) => {
  const runner = new FakeCommandRunner(() => ({ code: 1, stderr: 'Error: No such file or directory' }));
  await removePortSecurity(runner);
  t.same(runner.commands.map((c) => c.args.join(' ')), [`delete table bridge ${PORT_SECURITY_TABLE}`]);
  await removePortSecurity({ run: () => Promise.reject(new Error('spawn nft ENOENT')) });
  t.pass('no nft: nothing to remove');
});
