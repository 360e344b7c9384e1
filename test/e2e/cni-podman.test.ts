// End-to-end test with a real CNI runtime: two simulated hosts each with a
// router; a private podman (scripts/podman.ts: its own storage and CNI
// directories, CNI backend) runs inside h1's namespace, as a runtime on a
// node runs beside that node's router, with the `weave` network that
// `weave setup-cni` wrote; a plain namespace is attached with weave attach
// on h2. They ping each other across hosts by address and by name, through
// a router restart on h1; `podman rm` frees the address and the name.
// Skips only when podman cannot be installed. Needs root; removes its
// containers, namespaces and files even on failure.

import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../cli/api-client';
import { run } from '../../scripts/command';
import { PrivatePodman, podmanSkipReason } from '../../scripts/podman';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';

t.setTimeout(600_000);

async function main(): Promise<void> {
  const skip = await podmanSkipReason();
  if (skip !== false) {
    t.skip(skip, async () => undefined);
    return;
  }
  await t.test('podman --network weave on h1, a weave attach container on h2', async (t) => {
    const net = await SimNetwork.create({ hosts: 2, weaveEnv: { WEAVE_TEST_FAST: '1' } });
    const podman = new PrivatePodman(mkdtempSync(join(tmpdir(), 'weave-podman-')));
    t.teardown(async () => {
      await podman.destroy();
      for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
      await net.destroy();
    });
    const [h1, h2] = [net.host('h1'), net.host('h2')];
    for (const [h, peers] of [[h1, []], [h2, [h1.address]]] as const) {
      const r = await h.weave(['launch', '--nickname', h.name, ...peers]);
      t.equal(r.code, 0, `launch ${h.name}: ${r.stderr.trim()}`);
    }
    for (const h of [h1, h2]) {
      await waitFor(async () => (await h.weaveStatus()).peers.filter((p) => p.reachable).length === 2, {
        what: `${h.name} reaches both peers`, timeoutMs: 30_000, detail: () => h.readLog(),
      });
    }
    const setup = await h1.weave(['setup-cni', '--bin-dir', podman.binDir, '--conf-dir', podman.confDir]);
    t.equal(setup.code, 0, `setup-cni: ${setup.stderr.trim()}`);
    await podman.importBusybox();

    // On h2: a plain namespace attached with weave attach (IPAM address, DNS name = the namespace's).
    const c2 = `${net.prefix}c2`;
    await run(['ip', 'netns', 'add', c2], { check: true });
    await run(['ip', '-n', c2, 'link', 'set', 'lo', 'up'], { check: true });
    const attach = await h2.weave(['attach', `netns:${c2}`]);
    t.equal(attach.code, 0, `attach on h2: ${attach.stderr.trim()}`);
    const c2Addr = attach.stdout.trim().split(/\s+/)[0]?.split('/')[0] ?? '';
    t.match(c2Addr, /^10\.\d+\.\d+\.\d+$/, `c2 got ${c2Addr}`);

    const id = await podman.runDetached('web1', 'weave', h1.ns, ['sleep', '3600']);
    t.match(id, /^[0-9a-f]{64}$/, 'podman ran the container');
    const api1 = new ApiClient(h1.apiSocket);
    const held = (await api1.get<{ addresses: string[] }>(`/ipam/containers/${id}`)).addresses;
    t.equal(held.length, 1, `h1's IPAM holds one address for the podman container id: ${held.join(',')}`);
    const webAddr = held[0]?.split('/')[0] ?? '';
    const exec = (cmd: string[]) => podman.podman(['exec', 'web1', ...cmd], { netns: h1.ns, timeoutMs: 30_000 });
    const inC2 = (cmd: string[]) => run(['ip', 'netns', 'exec', c2, ...cmd], { timeoutMs: 30_000 });
    t.match((await exec(['ip', 'addr', 'show', 'eth0'])).stdout, new RegExp(`inet ${webAddr.replace(/\./g, '\\.')}/`), 'eth0 inside the podman container has it');
    const resolv = (await exec(['cat', '/etc/resolv.conf'])).stdout;
    t.match(resolv, /nameserver 169\.254\.\d+\.\d+/, 'podman wrote weave DNS into resolv.conf from the result');
    t.match(resolv, /search .*weave\.local/);
    const ps = (await h1.weave(['ps'])).stdout;
    t.match(ps, new RegExp(`^cni:${id.slice(0, 12)}/eth0 web1 cni [0-9a-f:]{17} ${webAddr.replace(/\./g, '\\.')}/`, 'm'), `weave ps on h1 lists web1: ${ps}`);

    const pingsAcross = async (when: string): Promise<void> => {
      const ok = (r: { code: number }): boolean => r.code === 0;
      await waitFor(async () => ok(await exec(['ping', '-c', '1', '-W', '2', c2Addr])), { what: `web1 -> c2 by address (${when})`, timeoutMs: 30_000, intervalMs: 500 });
      t.pass(`web1 pings c2 at ${c2Addr} (${when})`);
      t.equal((await inC2(['ping', '-c', '1', '-W', '2', webAddr])).code, 0, `c2 pings web1 at ${webAddr} (${when})`);
      await waitFor(async () => ok(await exec(['ping', '-c', '1', '-W', '2', c2])), { what: `web1 -> c2 by name (${when})`, timeoutMs: 30_000, intervalMs: 500 });
      t.pass(`web1 pings c2 by name ${c2} (${when})`);
      await waitFor(async () => ok(await inC2(['ping', '-c', '1', '-W', '2', 'web1'])), { what: `c2 -> web1 by name (${when})`, timeoutMs: 30_000, intervalMs: 500 });
      t.pass(`c2 pings web1 by name (${when})`);
    };
    await pingsAcross('first');

    // A router restart in between loses nothing: the veth, the address and the name stay.
    t.equal((await h1.weave(['stop'], { timeoutMs: 20_000 })).code, 0, 'h1 stopped');
    const relaunch = await h1.weave(['launch', '--nickname', 'h1', h2.address]);
    t.equal(relaunch.code, 0, `relaunch h1: ${relaunch.stderr.trim()}`);
    t.same((await api1.get<{ addresses: string[] }>(`/ipam/containers/${id}`)).addresses, held, 'same address after the restart');
    await pingsAcross('after h1 restarted');

    const rm = await podman.podman(['rm', '-f', '-t', '1', 'web1'], { netns: h1.ns });
    t.equal(rm.code, 0, `podman rm: ${rm.stderr.trim()}`);
    t.same((await api1.get<{ addresses: string[] }>(`/ipam/containers/${id}`)).addresses, [], 'podman rm freed the address');
    t.same((await api1.get<{ attachments: unknown[] }>('/cni')).attachments, [], 'and the attachment');
    await waitFor(async () => !(await h2.weave(['dns-lookup', 'web1'])).stdout.includes(webAddr), { what: 'web1 to leave DNS on h2', timeoutMs: 20_000, intervalMs: 500 });
    t.pass('the name is gone from DNS, on the other host too');
    t.notMatch((await h1.exec(['ip', '-o', 'link', 'show'])).stdout, /vethwec/, 'no host end left on h1');
    t.notMatch(readFileSync(join(podman.confDir, '10-weave.conflist'), 'utf8'), /\/etc\/cni/, 'the private config directory was used');
  });
}

void main().catch((err: unknown) => {
  t.fail(`cni-podman test failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
});
