// Unit tests of port security without root: the nft table built from the
// attachments (each port's own MAC, addresses and neighbour-advert targets;
// malformed or ambiguous records left without a chain, so their frames are
// dropped; ports that are not containers left alone), and the PortGuard
// that rebuilds it: one nft call per rebuild, rebuilds asked for meanwhile
// folded into one, failures reported in status and never thrown, and the
// periodic check that puts back a table a firewall reload removed.
// test/e2e/port-security.test.ts sends the spoofed frames for real.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { FakeCommandRunner } from '../../router/host/command-runner';
import type { RunResult } from '../../router/host/command-runner';
import type { GuardedPort } from '../../router/host/port-security';
import {
  PORT_SECURITY_COUNTER, PORT_SECURITY_RECHECK_MS, PORT_SECURITY_TABLE, PortGuard, portChainName, portSecurityScript, removePortSecurity,
} from '../../router/host/port-security';

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

t.test('each port may speak only for its own MAC and addresses', async (t) => {
  const built = portSecurityScript([A, B]);
  t.equal(built.ports, 2);
  t.same(built.refused, []);
  const first = ops(built.script).slice(0, 3).map((o) => Object.keys(o)[0]);
  t.same(first, ['add', 'delete', 'add'], 'replaces any table of that name in the same transaction');
  const a = rulesOf(built.script, portChainName('vethwepl100'));
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
  const b = rulesOf(built.script, portChainName('vethwens0123abc'));
  t.notOk(b.some((r) => r.includes('fd00')), 'no IPv6 address: only link-local and :: sources');
  t.ok(b.some((r) => r.includes('nd-neighbor-advert') && !r.includes('"len":128') && r.includes('1018')), 'and adverts only for link-local targets');
  const base = rulesOf(built.script, 'prerouting');
  t.match(base[0], /"vmap".*vethwepl100.*port-vethwepl100.*vethwens0123abc.*port-vethwens0123abc/, 'each port jumps to its own chain');
  t.same(base.slice(1).map((r) => /"right":"(vethwe[a-z]+)\*"/.exec(r)?.[1]), ['vethwepl', 'vethwens', 'vethwec', 'vethwed'],
    "a container port without a chain is dropped; others (the router's TAP vethwe-tap, the fast path's vethwe-hb) pass untouched");
  for (const r of base.slice(1)) t.ok(r.endsWith(`{"counter":"${PORT_SECURITY_COUNTER}"},{"drop":null}]`));
  t.notOk(built.script.includes('"vethwepl*",'), 'no set of wildcards: nft 1.0.6 merges adjacent ones into a range its JSON listing aborts on');
  t.ok(ops(built.script).some((o) => o['add']?.['chain']?.['hook'] === 'prerouting' && o['add']['chain']['prio'] === -300), 'hooked early at bridge prerouting');
});

t.test('no attachment without addresses of a family may send that family', async (t) => {
  const v6only = portSecurityScript([{ hostIfname: 'vethwepl7', mac: '02:00:00:00:00:07', addresses: ['fd00::7'] }]);
  t.ok(rulesOf(v6only.script, 'port-vethwepl7').some((r) => r === `[{"match":{"op":"==","left":{"payload":{"protocol":"ether","field":"type"}},"right":"ip"}},{"counter":"${PORT_SECURITY_COUNTER}"},{"drop":null}]`),
    'no IPv4 address: no IPv4 at all');
});

t.test('weave attach --no-port-security: the port is accepted whatever it sends, and counted apart', async (t) => {
  const built = portSecurityScript([A, { ...B, portSecurity: false }]);
  t.same([built.ports, built.unguarded], [1, 1]);
  t.notOk(built.script.includes(portChainName(B.hostIfname)), 'no chain');
  t.match(rulesOf(built.script, 'prerouting')[0], new RegExp(`\\["${B.hostIfname}",\\{"accept":null\\}\\]`), 'its map entry accepts');
  t.same(portSecurityScript([{ ...B, portSecurity: false, mac: 'bad' }]).refused.length, 1, 'its record must still be sound');
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
    const built = portSecurityScript([A, bad]);
    t.equal(built.ports, 1, `${JSON.stringify(bad)}: only the good port`);
    t.match(built.refused[0]?.reason, why);
    t.notOk(built.script.includes(`port-${bad.hostIfname}`), 'no chain for it');
  }
  const twice = portSecurityScript([A, B, { ...A, mac: '02:cc:00:00:00:03' }]);
  t.same(twice.refused.map((r) => r.hostIfname), ['vethwepl100'], 'a port two records name is refused');
  t.equal(twice.ports, 1, 'for both records: neither is believed');
  const none = portSecurityScript([]);
  t.equal(none.ports, 0);
  t.notOk(none.script.includes('vmap'), 'no ports: no map, and every port of ours is dropped');
});

function guardRig(respond: (cmd: string, args: string[]) => Partial<RunResult> | undefined = () => undefined) {
  const runner = new FakeCommandRunner(respond);
  const clock = new ManualClock();
  let ports: GuardedPort[] = [A];
  const guard = new PortGuard({ runner, clock, ports: () => ports });
  const nftJson = (): string[] => runner.commands.filter((c) => c.cmd === 'nft' && c.args[0] === '-j').map((c) => c.args[1]!);
  return { runner, clock, guard, nftJson, setPorts: (p: GuardedPort[]) => { ports = p; } };
}

t.test('PortGuard: one nft transaction per rebuild; rebuilds asked for meanwhile are folded into one with the latest ports', async (t) => {
  const r = guardRig();
  await r.guard.sync();
  t.equal(r.nftJson().length, 1);
  t.same(r.guard.status(), { ports: 1, unguarded: 0, problem: null });
  r.setPorts([A, B]);
  await Promise.all([r.guard.sync(), r.guard.sync(), r.guard.sync()]);
  t.equal(r.nftJson().length, 3, 'one running, one more for the two asked for meanwhile');
  t.ok(r.nftJson()[2]!.includes('port-vethwens0123abc'), 'the last rebuild has the latest ports');
  t.same(r.guard.status(), { ports: 2, unguarded: 0, problem: null });
});

t.test('PortGuard: a failed rebuild is reported in status, never thrown; the next good one clears it', async (t) => {
  let fail = true;
  const r = guardRig((cmd, args) => (cmd === 'nft' && args[0] === '-j' && fail ? { code: 1, stderr: 'Error: Could not process rule: No such file or directory\n' } : undefined));
  await r.guard.sync();
  t.match(r.guard.status().problem, /port security not applied.*No such file or directory/);
  fail = false;
  await r.guard.sync();
  t.same(r.guard.status(), { ports: 1, unguarded: 0, problem: null });
  r.setPorts([A, { ...B, mac: 'nonsense' }]);
  await r.guard.sync();
  t.match(r.guard.status().problem, /vethwens0123abc \(not a unicast MAC/, 'a refused port is a problem too');
  const missing = new PortGuard({ runner: { run: () => Promise.reject(new Error('spawn nft ENOENT')) }, clock: new ManualClock(), ports: () => [A] });
  await missing.sync();
  t.match(missing.status().problem, /ENOENT/, 'no nft at all');
  const throwing = new PortGuard({ runner: new FakeCommandRunner(), clock: new ManualClock(), ports: () => { throw new Error('record unreadable'); } });
  await throwing.sync();
  t.match(throwing.status().problem, /cannot list the container ports: record unreadable/);
});

t.test('PortGuard: a table a firewall reload removed is put back at the next check; one still there is left alone', async (t) => {
  let present = true;
  const r = guardRig((cmd, args) => (cmd === 'nft' && args[0] === 'list' ? (present ? undefined : { code: 1, stderr: 'Error: No such file or directory' }) : undefined));
  await r.guard.start();
  t.equal(r.nftJson().length, 1, 'built at start');
  r.clock.advance(PORT_SECURITY_RECHECK_MS);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(r.nftJson().length, 1, 'still there: not rebuilt (its counter keeps counting)');
  t.ok(r.runner.commands.some((c) => c.args.join(' ') === `list table bridge ${PORT_SECURITY_TABLE}`));
  present = false;
  r.clock.advance(PORT_SECURITY_RECHECK_MS);
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  t.equal(r.nftJson().length, 2, 'gone: rebuilt');
  r.guard.close();
  const before = r.runner.commands.length;
  r.clock.advance(PORT_SECURITY_RECHECK_MS * 3);
  t.equal(r.runner.commands.length, before, 'closed: no more checks');
});

t.test('removePortSecurity deletes only our table and never throws', async (t) => {
  const runner = new FakeCommandRunner(() => ({ code: 1, stderr: 'Error: No such file or directory' }));
  await removePortSecurity(runner);
  t.same(runner.commands.map((c) => c.args.join(' ')), [`delete table bridge ${PORT_SECURITY_TABLE}`]);
  await removePortSecurity({ run: () => Promise.reject(new Error('spawn nft ENOENT')) });
  t.pass('no nft: nothing to remove');
});
