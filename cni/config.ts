// What the runtime hands the weave-net plugin, read as hostile: the network
// configuration on stdin (size-capped JSON, every field we use type-checked,
// fields we do not use ignored as the spec asks) and the CNI_* environment
// (command, container id, namespace, interface, args, plugin path), plus
// version negotiation: which cniVersion we speak and which commands each
// version has.
//
// Pure: parses strings into typed values or throws PluginError with the CNI
// code the spec gives that failure.

import { CniWireError, checkContainerId, checkDnsName, checkIfName, checkNetnsPath, checkNetworkName } from '../common/cni-wire';
import type { CniErrorCode } from './errors';
import { CNI_ERR, PluginError } from './errors';

/** Newest first: VERSION lists them, and an error names the newest when the config's is unknown. */
export const SUPPORTED_VERSIONS = ['1.1.0', '1.0.0', '0.4.0', '0.3.1', '0.3.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
/** A network config is a few hundred bytes; a prevResult a few KB. Far past that is not a config. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
export const MAX_CNI_ARGS_CHARS = 16 * 1024;
export const MAX_CNI_PATH_CHARS = 16 * 1024;
/** A Unix socket path fits sun_path (108 bytes with its NUL). */
const MAX_SOCKET_PATH_CHARS = 107;
export const DEFAULT_SOCKET = '/run/weave/weave.sock';
const PLUGIN_TYPE = 'weave-net';
const IPAM_TYPE_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const MAX_IPAM_WAIT_MS = 120_000;

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  /** The router's API socket, written by `weave setup-cni`. */
  socket: string;
  /** The delegated IPAM plugin's type, when the config has an `ipam` section. */
  ipamType: string | null;
  ipamWaitMs: number | null;
  /** false (`"portSecurity": false`): this network's containers may send as any MAC or address. */
  portSecurity: boolean;
  prevResult: Record<string, unknown> | null;
  /** GC (1.1.0): attachments the runtime still knows. */
  validAttachments: { containerId: string; ifName: string }[] | null;
}

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  /** Empty on DEL when the runtime has no namespace any more. */
  netns: string;
  ifName: string;
  args: Map<string, string>;
  path: string[];
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Whether `version` has `command`: CHECK came with 0.4.0, GC and STATUS with 1.1.0. */
export function versionHasCommand(version: CniVersion, command: CniCommand): boolean {
  if (command === 'CHECK') return version !== '0.3.0' && version !== '0.3.1';
  if (command === 'GC' || command === 'STATUS') return version === '1.1.0';
  return true;
}

function configError(msg: string): PluginError {
  return new PluginError(CNI_ERR.invalidConfig, msg);
}

/** The shared identifier checks, failing with `code`: the same id is bad env in CNI_CONTAINERID, bad config in a GC list. */
function wire<T>(code: CniErrorCode, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CniWireError) throw new PluginError(code, err.message);
    throw err;
  }
}

/** Stdin as JSON: an object, within the size cap. */
export function parseJsonObject(bytes: Buffer): Record<string, unknown> {
  if (bytes.length > MAX_CONFIG_BYTES) throw new PluginError(CNI_ERR.decode, `network configuration is ${bytes.length} bytes, over the limit of ${MAX_CONFIG_BYTES}`);
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new PluginError(CNI_ERR.decode, `network configuration on stdin is not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new PluginError(CNI_ERR.decode, 'network configuration on stdin must be a JSON object');
  return v as Record<string, unknown>;
}

/** The cniVersion to answer in: the config's when we speak it, else our newest. */
export function answerVersion(raw: Record<string, unknown> | null): CniVersion {
  const v = raw?.['cniVersion'];
  return isSupportedVersion(v) ? v : '1.0.0';
}

export function parseNetConf(raw: Record<string, unknown>): NetConf {
  const v = raw['cniVersion'];
  if (!isSupportedVersion(v)) {
    throw new PluginError(CNI_ERR.incompatibleVersion, `cniVersion ${JSON.stringify(v ?? null)} is not supported by weave-net; it speaks ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (raw['type'] !== PLUGIN_TYPE) throw configError(`"type" must be "${PLUGIN_TYPE}", got ${JSON.stringify(raw['type'] ?? null).slice(0, 80)}`);
  const name = wire(CNI_ERR.invalidConfig, () => checkNetworkName(raw['name']));
  const socket = raw['socket'] ?? DEFAULT_SOCKET;
  if (typeof socket !== 'string' || !socket.startsWith('/') || socket.length > MAX_SOCKET_PATH_CHARS || socket.includes('\0')) {
    throw configError(`"socket" must be the absolute path of the weave router's API socket (at most ${MAX_SOCKET_PATH_CHARS} characters)`);
  }
  let ipamType: string | null = null;
  const ipam = raw['ipam'];
  if (ipam !== undefined) {
    if (typeof ipam !== 'object' || ipam === null || Array.isArray(ipam)) throw configError('"ipam" must be an object with a "type"');
    const t = (ipam as Record<string, unknown>)['type'];
    // Also a file name looked up in CNI_PATH: no '/', and no leading '.' (so never '..').
    if (typeof t !== 'string' || !IPAM_TYPE_RE.test(t)) throw configError(`"ipam.type" must name an IPAM plugin (letters, digits, '_', '.', '-'), got ${JSON.stringify(t ?? null).slice(0, 80)}`);
    ipamType = t;
  }
  const w = raw['ipamWaitMs'];
  if (w !== undefined && (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > MAX_IPAM_WAIT_MS)) {
    throw configError(`"ipamWaitMs" must be a whole number of milliseconds from 0 to ${MAX_IPAM_WAIT_MS}`);
  }
  const portSecurity = raw['portSecurity'] ?? true;
  if (typeof portSecurity !== 'boolean') throw configError(`"portSecurity" must be true or false, got ${JSON.stringify(portSecurity).slice(0, 80)}`);
  const prev = raw['prevResult'];
  if (prev !== undefined && (typeof prev !== 'object' || prev === null || Array.isArray(prev))) throw configError('"prevResult" must be an object');
  return {
    cniVersion: v, name, socket, ipamType,
    ipamWaitMs: typeof w === 'number' ? w : null,
    portSecurity,
    prevResult: (prev as Record<string, unknown> | undefined) ?? null,
    validAttachments: parseValidAttachments(raw['cni.dev/valid-attachments']),
  };
}

function parseValidAttachments(v: unknown): NetConf['validAttachments'] {
  if (v === undefined) return null;
  if (!Array.isArray(v)) throw configError('"cni.dev/valid-attachments" must be a list');
  return v.map((a: unknown) => {
    if (typeof a !== 'object' || a === null) throw configError('every valid attachment must be {containerID, ifname}');
    const o = a as Record<string, unknown>;
    return { containerId: wire(CNI_ERR.invalidConfig, () => checkContainerId(o['containerID'])), ifName: wire(CNI_ERR.invalidConfig, () => checkIfName(o['ifname'])) };
  });
}

function envError(msg: string): PluginError {
  return new PluginError(CNI_ERR.invalidEnv, msg);
}

/** CNI_ARGS: `K=V;K=V`, each key once. */
export function parseCniArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text.length > MAX_CNI_ARGS_CHARS) throw envError(`CNI_ARGS is ${text.length} characters long, over the limit of ${MAX_CNI_ARGS_CHARS}`);
  if (text === '') return out;
  for (const pair of text.split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw envError(`CNI_ARGS must be KEY=VALUE pairs separated by ';', got ${JSON.stringify(pair).slice(0, 80)}`);
    const key = pair.slice(0, eq);
    if (out.has(key)) throw envError(`CNI_ARGS gives ${key} twice`);
    out.set(key, pair.slice(eq + 1));
  }
  return out;
}

/** The CNI_* variables `command` needs; the rest are not looked at. */
export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env['CNI_COMMAND'];
  if (command === undefined || !(COMMANDS as readonly string[]).includes(command)) {
    throw envError(`CNI_COMMAND must be one of ${COMMANDS.join(', ')}, got ${JSON.stringify(command ?? null).slice(0, 40)}`);
  }
  const cmd = command as CniCommand;
  const needsContainer = cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK';
  const pathText = env['CNI_PATH'] ?? '';
  if (pathText.length > MAX_CNI_PATH_CHARS) throw envError(`CNI_PATH is over ${MAX_CNI_PATH_CHARS} characters`);
  const out: CniEnv = { command: cmd, containerId: '', netns: '', ifName: '', args: new Map(), path: pathText.split(':').filter((p) => p.startsWith('/')) };
  if (!needsContainer) return out;
  out.containerId = wire(CNI_ERR.invalidEnv, () => checkContainerId(env['CNI_CONTAINERID'] ?? ''));
  out.ifName = wire(CNI_ERR.invalidEnv, () => checkIfName(env['CNI_IFNAME'] ?? ''));
  const netns = env['CNI_NETNS'] ?? '';
  // DEL may come without a namespace: the container may be gone already.
  if (netns !== '' || cmd !== 'DEL') out.netns = wire(CNI_ERR.invalidEnv, () => checkNetnsPath(netns));
  out.args = parseCniArgs(env['CNI_ARGS'] ?? '');
  return out;
}

/**
 * The name to register in weave DNS: K8S_POD_NAME (Kubernetes; podman passes
 * the container's name there too), else the first 12 characters of the
 * container id, as Docker shows it.
 */
export function dnsNameFor(env: CniEnv): string {
  const pod = env.args.get('K8S_POD_NAME');
  if (pod !== undefined && pod !== '') {
    try {
      return checkDnsName(pod);
    } catch {
      // Unusable as a name: fall back to the id rather than fail the ADD.
    }
  }
  return env.containerId.slice(0, 12);
}
