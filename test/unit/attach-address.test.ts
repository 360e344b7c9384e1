// Unit tests of the pure parts of an attach: container references
// (container-ref.ts), the attach and route CIDR tables for IPv4 and IPv6
// (attach-address.ts), and the host veth names and MACs (container-link.ts).

import t from 'tap';
import { MAX_ADDRESSES_PER_REQUEST, parseAttachAddress, parseAttachAddresses, parseAttachCidr, parseDetachCidr, parseRouteCidr } from '../../router/host/attach-address';
import { hostIfnameFor, randomMac } from '../../router/host/container-link';
import { formatContainerRef, parseContainerRef } from '../../router/host/container-ref';

t.test('parseContainerRef', async (t) => {
  t.same(parseContainerRef('netns:blue'), { kind: 'netns', name: 'blue' });
  t.same(parseContainerRef('pid:1234'), { kind: 'pid', pid: 1234 });
  t.same(parseContainerRef('my_app.1'), { kind: 'docker', ref: 'my_app.1' });
  t.same(parseContainerRef(' 3f2a9c81b7d0 '), { kind: 'docker', ref: '3f2a9c81b7d0' });
  t.equal(formatContainerRef(parseContainerRef('pid:7')), 'pid:7');
  const bad: [string, RegExp][] = [
    ['', /a container is required/],
    ['netns:', /netns:NAME needs/],
    ['netns:a/b', /netns:NAME needs/],
    ['netns:..', /netns:NAME needs/],
    ['pid:0', /pid:PID needs/],
    ['pid:-1', /pid:PID needs/],
    ['pid:12x', /pid:PID needs/],
    ['pid:99999999', /pid:PID needs/],
    ['docker:foo', /unknown container reference/],
    ['cni:ctr-a/eth0', /a CNI runtime .* made and owns: add or remove it with the runtime/],
    ['-rf', /not a Docker container name/],
    ['a b', /not a Docker container name/],
    ['x'.repeat(300), /not a Docker container name/],
  ];
  for (const [text, re] of bad) t.throws(() => parseContainerRef(text), { code: 'config', message: re }, JSON.stringify(text));
});

t.test('parseAttachCidr and route CIDRs', async (t) => {
  t.same(parseAttachCidr('10.32.1.1/12'), { address: '10.32.1.1', prefixLen: 12, cidr: '10.32.1.1/12' });
  t.equal(parseAttachCidr('192.168.0.1/31').cidr, '192.168.0.1/31', '/31 has no network or broadcast address');
  t.equal(parseAttachCidr('192.168.0.0/31').cidr, '192.168.0.0/31');
  t.equal(parseAttachCidr('10.0.0.0/32').cidr, '10.0.0.0/32');
  t.equal(parseAttachCidr('10.32.0.1/12').address, '10.32.0.1');
  const bad: [string, RegExp][] = [
    ['10.32.0.0/12', /network address of 10\.32\.0\.0\/12/],
    ['10.47.255.255/12', /broadcast address of 10\.32\.0\.0\/12/],
    ['10.32.1.1', /needs a prefix length/],
    ['10.32.1.1/33', /IPv4 CIDR/],
    ['10.32.1.256/12', /IPv4 CIDR/],
    ['10.032.1.1/12', /IPv4 CIDR/],
    ['10.32.1/12', /IPv4 CIDR/],
    ['fd00::1/64', /IPv6 is not supported here/],
    ['127.0.0.2/8', /loopback/],
    ['224.0.0.1/4', /multicast/],
    ['0.1.2.3/8', /not a host address/],
    ['250.1.1.1/8', /reserved/],
    ['10.1.1.1/0', /prefix length 0/],
    ['banana', /IPv4 CIDR/],
    // Leading zeros: inet_aton reads 010 as 8, iproute2 reads /010 as /8.
    ['010.0.0.1/8', /IPv4 CIDR such as .*leading zeros are refused/],
    ['10.32.0.01/12', /IPv4 CIDR such as .*leading zeros are refused/],
    ['10.32.0.1/08', /IPv4 CIDR such as .*leading zeros are refused/],
    ['10.32.0.1/012', /IPv4 CIDR such as .*leading zeros are refused/],
  ];
  for (const [text, re] of bad) t.throws(() => parseAttachCidr(text), { code: 'config', message: re }, text);
  t.equal(parseRouteCidr('10.32.1.7/12'), '10.32.0.0/12');
  t.throws(() => parseRouteCidr('10.32.0.0'), /prefix length/);
  t.throws(() => parseRouteCidr('10.32.0.0/012'), /leading zeros are refused/);
  t.throws(() => parseRouteCidr('10.032.0.0/12'), /leading zeros are refused/);
});

t.test('parseAttachAddress: IPv4 and IPv6 (dual stack)', async (t) => {
  t.same(parseAttachAddress('10.32.1.1/12'), { family: 4, address: '10.32.1.1', prefixLen: 12, cidr: '10.32.1.1/12' });
  t.same(parseAttachAddress('FD00:77:1:0:0:0:0:5/48'), { family: 6, address: 'fd00:77:1::5', prefixLen: 48, cidr: 'fd00:77:1::5/48' }, 'canonical text');
  t.equal(parseAttachAddress(' fd00:0:0:1::5/64 ').cidr, 'fd00:0:0:1::5/64');
  t.equal(parseAttachAddress('fd00::10.0.0.1/64').cidr, 'fd00::a00:1/64', 'a trailing dotted quad');
  t.equal(parseAttachAddress('2001:db8:0:0:1:0:0:1/128').cidr, '2001:db8::1:0:0:1/128', 'the first of equal zero runs is compressed');
  t.equal(parseAttachAddress('fd00::/127').cidr, 'fd00::/127', '/127 has no anycast address');
  const bad: [string, RegExp][] = [
    ['fd00::1', /needs a prefix length/],
    ['fd00::1/129', /IPv6 CIDR/],
    ['fd00::1::2/64', /IPv6 CIDR/],
    ['fd00:12345::1/64', /IPv6 CIDR/],
    ['1:2:3:4:5:6:7/64', /IPv6 CIDR/],
    ['fe80::1%eth0/64', /IPv6 CIDR/],
    ['fd00::1/0', /prefix length 0/],
    ['::/64', /unspecified/],
    ['::1/128', /loopback/],
    ['::ffff:10.0.0.1/96', /IPv4-mapped/],
    ['fe80::5/64', /link-local/],
    ['febf::5/64', /link-local/],
    ['ff02::1/64', /multicast/],
    ['fd00:77:1::/48', /subnet-router anycast address of fd00:77:1::\/48/],
    ['banana', /CIDR/],
    ['010.0.0.1/8', /leading zeros are refused/],
    ['fd00::1/064', /IPv6 CIDR such as .*leading zeros are refused/],
    ['fd00::010.0.0.1/64', /IPv6 CIDR such as .*leading zeros are refused/],
  ];
  for (const [text, re] of bad) t.throws(() => parseAttachAddress(text), { code: 'config', message: re }, text);
  t.equal(parseRouteCidr('fd00:77:1::5/48'), 'fd00:77:1::/48');
  t.equal(parseRouteCidr('FD00:77:1:ffff::/64'), 'fd00:77:1:ffff::/64');
  t.throws(() => parseRouteCidr('fd00::'), /prefix length/);
  t.throws(() => parseRouteCidr('fd00::/048'), /leading zeros are refused/);
});

t.test('parseAttachAddresses: a list of at most the cap, strings only, one prefix per address (callers other than the API rely on it)', async (t) => {
  t.same(parseAttachAddresses(['10.32.0.1/12', '10.32.0.1/12'], true).map((c) => c.cidr), ['10.32.0.1/12'], 'the same address twice is one');
  t.throws(() => parseAttachAddresses('10.32.0.1/12', true), /must be a list/);
  t.throws(() => parseAttachAddresses([], true), /an address is required/);
  t.same(parseAttachAddresses([], false), [], 'none, where none is needed');
  const many = Array.from({ length: MAX_ADDRESSES_PER_REQUEST + 1 }, (_, i) => `10.32.${i >> 8}.${(i & 0xff) + 1}/12`);
  t.throws(() => parseAttachAddresses(many, true), new RegExp(`${MAX_ADDRESSES_PER_REQUEST + 1} addresses in one request, over the limit`));
  t.equal(parseAttachAddresses(many.slice(1), true).length, MAX_ADDRESSES_PER_REQUEST, 'at the cap: taken');
  t.throws(() => parseAttachAddresses(['10.32.0.1/12', 7], true), /every address must be a string CIDR, got 7/);
  t.throws(() => parseAttachAddresses(['10.32.0.1/12', '10.32.0.1/24'], true), /given twice with different prefixes/);
  t.same(parseAttachAddresses(['10.32.8.1/24'], false, parseDetachCidr).map((c) => c.cidr), ['10.32.8.1/24'], 'with another parser (detach)');
});

t.test('veth names are stable and fit IFNAMSIZ', async (t) => {
  t.equal(hostIfnameFor('pid', 4194304), 'vethwepl4194304');
  t.equal(hostIfnameFor('docker', 42), 'vethwepl42');
  const a = hostIfnameFor('netns', 'some-very-long-namespace-name');
  t.equal(a, hostIfnameFor('netns', 'some-very-long-namespace-name'), 'same name, same veth');
  t.not(a, hostIfnameFor('netns', 'other'));
  t.ok(a.length <= 15);
  t.match(randomMac(), /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, 'locally administered unicast');
});
