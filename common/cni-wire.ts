// The contract between the weave-net CNI plugin (cni/, a short-lived process
// a container runtime executes) and the daemon's /cni endpoints
// (router/api/cni-api.ts, carried out by router/host/cni-endpoint.ts): the
// request and reply bodies, and the checks on the runtime's identifiers that
// both sides apply (container id, interface name, namespace path). It lives
// in common/ because both sides use it and neither owns it, as with
// api-route.ts; the plugin may import nothing else of ours that is heavy.
//
//   POST /cni/add   CniAddRequest   -> CniAttachment
//   POST /cni/check CniCheckRequest -> CniAttachment (404 none, 409 drifted)
//   POST /cni/del   CniDelRequest   -> CniDelReply   (idempotent)
//   POST /cni/gc    CniGcRequest    -> CniGcReply
//   GET  /cni                       -> {attachments: CniAttachment[]}
//
// Types and pure checks only; no I/O. The checks throw CniWireError, which
// each side turns into its own error (HTTP 400, CNI code 4).

import { CodedError } from './errors';

/** Bumped when a field changes meaning; the plugin sends it, the daemon refuses another. */
export const CNI_WIRE_VERSION = 1;

/** The spec's rule for a container id (alphanumerics, '_', '.', '-'); podman and containerd use 64 hex. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const MAX_CONTAINER_ID_CHARS = 256;
/** IFNAMSIZ - 1, and no '/', ':' or whitespace (the kernel's dev_valid_name, plus ':' for aliases). */
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
/** Namespace files live at short paths (/run/netns/..., /proc/PID/ns/net); far beyond that is not one. */
export const MAX_NETNS_PATH_CHARS = 255;
/** A network name as runtimes write it in a conflist. */
const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Well above a real pod name (253) for the DNS name the plugin asks for; DNS checks it properly. */
export const MAX_DNS_NAME_CHARS = 253;
/** Addresses and routes one request may carry (from a delegated IPAM result). */
export const MAX_CNI_ADDRESSES = 16;
export const MAX_CNI_ROUTES = 64;
/** Attachments one GC request may list as valid. */
export const MAX_GC_ATTACHMENTS = 65_536;

export type CniWireErrorCode = 'container-id' | 'ifname' | 'netns' | 'network' | 'name';

export class CniWireError extends CodedError<CniWireErrorCode> {
  override readonly name = 'CniWireError';
}

export function checkContainerId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_CONTAINER_ID_CHARS || !CONTAINER_ID_RE.test(id)) {
    throw new CniWireError('container-id', `container id must be 1 to ${MAX_CONTAINER_ID_CHARS} letters, digits, '_', '.' or '-', starting with a letter or digit; got ${preview(id)}`);
  }
  return id;
}

export function checkIfName(name: unknown): string {
  if (typeof name !== 'string' || !IFNAME_RE.test(name) || name === '.' || name === '..') {
    throw new CniWireError('ifname', `interface name must be 1 to 15 letters, digits, '_', '.' or '-'; got ${preview(name)}`);
  }
  return name;
}

/**
 * An absolute path without '.' or '..' components, empty components or NUL:
 * the daemon hands it to nsenter and `ip ... netns`, so it must name exactly
 * the file it appears to.
 */
export function checkNetnsPath(p: unknown): string {
  if (typeof p !== 'string' || p.length === 0 || p.length > MAX_NETNS_PATH_CHARS || !p.startsWith('/') || p.includes('\0')) {
    throw new CniWireError('netns', `network namespace must be an absolute path of at most ${MAX_NETNS_PATH_CHARS} characters; got ${preview(p)}`);
  }
  const parts = p.slice(1).split('/');
  if (parts.some((c) => c === '' || c === '.' || c === '..') || /[\u0000-\u001f\u007f]/.test(p)) {
    throw new CniWireError('netns', `network namespace path ${preview(p)} must be plain: no '.', '..', '//' or control characters`);
  }
  return p;
}

export function checkNetworkName(name: unknown): string {
  if (typeof name !== 'string' || !NETWORK_NAME_RE.test(name)) {
    throw new CniWireError('network', `network name must be 1 to 128 letters, digits, '_', '.' or '-'; got ${preview(name)}`);
  }
  return name;
}

/** Bounds only: what a valid host name is, DNS decides (an unusable name is logged there, not refused). */
export function checkDnsName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_DNS_NAME_CHARS || /[\u0000-\u0020\u007f]/.test(name)) {
    throw new CniWireError('name', `DNS name must be 1 to ${MAX_DNS_NAME_CHARS} printable characters without spaces; got ${preview(name)}`);
  }
  return name;
}

function preview(v: unknown): string {
  const text = typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'nothing' : typeof v;
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** An address on the container's interface: CIDR with host bits, e.g. 10.32.0.5/12. */
export interface CniAddress {
  address: string;
  gateway?: string;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers: string[];
  domain?: string;
  search?: string[];
}

export interface CniAddRequest {
  version: typeof CNI_WIRE_VERSION;
  containerId: string;
  ifName: string;
  netns: string;
  /** The conflist's "name"; kept in the record so GC can tell its own network's attachments. */
  network: string;
  /** The name to register in weave DNS; null registers none. */
  dnsName: string | null;
  /**
   * Addresses from a delegated IPAM plugin (the config's `ipam` section), with
   * the routes it asked for. Absent: the daemon allocates from weave IPAM,
   * keyed on the container id.
   */
  delegated?: { addresses: CniAddress[]; routes: CniRoute[] };
  /** false: the network config's `"portSecurity": false`, the container may send as any MAC or address. Absent: guarded. */
  portSecurity?: false;
}

export interface CniCheckRequest {
  version: typeof CNI_WIRE_VERSION;
  containerId: string;
  ifName: string;
  netns: string;
}

export interface CniDelRequest {
  version: typeof CNI_WIRE_VERSION;
  containerId: string;
  ifName: string;
  /** Runtimes may leave it out on DEL (the namespace may be gone already). */
  netns?: string;
}

export interface CniGcRequest {
  version: typeof CNI_WIRE_VERSION;
  network: string;
  /** Attachments of `network` the runtime still knows; every other one of that network is removed. */
  valid: { containerId: string; ifName: string }[];
}

/** What the daemon made for one (container id, interface name). */
export interface CniAttachment {
  containerId: string;
  ifName: string;
  netns: string;
  network: string;
  /** The host end of the veth, a port of the weave bridge. */
  hostIfname: string;
  /** MAC of the container's interface. */
  mac: string;
  addresses: CniAddress[];
  routes: CniRoute[];
  /** Weave DNS for the container, when DNS runs; the runtime writes its resolv.conf from it. */
  dns: CniDns | null;
  dnsName: string | null;
  /** Where the addresses came from: weave IPAM (the daemon frees them) or the plugin's delegate. */
  ipam: 'weave' | 'delegated';
  /** false: not guarded by port security (CniAddRequest.portSecurity). */
  portSecurity?: false;
}

export interface CniDelReply {
  /** False when there was nothing to delete (DEL twice, or never added). */
  removed: boolean;
  /** Addresses given back to weave IPAM. */
  released: string[];
}

export interface CniGcReply {
  removed: { containerId: string; ifName: string }[];
}
