// Unit tests of the container API: the /attach and /detach body checks, the
// CLI's split of addresses and container and its `weave ps` lines, and the
// HTTP routes over a ContainerManager on a fake host (host-fakes.ts).

import t from 'tap';
import type { AttachedContainer } from '../../router/host/attached-container';
import { containerApi, parseAttachBody, parseDetachBody } from '../../router/api/container-api';
import { HttpApi } from '../../router/api/http-api';
import type { RouterControl } from '../../router/api/control';
import { ApiClient, ApiError } from '../../cli/api-client';
import { tempSocketPath } from './temp-socket';
import { renderPs, splitAddressesAndContainer } from '../../cli/container-commands';
import { silentLogger } from '../../common/logger';
import { sampleStatus } from './sample-status';
import { setup } from './host-fakes';

t.test('API bodies and CLI arguments', async (t) => {
  t.same(parseAttachBody({ container: 'web', addresses: ['10.32.0.1/12'] }), { container: 'web', addresses: ['10.32.0.1/12'] });
  t.same(parseDetachBody({ container: 'web' }), { container: 'web' });
  const badAttach: [unknown, RegExp][] = [
    [null, /expects a JSON object/],
    [[], /expects a JSON object/],
    [{ addresses: ['10.32.0.1/12'] }, /"container" must be/],
    [{ container: 'web', addresses: 'x' }, /"addresses" must be an array/],
    [{ container: 'web', addresses: [5] }, /every address must be a string/],
    [{ container: 'web', addresses: new Array(65).fill('10.32.0.1/12') }, /over the limit/],
    // The CLI leaves these checks to the API, so they must come before the container is looked for, in the CLI's order.
    [{ container: 'netns:a/b', addresses: ['10.32.0.0/12'] }, /netns:NAME needs a network namespace name/],
    [{ container: 'netns:nosuch', addresses: ['10.32.0.0/12'] }, /network address/],
    [{ container: 'netns:nosuch', addresses: ['net:10.32.8.0/24', 'ip:10.32.0.0/12'] }, /network address/],
    [{ container: 'netns:nosuch', addresses: ['fe80::1/64'] }, /link-local/],
  ];
  for (const [body, re] of badAttach) t.throws(() => parseAttachBody(body), { code: 'config', message: re });
  t.same(parseAttachBody({ container: 'web' }).addresses, [], 'no addresses: IPAM allocates');
  t.throws(() => parseDetachBody({ container: 'web', addresses: 'x' }), /must be an array/);

  t.same(splitAddressesAndContainer(['10.32.0.1/12', '10.32.0.2/12', 'web'], 'attach'), { container: 'web', addresses: ['10.32.0.1/12', '10.32.0.2/12'] });
  t.same(splitAddressesAndContainer(['netns:x'], 'detach'), { container: 'netns:x', addresses: [] });
  t.same(splitAddressesAndContainer(['web'], 'attach'), { container: 'web', addresses: [] }, 'no address: IPAM allocates');
  t.same(splitAddressesAndContainer(['net:10.32.8.0/24', 'ip:10.32.0.9/12', 'web'], 'attach').addresses, ['net:10.32.8.0/24', 'ip:10.32.0.9/12']);
  t.throws(() => splitAddressesAndContainer(['ip:10.32.0.0/12', 'web'], 'attach'), /network address/);
  t.throws(() => splitAddressesAndContainer(['web', '10.32.0.1/12'], 'attach'), /the container comes last/);
  t.throws(() => splitAddressesAndContainer(['10.32.0.0/12', 'web'], 'attach'), /network address/);
  t.same(splitAddressesAndContainer(['10.32.0.1/12', 'fd00:77:1::1/48', 'web'], 'attach').addresses, ['10.32.0.1/12', 'fd00:77:1::1/48'], 'IPv6 too');
  t.same(splitAddressesAndContainer(['ip:fd00:77:1::1/48', 'web'], 'attach').addresses, ['ip:fd00:77:1::1/48']);
  t.throws(() => splitAddressesAndContainer(['web', 'fd00:77:1::1/48'], 'attach'), /the container comes last/);
  t.throws(() => splitAddressesAndContainer(['fe80::1/64', 'web'], 'attach'), /link-local/);
  const c: AttachedContainer = {
    id: 'netns:x', name: 'x', kind: 'netns', ifname: 'ethwe', mac: '02:00:00:00:00:01', addresses: ['10.32.0.1/12', '10.32.0.2/12'], hostIfname: 'vethwensabc', pid: null,
  };
  t.equal(renderPs([c]), 'netns:x x manual 02:00:00:00:00:01 10.32.0.1/12 10.32.0.2/12');
});

t.test('HTTP API: 400 for bad requests, JSON for good ones', async (t) => {
  const control: RouterControl = { status: () => sampleStatus(), connect: () => undefined, forget: () => undefined, stop: () => undefined };
  const api = new HttpApi({ control, logger: silentLogger }, { socketPath: tempSocketPath(t), gid: null });
  const { host, manager } = setup();
  host.namespaces.set('/var/run/netns/blue', 'ns:blue');
  api.mount(containerApi(manager));
  await api.listen();
  t.teardown(() => api.close());
  const client = new ApiClient(api.socketPath());
  const reply = await client.post<{ container: AttachedContainer }>('/attach', { container: 'netns:blue', addresses: ['10.32.4.1/12'] });
  t.same(reply.container.addresses, ['10.32.4.1/12']);
  t.same((await client.get<{ containers: AttachedContainer[] }>('/ps')).containers.map((x) => x.id), ['netns:blue']);
  for (const [body, re] of [
    [{ container: 'netns:blue' }, /an address is required when no IPAM/],
    [{ container: 'netns:nosuch', addresses: ['10.32.4.2/12'] }, /no network namespace named nosuch/],
    [{ container: 'netns:blue', addresses: ['10.32.0.0/12'] }, /network address/],
  ] as [unknown, RegExp][]) {
    const err = await client.post('/attach', body).then(() => null, (e: unknown) => e);
    t.ok(err instanceof ApiError && err.statusCode === 400 && re.test(err.message), `400: ${String(err)}`);
  }
  const d = await client.post<{ detached: boolean }>('/detach', { container: 'netns:blue' });
  t.equal(d.detached, true);
  const report = await client.get<{ containers: unknown[] }>('/report');
  t.same(report.containers, []);
});
