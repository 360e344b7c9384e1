// Paths built from what users and state files give us (router/host): netns
// names are one safe path component, `ip link ... netns` gets a namespace
// file's path, and containers.json entries are taken only with the namespace
// path their own kind, name or pid implies (a hand-edited path to some other
// file, or a name with '/', rejects the file).

import t from 'tap';
import { formatContainerState, parseContainerState } from '../../router/host/container-state';
import type { Attachment } from '../../router/host/container-state';
import { isNetnsName, namespacePathOf, parseContainerRef } from '../../router/host/container-ref';

const base: Attachment = {
  kind: 'pid', id: 'pid:4242', name: 'sleep', ref: 'pid:4242', pid: 4242, netnsPath: '/proc/4242/ns/net', nsId: '4:1',
  hostIfname: 'vethwepl4242', mac: '02:00:00:00:00:01', addresses: ['10.32.0.1/12'], state: 'attached',
};

t.test('netns names: one component, no dots alone, no option-like start', async (t) => {
  for (const ok of ['blue', 'wvt1a2b-c1', '123', 'a.b_c-d']) t.ok(isNetnsName(ok), ok);
  for (const bad of ['', '.', '..', '../etc', 'a/b', '-n', '.hidden', 'a\0b', 'x'.repeat(256)]) t.notOk(isNetnsName(bad), JSON.stringify(bad));
  t.throws(() => parseContainerRef('netns:../../etc'), /netns:NAME needs/);
  t.equal(namespacePathOf('netns', '123'), '/var/run/netns/123');
  t.equal(namespacePathOf('pid', 123), '/proc/123/ns/net');
});

t.test('containers.json: an entry is taken only with the namespace path it implies', async (t) => {
  const netns: Attachment = { ...base, kind: 'netns', id: 'netns:blue', name: 'blue', ref: 'netns:blue', pid: null, netnsPath: '/var/run/netns/blue' };
  t.same(parseContainerState(formatContainerState([base, netns])).map((a) => a.netnsPath), ['/proc/4242/ns/net', '/var/run/netns/blue']);
  const bad: Array<[string, Attachment]> = [
    ['a pid entry pointing elsewhere', { ...base, netnsPath: '/root/.ssh/id_rsa' }],
    ['a pid entry with another pid', { ...base, netnsPath: '/proc/1/ns/net' }],
    ['a pid entry without pid', { ...base, pid: null }],
    ['a netns entry with a traversing name', { ...netns, id: 'netns:../x', name: '../x', netnsPath: '/var/run/netns/../x' }],
    ['a netns entry whose id and name disagree', { ...netns, id: 'netns:red' }],
  ];
  for (const [what, a] of bad) t.throws(() => parseContainerState(formatContainerState([a])), /namespace path/, what);
});
