// The weave-net plugin without a router: config and environment read as
// hostile (every refusal with its CNI code), version negotiation, result
// shapes per version, the router's HTTP statuses as CNI codes, and
// runPlugin's dispatch over fake I/O (delegation on ADD and DEL, the
// delegate's addresses given back when the router refuses). Also that
// loading the plugin's entry pulls in nothing heavy.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CniAttachment } from '../../common/cni-wire';
import { dnsNameFor, parseCniArgs, parseEnv, parseJsonObject, parseNetConf, versionHasCommand } from '../../cni/config';
import { PluginError } from '../../cni/errors';
import { installCni, shimText } from '../../cni/install';
import type { PluginIo } from '../../cni/plugin';
import { runPlugin } from '../../cni/plugin';
import { buildResult, readIpamResult } from '../../cni/result';
import { cniCodeForStatus } from '../../cni/router-client';

const base = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', socket: '/run/weave/weave.sock' };
const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_ARGS: '', CNI_PATH: '/opt/cni/bin' };

function codeOf(fn: () => unknown): number | string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof PluginError ? err.cniCode : `not a PluginError: ${String(err)}`;
  }
}

t.test('network config: accepted, and each refusal with its code', async (t) => {
  const c = parseNetConf({ ...base, unknownField: { anything: true } });
  t.same([c.cniVersion, c.name, c.socket, c.ipamType, c.ipamWaitMs, c.prevResult], ['1.0.0', 'weave', '/run/weave/weave.sock', null, null, null], 'unknown fields ignored');
  t.equal(parseNetConf({ cniVersion: '0.3.1', name: 'weave', type: 'weave-net' }).socket, '/run/weave/weave.sock', 'default socket');
  t.equal(parseNetConf({ ...base, ipam: { type: 'host-local', subnet: '10.1.0.0/16' } }).ipamType, 'host-local');
  t.equal(parseNetConf(base).portSecurity, true, 'port security on unless the config says otherwise');
  t.equal(parseNetConf({ ...base, portSecurity: false }).portSecurity, false);
  const table: [string, Record<string, unknown>, number][] = [
    ['no cniVersion', { name: 'weave', type: 'weave-net' }, 1],
    ['cniVersion 0.2.0', { ...base, cniVersion: '0.2.0' }, 1],
    ['cniVersion a number', { ...base, cniVersion: 1 }, 1],
    ['type bridge', { ...base, type: 'bridge' }, 7],
    ['name missing', { ...base, name: undefined }, 7],
    ['name with a slash', { ...base, name: 'a/b' }, 7],
    ['name 129 chars', { ...base, name: 'x'.repeat(129) }, 7],
    ['socket relative', { ...base, socket: 'x.sock' }, 7],
    ['socket a number', { ...base, socket: 7 }, 7],
    ['socket too long for sun_path', { ...base, socket: `/${'s'.repeat(120)}` }, 7],
    ['socket with a NUL byte', { ...base, socket: '/run/weave/weave.sock\u0000x' }, 7],
    ['ipam a string', { ...base, ipam: 'host-local' }, 7],
    ['ipam without type', { ...base, ipam: {} }, 7],
    ['ipam type with slash', { ...base, ipam: { type: '/bin/sh' } }, 7],
    ['ipam type ..', { ...base, ipam: { type: '..' } }, 7],
    ['ipamWaitMs fractional', { ...base, ipamWaitMs: 1.5 }, 7],
    ['ipamWaitMs huge', { ...base, ipamWaitMs: 1e9 }, 7],
    ['portSecurity a string', { ...base, portSecurity: 'false' }, 7],
    ['prevResult an array', { ...base, prevResult: [] }, 7],
    ['valid-attachments not a list', { ...base, 'cni.dev/valid-attachments': {} }, 7],
    ['valid-attachment with a bad id', { ...base, 'cni.dev/valid-attachments': [{ containerID: '../x', ifname: 'eth0' }] }, 7],
  ];
  for (const [what, raw, code] of table) t.equal(codeOf(() => parseNetConf(raw)), code, what);
});

t.test('stdin: JSON object within the cap', async (t) => {
  t.same(parseJsonObject(Buffer.from('{"a":1}')), { a: 1 });
  t.equal(codeOf(() => parseJsonObject(Buffer.from('{'))), 6);
  t.equal(codeOf(() => parseJsonObject(Buffer.from('null'))), 6);
  t.equal(codeOf(() => parseJsonObject(Buffer.from('[1]'))), 6);
  // Well-formed JSON, only too big: refused for its size, before it is parsed.
  const big = Buffer.from(JSON.stringify({ a: 'x'.repeat(1024 * 1024) }));
  t.equal(codeOf(() => parseJsonObject(big)), 6);
  t.throws(() => parseJsonObject(big), /over the limit/);
});

t.test('environment: what each command needs, refused with code 4', async (t) => {
  const e = parseEnv({ ...env, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default', CNI_PATH: '/opt/cni/bin:relative:/usr/lib/cni' });
  t.same([e.command, e.containerId, e.netns, e.ifName], ['ADD', 'abc123', '/run/netns/x', 'eth0']);
  t.same(e.path, ['/opt/cni/bin', '/usr/lib/cni'], 'relative CNI_PATH entries dropped');
  t.equal(dnsNameFor(e), 'web-0', 'K8S_POD_NAME names it in DNS');
  t.equal(dnsNameFor(parseEnv({ ...env, CNI_CONTAINERID: '0123456789abcdef0123' })), '0123456789ab', 'else the id prefix');
  t.equal(dnsNameFor(parseEnv({ ...env, CNI_ARGS: 'K8S_POD_NAME=has space' })), 'abc123', 'an unusable pod name falls back to the id');
  t.equal(parseEnv({ ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns, '', 'DEL may come without a namespace');
  t.same(parseEnv({ CNI_COMMAND: 'VERSION' }).command, 'VERSION', 'VERSION needs nothing else');
  const table: [string, Record<string, string | undefined>][] = [
    ['no command', { ...env, CNI_COMMAND: undefined }],
    ['lower-case command', { ...env, CNI_COMMAND: 'add' }],
    ['no container id', { ...env, CNI_CONTAINERID: undefined }],
    ['container id with a colon', { ...env, CNI_CONTAINERID: 'netns:x' }],
    ['container id 257 chars', { ...env, CNI_CONTAINERID: 'a'.repeat(257) }],
    ['no netns on ADD', { ...env, CNI_NETNS: '' }],
    ['no netns on CHECK', { ...env, CNI_COMMAND: 'CHECK', CNI_NETNS: undefined }],
    ['netns relative', { ...env, CNI_NETNS: 'run/netns/x' }],
    ['netns with ..', { ...env, CNI_NETNS: '/run/netns/../../etc/shadow' }],
    ['netns with //', { ...env, CNI_NETNS: '/run//netns/x' }],
    ['netns with a newline', { ...env, CNI_NETNS: '/run/netns/x\ny' }],
    ['ifname 16 chars', { ...env, CNI_IFNAME: 'a'.repeat(16) }],
    ['ifname with a slash', { ...env, CNI_IFNAME: 'eth/0' }],
    ['ifname ..', { ...env, CNI_IFNAME: '..' }],
    ['CNI_ARGS without =', { ...env, CNI_ARGS: 'FOO' }],
    ['CNI_ARGS key twice', { ...env, CNI_ARGS: 'A=1;A=2' }],
    ['CNI_ARGS huge', { ...env, CNI_ARGS: `A=${'x'.repeat(20_000)}` }],
  ];
  for (const [what, raw] of table) t.equal(codeOf(() => parseEnv(raw)), 4, what);
  t.same([...parseCniArgs('A=1;B=x=y').entries()], [['A', '1'], ['B', 'x=y']], 'a value may hold =');
});

t.test('which commands each version has', async (t) => {
  t.notOk(versionHasCommand('0.3.1', 'CHECK'));
  t.ok(versionHasCommand('0.4.0', 'CHECK'));
  t.notOk(versionHasCommand('1.0.0', 'GC'));
  t.ok(versionHasCommand('1.1.0', 'STATUS'));
  t.ok(versionHasCommand('0.3.0', 'DEL'));
});

const attachment: CniAttachment = {
  containerId: 'abc123', ifName: 'eth0', netns: '/run/netns/x', network: 'weave', hostIfname: 'vethwec01234567', mac: '02:00:00:00:00:01',
  addresses: [{ address: '10.32.0.5/12' }, { address: 'fd00::5/64' }], routes: [{ dst: '10.32.0.0/12' }, { dst: '224.0.0.0/4' }],
  dns: { nameservers: ['169.254.1.2'], domain: 'weave.local', search: ['weave.local'] }, dnsName: 'web', ipam: 'weave',
};

t.test('results per version', async (t) => {
  const r1 = buildResult('1.0.0', attachment);
  t.same(r1, {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/run/netns/x' }],
    ips: [{ address: '10.32.0.5/12', interface: 0 }, { address: 'fd00::5/64', interface: 0 }],
    routes: [{ dst: '10.32.0.0/12' }, { dst: '224.0.0.0/4' }],
    dns: { nameservers: ['169.254.1.2'], domain: 'weave.local', search: ['weave.local'] },
  });
  for (const v of ['0.3.0', '0.3.1', '0.4.0'] as const) {
    t.same(buildResult(v, attachment).ips.map((i) => i.version), ['4', '6'], `${v} ips carry their version`);
  }
  t.same(buildResult('1.0.0', { ...attachment, dns: null }).dns, {}, 'no DNS: an empty dns object');
  t.same(readIpamResult('host-local', { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.1.0.2/16', gateway: '10.1.0.1' }], routes: [{ dst: '0.0.0.0/0' }] }),
    { addresses: [{ address: '10.1.0.2/16', gateway: '10.1.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  t.equal(codeOf(() => readIpamResult('x', { ips: [] })), 5, 'an IPAM result without addresses');
  t.equal(codeOf(() => readIpamResult('x', { ips: [{ gateway: '1.2.3.4' }] })), 5);
  t.equal(codeOf(() => readIpamResult('x', { ips: Array(17).fill({ address: '10.0.0.1/8' }) })), 5);
});

t.test('router HTTP statuses become CNI codes', async (t) => {
  t.same([400, 404, 409, 410, 413, 500, 503].map(cniCodeForStatus), [7, 3, 100, 3, 7, 5, 11]);
});

function fakeIo(over: Partial<PluginIo> & { calls?: string[] } = {}): PluginIo & { calls: string[] } {
  const calls = over.calls ?? [];
  return {
    env: env,
    stdin: () => Promise.resolve(Buffer.from(JSON.stringify(base))),
    router: () => (method, p, body) => {
      calls.push(`${method} ${p} ${JSON.stringify(body ?? null)}`);
      return Promise.resolve(p === '/cni/add' || p === '/cni/check' ? attachment : { removed: true, released: [] });
    },
    delegate: (type, e) => {
      calls.push(`delegate ${type} ${e['CNI_COMMAND'] ?? ''}`);
      return Promise.resolve({ cniVersion: '1.0.0', ips: [{ address: '10.44.0.2/24', gateway: '10.44.0.1' }] });
    },
    ...over,
    calls,
  };
}

t.test('runPlugin: ADD, DEL, errors on stdout', async (t) => {
  const io = fakeIo({ env: { ...env, CNI_ARGS: 'K8S_POD_NAME=web' } });
  const add = await runPlugin(io);
  t.equal(add.exitCode, 0);
  t.equal((JSON.parse(add.stdout) as { cniVersion: string }).cniVersion, '1.0.0');
  t.match(io.calls[0], /^POST \/cni\/add .*"dnsName":"web"/);
  t.notMatch(io.calls[0], /delegated/, 'no ipam section: weave IPAM');
  t.notMatch(io.calls[0], /portSecurity/, 'guarded unless the config says otherwise');
  const open = fakeIo({ stdin: () => Promise.resolve(Buffer.from(JSON.stringify({ ...base, portSecurity: false }))) });
  t.equal((await runPlugin(open)).exitCode, 0);
  t.match(open.calls[0], /^POST \/cni\/add .*"portSecurity":false/, '"portSecurity": false reaches the router');

  const withIpam = { ...base, ipam: { type: 'host-local' } };
  const refused = fakeIo({
    stdin: () => Promise.resolve(Buffer.from(JSON.stringify(withIpam))),
    router: () => () => Promise.reject(new PluginError(3, 'network namespace /run/netns/x does not exist')),
  });
  const r = await runPlugin(refused);
  t.equal(r.exitCode, 1);
  t.same(JSON.parse(r.stdout), { cniVersion: '1.0.0', code: 3, msg: 'network namespace /run/netns/x does not exist' });
  t.same(refused.calls, ['delegate host-local ADD', 'delegate host-local DEL'], "the delegate's address is given back when the router refuses");

  const del = fakeIo({ env: { ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, stdin: () => Promise.resolve(Buffer.from(JSON.stringify(withIpam))) });
  const d = await runPlugin(del);
  t.same([d.exitCode, d.stdout], [0, '']);
  t.match(del.calls[0], /^POST \/cni\/del \{"version":1,"containerId":"abc123","ifName":"eth0"\}$/, 'DEL without a namespace sends none');
  t.equal(del.calls[1], 'delegate host-local DEL');

  const crash = await runPlugin(fakeIo({ router: () => () => Promise.reject(new Error('boom')) }));
  t.same(JSON.parse(crash.stdout), { cniVersion: '1.0.0', code: 5, msg: 'boom' }, 'an unexpected failure is still a spec error');
  const badEnv = await runPlugin(fakeIo({ env: {} }));
  t.equal((JSON.parse(badEnv.stdout) as { code: number }).code, 4);
  const odd = await runPlugin(fakeIo({ stdin: () => Promise.resolve(Buffer.from(JSON.stringify({ ...base, cniVersion: '0.4.0' }))), router: () => () => Promise.resolve({ nonsense: true }) }));
  t.same(JSON.parse(odd.stdout), { cniVersion: '0.4.0', code: 5, msg: 'the router replied with something that is not an attachment; is it a weave router of the same release?' }, 'errors answer in the config\'s version');
});

t.test('the plugin loads nothing heavy', async (t) => {
  const entry = path.resolve(__dirname, '..', '..', 'cni', 'plugin.js');
  // Only what the plugin itself pulls in: the test runner preloads its own
  // hooks (coverage, spawn wrapping) into every child through NODE_OPTIONS.
  const script = `const preloaded = new Set(Object.keys(require.cache));
    require(${JSON.stringify(entry)}); require(${JSON.stringify(path.join(path.dirname(entry), 'router-client.js'))}); require(${JSON.stringify(path.join(path.dirname(entry), 'delegate.js'))});
    console.log(JSON.stringify(Object.keys(require.cache).filter((f) => !preloaded.has(f))))`;
  const loaded = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as string[];
  const ours = loaded.map((f) => path.relative(path.resolve(__dirname, '..', '..'), f)).sort();
  t.same(ours.filter((f) => !f.startsWith('cni/')), ['common/cni-wire.js', 'common/errors.js'], `only the wire contract from common/: ${ours.join(' ')}`);
  t.notOk(loaded.some((f) => /node_modules/.test(f)), 'no npm package (commander, libsodium)');
});

t.test('setup-cni: a shim a runtime with no PATH can run, in place or from a lib directory', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'weave-setup-cni-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const libDir of [undefined, path.join(dir, 'lib')]) {
    const r = installCni({ binDir: path.join(dir, 'bin'), confDir: path.join(dir, 'conf'), socket: '/run/weave/weave-test.sock', ...(libDir !== undefined ? { libDir } : {}) });
    t.equal(statSync(r.plugin).mode & 0o777, 0o755, 'the plugin is executable');
    t.same(JSON.parse(readFileSync(r.conflist, 'utf8')), { cniVersion: '1.0.0', name: 'weave', plugins: [{ type: 'weave-net', socket: '/run/weave/weave-test.sock' }] });
    const shim = readFileSync(r.plugin, 'utf8');
    if (libDir !== undefined) t.match(shim, `'${libDir}/node' '${libDir}/dist/cni/weave-net.js'`, 'the shim names the copies');
    const out = execFileSync(r.plugin, [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"0.4.0"}', encoding: 'utf8' });
    t.same(JSON.parse(out), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] }, `VERSION through the shim${libDir !== undefined ? ' from the lib directory' : ''}`);
  }
  t.equal(shimText("/opt/it's/node", '/x/weave-net.js').split('\n')[3], `exec '/opt/it'\\''s/node' '/x/weave-net.js' "$@"`, 'paths are quoted for sh');
});
