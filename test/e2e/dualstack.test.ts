// End-to-end dual stack: two simulated hosts launched with --ipalloc-range-v6
// (a ULA block). Containers attached without an address get an IPv4 address
// from IPAM and its IPv6 twin; they ping each other over IPv6 across the
// encrypted overlay, resolve each other's names to the IPv6 address (AAAA,
// getent ahosts, ip6.arpa PTR), and a detach removes exactly both addresses.
// Needs root. Traffic stays inside the namespaces this test creates; each
// host's upstream resolver is a loopback address where nothing listens, so no
// query leaves the test. Cleans up its namespaces and /etc/netns entries.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(300_000);

const V6_RANGE = 'fd00:77:1::/48';
const V6_PREFIX = 'fd00:77:1:';

function ipOf(cidr: string): string {
  return cidr.split('/')[0]!;
}

function inV4Range(ip: string): boolean {
  const [a, b] = ip.split('.').map(Number) as [number, number];
  return a === 10 && b >= 32 && b <= 47;
}

async function inNs(ns: string, cmd: string[], timeoutMs = 20_000): Promise<{ code: number; out: string }> {
  const r = await run(['ip', 'netns', 'exec', ns, ...cmd], { timeoutMs });
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

/** Global addresses on ethwe inside `ns`, as CIDRs, by family. */
async function ethweAddresses(ns: string, family: '-4' | '-6'): Promise<string[]> {
  const r = await run(['ip', '-n', ns, '-j', family, 'addr', 'show', 'dev', 'ethwe', 'scope', 'global']);
  if (r.code !== 0) return [];
  const parsed = JSON.parse(r.stdout || '[]') as { addr_info?: { local: string; prefixlen: number }[] }[];
  // With a filter, ip -j leaves empty entries for the addresses it filtered out.
  return parsed.flatMap((l) => (l.addr_info ?? []).filter((a) => a.local !== undefined).map((a) => `${a.local}/${a.prefixlen}`));
}

async function psAddresses(h: SimHost): Promise<Map<string, string[]>> {
  const r = await h.weave(['ps', '--json']);
  const parsed = JSON.parse(r.stdout) as { containers: { name: string; addresses: string[] }[] } | { name: string; addresses: string[] }[];
  const list = Array.isArray(parsed) ? parsed : parsed.containers;
  return new Map(list.map((c) => [c.name, c.addresses]));
}

t.test('dual stack: IPv4 and IPv6 from IPAM, ping -6 across hosts, AAAA and PTR, exact detach', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, password: 'dual stack e2e', weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
    if (fs.existsSync('/etc/netns')) {
      for (const d of fs.readdirSync('/etc/netns', { withFileTypes: true }).filter((e) => e.name.startsWith(net.prefix))) {
        fs.rmSync(path.join('/etc/netns', d.name), { recursive: true, force: true });
      }
    }
  });
  const [h1, h2] = [net.host('h1'), net.host('h2')];
  // Upstream DNS: a loopback address inside each host's namespace with nothing behind it.
  const resolv = path.join(net.rootDir, 'resolv.conf');
  fs.writeFileSync(resolv, 'nameserver 127.0.0.2\n');
  for (const h of net.hosts) {
    const others = net.hosts.filter((x) => x !== h).map((x) => x.address);
    const r = await h.weave(['launch', '--nickname', h.name, '--ipalloc-range-v6', V6_RANGE, '--dns-resolv-conf', resolv, ...others]);
    t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
  }
  for (const h of net.hosts) {
    await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
      what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog(),
    });
  }

  interface Container { ns: string; host: SimHost; v4: string; v6: string }
  const attach = async (host: SimHost, key: string): Promise<Container> => {
    const ns = `${net.prefix}${key}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await host.weave(['attach', `netns:${ns}`], { timeoutMs: 90_000 });
    t.equal(r.code, 0, `attach ${key} on ${host.name}: ${r.stderr.trim()}`);
    const printed = r.stdout.trim().split(/\s+/);
    const v4 = await ethweAddresses(ns, '-4');
    const v6 = await ethweAddresses(ns, '-6');
    t.equal(v4.length, 1, `${key}: one IPv4 address (${v4.join(' ')})`);
    t.equal(v6.length, 1, `${key}: one IPv6 address (${v6.join(' ')})`);
    t.same(printed, [...v4, ...v6].map(ipOf), `weave attach prints both: ${r.stdout.trim()}`);
    return { ns, host, v4: v4[0] ?? '', v6: v6[0] ?? '' };
  };
  const c1 = await attach(h1, 'c1');
  const c2 = await attach(h2, 'c2');

  await t.test('addresses: IPv4 in the IPAM range, IPv6 its twin in the ULA range', async (t) => {
    for (const c of [c1, c2]) {
      t.ok(inV4Range(ipOf(c.v4)), `${c.v4} inside 10.32.0.0/12`);
      t.ok(ipOf(c.v6).startsWith(V6_PREFIX) && c.v6.endsWith('/48'), `${c.v6} inside ${V6_RANGE}`);
      // Same offset in both ranges: 10.32.x.y -> fd00:77:1::<offset>.
      const [, , x, y] = ipOf(c.v4).split('.').map(Number) as [number, number, number, number];
      const offset = ((Number(ipOf(c.v4).split('.')[1]) - 32) << 16) + (x << 8) + y;
      const tail = offset >= 0x10000 ? `${(offset >> 16).toString(16)}:${(offset & 0xffff).toString(16)}` : offset.toString(16);
      t.equal(ipOf(c.v6), `fd00:77:1::${tail}`, `${c.v6} is the twin of ${c.v4}`);
      // Our address only: the kernel's own link-local address does go through DAD.
      const addr = await run(['ip', '-n', c.ns, '-6', 'addr', 'show', 'dev', 'ethwe', 'scope', 'global']);
      t.notMatch(addr.stdout, /tentative|dadfailed/, `no DAD: usable at once (${addr.stdout.trim().split('\n').slice(1).join(' ')})`);
      const routes = await run(['ip', '-n', c.ns, '-6', 'route', 'show', 'dev', 'ethwe']);
      t.match(routes.stdout, /fd00:77:1::\/48/, 'the IPv6 range is routed via ethwe');
    }
    t.not(ipOf(c1.v4), ipOf(c2.v4));
    t.not(ipOf(c1.v6), ipOf(c2.v6));
    const ps1 = await psAddresses(h1);
    t.same(ps1.get(c1.ns), [c1.v4, c1.v6], 'weave ps lists both');
  });

  await t.test('ping -6 across hosts by address', async (t) => {
    for (const [from, to] of [[c1, c2], [c2, c1]] as const) {
      const r = await inNs(from.ns, ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', ipOf(to.v6)]);
      t.equal(r.code, 0, `${from.ns} -> ${ipOf(to.v6)}: ${r.out.split('\n').slice(-2).join(' ')}`);
    }
    const v4 = await inNs(c1.ns, ['ping', '-c', '1', '-W', '2', ipOf(c2.v4)]);
    t.equal(v4.code, 0, 'IPv4 still works');
  });

  await t.test('DNS: AAAA, getent ahosts and PTR give the IPv6 address', async (t) => {
    const name2 = `${c2.ns}.weave.local`;
    await waitFor(async () => (await inNs(c1.ns, ['dig', '+short', 'AAAA', name2])).out === ipOf(c2.v6), {
      what: `AAAA ${name2} from c1`, timeoutMs: 15_000, detail: () => h1.readLog(),
    });
    t.equal((await inNs(c1.ns, ['dig', '+short', 'AAAA', name2])).out, ipOf(c2.v6), 'AAAA of the other host\'s container');
    t.equal((await inNs(c1.ns, ['dig', '+short', 'A', name2])).out, ipOf(c2.v4), 'A still the IPv4 address');
    const ah = await inNs(c1.ns, ['getent', 'ahosts', c2.ns]);
    t.equal(ah.code, 0, `getent ahosts: ${ah.out}`);
    const found = new Set(ah.out.split('\n').map((l) => l.split(/\s+/)[0]));
    t.ok(found.has(ipOf(c2.v6)) && found.has(ipOf(c2.v4)), `getent ahosts gives both (${[...found].join(' ')})`);
    t.equal((await inNs(c2.ns, ['getent', 'ahostsv6', c1.ns])).out.split(/\s+/)[0], ipOf(c1.v6), 'getent ahostsv6 the other way');
    t.equal((await inNs(c1.ns, ['dig', '+short', '-x', ipOf(c2.v6)])).out, `${name2}.`, 'PTR under ip6.arpa');
    const byName = await inNs(c1.ns, ['ping', '-6', '-c', '1', '-W', '2', c2.ns]);
    t.equal(byName.code, 0, `ping -6 by name: ${byName.out.split('\n')[0]}`);
  });

  await t.test('detach of the IPv6 address alone, then of the container', async (t) => {
    const r = await h2.weave(['detach', c2.v6, `netns:${c2.ns}`]);
    t.equal(r.code, 0, `detach ${c2.v6}: ${r.stderr.trim()}`);
    t.same(await ethweAddresses(c2.ns, '-6'), [], 'IPv6 address gone');
    t.same(await ethweAddresses(c2.ns, '-4'), [c2.v4], 'IPv4 address kept');
    const routes = await run(['ip', '-n', c2.ns, '-6', 'route', 'show', 'dev', 'ethwe']);
    t.notMatch(routes.stdout, /fd00:77:1::\/48/, 'IPv6 range route gone');
    await waitFor(async () => (await inNs(c1.ns, ['dig', '+short', 'AAAA', `${c2.ns}.weave.local`])).out === '', {
      what: 'AAAA gone from DNS', timeoutMs: 15_000,
    });
    t.pass('the name no longer has an AAAA record');

    const d1 = await h1.weave(['detach', `netns:${c1.ns}`]);
    t.equal(d1.code, 0, `detach c1: ${d1.stderr.trim()}`);
    const link = await run(['ip', '-n', c1.ns, 'link', 'show', 'ethwe']);
    t.not(link.code, 0, 'ethwe gone from c1');
    t.same(await ethweAddresses(c1.ns, '-6'), []);
    t.same(await ethweAddresses(c1.ns, '-4'), []);
    t.same((await psAddresses(h1)).get(c1.ns), undefined, 'weave ps no longer lists c1');

    // The freed pair is handed out again as a pair: a fresh container gets both, no clash.
    const c3 = await attach(h1, 'c3');
    t.ok(inV4Range(ipOf(c3.v4)) && ipOf(c3.v6).startsWith(V6_PREFIX), `c3 got ${c3.v4} and ${c3.v6}`);
    // Detaching the IPv4 address takes its IPv6 twin along (IPAM frees them as one).
    const d3 = await h1.weave(['detach', c3.v4, `netns:${c3.ns}`]);
    t.equal(d3.code, 0, `detach ${c3.v4}: ${d3.stderr.trim()}`);
    t.same(await ethweAddresses(c3.ns, '-6'), [], 'the IPv6 twin went with its IPv4 address');
    t.not((await run(['ip', '-n', c3.ns, 'link', 'show', 'ethwe'])).code, 0, 'nothing left, so ethwe is gone');
  });
});
