// Router launch options: their commander definitions (shared by `weave launch`
// and `weave router`), their validation into a DaemonConfig, and the reverse
// trip into argv + environment for the detached `weave router` that `weave
// launch` starts. The only place that reads router flags and their environment
// fallbacks. The password never goes into argv (other users can read argv in
// /proc); it travels in WEAVE_PASSWORD.

import os from 'node:os';
import path from 'node:path';
import { Option } from 'commander';
import type { Command } from 'commander';
import {
  DEFAULT_CONN_LIMIT,
  DEFAULT_DATADIR,
  DEFAULT_RESOLV_CONF,
  DEFAULT_STATUS_ADDRESS,
} from './config';
import type { DaemonConfig } from './config';
import { IpamConfig, parseIpamConfig } from '../ipam/config';
import { DEFAULT_DOMAIN, DEFAULT_TTL_S, MAX_TTL_S } from '../dns/constants';
import { parseDomain } from '../dns/names';
import { formatUpstream, parseUpstreamList } from '../dns/resolv-conf';
import { RouterError } from '../router/mesh/errors';
import { errorMessage } from '../common/errors';
import { formatLoopbackAddress, parseLoopbackAddress } from '../router/api/loopback-address';
import { apiSocketFor, checkGroupName, checkSocketPath } from './api-socket';
import type { LogLevel } from '../common/logger';
import { DEFAULT_MESH_PORT, normalisePeerAddress, parsePort } from '../router/mesh/peer-address';
import { parsePeerName } from '../router/mesh/peer-name';

/** Nicknames travel in gossip; a hostname is at most 253 characters, so this is generous. */
export const MAX_NICKNAME_CHARS = 255;
export const MAX_CONN_LIMIT = 100_000;
/** More initial peers than this is almost certainly a globbing accident. */
export const MAX_PEER_ARGS = 1000;
/** IPv4 needs 576 on every link; the top leaves room for the sleeve inside a 64 KiB datagram. */
export const MIN_OVERLAY_MTU = 576;
export const MAX_OVERLAY_MTU = 65_000;
/**
 * --log-level as written: Weave Net's spellings (debug, info, warning, error)
 * and ours ('warn'). 'silent' is accepted too so that any DaemonConfig
 * survives the trip through argv.
 */
export const LOG_LEVEL_NAMES: Readonly<Record<string, LogLevel>> = {
  debug: 'debug',
  info: 'info',
  warning: 'warn',
  warn: 'warn',
  error: 'error',
  silent: 'silent',
};

/** The LogLevel a --log-level value names, or null. */
export function parseLogLevelName(text: string): LogLevel | null {
  const key = text.trim();
  return Object.prototype.hasOwnProperty.call(LOG_LEVEL_NAMES, key) ? (LOG_LEVEL_NAMES[key] ?? null) : null;
}

/** What commander hands over; every field is checked again, as if hostile. */
export type RouterOptionValues = {
  password?: unknown;
  oldPassword?: unknown;
  name?: unknown;
  nickname?: unknown;
  port?: unknown;
  discovery?: unknown;
  fastdp?: unknown;
  kernelRelay?: unknown;
  autoAttach?: unknown;
  dockerPlugin?: unknown;
  portSecurity?: unknown;
  connLimit?: unknown;
  datadir?: unknown;
  logLevel?: unknown;
  apiSocket?: unknown;
  apiGroup?: unknown;
  statusAddress?: unknown;
  mtu?: unknown;
  dnsDomain?: unknown;
  dnsTtl?: unknown;
  dnsUpstream?: unknown;
  dnsResolvConf?: unknown;
  ipallocRange?: unknown;
  ipallocDefaultSubnet?: unknown;
  ipallocRangeV6?: unknown;
  ipallocInit?: unknown;
};

/** Registers the router options on `cmd` (launch and router share them). */
export function addRouterOptions(cmd: Command): Command {
  // No commander defaults: toDaemonConfig applies defaults and environment
  // fallbacks in one place, so `weave launch` and `weave router` agree.
  return cmd
    .option('--password <password>', 'encrypt the mesh with this password (prefer env WEAVE_PASSWORD: argv is visible to other users)')
    .option('--old-password <password>', 'during a password roll: also accept this old password (prefer env WEAVE_OLD_PASSWORD); drop it once every peer runs the new one')
    .option('--name <mac>', "check only: the router refuses to start unless this is its peer name, which is derived from the key in the datadir (peer-key) and cannot be chosen")
    .option('--nickname <nickname>', 'human-friendly peer name (default: this host name)')
    .option('--port <port>', `TCP control and UDP data port (default: ${DEFAULT_MESH_PORT})`)
    .option('--no-discovery', 'do not connect to peers learnt from other peers')
    .option('--no-auto-attach', 'do not attach Docker containers started with the label weave.attach or the variable WEAVE_CIDR')
    .option('--no-docker-plugin', 'no Docker network plugin (/run/docker/plugins/weave.sock) and no Docker network named weave')
    .option('--no-port-security', 'let containers send with any source MAC or IP address and answer ARP and neighbour discovery for any address (for containers that route for others); by default each speaks only for its own')
    .option('--no-kernel-relay', 'never forward far messages between two neighbours in this host\'s kernel (nftables ingress rules), nor ask a relay to; relayed frames then always pass through the relay\'s router')
    .option('--no-fastdp', 'never use the kernel fast path (VXLAN on UDP 6784, fixed whatever --port says; only peers may send to it) for an unencrypted mesh; frames always take the sleeve')
    .option('--conn-limit <count>', `maximum number of established peer connections; handshakes in progress are limited apart (default: ${DEFAULT_CONN_LIMIT})`)
    .option('--datadir <dir>', `where the router keeps its state (env WEAVE_DATADIR, default: ${DEFAULT_DATADIR})`)
    .addOption(new Option('--log-level <level>', 'log level (default: info)').choices(Object.keys(LOG_LEVEL_NAMES)))
    .option('--api-socket <path>', 'Unix socket of the HTTP API (default: /run/weave/weave.sock for the default datadir, else /run/weave/weave-<hash of the datadir>.sock)')
    .option('--api-group <group>', 'group whose members may use the API socket besides root (default: root only)')
    .option('--status-address <host:port>', `loopback address of the status and metrics server (default: ${DEFAULT_STATUS_ADDRESS})`)
    .option('--mtu <bytes>', 'MTU of the overlay (env WEAVE_MTU; default: the underlay MTU less the encapsulation overhead)')
    .option('--dns-domain <domain>', `domain of container names in weave DNS (default: ${DEFAULT_DOMAIN})`)
    .option('--dns-ttl <seconds>', `TTL of weave DNS answers (default: ${DEFAULT_TTL_S})`)
    .option('--dns-upstream <addr,...>', 'servers for names outside the weave domain, IP[:port] (default: the nameservers of --dns-resolv-conf)')
    .option('--dns-resolv-conf <file>', `resolv.conf to take upstream servers from, re-read when it changes (default: ${DEFAULT_RESOLV_CONF})`)
    .option('--ipalloc-range <cidr>', 'address range IPAM hands out (default: 10.32.0.0/12)')
    .option('--ipalloc-default-subnet <cidr>', 'subnet for allocations that name none (default: the whole range)')
    .option('--ipalloc-range-v6 <cidr>', 'also give containers IPv6 addresses from this block (e.g. a ULA /48)')
    .option('--ipalloc-init <mode>', 'initial split of the range: consensus[=N] (default), seed=PEER,... or observer');
}

function optString(opts: RouterOptionValues, key: keyof RouterOptionValues, flag: string): string | undefined {
  const v = opts[key];
  if (v === undefined) return undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string') throw RouterError.config(`${flag} expects a value, got ${JSON.stringify(v)}`);
  return v;
}

function envString(env: NodeJS.ProcessEnv, key: string): string | undefined {
  const v = env[key];
  return v === undefined || v === '' ? undefined : v;
}

/** Prefixes a validation error with the flag it belongs to, keeping the code. */
function withFlag<T>(flag: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw RouterError.config(`${flag}: ${errorMessage(err)}`);
  }
}

function hasControlChars(s: string): boolean {
  return /[\u0000-\u001f\u007f-\u009f]/.test(s);
}

function fixedLoopback(text: string, flag: string): string {
  const addr = parseLoopbackAddress(text, flag);
  if (addr.port === 0) throw RouterError.config(`${flag}: port must be from 1 to 65535 (clients must know where to look), got 0`);
  return formatLoopbackAddress(addr);
}

/**
 * Validates options and peer arguments into a DaemonConfig. Flags win over
 * environment variables, which win over defaults. Every failure is a
 * RouterError('config') naming the flag and what it expected.
 */
export function toDaemonConfig(
  opts: RouterOptionValues,
  peerArgs: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  hostname: () => string = os.hostname,
): DaemonConfig {
  // Password: the flag, else WEAVE_PASSWORD. An explicitly empty flag is a
  // mistake (it would silently mean "unencrypted"); an empty variable is unset.
  let password: string | null = null;
  const pwFlag = optString(opts, 'password', '--password');
  if (pwFlag !== undefined) {
    if (pwFlag === '') throw RouterError.config('--password must not be empty; leave it out to run an unencrypted mesh');
    password = pwFlag;
  } else {
    password = envString(env, 'WEAVE_PASSWORD') ?? null;
  }

  // Old password (a roll): the flag, else WEAVE_OLD_PASSWORD, by the same rules.
  const oldFlag = optString(opts, 'oldPassword', '--old-password');
  if (oldFlag === '') throw RouterError.config('--old-password must not be empty; leave it out when no password roll is under way');
  const oldPassword = oldFlag ?? envString(env, 'WEAVE_OLD_PASSWORD') ?? null;
  if (oldPassword !== null && password === null) throw RouterError.config('--old-password needs --password: a roll goes from the old password to a new one');
  if (oldPassword !== null && oldPassword === password) throw RouterError.config('--old-password is the same as --password; leave it out');
  // Test-only: a short key rotation interval for end-to-end tests; deliberately not a flag.
  const rekeyText = envString(env, 'WEAVE_REKEY_INTERVAL_MS');
  const rekeyIntervalMs = rekeyText === undefined ? undefined : Number(rekeyText);
  if (rekeyIntervalMs !== undefined && (!Number.isInteger(rekeyIntervalMs) || rekeyIntervalMs < 1_000 || rekeyIntervalMs > 3_600_000)) {
    throw RouterError.config(`WEAVE_REKEY_INTERVAL_MS must be a whole number of ms from 1000 to 3600000, got ${JSON.stringify(rekeyText)}`);
  }

  const nameText = optString(opts, 'name', '--name');
  const name = nameText === undefined ? null : withFlag('--name', () => parsePeerName(nameText));

  const nicknameRaw = optString(opts, 'nickname', '--nickname') ?? (hostname() || 'localhost');
  const nickname = nicknameRaw.trim();
  if (nickname === '') throw RouterError.config('--nickname must not be empty');
  if (nickname.length > MAX_NICKNAME_CHARS) {
    throw RouterError.config(`--nickname must be at most ${MAX_NICKNAME_CHARS} characters, got ${nickname.length}`);
  }
  if (hasControlChars(nickname)) throw RouterError.config(`--nickname must not contain control characters, got ${JSON.stringify(nickname)}`);

  const portText = optString(opts, 'port', '--port');
  const port = portText === undefined ? DEFAULT_MESH_PORT : parsePort(portText.trim(), '--port');

  const discovery = opts.discovery === undefined ? true : opts.discovery;
  if (typeof discovery !== 'boolean') throw RouterError.config(`--no-discovery takes no value, got ${JSON.stringify(discovery)}`);
  const fastdp = opts.fastdp === undefined ? true : opts.fastdp;
  if (typeof fastdp !== 'boolean') throw RouterError.config(`--no-fastdp takes no value, got ${JSON.stringify(fastdp)}`);
  const kernelRelay = opts.kernelRelay === undefined ? true : opts.kernelRelay;
  if (typeof kernelRelay !== 'boolean') throw RouterError.config(`--no-kernel-relay takes no value, got ${JSON.stringify(kernelRelay)}`);
  const autoAttach = opts.autoAttach === undefined ? true : opts.autoAttach;
  if (typeof autoAttach !== 'boolean') throw RouterError.config(`--no-auto-attach takes no value, got ${JSON.stringify(autoAttach)}`);
  const dockerPlugin = opts.dockerPlugin === undefined ? true : opts.dockerPlugin;
  if (typeof dockerPlugin !== 'boolean') throw RouterError.config(`--no-docker-plugin takes no value, got ${JSON.stringify(dockerPlugin)}`);
  const portSecurity = opts.portSecurity === undefined ? true : opts.portSecurity;
  if (typeof portSecurity !== 'boolean') throw RouterError.config(`--no-port-security takes no value, got ${JSON.stringify(portSecurity)}`);

  const limitText = optString(opts, 'connLimit', '--conn-limit');
  let connLimit = DEFAULT_CONN_LIMIT;
  if (limitText !== undefined) {
    const t = limitText.trim();
    if (!/^\d{1,6}$/.test(t) || Number(t) < 1 || Number(t) > MAX_CONN_LIMIT) {
      throw RouterError.config(`--conn-limit must be a whole number from 1 to ${MAX_CONN_LIMIT}, got ${JSON.stringify(limitText)}`);
    }
    connLimit = Number(t);
  }

  const datadirFlag = optString(opts, 'datadir', '--datadir');
  const datadirText = datadirFlag ?? envString(env, 'WEAVE_DATADIR') ?? DEFAULT_DATADIR;
  const datadirWhat = datadirFlag !== undefined ? '--datadir' : 'WEAVE_DATADIR';
  if (datadirText.trim() === '') throw RouterError.config(`${datadirWhat} must not be empty`);
  if (datadirText.includes('\0')) throw RouterError.config(`${datadirWhat} must not contain NUL bytes`);
  // Absolute, so the detached router and later `weave stop` agree whatever their cwd.
  const datadir = path.resolve(datadirText);

  const levelText = optString(opts, 'logLevel', '--log-level') ?? 'info';
  const logLevel = parseLogLevelName(levelText);
  if (logLevel === null) {
    throw RouterError.config(`--log-level must be one of ${Object.keys(LOG_LEVEL_NAMES).join(', ')}, got ${JSON.stringify(levelText)}`);
  }

  const socketFlag = optString(opts, 'apiSocket', '--api-socket');
  const apiSocket = socketFlag !== undefined ? checkSocketPath(socketFlag, '--api-socket') : apiSocketFor(datadir);
  const groupFlag = optString(opts, 'apiGroup', '--api-group');
  // Only the name here; whether the group exists is asked at launch and at startup (lookupApiGroup).
  const apiGroup = groupFlag === undefined ? null : checkGroupName(groupFlag);
  const statusAddress = fixedLoopback(optString(opts, 'statusAddress', '--status-address') ?? DEFAULT_STATUS_ADDRESS, '--status-address');

  if (peerArgs.length > MAX_PEER_ARGS) throw RouterError.config(`${peerArgs.length} peers given, over the limit of ${MAX_PEER_ARGS}`);
  const peers: string[] = [];
  for (const arg of peerArgs) {
    if (typeof arg !== 'string') throw RouterError.config(`peer must be host[:port], got ${JSON.stringify(arg)}`);
    // Its messages already quote the address as the user wrote it.
    const p = normalisePeerAddress(arg);
    // Duplicates are harmless but would show up twice in status targets.
    if (!peers.includes(p)) peers.push(p);
  }

  const mtuFlag = optString(opts, 'mtu', '--mtu');
  const mtuText = mtuFlag ?? envString(env, 'WEAVE_MTU');
  let mtu: number | null = null;
  if (mtuText !== undefined) {
    const what = mtuFlag !== undefined ? '--mtu' : 'WEAVE_MTU';
    const t = mtuText.trim();
    if (!/^\d{1,5}$/.test(t) || Number(t) < MIN_OVERLAY_MTU || Number(t) > MAX_OVERLAY_MTU) {
      throw RouterError.config(`${what} must be a whole number from ${MIN_OVERLAY_MTU} to ${MAX_OVERLAY_MTU}, got ${JSON.stringify(mtuText)}`);
    }
    mtu = Number(t);
  }

  const domainText = optString(opts, 'dnsDomain', '--dns-domain');
  const domain = domainText === undefined ? DEFAULT_DOMAIN : withFlag('--dns-domain', () => parseDomain(domainText, 'the domain'));
  const ttlText = optString(opts, 'dnsTtl', '--dns-ttl');
  let ttlS = DEFAULT_TTL_S;
  if (ttlText !== undefined) {
    const t = ttlText.trim();
    if (!/^\d{1,6}$/.test(t) || Number(t) > MAX_TTL_S) {
      throw RouterError.config(`--dns-ttl must be a whole number of seconds from 0 to ${MAX_TTL_S}, got ${JSON.stringify(ttlText)}`);
    }
    ttlS = Number(t);
  }
  const upstreamText = optString(opts, 'dnsUpstream', '--dns-upstream');
  const upstreams = upstreamText === undefined ? null : withFlag('--dns-upstream', () => parseUpstreamList([upstreamText]));
  if (upstreams !== null && upstreams.length === 0) throw RouterError.config('--dns-upstream needs at least one address');
  const resolvText = optString(opts, 'dnsResolvConf', '--dns-resolv-conf') ?? DEFAULT_RESOLV_CONF;
  if (resolvText.trim() === '' || resolvText.includes('\0')) throw RouterError.config('--dns-resolv-conf must be a file name');
  const dns = { domain, ttlS, upstreams, resolvConf: path.resolve(resolvText) };

  const ipalloc = {
    range: optString(opts, 'ipallocRange', '--ipalloc-range') ?? null,
    defaultSubnet: optString(opts, 'ipallocDefaultSubnet', '--ipalloc-default-subnet') ?? null,
    rangeV6: optString(opts, 'ipallocRangeV6', '--ipalloc-range-v6') ?? null,
    init: optString(opts, 'ipallocInit', '--ipalloc-init') ?? null,
  };
  // Validated here so `weave launch` refuses bad IPAM flags before starting anything.
  ipamConfigOf({ ipalloc, peers });

  return {
    datadir, name, nickname, port, password, discovery, connLimit, peers, logLevel, apiSocket, apiGroup, statusAddress, mtu, dns, ipalloc,
    ...(oldPassword !== null ? { oldPassword } : {}), ...(rekeyIntervalMs !== undefined ? { rekeyIntervalMs } : {}),
    ...(fastdp ? {} : { fastdp: false }),
    ...(kernelRelay ? {} : { kernelRelay: false }),
    ...(autoAttach ? {} : { autoAttach: false }),
    ...(dockerPlugin ? {} : { dockerPlugin: false }),
    ...(portSecurity ? {} : { portSecurity: false }),
  };
}

/** The IPAM configuration of a daemon config; throws IpamError('config') naming the flag. */
export function ipamConfigOf(config: Pick<DaemonConfig, 'ipalloc' | 'peers'>): IpamConfig {
  const { range, defaultSubnet, rangeV6, init } = config.ipalloc;
  return parseIpamConfig({
    ...(range !== null ? { range } : {}),
    ...(defaultSubnet !== null ? { defaultSubnet } : {}),
    ...(rangeV6 !== null ? { rangeV6 } : {}),
    ...(init !== null ? { init } : {}),
    // Weave Net's default for plain `consensus`: the peers named at launch plus ourselves.
    initialPeerCount: config.peers.length + 1,
  });
}

export interface RouterInvocation {
  /** Arguments after `weave router`. */
  args: string[];
  /** Variables to set in the child's environment (the password, if any). */
  env: Record<string, string>;
}

/**
 * The reverse of toDaemonConfig, for `weave launch`: every value explicit (so
 * the child does not re-derive defaults from a different environment), the
 * password in the environment only, peers after `--`.
 */
export function daemonConfigToArgs(config: DaemonConfig): RouterInvocation {
  const args: string[] = [];
  if (config.name !== null) args.push('--name', config.name);
  args.push('--nickname', config.nickname);
  args.push('--port', String(config.port));
  if (!config.discovery) args.push('--no-discovery');
  if (config.fastdp === false) args.push('--no-fastdp');
  if (config.kernelRelay === false) args.push('--no-kernel-relay');
  if (config.autoAttach === false) args.push('--no-auto-attach');
  if (config.dockerPlugin === false) args.push('--no-docker-plugin');
  if (config.portSecurity === false) args.push('--no-port-security');
  args.push('--conn-limit', String(config.connLimit));
  args.push('--datadir', config.datadir);
  args.push('--log-level', config.logLevel);
  args.push('--api-socket', config.apiSocket);
  if (config.apiGroup !== null) args.push('--api-group', config.apiGroup);
  args.push('--status-address', config.statusAddress);
  if (config.mtu !== null) args.push('--mtu', String(config.mtu));
  if (config.ipalloc.range !== null) args.push('--ipalloc-range', config.ipalloc.range);
  if (config.ipalloc.defaultSubnet !== null) args.push('--ipalloc-default-subnet', config.ipalloc.defaultSubnet);
  if (config.ipalloc.rangeV6 !== null) args.push('--ipalloc-range-v6', config.ipalloc.rangeV6);
  if (config.ipalloc.init !== null) args.push('--ipalloc-init', config.ipalloc.init);
  args.push('--dns-domain', config.dns.domain, '--dns-ttl', String(config.dns.ttlS), '--dns-resolv-conf', config.dns.resolvConf);
  if (config.dns.upstreams !== null) args.push('--dns-upstream', config.dns.upstreams.map(formatUpstream).join(','));
  args.push('--', ...config.peers);
  const env: Record<string, string> = {};
  if (config.password !== null) env['WEAVE_PASSWORD'] = config.password;
  if (config.oldPassword !== undefined) env['WEAVE_OLD_PASSWORD'] = config.oldPassword;
  if (config.rekeyIntervalMs !== undefined) env['WEAVE_REKEY_INTERVAL_MS'] = String(config.rekeyIntervalMs);
  return { args, env };
}
