// Docker's legacy remote plugin protocol (libnetwork's remote network driver
// and remote IPAM driver, plugin API v1): the calls we answer and the request
// bodies read as hostile input. Every call is `POST /<Interface>.<Method>`
// with a JSON body and a JSON reply; a refusal is `{"Err": "..."}`, which
// Docker shows to the user, so each message says what was expected.
//
//   POST /Plugin.Activate                  -> {"Implements": ["NetworkDriver", "IpamDriver"]}
//   POST /NetworkDriver.CreateNetwork      {"NetworkID","Options":{"com.docker.network.generic":{<-o options>}},"IPv4Data":[...]}
//   POST /NetworkDriver.CreateEndpoint     {"NetworkID","EndpointID","Interface":{"Address","MacAddress"},...}
//   POST /NetworkDriver.Join               {"NetworkID","EndpointID","SandboxKey"} -> {"InterfaceName":{"SrcName","DstPrefix"},"StaticRoutes":[...]}
//   POST /IpamDriver.RequestAddress        {"PoolID","Address","Options"} -> {"Address":"10.32.0.5/12"}
//   ... (the full list: PLUGIN_CALLS)
//
// Pure: parsing and shapes only, no I/O. Unknown fields are ignored (newer
// engines add some); strings are capped before anything is kept.

import { CodedError } from '../../common/errors';
import { formatIp, IpError } from '../../common/ip';
import { isPlainPath } from './docker-plugin-state';
import { parseCidr, parseIpWithPrefix } from '../../common/ip-cidr';

/** What Docker sends as Content-Type and expects back. */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';
/** The largest body we read: real requests are well under 4 KiB. */
export const MAX_PLUGIN_BODY_BYTES = 64 * 1024;
/** The address spaces our IPAM driver names (Docker passes them back in CreateNetwork). */
export const LOCAL_ADDRESS_SPACE = 'weavelocal';
export const GLOBAL_ADDRESS_SPACE = 'weaveglobal';
/** Docker's key for the gateway in RequestPool's Data, and its request-type option. */
export const GATEWAY_DATA_KEY = 'com.docker.network.gateway';
export const REQUEST_ADDRESS_TYPE = 'RequestAddressType';
/** libnetwork's static route types. */
export const ROUTE_NEXTHOP = 0;
export const ROUTE_CONNECTED = 1;

/** Where `docker network create -o key=value` options arrive in CreateNetwork's Options. */
export const GENERIC_OPTIONS_KEY = 'com.docker.network.generic';
/** The one network option we take: `-o port-security=false` leaves the network's containers unguarded (port-security.ts). */
export const PORT_SECURITY_OPTION = 'port-security';

const MAX_ID_CHARS = 128;
const MAX_OPTION_CHARS = 1024;
const MAX_OPTIONS = 64;
const MAX_PATH_CHARS = 1024;
const MAX_POOLS = 16;

export const PLUGIN_CALLS = [
  'Plugin.Activate',
  'NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork', 'NetworkDriver.DeleteNetwork',
  'NetworkDriver.CreateEndpoint', 'NetworkDriver.DeleteEndpoint', 'NetworkDriver.EndpointOperInfo',
  'NetworkDriver.Join', 'NetworkDriver.Leave', 'NetworkDriver.DiscoverNew', 'NetworkDriver.DiscoverDelete',
  'NetworkDriver.ProgramExternalConnectivity', 'NetworkDriver.RevokeExternalConnectivity',
  'IpamDriver.GetCapabilities', 'IpamDriver.GetDefaultAddressSpaces', 'IpamDriver.RequestPool',
  'IpamDriver.ReleasePool', 'IpamDriver.RequestAddress', 'IpamDriver.ReleaseAddress',
] as const;
export type PluginCall = (typeof PLUGIN_CALLS)[number];

/** A request we cannot act on: becomes `{"Err": message}`. */
export class PluginError extends CodedError<'bad-request' | 'refused' | 'not-found' | 'unavailable'> {
  override readonly name = 'PluginError';
}

export function pluginCallOf(path: string): PluginCall | null {
  const name = path.startsWith('/') ? path.slice(1) : path;
  return (PLUGIN_CALLS as readonly string[]).includes(name) ? (name as PluginCall) : null;
}

// ---------------------------------------------------------------------------
// Requests

export interface CreateNetworkRequest {
  networkId: string;
  /** IPv4 pools Docker's IPAM gave the network: address space and pool CIDR. */
  ipv4: { addressSpace: string; pool: string }[];
  ipv6Count: number;
  /** false: `-o port-security=false`; true otherwise. */
  portSecurity: boolean;
}

export interface EndpointRef {
  networkId: string;
  endpointId: string;
}

export interface CreateEndpointRequest extends EndpointRef {
  /** The IPv4 address IPAM gave the endpoint ("10.32.0.5/12"); null when none. */
  address: string | null;
  /** An IPv6 address: we refuse those. */
  addressV6: string | null;
  /** A MAC the user chose (--mac-address); null: ours to choose. */
  mac: string | null;
}

export interface JoinRequest extends EndpointRef {
  sandboxKey: string;
}

export interface RequestPoolRequest {
  addressSpace: string;
  pool: string | null;
  subPool: string | null;
  v6: boolean;
}

export interface RequestAddressRequest {
  poolId: string;
  /** A preferred address (docker run --ip, or a gateway the user named); null: any. */
  address: string | null;
  gateway: boolean;
}

export interface ReleaseAddressRequest {
  poolId: string;
  address: string;
}

function bad(what: string): PluginError {
  return new PluginError('bad-request', what);
}

function objectOf(body: unknown, call: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad(`${call}: the request body must be a JSON object`);
  return body as Record<string, unknown>;
}

function str(o: Record<string, unknown>, key: string, call: string, max = MAX_OPTION_CHARS): string {
  const v = o[key];
  if (typeof v !== 'string') throw bad(`${call}: ${key} must be a string`);
  if (v.length > max) throw bad(`${call}: ${key} is ${v.length} characters, over ${max}`);
  return v;
}

function optStr(o: Record<string, unknown>, key: string, call: string, max = MAX_OPTION_CHARS): string | null {
  if (o[key] === undefined || o[key] === null || o[key] === '') return null;
  return str(o, key, call, max);
}

/** Docker's network and endpoint ids are 64 hex digits; we take 12 or more, since interface names derive from them. */
function id(o: Record<string, unknown>, key: string, call: string): string {
  const v = str(o, key, call, MAX_ID_CHARS);
  if (!/^[0-9a-f]{12,64}$/.test(v)) throw bad(`${call}: ${key} must be 12 to 64 lowercase hex digits, got ${JSON.stringify(v.slice(0, 70))}`);
  return v;
}

function stringOptions(o: Record<string, unknown>, call: string): Record<string, string> {
  const v = o['Options'];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(`${call}: Options must be an object`);
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > MAX_OPTIONS) throw bad(`${call}: ${entries.length} options, over ${MAX_OPTIONS}`);
  const out: Record<string, string> = {};
  for (const [k, val] of entries) if (typeof val === 'string' && k.length <= MAX_OPTION_CHARS && val.length <= MAX_OPTION_CHARS) out[k] = val;
  return out;
}

function cidrText(text: string, call: string, key: string, exact: boolean): string {
  try {
    if (exact) return parseCidr(text, 4).toString();
    const p = parseIpWithPrefix(text, 4);
    return `${formatIp(p.address)}/${p.prefixLen}`;
  } catch (err) {
    throw bad(`${call}: ${key}: ${err instanceof IpError ? err.message : 'not an IPv4 CIDR'}`);
  }
}

export function parseCreateNetwork(body: unknown): CreateNetworkRequest {
  const call = 'CreateNetwork';
  const o = objectOf(body, call);
  const networkId = id(o, 'NetworkID', call);
  const list = (key: string): Record<string, unknown>[] => {
    const v = o[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw bad(`${call}: ${key} must be a list`);
    if (v.length > MAX_POOLS) throw bad(`${call}: ${key} has ${v.length} entries, over ${MAX_POOLS}`);
    return v.map((e) => objectOf(e, `${call} ${key}`));
  };
  const ipv4 = list('IPv4Data').map((d) => ({
    addressSpace: str(d, 'AddressSpace', call),
    pool: cidrText(str(d, 'Pool', call), call, 'IPv4Data.Pool', true),
  }));
  return { networkId, ipv4, ipv6Count: list('IPv6Data').length, portSecurity: networkPortSecurity(o, call) };
}

/**
 * The network's `-o` options: only port-security, true or false. Anything
 * else is refused, so a misspelt option cannot leave a network guarded (or
 * not) other than the user meant.
 */
function networkPortSecurity(o: Record<string, unknown>, call: string): boolean {
  const options = o['Options'];
  if (options === undefined || options === null) return true;
  if (typeof options !== 'object' || Array.isArray(options)) throw bad(`${call}: Options must be an object`);
  const generic = (options as Record<string, unknown>)[GENERIC_OPTIONS_KEY];
  if (generic === undefined || generic === null) return true;
  if (typeof generic !== 'object' || Array.isArray(generic)) throw bad(`${call}: Options.${GENERIC_OPTIONS_KEY} must be an object`);
  let portSecurity = true;
  for (const [key, value] of Object.entries(generic as Record<string, unknown>)) {
    if (key !== PORT_SECURITY_OPTION) {
      throw bad(`${call}: unknown option ${JSON.stringify(key.slice(0, 64))}: the weave network driver takes only -o ${PORT_SECURITY_OPTION}=true|false`);
    }
    if (value !== 'true' && value !== 'false') {
      throw bad(`${call}: -o ${PORT_SECURITY_OPTION} takes true or false, got ${JSON.stringify(String(value).slice(0, 64))}`);
    }
    portSecurity = value === 'true';
  }
  return portSecurity;
}

export function parseNetworkRef(body: unknown, call: string): { networkId: string } {
  return { networkId: id(objectOf(body, call), 'NetworkID', call) };
}

export function parseEndpointRef(body: unknown, call: string): EndpointRef {
  const o = objectOf(body, call);
  return { networkId: id(o, 'NetworkID', call), endpointId: id(o, 'EndpointID', call) };
}

export function parseCreateEndpoint(body: unknown): CreateEndpointRequest {
  const call = 'CreateEndpoint';
  const o = objectOf(body, call);
  const ref = { networkId: id(o, 'NetworkID', call), endpointId: id(o, 'EndpointID', call) };
  const i = o['Interface'];
  if (i === undefined || i === null) return { ...ref, address: null, addressV6: null, mac: null };
  const iface = objectOf(i, `${call} Interface`);
  const address = optStr(iface, 'Address', call);
  const mac = optStr(iface, 'MacAddress', call);
  if (mac !== null && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw bad(`${call}: MacAddress must look like 02:42:0a:20:00:05, got ${JSON.stringify(mac.slice(0, 40))}`);
  return {
    ...ref,
    address: address === null ? null : cidrText(address, call, 'Interface.Address', false),
    addressV6: optStr(iface, 'AddressIPv6', call),
    mac: mac === null ? null : mac.toLowerCase(),
  };
}

export function parseJoin(body: unknown): JoinRequest {
  const call = 'Join';
  const o = objectOf(body, call);
  const sandboxKey = str(o, 'SandboxKey', call, MAX_PATH_CHARS);
  // A namespace file path from the engine: plain and absolute, nothing to resolve.
  if (!isPlainPath(sandboxKey)) {
    throw bad(`${call}: SandboxKey must be a plain absolute path, got ${JSON.stringify(sandboxKey.slice(0, 100))}`);
  }
  return { networkId: id(o, 'NetworkID', call), endpointId: id(o, 'EndpointID', call), sandboxKey };
}

export function parseRequestPool(body: unknown): RequestPoolRequest {
  const call = 'RequestPool';
  const o = objectOf(body, call);
  const pool = optStr(o, 'Pool', call);
  const subPool = optStr(o, 'SubPool', call);
  return {
    addressSpace: optStr(o, 'AddressSpace', call) ?? '',
    pool: pool === null ? null : cidrText(pool, call, 'Pool', true),
    subPool: subPool === null ? null : cidrText(subPool, call, 'SubPool', true),
    v6: o['V6'] === true,
  };
}

export function parsePoolRef(body: unknown, call: string): { poolId: string } {
  return { poolId: str(objectOf(body, call), 'PoolID', call) };
}

export function parseRequestAddress(body: unknown): RequestAddressRequest {
  const call = 'RequestAddress';
  const o = objectOf(body, call);
  const address = optStr(o, 'Address', call);
  if (address !== null && (address.includes('/') || address.length > 15 || parseIpOrNull(address) === null)) {
    throw bad(`${call}: Address must be an IPv4 address without a prefix, got ${JSON.stringify(address.slice(0, 50))}`);
  }
  return { poolId: str(o, 'PoolID', call), address, gateway: stringOptions(o, call)[REQUEST_ADDRESS_TYPE] === GATEWAY_DATA_KEY };
}

export function parseReleaseAddress(body: unknown): ReleaseAddressRequest {
  const call = 'ReleaseAddress';
  const o = objectOf(body, call);
  const address = str(o, 'Address', call, 64);
  const ip = address.includes('/') ? address.slice(0, address.indexOf('/')) : address;
  if (parseIpOrNull(ip) === null) throw bad(`${call}: Address must be an IPv4 address, got ${JSON.stringify(address.slice(0, 50))}`);
  return { poolId: str(o, 'PoolID', call), address: ip };
}

function parseIpOrNull(text: string): string | null {
  try {
    parseIpWithPrefix(`${text}/32`, 4);
    return text;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Replies

export interface StaticRoute {
  Destination: string;
  RouteType: number;
  NextHop?: string;
}

export interface JoinReply {
  InterfaceName: { SrcName: string; DstPrefix: string };
  StaticRoutes: StaticRoute[];
  /** No default route through us, so Docker must not add its own gateway network (docker_gwbridge) either. */
  DisableGatewayService: boolean;
}

export function errorReply(message: string): { Err: string } {
  return { Err: message };
}
