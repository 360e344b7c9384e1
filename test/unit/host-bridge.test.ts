// Unit tests of the host bridge with a fake runner: creating the bridge and
// enslaving the TAP (with rollback), the MTU, the nftables forward rules and
// the keeper that re-checks them on a ManualClock, and the namespace wrapper
// around a CommandRunner.

import t from 'tap';
import { FakeCommandRunner, NetnsCommandRunner } from '../../router/host/command-runner';
import { acceptRule, ensureBridgeForwarding, keepBridgeForwarding, removeBridgeForwarding } from '../../router/host/bridge-firewall';
import { ensureBridge } from '../../router/host/host-bridge';
import { detectUnderlayMtu } from '../../router/host/host-link';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';

t.test('host bridge logic with a fake runner', async (t) => {
  await t.test('ensureBridge creates, enslaves, opens the firewall; rolls back a bridge it made', async (t) => {
    const ruleset = {
      nftables: [
        { metainfo: {} },
        { chain: { family: 'ip', table: 'filter', name: 'FORWARD', hook: 'forward', prio: 0, policy: 'drop' } },
        { chain: { family: 'inet', table: 'fw', name: 'in', hook: 'input', prio: 0, policy: 'drop' } },
        { chain: { family: 'inet', table: 'x y', name: 'fwd', hook: 'forward', prio: 0, policy: 'accept' } },
        { rule: { family: 'inet', table: 'x y', chain: 'fwd', handle: 7, comment: 'weave:weave', expr: [] } },
      ],
    };
    const runner = new FakeCommandRunner((cmd, args) => {
      const line = [cmd, ...args].join(' ');
      if (line === 'ip -j -d link show dev weave') return { code: 1, stderr: 'Device "weave" does not exist.' };
      if (line === 'ip -j -d link show dev tap0') return { stdout: '[{"ifname":"tap0","mtu":1500,"linkinfo":{"info_kind":"tun"},"flags":[]}]' };
      if (line === 'nft -j list ruleset') return { stdout: JSON.stringify(ruleset) };
      return undefined;
    });
    const r = await ensureBridge({ bridge: 'weave', tap: 'tap0', mtu: 1376 }, runner);
    t.equal(r.created, true);
    t.same(r.firewall.inserted, [{ family: 'ip', table: 'filter', chain: 'FORWARD' }]);
    t.same(r.firewall.present, [{ family: 'inet', table: 'x y', chain: 'fwd' }]);
    const lines = runner.lines();
    t.same(lines.slice(2, 9), [
      'ip link add name weave type bridge',
      'ip link set dev tap0 mtu 1376',
      'ip link set dev tap0 master weave',
      'ip link set dev weave mtu 1376',
      'ip link set dev weave gso_max_size 64000',
      'ip link set dev weave up',
      'ip link set dev tap0 up',
    ]);
    const insert = runner.commands.at(-1);
    t.same(insert?.args[0], '-j');
    t.same(JSON.parse(insert?.args[1] ?? '{}'), { nftables: [{ insert: { rule: acceptRule({ family: 'ip', table: 'filter', chain: 'FORWARD' }, 'weave', 'tap0') } }] });

    runner.setResponder((cmd, args) => {
      const line = [cmd, ...args].join(' ');
      if (line === 'ip -j -d link show dev weave') return { code: 1, stderr: 'Device "weave" does not exist.' };
      if (line === 'ip -j -d link show dev tap0') return { stdout: '[{"ifname":"tap0","mtu":1500,"flags":[]}]' };
      if (line.includes('master weave')) return { code: 2, stderr: 'RTNETLINK answers: Operation not permitted' };
      return undefined;
    });
    runner.clear();
    await t.rejects(ensureBridge({ bridge: 'weave', tap: 'tap0', mtu: 1376 }, runner), /master weave failed.*Operation not permitted/);
    t.equal(runner.lines().at(-1), 'ip link del dev weave', 'the bridge made by this call is deleted again');
  });

  await t.test('firewall: missing nft, a chain that refuses, removal by comment', async (t) => {
    const missing = new FakeCommandRunner((cmd) => (cmd === 'nft' ? { code: 127, stderr: 'nft: not found' } : undefined));
    const r = await ensureBridgeForwarding({ bridge: 'weave', tap: 'tap0' }, missing);
    t.match(r.unavailable, /nft -j list ruleset failed/);
    const ruleset = {
      nftables: [
        { chain: { family: 'inet', table: 'owned', name: 'f', hook: 'forward' } },
        { chain: { family: 'bridge', table: 'b', name: 'f', hook: 'forward' } },
        { rule: { family: 'bridge', table: 'b', chain: 'f', handle: 3, comment: 'weave:weave' } },
        { rule: { family: 'inet', table: 'owned', chain: 'f', handle: 4, comment: 'someone else' } },
      ],
    };
    const runner = new FakeCommandRunner((cmd, args) => {
      if (args[0] === '-j' && args[1] === 'list') return { stdout: JSON.stringify(ruleset) };
      if (cmd === 'nft') return { code: 1, stderr: 'Error: Could not process rule: Operation not permitted' };
      return undefined;
    });
    const r2 = await ensureBridgeForwarding({ bridge: 'weave', tap: 'tap0' }, runner);
    t.same(r2.failed, [{ family: 'inet', table: 'owned', chain: 'f', error: 'Error: Could not process rule: Operation not permitted' }]);
    runner.setResponder((_cmd, args) => (args[1] === 'list' ? { stdout: JSON.stringify(ruleset) } : undefined));
    t.equal(await removeBridgeForwarding({ bridge: 'weave' }, runner), 1);
    t.same(JSON.parse(runner.commands.at(-1)?.args[1] ?? '{}'), { nftables: [{ delete: { rule: { family: 'bridge', table: 'b', chain: 'f', handle: 3 } } }] });
  });

  await t.test('detectUnderlayMtu', async (t) => {
    const withRoute = new FakeCommandRunner((_cmd, args) => {
      const line = args.join(' ');
      if (line === '-j -4 route show default') return { stdout: '[{"dst":"default","dev":"eth9"}]' };
      if (line === '-j -d link show dev eth9') return { stdout: '[{"ifname":"eth9","mtu":9001}]' };
      return undefined;
    });
    t.equal(await detectUnderlayMtu(withRoute), 9001);
    const noRoute = new FakeCommandRunner((_cmd, args) => {
      const line = args.join(' ');
      if (line.includes('route show default')) return { stdout: '[]' };
      if (line === '-j link show up') {
        return { stdout: JSON.stringify([{ ifname: 'lo', mtu: 65536, link_type: 'loopback', flags: ['LOOPBACK', 'UP'] }, { ifname: 'a', mtu: 1400 }, { ifname: 'b', mtu: 1450 }]) };
      }
      return undefined;
    });
    t.equal(await detectUnderlayMtu(noRoute), 1450);
    t.equal(await detectUnderlayMtu(new FakeCommandRunner(() => ({ code: 1, stderr: 'nope' }))), 1500);
  });

  await t.test('keepBridgeForwarding re-checks on a timer and patches chains that appear later', async (t) => {
    const chains: unknown[] = [];
    const runner = new FakeCommandRunner((_cmd, args) => (args[1] === 'list' ? { stdout: JSON.stringify({ nftables: chains }) } : undefined));
    const clock = new ManualClock();
    const keeper = keepBridgeForwarding({ bridge: 'weave', tap: 'tap0' }, { runner, clock, logger: silentLogger }, 20);
    t.teardown(() => keeper.close());
    t.same((await keeper.check()).inserted, []);
    chains.push({ chain: { family: 'ip', table: 'filter', name: 'FORWARD', hook: 'forward' } });
    const inserted = () => runner.commands.some((c) => c.args[0] === '-j' && (c.args[1] ?? '').includes('"insert"'));
    clock.advance(19);
    await new Promise((r) => setImmediate(r));
    t.notOk(inserted(), 'nothing before the interval is up');
    clock.advance(1);
    // The fake runner answers at once, so the check the timer started has finished by the next turn of the event loop.
    await new Promise((r) => setImmediate(r));
    t.ok(inserted(), 'the new chain got our rule');
    keeper.close();
  });

  t.throws(() => new NetnsCommandRunner(new FakeCommandRunner(), 'a b'), /namespace name/);
  const wrapped = new NetnsCommandRunner(new FakeCommandRunner(), 'h1');
  await t.resolves(wrapped.run('ip', ['link']));
});
