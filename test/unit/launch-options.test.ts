import { Command } from 'commander';
import t from 'tap';
import { DEFAULT_CONN_LIMIT, DEFAULT_DATADIR, DEFAULT_STATUS_ADDRESS } from '../../cli/config';
import { apiSocketFor, DEFAULT_API_SOCKET } from '../../cli/api-socket';
import type { DaemonConfig } from '../../cli/config';
import { addRouterOptions, daemonConfigToArgs, toDaemonConfig } from '../../cli/launch-options';
import type { RouterOptionValues } from '../../cli/launch-options';
import { normalisePeerAddress } from '../../router/mesh/peer-address';

const host = (): string => 'testhost';

/** Parses argv the way `weave router` does, then validates. */
function parse(argv: string[], env: NodeJS.ProcessEnv = {}): DaemonConfig {
  const cmd = addRouterOptions(new Command('router').argument('[peer...]').exitOverride().configureOutput({ writeErr: () => undefined }));
  cmd.parse(argv, { from: 'user' });
  return toDaemonConfig(cmd.opts<RouterOptionValues>(), cmd.args, env, host);
}

t.test('defaults', async (t) => {
  t.same(parse([]), {
    datadir: DEFAULT_DATADIR,
    name: null,
    nickname: 'testhost',
    port: 6783,
    password: null,
    discovery: true,
    connLimit: DEFAULT_CONN_LIMIT,
    peers: [],
    logLevel: 'info',
    apiSocket: DEFAULT_API_SOCKET,
    apiGroup: null,
    statusAddress: DEFAULT_STATUS_ADDRESS,
    mtu: null,
    dns: { domain: 'weave.local', ttlS: 1, upstreams: null, resolvConf: '/etc/resolv.conf' },
    ipalloc: { range: null, defaultSubnet: null, rangeV6: null, init: null },
  });
});

t.test('IPAM flags are validated before launch and passed through', async (t) => {
  const c = parse(['--ipalloc-range', '10.40.0.0/16', '--ipalloc-default-subnet', '10.40.1.0/24', '--ipalloc-init', 'consensus=3']);
  t.same(c.ipalloc, { range: '10.40.0.0/16', defaultSubnet: '10.40.1.0/24', rangeV6: null, init: 'consensus=3' });
  t.throws(() => parse(['--ipalloc-range', '10.40.0.0/33']), /ipalloc-range/);
  t.throws(() => parse(['--ipalloc-range', '10.40.0.0/16', '--ipalloc-default-subnet', '10.50.0.0/24']), /not inside/);
  t.throws(() => parse(['--ipalloc-init', 'sometimes']), /ipalloc-init must be/);
});

t.test('every option, peers normalised and deduplicated', async (t) => {
  const c = parse([
    '--password', 's3cret', '--name', 'AA:BB:CC:DD:EE:FF', '--nickname', 'h1', '--port', '7000', '--no-discovery',
    '--conn-limit', '5', '--datadir', '/tmp/w1', '--log-level', 'debug', '--api-group', 'weave',
    '--status-address', '[::1]:7002', '--mtu', '1376', '--dns-domain', 'Mesh.Example.', '--dns-ttl', '30',
    '--dns-upstream', '127.0.0.2,[::1]:5353', '--dns-resolv-conf', '/tmp/resolv.conf', '10.0.0.2', 'Peer.Example:7000', '10.0.0.2:6783', '[fe80::1]',
  ]);
  t.same(c, {
    datadir: '/tmp/w1',
    name: 'aa:bb:cc:dd:ee:ff',
    nickname: 'h1',
    port: 7000,
    password: 's3cret',
    discovery: false,
    connLimit: 5,
    peers: ['10.0.0.2:6783', 'peer.example:7000', '[fe80::1]:6783'],
    logLevel: 'debug',
    apiSocket: apiSocketFor('/tmp/w1'),
    apiGroup: 'weave',
    statusAddress: '[::1]:7002',
    mtu: 1376,
    dns: {
      domain: 'mesh.example', ttlS: 30, resolvConf: '/tmp/resolv.conf',
      upstreams: [{ host: '127.0.0.2', port: 53 }, { host: '::1', port: 5353 }],
    },
    ipalloc: { range: null, defaultSubnet: null, rangeV6: null, init: null },
  });
});

t.test('peer addresses: IP text in its canonical spelling, names in lower case', async (t) => {
  const cases: [string, string][] = [
    ['10.0.0.2', '10.0.0.2:6783'], ['Peer-1.Example.', 'peer-1.example.:6783'], ['[FD00:0:0::1]:7000', '[fd00::1]:7000'],
    ['[::ffff:10.0.0.2]', '[::ffff:a00:2]:6783'], ['host-10', 'host-10:6783'],
  ];
  for (const [text, want] of cases) t.equal(normalisePeerAddress(text), want, text);
});

t.test('MTU: flag, WEAVE_MTU, and out-of-range values refused', async (t) => {
  t.equal(parse([], { WEAVE_MTU: '1400' }).mtu, 1400);
  t.equal(parse(['--mtu', '9000'], { WEAVE_MTU: '1400' }).mtu, 9000);
  t.throws(() => parse(['--mtu', '100']), /--mtu must be a whole number from 576/);
  t.throws(() => parse([], { WEAVE_MTU: 'big' }), /WEAVE_MTU/);
});

t.test('environment fallbacks, flags win', async (t) => {
  const env = { WEAVE_PASSWORD: 'fromenv', WEAVE_DATADIR: '/tmp/envdir' };
  const c = parse([], env);
  t.equal(c.password, 'fromenv');
  t.equal(c.datadir, '/tmp/envdir');
  t.equal(c.apiSocket, apiSocketFor('/tmp/envdir'), 'the socket follows the datadir');
  const f = parse(['--password', 'flag', '--datadir', '/tmp/flagdir', '--api-socket', '/tmp/flag.sock'], env);
  t.equal(f.password, 'flag');
  t.equal(f.datadir, '/tmp/flagdir');
  t.equal(f.apiSocket, '/tmp/flag.sock');
  t.equal(parse([], { WEAVE_PASSWORD: '' }).password, null, 'an empty variable means no password');
  t.match(parse(['--datadir', 'relative/dir']).datadir, /^\/.*\/relative\/dir$/, 'datadir made absolute');
});

t.test('bad values: RouterError config naming the flag and what was expected', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--password', ''], /--password must not be empty/],
    [['--name', 'nope'], /--name: peer name must look like a MAC address/],
    [['--nickname', '  '], /--nickname must not be empty/],
    [['--nickname', 'x'.repeat(300)], /--nickname must be at most 255 characters/],
    [['--nickname', 'a\u001bb'], /--nickname must not contain control characters/],
    [['--port', '0'], /--port must be from 1 to 65535, got 0/],
    [['--port', '70000'], /--port must be from 1 to 65535/],
    [['--port', '12ab'], /--port must be a number/],
    [['--conn-limit', '0'], /--conn-limit must be a whole number from 1 to 100000, got "0"/],
    [['--conn-limit', '2.5'], /--conn-limit must be a whole number/],
    [['--datadir', ''], /--datadir must not be empty/],
    [['--api-socket', '127.0.0.1:6784'], /--api-socket takes the path of the router's API socket \(the API no longer listens on TCP\)/],
    [['--api-socket', 'run/weave.sock'], /--api-socket must be an absolute path/],
    [['--api-socket', `/tmp/${'x'.repeat(120)}.sock`], /--api-socket: a Unix socket path holds at most 107 bytes, got 130/],
    [['--api-group', 'bad group'], /--api-group must be a group name/],
    [['--api-group', ''], /--api-group must be a group name/],
    [['--status-address', '127.0.0.1'], /--status-address must be host:port/],
    [['--status-address', '0.0.0.0:6782'], /--status-address must be a loopback address/],
    [['10.0.0.1:99999'], /port in peer address "10\.0\.0\.1:99999" must be from 1 to 65535/],
    [['fe80::1'], /write IPv6 addresses in brackets/],
    [['bad_host!'], /peer address "bad_host!": .* is neither an IP address nor a host name/],
    // Leading zeros and short forms: the resolver would read them the inet_aton way (010 is 8, 10.1 is 10.0.0.1).
    [['010.0.0.2'], /peer address "010\.0\.0\.2": expected an IPv4 address .*leading zeros are refused/],
    [['10.0.0.02:7000'], /peer address "10\.0\.0\.02:7000": expected an IPv4 address .*leading zeros are refused/],
    [['10.1'], /peer address "10\.1": expected an IPv4 address such as 10\.32\.0\.1, got "10\.1"/],
    [['[::ffff:010.0.0.2]'], /not an IPv6 address inside brackets \(leading zeros are refused/],
    [['[fe80::1%eth0]:6783'], /not an IPv6 address inside brackets \(zone ids/],
    [['--status-address', '127.000.0.1:6782'], /--status-address must be a loopback address/],
    [['--dns-domain', 'bad domain'], /--dns-domain: the domain must be a domain name/],
    [['--dns-ttl', '-1'], /--dns-ttl must be a whole number of seconds/],
    [['--dns-ttl', '100000'], /--dns-ttl must be a whole number of seconds from 0 to 86400/],
    [['--dns-upstream', 'dns.example'], /--dns-upstream: .*must be an IP address/],
    [['--dns-upstream', ','], /--dns-upstream needs at least one address/],
    [['--datadir', '/tmp/w\u0000x'], /--datadir must not contain NUL bytes/],
    [['--status-address', '127.0.0.1:0'], /--status-address: port must be from 1 to 65535 \(clients must know where to look\), got 0/],
    [['--dns-resolv-conf', ' '], /--dns-resolv-conf must be a file name/],
    [['--dns-resolv-conf', '/etc/resolv\u0000.conf'], /--dns-resolv-conf must be a file name/],
  ];
  for (const [argv, message] of cases) {
    // JSON for the name: a NUL byte in a test's name would make its output binary to grep.
    t.throws(() => parse(argv), { name: 'RouterError', code: 'config', message }, JSON.stringify(argv));
  }
  t.throws(() => parse(['--log-level', 'loud']), { code: 'commander.invalidArgument' }, 'commander refuses unknown log levels');
  t.throws(() => toDaemonConfig({ logLevel: 'loud' }, [], {}, host), { code: 'config', message: /--log-level must be one of/ });
  t.throws(() => toDaemonConfig({ port: ['1'] }, [], {}, host), { code: 'config', message: /--port expects a value/ });
  t.throws(() => toDaemonConfig({}, Array.from({ length: 1001 }, () => '10.0.0.1'), {}, host), { code: 'config', message: /over the limit/ });
});

t.test("--log-level takes Weave Net's spellings as well as ours", async (t) => {
  const cases: [string, string][] = [['debug', 'debug'], ['info', 'info'], ['warning', 'warn'], ['warn', 'warn'], ['error', 'error']];
  for (const [given, level] of cases) {
    t.equal(parse(['--log-level', given]).logLevel, level, given);
    t.equal(toDaemonConfig({ logLevel: given }, [], {}, host).logLevel, level, `${given} without commander`);
  }
  // What launch hands the detached router reads back the same.
  const c = parse(['--log-level', 'warning']);
  t.same(parse(daemonConfigToArgs(c).args).logLevel, 'warn');
});

t.test('config to argv and back is lossless; the password stays out of argv', async (t) => {
  const configs: DaemonConfig[] = [
    parse(['--password', 'hunter2', '--name', 'aa:bb:cc:dd:ee:ff', '--no-discovery', '--datadir', '/tmp/x', '10.0.0.2', '[::1]:7000']),
    parse(['--nickname', 'h2', '--port', '7001', '--log-level', 'warn', '--api-socket', '/tmp/h2/api.sock', '--api-group', 'wheel']),
    parse(['--dns-domain', 'example.net', '--dns-ttl', '0', '--dns-upstream', '10.0.0.53:5300,[fd00::53]', '--dns-resolv-conf', 'rel/resolv.conf']),
    parse(['--no-port-security', '--no-fastdp', '--no-auto-attach', '--no-docker-plugin', '--no-kernel-relay']),
  ];
  for (const config of configs) {
    const inv = daemonConfigToArgs(config);
    t.notOk(inv.args.some((a) => a.includes('hunter2')), 'no password in argv');
    t.same(inv.env, config.password === null ? {} : { WEAVE_PASSWORD: config.password });
    // The child sees no other environment: every default must be explicit in argv.
    t.same(parse(inv.args, inv.env), config);
  }
});

t.test('--no-kernel-relay turns kernel relays off; absent, they are on', async (t) => {
  t.equal(parse(['--no-kernel-relay']).kernelRelay, false);
  t.equal(parse([]).kernelRelay, undefined, 'on by default, and not spelled out');
  t.ok(daemonConfigToArgs(parse(['--no-kernel-relay'])).args.includes('--no-kernel-relay'), 'handed to the router');
});

t.test('--no-port-security turns port security off; absent, it is on', async (t) => {
  t.equal(parse(['--no-port-security']).portSecurity, false);
  t.equal(parse([]).portSecurity, undefined, 'on by default, and not spelled out');
  t.ok(daemonConfigToArgs(parse(['--no-port-security'])).args.includes('--no-port-security'), 'handed to the router');
  t.notOk(daemonConfigToArgs(parse([])).args.includes('--no-port-security'));
  t.throws(() => toDaemonConfig({ portSecurity: 'yes' }, [], {}, host), /--no-port-security takes no value/);
});

t.test('--old-password: flag or WEAVE_OLD_PASSWORD like --password, handed to the router in the environment only', async (t) => {
  t.equal(parse(['--password', 'new', '--old-password', 'old']).oldPassword, 'old');
  t.equal(parse([], { WEAVE_PASSWORD: 'new', WEAVE_OLD_PASSWORD: 'old' }).oldPassword, 'old', 'from the environment');
  t.equal(parse(['--old-password', 'flag'], { WEAVE_PASSWORD: 'new', WEAVE_OLD_PASSWORD: 'env' }).oldPassword, 'flag', 'the flag wins');
  t.equal(parse([], { WEAVE_PASSWORD: 'new', WEAVE_OLD_PASSWORD: '' }).oldPassword, undefined, 'an empty variable means none');
  t.throws(() => parse(['--old-password', 'old']), /needs --password/);
  t.throws(() => parse(['--password', 'same', '--old-password', 'same']), /same as --password/);
  t.throws(() => parse(['--password', 'new', '--old-password', '']), /must not be empty/);
  const inv = daemonConfigToArgs(parse(['--password', 'new', '--old-password', 'old']));
  t.same(inv.env, { WEAVE_PASSWORD: 'new', WEAVE_OLD_PASSWORD: 'old' });
  t.notOk(inv.args.some((a) => a.includes('old')), 'never in argv');
});

t.test('WEAVE_REKEY_INTERVAL_MS (test-only) is checked and passed on', async (t) => {
  t.equal(parse([], { WEAVE_REKEY_INTERVAL_MS: '2000' }).rekeyIntervalMs, 2000);
  t.equal(parse([]).rekeyIntervalMs, undefined);
  t.throws(() => parse([], { WEAVE_REKEY_INTERVAL_MS: '10' }), /WEAVE_REKEY_INTERVAL_MS/);
  t.same(daemonConfigToArgs(parse([], { WEAVE_REKEY_INTERVAL_MS: '2000' })).env, { WEAVE_REKEY_INTERVAL_MS: '2000' });
});
