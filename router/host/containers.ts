// Attaching containers to the weave bridge. It owns: parsing container
// references (Docker name/id, netns:NAME, pid:PID) and attach addresses, the
// veth pair per container (host end `vethwe...` on the bridge, the other end
// `ethwe` inside the container), the addresses and routes it puts on ethwe,
// the record of attachments in <datadir>/containers.json, and following Docker
// events so a restarted container is attached again and a destroyed one
// forgotten.
//
// It must never leave half-made links: every step of an attach pushes its undo,
// and a failure runs the undos in reverse before the error goes to the caller.
// It removes exactly what it made (the veth, or the addresses it added), never
// anything it found. Commands go through CommandRunner; namespace identity and
// the state file go through the small HostFs/StateStore adapters at the end.
//
// Operations are serialized: attach, detach and Docker events each run to
// completion before the next starts, so the record never changes across an
// await inside another operation.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RouterError, assertNever, errorMessage } from '../mesh/errors';
import { formatIpv6Groups } from '../../common/ip';
import type { CommandRunner } from './command-runner';
import type { DockerApi, DockerEvent, EventWatch } from './docker-client';
import { validateDockerRef } from './docker-client';
import { MAX_IFNAME_CHARS, VETH_PREFIX, validateIfName, validateMtu } from './host-link';
import type { Logger } from '../../common/logger';

/** The interface name inside every attached container, as in Weave Net. */
export const CONTAINER_IFNAME = 'ethwe';
/** Always routed via ethwe so multicast (mDNS, service discovery) crosses the overlay. */
export const MULTICAST_ROUTE = '224.0.0.0/4';
/** Largest GSO super-frame a container's TCP may build (see the data plane's sleeve limit). */
export const CONTAINER_GSO_MAX_BYTES = 32_768;
export const STATE_FILE = 'containers.json';
const STATE_VERSION = 1;
/** A new bridge port starts forwarding within a few ms here; 2 s allows for a loaded machine. */
const PORT_FORWARDING_POLLS = 80;
const PORT_FORWARDING_POLL_MS = 25;
/** Weave Net's ARP settings for ethwe (net/arp.go, net/veth.go); IF stands for the interface. */
const ARP_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.ipv4.conf.IF.arp_notify', '1'],
  ['net.ipv4.neigh.IF.base_reachable_time_ms', '5000'],
  ['net.ipv4.neigh.IF.delay_first_probe_time', '2'],
  ['net.ipv4.neigh.IF.ucast_solicit', '1'],
];
/** Upper bound on addresses in one request: far above any real use, stops a runaway client. */
export const MAX_ADDRESSES_PER_REQUEST = 64;

// ---------------------------------------------------------------------------
// Container references

export type ContainerRef =
  | { kind: 'docker'; ref: string }
  | { kind: 'netns'; name: string }
  | { kind: 'pid'; pid: number };

export type ContainerKind = ContainerRef['kind'];

const NETNS_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;
/** Linux's PID_MAX_LIMIT (2^22). */
const MAX_PID = 4_194_304;

/**
 * `netns:NAME` (a namespace under /var/run/netns), `pid:PID`, or else a Docker
 * container name or id. Throws RouterError.config with what was expected.
 */
export function parseContainerRef(text: string): ContainerRef {
  if (typeof text !== 'string' || text.trim() === '') {
    throw RouterError.config('a container is required: a Docker name or id, netns:NAME, or pid:PID');
  }
  const s = text.trim();
  if (s.startsWith('netns:')) {
    const name = s.slice('netns:'.length);
    if (!NETNS_NAME_RE.test(name) || name === '.' || name === '..') {
      throw RouterError.config(`netns:NAME needs a network namespace name (letters, digits, '_', '.', '-'), got ${JSON.stringify(s)}`);
    }
    return { kind: 'netns', name };
  }
  if (s.startsWith('pid:')) {
    const p = s.slice('pid:'.length);
    if (!/^[1-9]\d{0,6}$/.test(p) || Number(p) > MAX_PID) {
      throw RouterError.config(`pid:PID needs a process id from 1 to ${MAX_PID}, got ${JSON.stringify(s)}`);
    }
    return { kind: 'pid', pid: Number(p) };
  }
  if (s.includes(':')) {
    throw RouterError.config(`unknown container reference ${JSON.stringify(s)}: use a Docker name or id, netns:NAME, or pid:PID`);
  }
  return { kind: 'docker', ref: validateDockerRef(s) };
}

export function formatContainerRef(ref: ContainerRef): string {
  switch (ref.kind) {
    case 'docker':
      return ref.ref;
    case 'netns':
      return `netns:${ref.name}`;
    case 'pid':
      return `pid:${ref.pid}`;
    default:
      return assertNever(ref);
  }
}

// ---------------------------------------------------------------------------
// Addresses

export interface Ipv4Cidr {
  /** Dotted quad. */
  address: string;
  prefixLen: number;
  /** Normalised `a.b.c.d/n`. */
  cidr: string;
}

/** An address for ethwe, either family (dual stack). IPv6 text is canonical (RFC 5952). */
export interface AttachCidr {
  family: 4 | 6;
  address: string;
  prefixLen: number;
  /** Normalised `address/n`. */
  cidr: string;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipv4ToNumber(text: string): number | null {
  const m = IPV4_RE.exec(text);
  if (m === null) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] ?? '';
    // Leading zeros are refused: some tools read them as octal.
    if ((part.length > 1 && part.startsWith('0')) || Number(part) > 255) return null;
    n = n * 256 + Number(part);
  }
  return n;
}

function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** IPv6 text (`::` compression, a trailing dotted quad allowed; no zone) as a 128-bit number, or null. */
function ipv6ToBigint(text: string): bigint | null {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (part: string): string[] | null => (part === '' ? [] : part.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  if (head === null || tail === null) return null;
  const last = halves.length === 2 ? tail : head;
  const end = last[last.length - 1];
  if (end !== undefined && end.includes('.')) {
    const v4 = ipv4ToNumber(end);
    if (v4 === null) return null;
    last.splice(last.length - 1, 1, Math.floor(v4 / 65536).toString(16), (v4 % 65536).toString(16));
  }
  if (![...head, ...tail].every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return null;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups compressed (the first if tied). */
function bigintToIpv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  return formatIpv6Groups(groups);
}

const V6_BITS = 128n;
const V6_ALL = (1n << V6_BITS) - 1n;

function v6Mask(prefixLen: number): bigint {
  return V6_ALL ^ ((1n << (V6_BITS - BigInt(prefixLen))) - 1n);
}

function inV6Block(v: bigint, base: bigint, prefixLen: number): boolean {
  return (v & v6Mask(prefixLen)) === base;
}

function parseV6CidrParts(text: string, what: string): { value: bigint; prefixLen: number; address: string } {
  const s = text.trim();
  const slash = s.indexOf('/');
  const example = 'fd00:77:1::5/48';
  if (slash < 0) {
    if (ipv6ToBigint(s) !== null) throw RouterError.config(`${what} ${JSON.stringify(text)} needs a prefix length, e.g. ${s}/64`);
    throw RouterError.config(`${what} must be a CIDR such as 10.32.0.1/12 or ${example}, got ${JSON.stringify(text)}`);
  }
  const value = ipv6ToBigint(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (value === null || !/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) {
    throw RouterError.config(`${what} must be an IPv6 CIDR such as ${example}, got ${JSON.stringify(text)}`);
  }
  return { value, prefixLen: Number(lenText), address: bigintToIpv6(value) };
}

function parseCidrParts(text: string, what: string): { base: number; prefixLen: number; address: string } {
  const s = typeof text === 'string' ? text.trim() : '';
  if (s.includes(':')) throw RouterError.config(`${what} ${JSON.stringify(text)}: IPv6 is not supported here, use an IPv4 CIDR such as 10.32.0.1/12`);
  const slash = s.indexOf('/');
  if (slash < 0) {
    if (ipv4ToNumber(s) !== null) throw RouterError.config(`${what} ${JSON.stringify(text)} needs a prefix length, e.g. ${s}/12`);
    throw RouterError.config(`${what} must be an IPv4 CIDR such as 10.32.0.1/12, got ${JSON.stringify(text)}`);
  }
  const address = s.slice(0, slash);
  const lenText = s.slice(slash + 1);
  const base = ipv4ToNumber(address);
  if (base === null || !/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    throw RouterError.config(`${what} must be an IPv4 CIDR such as 10.32.0.1/12, got ${JSON.stringify(text)}`);
  }
  return { base, prefixLen: Number(lenText), address };
}

/**
 * An IPv4 address for a container's ethwe (or the host, weave expose): a host
 * address with its prefix. Refuses IPv6 (see parseAttachAddress), the network
 * and broadcast addresses of the subnet (for prefixes up to /30) and addresses
 * that can never be a unicast host address.
 */
export function parseAttachCidr(text: string): Ipv4Cidr {
  const { base, prefixLen, address } = parseCidrParts(text, 'address');
  const first = Math.floor(base / 2 ** 24);
  if (prefixLen === 0) throw RouterError.config(`address ${text}: prefix length 0 would claim the whole Internet`);
  if (first === 0) throw RouterError.config(`address ${text} is in 0.0.0.0/8, which is not a host address`);
  if (first === 127) throw RouterError.config(`address ${text} is a loopback address`);
  if (first >= 224 && first <= 239) throw RouterError.config(`address ${text} is a multicast address`);
  if (first >= 240) throw RouterError.config(`address ${text} is in the reserved range 240.0.0.0/4`);
  if (prefixLen <= 30) {
    const size = 2 ** (32 - prefixLen);
    const host = base % size;
    const net = numberToIpv4(base - host);
    if (host === 0) throw RouterError.config(`address ${text} is the network address of ${net}/${prefixLen}; pick a host address`);
    if (host === size - 1) throw RouterError.config(`address ${text} is the broadcast address of ${net}/${prefixLen}; pick a host address`);
  }
  return { address, prefixLen, cidr: `${address}/${prefixLen}` };
}

/** Blocks no container address may be in: [base, prefix, what it is]. */
const V6_REFUSED: readonly (readonly [bigint, number, string])[] = [
  [0n, 128, 'the unspecified address'],
  [1n, 128, 'the loopback address'],
  [0xffffn << 32n, 96, 'an IPv4-mapped address (::ffff:0:0/96)'],
  [0xfe80n << 112n, 10, 'a link-local address (fe80::/10); ethwe has its own'],
  [0xffn << 120n, 8, 'a multicast address'],
];

/**
 * An address for a container's ethwe, IPv4 (as parseAttachCidr) or IPv6 (dual
 * stack). IPv6 refuses a prefix length of 0, the unspecified, loopback,
 * IPv4-mapped, link-local and multicast addresses, and the subnet-router
 * anycast address (host part zero) of prefixes up to /126.
 */
export function parseAttachAddress(text: string): AttachCidr {
  const s = typeof text === 'string' ? text.trim() : '';
  if (!s.includes(':')) return { family: 4, ...parseAttachCidr(text) };
  const { value, prefixLen, address } = parseV6CidrParts(s, 'address');
  if (prefixLen === 0) throw RouterError.config(`address ${text}: prefix length 0 would claim the whole Internet`);
  for (const [base, len, what] of V6_REFUSED) {
    if (inV6Block(value, base, len)) throw RouterError.config(`address ${text} is ${what}`);
  }
  if (prefixLen <= 126 && (value & ~v6Mask(prefixLen) & V6_ALL) === 0n) {
    throw RouterError.config(`address ${text} is the subnet-router anycast address of ${address}/${prefixLen}; pick a host address`);
  }
  return { family: 6, address, prefixLen, cidr: `${address}/${prefixLen}` };
}

/** A route destination, either family: normalised to its network address (10.32.1.0/12 -> 10.32.0.0/12). */
export function parseRouteCidr(text: string): string {
  if (typeof text === 'string' && text.includes(':')) {
    const { value, prefixLen } = parseV6CidrParts(text, 'overlay route');
    return `${bigintToIpv6(value & v6Mask(prefixLen))}/${prefixLen}`;
  }
  const { base, prefixLen } = parseCidrParts(text, 'overlay route');
  const size = 2 ** (32 - prefixLen);
  return `${numberToIpv4(base - (base % size))}/${prefixLen}`;
}

/** The family of a normalised CIDR or address. */
export function familyOf(cidr: string): 4 | 6 {
  return cidr.includes(':') ? 6 : 4;
}

// ---------------------------------------------------------------------------
// Attachments

export interface AttachedContainer {
  /** Docker: full container id. netns: `netns:NAME`. pid: `pid:PID`. */
  id: string;
  /** Docker: the container's name. netns: the namespace name. pid: the process name. */
  name: string;
  kind: ContainerKind;
  ifname: typeof CONTAINER_IFNAME;
  mac: string;
  /** CIDRs on ethwe, in the order they were attached. */
  addresses: string[];
  /** Host end of the veth pair, on the bridge. */
  hostIfname: string;
  /** The process whose namespace we entered; null for netns:NAME. */
  pid: number | null;
  /** `weave attach --name`: the name DNS registers instead of `name` (dns/ reads it through the listener). */
  dnsName?: string;
  /** `weave attach --without-dns`: no DNS name, resolver left alone. */
  withoutDns?: boolean;
}

/** Per-attachment DNS wishes, kept in the record so restarts and re-attaches honour them. */
export interface AttachOptions {
  dnsName?: string;
  withoutDns?: boolean;
}

/** Checks AttachOptions from a request; the name itself is checked by DNS, this only bounds it. */
export function validateAttachOptions(opts: AttachOptions): AttachOptions {
  const out: AttachOptions = {};
  if (opts.dnsName !== undefined) {
    if (typeof opts.dnsName !== 'string' || opts.dnsName.trim() === '' || opts.dnsName.length > 253 || /[\u0000-\u0020\u007f]/.test(opts.dnsName)) {
      throw RouterError.config(`--name must be a host name of at most 253 characters, got ${JSON.stringify(opts.dnsName)}`);
    }
    out.dnsName = opts.dnsName.trim();
  }
  if (opts.withoutDns !== undefined) {
    if (typeof opts.withoutDns !== 'boolean') throw RouterError.config(`withoutDns must be true or false, got ${JSON.stringify(opts.withoutDns)}`);
    if (opts.withoutDns) out.withoutDns = true;
  }
  if (out.dnsName !== undefined && out.withoutDns === true) throw RouterError.config('--name and --without-dns contradict each other');
  return out;
}

function attachOptionsOf(a: AttachOptions): AttachOptions {
  return { ...(a.dnsName !== undefined ? { dnsName: a.dnsName } : {}), ...(a.withoutDns === true ? { withoutDns: true } : {}) };
}

export interface DetachResult {
  container: AttachedContainer;
  /** CIDRs removed in this call. */
  removed: string[];
  /** True when the veth was deleted (nothing of ours is left in the container). */
  detached: boolean;
}

export type DetachReason = 'detach' | 'died' | 'destroyed' | 'gone';

/** Hook point for IPAM and DNS: what was attached or detached, after the fact. */
export interface ContainerListener {
  /** `added` are the CIDRs new in this call (all of them for a fresh attach). */
  onAttached?(container: AttachedContainer, added: string[]): void | Promise<void>;
  /** `removed` are the CIDRs gone in this call; `reason` says why. */
  onDetached?(container: AttachedContainer, removed: string[], reason: DetachReason): void | Promise<void>;
}

/** Namespace identity without running a command: dev:inode of an nsfs file. */
export interface HostFs {
  /** `dev:inode` of the namespace the file refers to, or null when it does not exist. */
  namespaceId(nsPath: string): string | null;
  /** The command name of a process (/proc/PID/comm), or null. */
  processName(pid: number): string | null;
}

/** Where the attachment record lives; a fake keeps it in memory for tests. */
export interface StateStore {
  load(): string | null;
  save(text: string): void;
}

export interface ContainerDeps {
  runner: CommandRunner;
  /** Null when Docker is not available: Docker references then get a clear error. */
  docker?: DockerApi | null;
  logger: Logger;
  /** Defaults to the real /proc and /var/run/netns. */
  hostFs?: HostFs;
  /** Defaults to <datadir>/containers.json. */
  store?: StateStore;
  /** A fresh MAC for ethwe; default: random, locally administered, unicast. */
  newMac?: () => string;
  /** Default setTimeout; tests pass one that returns at once. */
  sleep?: (ms: number) => Promise<void>;
}

/** A random locally administered unicast MAC (first octet xxxxxx10). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Turns attach arguments (CIDRs, `net:CIDR`, `ip:CIDR`, or nothing) into the
 * addresses to give a container; IPAM implements it. Keyed on the resolved
 * container id, so a restarted Docker container keeps its addresses.
 */
export interface AddressSource {
  obtain(container: { id: string; name: string }, requests: string[]): Promise<string[]>;
  /** Addresses obtained for an attach that then failed. */
  giveBack(container: { id: string; name: string }, addresses: string[]): void;
  /**
   * Addresses that come and go with `cidr` (dual stack: the IPv6 twin of an
   * IPv4 address): detaching `cidr` removes those the container has too, since
   * the source frees them as one.
   */
  twinsOf?(cidr: string): string[];
}

export interface ContainerOptions {
  bridge: string;
  mtu: number;
  /** CIDRs routed via ethwe (e.g. the IPAM range 10.32.0.0/12); 224.0.0.0/4 is always added. */
  overlayRoutes: string[];
  datadir: string;
  /**
   * The namespace the bridge lives in, to refuse attaching the host to itself.
   * Default /proc/self/ns/net; tests that act as a host in another namespace pass its path.
   */
  hostNetns?: string;
}

/** What we keep per container: the public view plus how to find its namespace again. */
interface Attachment {
  kind: ContainerKind;
  id: string;
  name: string;
  /** The reference the user gave, for messages. */
  ref: string;
  pid: number | null;
  netnsPath: string;
  nsId: string;
  hostIfname: string;
  mac: string;
  addresses: string[];
  /** 'stopped': a Docker container that died; its addresses stay reserved for its restart. */
  state: 'attached' | 'stopped';
  dnsName?: string;
  withoutDns?: boolean;
}

interface ResolvedContainer {
  kind: ContainerKind;
  id: string;
  name: string;
  pid: number | null;
  netnsPath: string;
  nsId: string;
  /** For `ip link add ... netns X`: a pid or a name under /var/run/netns. */
  ipNetnsArg: string;
}

/**
 * The host end's name, stable for the container's lifetime and at most 15
 * characters: `vethwepl<pid>` like Weave Net for processes and Docker
 * containers, `vethwens<hash>` for named namespaces.
 */
export function hostIfnameFor(kind: ContainerKind, pidOrName: number | string): string {
  const name =
    kind === 'netns'
      ? `${VETH_PREFIX}ns${createHash('sha256').update(String(pidOrName)).digest('hex').slice(0, MAX_IFNAME_CHARS - VETH_PREFIX.length - 2)}`
      : `${VETH_PREFIX}pl${String(pidOrName)}`;
  return validateIfName(name, 'veth name');
}

function ipOf(cidr: string): string {
  return cidr.slice(0, cidr.indexOf('/'));
}

function hasV6(cidrs: readonly string[]): boolean {
  return cidrs.some((c) => familyOf(c) === 6);
}

/**
 * `ip` arguments adding or deleting an address on ethwe. IPv6 without DAD: on
 * a fresh veth it would keep the address tentative (unusable) for a second or
 * more, and IPAM already guarantees the address is unique on the overlay.
 */
function addrArgs(op: 'add' | 'del', cidr: string): string[] {
  return familyOf(cidr) === 6
    ? ['-6', 'addr', op, cidr, 'dev', CONTAINER_IFNAME, ...(op === 'add' ? ['nodad'] : [])]
    : ['addr', op, cidr, 'dev', CONTAINER_IFNAME];
}

type UndoStep = () => Promise<unknown>;

export class ContainerManager {
  private addressSource: AddressSource | null = null;
  private readonly attachments: Attachment[] = [];
  private readonly listeners: ContainerListener[] = [];
  private readonly runner: CommandRunner;
  private readonly docker: DockerApi | null;
  private readonly logger: Logger;
  private readonly hostFs: HostFs;
  private readonly store: StateStore;
  private readonly bridge: string;
  private readonly mtu: number;
  private readonly routes: string[];
  private readonly hostNetns: string;
  private readonly newMac: () => string;
  private readonly sleep: (ms: number) => Promise<void>;
  private queue: Promise<unknown> = Promise.resolve();
  private watch: EventWatch | null = null;

  constructor(deps: ContainerDeps, opts: ContainerOptions) {
    this.runner = deps.runner;
    this.docker = deps.docker ?? null;
    this.logger = deps.logger;
    this.hostFs = deps.hostFs ?? procHostFs;
    this.store = deps.store ?? new FileStateStore(path.join(opts.datadir, STATE_FILE));
    this.newMac = deps.newMac ?? randomMac;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.bridge = validateIfName(opts.bridge, 'bridge name');
    this.mtu = validateMtu(opts.mtu);
    const routes = opts.overlayRoutes.map((r) => parseRouteCidr(r));
    this.routes = [...new Set([...routes, MULTICAST_ROUTE])];
    this.hostNetns = opts.hostNetns ?? '/proc/self/ns/net';
  }

  /** Registers IPAM/DNS-style hooks; returns a function that removes them. */
  addListener(listener: ContainerListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Attached containers, for `weave ps` (stopped Docker containers are not listed). */
  list(): AttachedContainer[] {
    return this.attachments.filter((a) => a.state === 'attached').map((a) => publicView(a));
  }

  /** Every address this manager holds, including those of stopped containers. */
  addressesInUse(): string[] {
    return this.attachments.flatMap((a) => a.addresses);
  }

  /**
   * Attaches `ref` with `cidrs`, or adds `cidrs` to it when it is attached
   * already. Validates everything before changing anything, and on a failure
   * midway undoes what this call made.
   */
  async attach(ref: string | ContainerRef, cidrs: string[], opts: AttachOptions = {}): Promise<AttachedContainer> {
    const parsed = typeof ref === 'string' ? parseContainerRef(ref) : ref;
    const dns = validateAttachOptions(opts);
    const source = this.addressSource;
    if (source === null) {
      const wanted = this.parseAddresses(cidrs, true);
      return this.serialize(() => this.handleAttach(parsed, wanted, dns));
    }
    if (!Array.isArray(cidrs) || cidrs.some((c) => typeof c !== 'string')) throw RouterError.config('addresses must be a list of strings');
    // Resolve first (outside the queue: allocation may wait for IPAM consensus),
    // so addresses are keyed on the container's stable id.
    const target = await this.resolve(parsed);
    const addresses = await source.obtain({ id: target.id, name: target.name }, cidrs);
    let wanted: AttachCidr[];
    try {
      wanted = this.parseAddresses(addresses, true);
      return await this.serialize(() => this.handleAttach(parsed, wanted, dns));
    } catch (err) {
      // Hand back what the source gave us for this failed attach; the container keeps any older addresses.
      const held = new Set(this.attachments.filter((a) => a.id === target.id).flatMap((a) => a.addresses));
      source.giveBack({ id: target.id, name: target.name }, addresses.filter((a) => !held.has(a)));
      throw err;
    }
  }

  /** The source's twins of `cidr`, canonical; none when it has no opinion or fails. */
  private twinsOf(cidr: string): string[] {
    const fn = this.addressSource?.twinsOf;
    if (fn === undefined) return [];
    try {
      return fn.call(this.addressSource, cidr).map((c) => parseAttachAddress(c).cidr);
    } catch (err) {
      this.logger.warn('cannot tell the twins of an address', { address: cidr, error: errorMessage(err) });
      return [];
    }
  }

  /** Where addresses come from when an attach names none, or names subnets (IPAM). */
  setAddressSource(source: AddressSource): void {
    this.addressSource = source;
  }

  /** Removes `cidrs` from the container, or everything (the veth) when none are given or none remain. */
  async detach(ref: string | ContainerRef, cidrs?: string[]): Promise<DetachResult> {
    const parsed = typeof ref === 'string' ? parseContainerRef(ref) : ref;
    const wanted = cidrs === undefined || cidrs.length === 0 ? null : this.parseAddresses(cidrs, false);
    return this.serialize(() => this.handleDetach(parsed, wanted));
  }

  /**
   * Reads the record a previous daemon left and keeps what is still true:
   * entries whose namespace is gone, or whose veth is gone, are dropped (a
   * leftover veth of ours is deleted); Docker containers restarted meanwhile
   * are attached again with their addresses.
   */
  restore(): Promise<AttachedContainer[]> {
    return this.serialize(() => this.handleRestore());
  }

  /** Follows Docker events: re-attach on start after a restart, forget on destroy. */
  watchDocker(): void {
    if (this.docker === null || this.watch !== null) return;
    this.watch = this.docker.watchEvents((ev) => {
      void this.serialize(() => this.handleDockerEvent(ev)).catch((err: unknown) => {
        this.logger.warn('docker event not handled', { action: ev.action, container: ev.id.slice(0, 12), error: errorMessage(err) });
      });
    });
  }

  /** Stops following Docker events and waits for queued work. Attachments stay as they are. */
  async close(): Promise<void> {
    this.watch?.close();
    this.watch = null;
    await this.queue.catch(() => undefined);
  }

  // -------------------------------------------------------------------------

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private parseAddresses(cidrs: unknown, required: boolean): AttachCidr[] {
    if (!Array.isArray(cidrs)) throw RouterError.config('addresses must be a list of CIDRs such as 10.32.0.1/12');
    if (required && cidrs.length === 0) {
      throw RouterError.config('an address is required when no IPAM runs here: e.g. weave attach 10.32.0.1/12 <container>');
    }
    if (cidrs.length > MAX_ADDRESSES_PER_REQUEST) {
      throw RouterError.config(`${cidrs.length} addresses in one request, over the limit of ${MAX_ADDRESSES_PER_REQUEST}`);
    }
    const out: AttachCidr[] = [];
    for (const c of cidrs) {
      if (typeof c !== 'string') throw RouterError.config(`every address must be a string CIDR, got ${JSON.stringify(c)}`);
      const parsed = parseAttachAddress(c);
      const dup = out.find((o) => o.address === parsed.address);
      if (dup !== undefined && dup.cidr !== parsed.cidr) {
        throw RouterError.config(`address ${parsed.address} given twice with different prefixes (${dup.cidr}, ${parsed.cidr})`);
      }
      if (dup === undefined) out.push(parsed);
    }
    return out;
  }

  private async handleAttach(ref: ContainerRef, wanted: AttachCidr[], dns: AttachOptions = {}): Promise<AttachedContainer> {
    const target = await this.resolve(ref);
    let existing = this.attachments.find((a) => a.state === 'attached' && a.nsId === target.nsId) ?? null;
    if (existing !== null && !(await this.stillThere(existing))) {
      // The veth vanished behind our back (someone deleted it): start afresh.
      this.logger.info('attachment was gone; attaching again', { container: existing.name, veth: existing.hostIfname });
      this.forget(existing);
      await this.notifyDetached(existing, existing.addresses, 'gone');
      existing = null;
    }
    // A stopped record of the same Docker container: its addresses are its own.
    const self = (a: Attachment): boolean => a === existing || (a.kind === 'docker' && a.id === target.id);
    for (const w of wanted) {
      const holder = this.attachments.find((a) => !self(a) && a.addresses.some((c) => ipOf(c) === w.address));
      if (holder !== undefined) {
        throw RouterError.config(`address ${w.address} is already attached to ${describe(holder)}`);
      }
      const mine = existing?.addresses.find((c) => ipOf(c) === w.address);
      if (mine !== undefined && mine !== w.cidr) {
        throw RouterError.config(`${describe(existing as Attachment)} already has ${mine}; detach it before attaching ${w.cidr}`);
      }
    }
    if (existing !== null) return this.addAddresses(existing, wanted);
    return this.createAttachment(target, wanted, dns);
  }

  private async createAttachment(target: ResolvedContainer, wanted: AttachCidr[], dns: AttachOptions = {}): Promise<AttachedContainer> {
    const stale = this.attachments.find((a) => a.kind === 'docker' && a.id === target.id);
    const hostIf = hostIfnameFor(target.kind, target.kind === 'netns' ? target.name : (target.pid as number));
    if ((await this.linkExists(hostIf)) !== false) {
      throw RouterError.config(
        `host interface ${hostIf} for ${target.name} already exists (left over from an earlier attach?); ` +
          `delete it with: ip link del ${hostIf}`,
      );
    }
    const undo: UndoStep[] = [];
    const ns = ['nsenter', `--net=${target.netnsPath}`];
    const inNs = (args: string[], allowFail = false) =>
      this.runner.run(ns[0] as string, [...ns.slice(1), 'ip', ...args], { allowFail });
    try {
      // The peer is born inside the container under its final name, so there is
      // never an `ethwe` in the host namespace and no rename step to undo.
      const add = await this.runner.run(
        'ip',
        ['link', 'add', 'name', hostIf, 'mtu', String(this.mtu), 'type', 'veth',
          'peer', 'name', CONTAINER_IFNAME, 'mtu', String(this.mtu), 'netns', target.ipNetnsArg],
        { allowFail: true },
      );
      if (add.code !== 0) {
        if (/File exists/i.test(add.stderr)) {
          throw RouterError.config(`${target.name} already has an interface named ${CONTAINER_IFNAME} (attached by another weave router?)`);
        }
        throw new RouterError('io', `cannot create the veth pair for ${target.name}: ${add.stderr.trim()}`);
      }
      // Deleting one end of a veth pair deletes both, and the peer's addresses and routes with it.
      undo.push(() => this.runner.run('ip', ['link', 'del', 'dev', hostIf], { allowFail: true }));
      await this.runner.run('ip', ['link', 'set', 'dev', hostIf, 'master', this.bridge]);
      await this.runner.run('ip', ['link', 'set', 'dev', hostIf, 'up']);
      // The data plane carries TCP super-frames (GSO) whole, sealed in one UDP datagram:
      // keep them well under the 64 KiB datagram limit. Older kernels cannot set it: harmless.
      await inNs(['link', 'set', 'dev', CONTAINER_IFNAME, 'gso_max_size', String(CONTAINER_GSO_MAX_BYTES)], true);
      await this.tuneArp(target.netnsPath, target.name);
      if (wanted.some((w) => w.family === 6)) await this.enableIpv6(target.netnsPath);
      for (const w of wanted) await inNs(addrArgs('add', w.cidr));
      await inNs(['link', 'set', 'dev', CONTAINER_IFNAME, 'up']);
      await this.announce(target.netnsPath, hostIf, target.name);
      await this.ensureRoutes(target.netnsPath, hasV6(wanted.map((w) => w.cidr)));
      const mac = await this.readMac(target.netnsPath);
      const record: Attachment = {
        kind: target.kind,
        id: target.id,
        name: target.name,
        ref: target.kind === 'docker' ? target.name : target.id,
        pid: target.pid,
        netnsPath: target.netnsPath,
        nsId: target.nsId,
        hostIfname: hostIf,
        mac,
        addresses: wanted.map((w) => w.cidr),
        state: 'attached',
        // A stopped Docker container attached again keeps its DNS wishes unless new ones are given.
        ...attachOptionsOf(dns.dnsName !== undefined || dns.withoutDns === true || stale === undefined ? dns : stale),
      };
      if (stale !== undefined) {
        // A stopped Docker container attached again: fold its remaining reserved addresses in.
        this.forget(stale);
        const folded = stale.addresses.filter((c) => !record.addresses.some((r) => ipOf(r) === ipOf(c)));
        if (hasV6(folded) && !hasV6(record.addresses)) await this.enableIpv6(target.netnsPath);
        for (const c of folded) {
          await inNs(addrArgs('add', c));
          record.addresses.push(c);
        }
        await this.ensureRoutes(target.netnsPath, hasV6(record.addresses));
      }
      this.attachments.push(record);
      this.persist();
      this.logger.info('attached container', { container: record.name, veth: hostIf, mac, addresses: record.addresses.join(',') });
      await this.notifyAttached(record, record.addresses);
      return publicView(record);
    } catch (err) {
      await this.rollback(undo, err);
      if (stale !== undefined && !this.attachments.includes(stale)) this.attachments.push(stale);
      throw err;
    }
  }

  private async addAddresses(record: Attachment, wanted: AttachCidr[]): Promise<AttachedContainer> {
    const fresh = wanted.filter((w) => !record.addresses.includes(w.cidr));
    if (fresh.length === 0) return publicView(record);
    const undo: UndoStep[] = [];
    const nsArgs = ['nsenter', `--net=${record.netnsPath}`, 'ip'];
    try {
      if (fresh.some((w) => w.family === 6) && !hasV6(record.addresses)) await this.enableIpv6(record.netnsPath);
      for (const w of fresh) {
        const r = await this.runner.run('nsenter', [...nsArgs.slice(1), ...addrArgs('add', w.cidr)], { allowFail: true });
        if (r.code !== 0) {
          if (/File exists/i.test(r.stderr)) {
            throw RouterError.config(`${describe(record)} already has ${w.cidr} on ${CONTAINER_IFNAME}, put there by something other than weave`);
          }
          throw new RouterError('io', `cannot add ${w.cidr} to ${describe(record)}: ${r.stderr.trim()}`);
        }
        undo.push(() => this.runner.run('nsenter', [...nsArgs.slice(1), ...addrArgs('del', w.cidr)], { allowFail: true }));
      }
      await this.ensureRoutes(record.netnsPath, hasV6([...record.addresses, ...fresh.map((w) => w.cidr)]));
    } catch (err) {
      await this.rollback(undo, err);
      throw err;
    }
    record.addresses.push(...fresh.map((w) => w.cidr));
    this.persist();
    this.logger.info('added addresses', { container: record.name, addresses: fresh.map((w) => w.cidr).join(',') });
    await this.notifyAttached(record, fresh.map((w) => w.cidr));
    return publicView(record);
  }

  private async handleDetach(ref: ContainerRef, wanted: AttachCidr[] | null): Promise<DetachResult> {
    const record = await this.find(ref);
    if (record === null) throw RouterError.config(`${formatContainerRef(ref)} is not attached`);
    let removing: string[];
    if (wanted === null) {
      removing = [...record.addresses];
    } else {
      removing = [];
      for (const w of wanted) {
        const have = record.addresses.find((c) => ipOf(c) === w.address);
        if (have === undefined) throw RouterError.config(`address ${w.cidr} is not attached to ${describe(record)}`);
        if (!removing.includes(have)) removing.push(have);
      }
      for (const c of [...removing]) {
        for (const twin of this.twinsOf(c)) {
          const have = record.addresses.find((a) => ipOf(a) === ipOf(twin));
          if (have !== undefined && !removing.includes(have)) removing.push(have);
        }
      }
    }
    const remaining = record.addresses.filter((c) => !removing.includes(c));
    if (remaining.length === 0 || record.state === 'stopped') {
      if (record.state === 'attached') await this.deleteVeth(record.hostIfname);
      this.forget(record);
      this.persist();
      this.logger.info('detached container', { container: record.name, veth: record.hostIfname });
      const view = { ...publicView(record), addresses: [] };
      await this.notifyDetached(record, record.addresses, 'detach');
      return { container: view, removed: [...record.addresses], detached: true };
    }
    for (const c of removing) {
      const r = await this.runner.run('nsenter', [`--net=${record.netnsPath}`, 'ip', ...addrArgs('del', c)], { allowFail: true });
      if (r.code !== 0 && !/Cannot assign requested address|not found/i.test(r.stderr)) {
        // Keep the record truthful about what is still there.
        record.addresses = record.addresses.filter((a) => !removing.slice(0, removing.indexOf(c)).includes(a));
        this.persist();
        throw new RouterError('io', `cannot remove ${c} from ${describe(record)}: ${r.stderr.trim()}`);
      }
    }
    record.addresses = remaining;
    // The last IPv6 address gone: take away the IPv6 overlay routes attach added for it.
    if (hasV6(removing) && !hasV6(remaining)) await this.removeV6Routes(record.netnsPath);
    // Removing the last address of a subnet takes its connected route along; put the overlay routes back.
    await this.ensureRoutes(record.netnsPath, hasV6(remaining)).catch((err: unknown) =>
      this.logger.warn('cannot restore overlay routes after removing addresses', { container: record.name, error: errorMessage(err) }));
    this.persist();
    this.logger.info('removed addresses', { container: record.name, addresses: removing.join(',') });
    await this.notifyDetached(record, removing, 'detach');
    return { container: publicView(record), removed: removing, detached: false };
  }

  private async handleRestore(): Promise<AttachedContainer[]> {
    const text = this.store.load();
    if (text === null) return [];
    let entries: Attachment[];
    try {
      entries = parseState(text);
    } catch (err) {
      this.logger.warn('ignoring unreadable container record', { file: STATE_FILE, error: errorMessage(err) });
      return [];
    }
    let changed = false;
    for (const e of entries) {
      if (this.attachments.some((a) => a.hostIfname === e.hostIfname || a.nsId === e.nsId)) continue;
      if (e.state === 'stopped') {
        this.attachments.push(e);
        continue;
      }
      const nsNow = this.hostFs.namespaceId(e.netnsPath);
      const vethNow = await this.linkExists(e.hostIfname);
      if (nsNow === e.nsId && vethNow === true) {
        this.attachments.push(e);
        continue;
      }
      changed = true;
      if (vethNow === true) await this.deleteVeth(e.hostIfname);
      if (e.kind === 'docker' && this.docker !== null) {
        // Restarted while we were away: attach again with the same addresses.
        const info = await this.docker.inspect(e.id).catch(() => null);
        if (info !== null) {
          if (info.running) {
            try {
              await this.createAttachment(await this.resolve({ kind: 'docker', ref: e.id }), e.addresses.map((c) => parseAttachAddress(c)), attachOptionsOf(e));
              continue;
            } catch (err) {
              this.logger.warn('cannot re-attach restarted container', { container: e.name, error: errorMessage(err) });
            }
          } else {
            this.attachments.push({ ...e, state: 'stopped' });
            continue;
          }
        }
      }
      this.logger.info('dropping attachment whose container is gone', { container: e.name, veth: e.hostIfname });
    }
    if (changed) this.persist();
    return this.list();
  }

  private async handleDockerEvent(ev: DockerEvent): Promise<void> {
    const record = this.attachments.find((a) => a.kind === 'docker' && a.id === ev.id);
    if (record === undefined) return;
    switch (ev.action) {
      case 'die': {
        if (record.state === 'stopped') return;
        // The namespace died with the container, and the veth with it; make sure.
        await this.deleteVeth(record.hostIfname);
        record.state = 'stopped';
        record.pid = null;
        this.persist();
        this.logger.info('container died; keeping its addresses for a restart', { container: record.name });
        await this.notifyDetached(record, record.addresses, 'died');
        return;
      }
      case 'start': {
        if (record.state === 'attached') {
          if (this.hostFs.namespaceId(record.netnsPath) === record.nsId && (await this.linkExists(record.hostIfname)) === true) return;
          await this.deleteVeth(record.hostIfname);
          record.state = 'stopped';
          await this.notifyDetached(record, record.addresses, 'died');
        }
        const target = await this.resolve({ kind: 'docker', ref: ev.id });
        await this.createAttachment(target, record.addresses.map((c) => parseAttachAddress(c)), attachOptionsOf(record));
        return;
      }
      case 'destroy': {
        if (record.state === 'attached') await this.deleteVeth(record.hostIfname);
        this.forget(record);
        this.persist();
        this.logger.info('container destroyed; released its addresses', { container: record.name });
        await this.notifyDetached(record, record.addresses, 'destroyed');
        return;
      }
      default:
        assertNever(ev.action);
    }
  }

  // -------------------------------------------------------------------------
  // Finding containers

  private async resolve(ref: ContainerRef): Promise<ResolvedContainer> {
    let resolved: ResolvedContainer;
    switch (ref.kind) {
      case 'docker': {
        if (this.docker === null) {
          throw RouterError.config(`cannot attach Docker container ${ref.ref}: Docker is not available to this router`);
        }
        const info = await this.docker.inspect(ref.ref);
        if (info === null) throw RouterError.config(`no such Docker container: ${ref.ref}`);
        if (!info.running) throw RouterError.config(`Docker container ${info.name} is not running`);
        const netnsPath = `/proc/${info.pid}/ns/net`;
        const nsId = this.hostFs.namespaceId(netnsPath);
        if (nsId === null) throw RouterError.config(`Docker container ${info.name} stopped while being attached`);
        resolved = { kind: 'docker', id: info.id, name: info.name, pid: info.pid, netnsPath, nsId, ipNetnsArg: String(info.pid) };
        break;
      }
      case 'netns': {
        const netnsPath = `/var/run/netns/${ref.name}`;
        const nsId = this.hostFs.namespaceId(netnsPath);
        if (nsId === null) throw RouterError.config(`no network namespace named ${ref.name} (see ip netns list)`);
        resolved = { kind: 'netns', id: `netns:${ref.name}`, name: ref.name, pid: null, netnsPath, nsId, ipNetnsArg: ref.name };
        break;
      }
      case 'pid': {
        const netnsPath = `/proc/${ref.pid}/ns/net`;
        const nsId = this.hostFs.namespaceId(netnsPath);
        if (nsId === null) throw RouterError.config(`no process with pid ${ref.pid}`);
        const comm = this.hostFs.processName(ref.pid) ?? `pid ${ref.pid}`;
        resolved = { kind: 'pid', id: `pid:${ref.pid}`, name: comm, pid: ref.pid, netnsPath, nsId, ipNetnsArg: String(ref.pid) };
        break;
      }
      default:
        return assertNever(ref);
    }
    if (resolved.nsId === this.hostFs.namespaceId(this.hostNetns)) {
      throw RouterError.config(`${formatContainerRef(ref)} shares the host's network namespace; there is nothing to attach`);
    }
    return resolved;
  }

  /** The record for `ref`, by what the user typed first, else by the namespace it resolves to. */
  private async find(ref: ContainerRef): Promise<Attachment | null> {
    const direct = this.attachments.find((a) => {
      switch (ref.kind) {
        case 'docker':
          return a.kind === 'docker' && (a.name === ref.ref || (ref.ref.length >= 12 && a.id.startsWith(ref.ref)));
        case 'netns':
          return a.kind === 'netns' && a.id === `netns:${ref.name}`;
        case 'pid':
          return a.state === 'attached' && a.pid === ref.pid;
        default:
          return assertNever(ref);
      }
    });
    if (direct !== undefined) return direct;
    try {
      const target = await this.resolve(ref);
      return this.attachments.find((a) => (a.state === 'attached' && a.nsId === target.nsId) || (a.kind === 'docker' && a.id === target.id)) ?? null;
    } catch {
      return null;
    }
  }

  private async stillThere(a: Attachment): Promise<boolean> {
    return this.hostFs.namespaceId(a.netnsPath) === a.nsId && (await this.linkExists(a.hostIfname)) === true;
  }

  // -------------------------------------------------------------------------
  // Commands

  /** True, false, or null when `ip` failed for another reason. */
  private async linkExists(name: string): Promise<boolean | null> {
    const r = await this.runner.run('ip', ['link', 'show', 'dev', name], { allowFail: true });
    if (r.code === 0) return true;
    if (/does not exist|Cannot find device/i.test(r.stderr)) return false;
    return null;
  }

  private async deleteVeth(name: string): Promise<void> {
    const r = await this.runner.run('ip', ['link', 'del', 'dev', name], { allowFail: true });
    if (r.code !== 0 && !/does not exist|Cannot find device/i.test(r.stderr)) {
      throw new RouterError('io', `cannot delete ${name}: ${r.stderr.trim()}`);
    }
  }

  /**
   * As Weave Net does for ethwe: announce addresses when the link comes up, and
   * notice a neighbour's changed MAC within seconds rather than the default
   * ~30 s (a detached and re-attached container gets a new MAC). Best effort:
   * without it traffic still flows, it just recovers more slowly.
   */
  private async tuneArp(netnsPath: string, name: string): Promise<void> {
    const settings = ARP_SYSCTLS.map(([k, v]) => `${k.replace('IF', CONTAINER_IFNAME)}=${v}`);
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'sysctl', '-q', '-w', ...settings], { allowFail: true });
    if (r.code !== 0) this.logger.warn('cannot tune ARP on ethwe', { container: name, error: r.stderr.trim() });
  }

  /**
   * Makes peers that still hold the MAC of an earlier holder of these addresses
   * (a detached and re-attached container, a restarted one) learn the new MAC
   * now, not after their ARP entry times out. With arp_notify, a MAC change
   * sends a gratuitous ARP for every address. Bringing ethwe up would too, but
   * at that moment the bridge port is still disabled (it starts forwarding only
   * once the kernel's link watcher has seen the carrier), so that announcement
   * is lost. Hence: wait for `forwarding`, then give ethwe its own fresh MAC.
   * Best effort: failure only slows recovery down.
   */
  private async announce(netnsPath: string, hostIf: string, name: string): Promise<void> {
    let forwarding = false;
    for (let i = 0; i < PORT_FORWARDING_POLLS && !forwarding; i++) {
      const r = await this.runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', hostIf], { allowFail: true });
      try {
        const info = (JSON.parse(r.stdout) as { linkinfo?: { info_slave_data?: { state?: unknown } } }[])[0];
        forwarding = info?.linkinfo?.info_slave_data?.state === 'forwarding';
      } catch {
        forwarding = false;
      }
      if (!forwarding) await this.sleep(PORT_FORWARDING_POLL_MS);
    }
    if (!forwarding) this.logger.warn('bridge port did not reach forwarding state in time', { container: name, veth: hostIf });
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', 'link', 'set', 'dev', CONTAINER_IFNAME, 'address', this.newMac()], { allowFail: true });
    if (r.code !== 0) this.logger.warn('cannot announce the new MAC of ethwe', { container: name, error: r.stderr.trim() });
  }

  /**
   * Adds the overlay and multicast routes via ethwe; one that exists already is
   * fine. IPv6 overlay routes only with `withV6` (the container has an IPv6
   * address on ethwe; without one, IPv6 may well be disabled there).
   */
  private async ensureRoutes(netnsPath: string, withV6: boolean): Promise<void> {
    for (const route of this.routes) {
      const v6 = familyOf(route) === 6;
      if (v6 && !withV6) continue;
      const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', ...(v6 ? ['-6'] : []), 'route', 'add', route, 'dev', CONTAINER_IFNAME], { allowFail: true });
      if (r.code !== 0 && !/File exists/i.test(r.stderr)) {
        throw new RouterError('io', `cannot add route ${route} via ${CONTAINER_IFNAME}: ${r.stderr.trim()}`);
      }
    }
  }

  /** Best effort: a route already gone (with its connected twin, say) is fine. */
  private async removeV6Routes(netnsPath: string): Promise<void> {
    for (const route of this.routes.filter((r) => familyOf(r) === 6)) {
      await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', '-6', 'route', 'del', route, 'dev', CONTAINER_IFNAME], { allowFail: true });
    }
  }

  /**
   * Dual stack: IPv6 on ethwe, whatever the namespace's default (Docker turns
   * it off in containers of IPv4-only networks). ndisc_notify is arp_notify's
   * IPv6 twin: the MAC change in announce() sends unsolicited neighbour
   * advertisements. The interface is ours, so is the setting: it goes with it.
   */
  private async enableIpv6(netnsPath: string): Promise<void> {
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'sysctl', '-q', '-w',
      `net.ipv6.conf.${CONTAINER_IFNAME}.disable_ipv6=0`, `net.ipv6.conf.${CONTAINER_IFNAME}.ndisc_notify=1`], { allowFail: true });
    if (r.code !== 0) throw new RouterError('io', `cannot enable IPv6 on ${CONTAINER_IFNAME}: ${r.stderr.trim()}`);
  }

  private async readMac(netnsPath: string): Promise<string> {
    const r = await this.runner.run('nsenter', [`--net=${netnsPath}`, 'ip', '-j', 'link', 'show', 'dev', CONTAINER_IFNAME]);
    try {
      const parsed = JSON.parse(r.stdout) as { address?: unknown }[];
      const mac = parsed[0]?.address;
      if (typeof mac === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return mac;
    } catch {
      // Reported below.
    }
    throw new RouterError('io', `cannot read the MAC address of ${CONTAINER_IFNAME}`);
  }

  private async rollback(undo: UndoStep[], cause: unknown): Promise<void> {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (err) {
        this.logger.error('rollback step failed; something may be left behind', { error: errorMessage(err), cause: errorMessage(cause) });
      }
    }
  }

  // -------------------------------------------------------------------------
  // Record and listeners

  private forget(a: Attachment): void {
    const i = this.attachments.indexOf(a);
    if (i >= 0) this.attachments.splice(i, 1);
  }

  private persist(): void {
    try {
      this.store.save(JSON.stringify({ version: STATE_VERSION, containers: this.attachments }, null, 2) + '\n');
    } catch (err) {
      // The kernel state is already right; a daemon restart would only forget these.
      this.logger.error('cannot save the container record', { file: STATE_FILE, error: errorMessage(err) });
    }
  }

  private async notifyAttached(a: Attachment, added: string[]): Promise<void> {
    const view = publicView(a);
    for (const l of [...this.listeners]) {
      if (l.onAttached === undefined) continue;
      try {
        await l.onAttached(view, [...added]);
      } catch (err) {
        this.logger.error('container attach listener failed', { container: a.name, error: errorMessage(err) });
      }
    }
  }

  private async notifyDetached(a: Attachment, removed: string[], reason: DetachReason): Promise<void> {
    const view = publicView(a);
    for (const l of [...this.listeners]) {
      if (l.onDetached === undefined) continue;
      try {
        await l.onDetached(view, [...removed], reason);
      } catch (err) {
        this.logger.error('container detach listener failed', { container: a.name, error: errorMessage(err) });
      }
    }
  }
}

function publicView(a: Attachment): AttachedContainer {
  return {
    id: a.id,
    name: a.name,
    kind: a.kind,
    ifname: CONTAINER_IFNAME,
    mac: a.mac,
    addresses: [...a.addresses],
    hostIfname: a.hostIfname,
    pid: a.pid,
    ...attachOptionsOf(a),
  };
}

function describe(a: Attachment): string {
  switch (a.kind) {
    case 'docker':
      return `container ${a.name} (${a.id.slice(0, 12)})`;
    case 'netns':
      return `netns:${a.name}`;
    case 'pid':
      return `${a.id} (${a.name})`;
    default:
      return assertNever(a.kind);
  }
}

/** Decodes containers.json, checking every field: the file may be hand-edited or truncated. */
function parseState(text: string): Attachment[] {
  const o = JSON.parse(text) as { version?: unknown; containers?: unknown };
  if (typeof o !== 'object' || o === null || o.version !== STATE_VERSION || !Array.isArray(o.containers)) {
    throw new Error(`expected {"version": ${STATE_VERSION}, "containers": [...]}`);
  }
  const out: Attachment[] = [];
  for (const raw of o.containers as unknown[]) {
    const e = raw as Record<string, unknown>;
    const kind = e['kind'];
    const str = (k: string): string => {
      const v = e[k];
      if (typeof v !== 'string') throw new Error(`entry field ${k} is not a string`);
      return v;
    };
    if (kind !== 'docker' && kind !== 'netns' && kind !== 'pid') throw new Error(`entry kind ${JSON.stringify(kind)} is unknown`);
    const addresses = e['addresses'];
    if (!Array.isArray(addresses) || !addresses.every((c) => typeof c === 'string')) throw new Error('entry addresses is not a list of strings');
    for (const c of addresses as string[]) parseAttachAddress(c);
    const pid = e['pid'];
    const state = e['state'] === 'stopped' ? 'stopped' : 'attached';
    out.push({
      kind,
      id: str('id'),
      name: str('name'),
      ref: str('ref'),
      pid: typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : null,
      netnsPath: str('netnsPath'),
      nsId: str('nsId'),
      hostIfname: validateIfName(str('hostIfname'), 'veth name'),
      mac: str('mac'),
      addresses: addresses as string[],
      state,
      ...attachOptionsOf({
        ...(typeof e['dnsName'] === 'string' ? { dnsName: e['dnsName'] } : {}),
        ...(e['withoutDns'] === true ? { withoutDns: true } : {}),
      }),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Adapters: the real /proc and the state file

export const procHostFs: HostFs = {
  namespaceId(nsPath: string): string | null {
    try {
      const st = fs.statSync(nsPath);
      return `${st.dev}:${st.ino}`;
    } catch {
      return null;
    }
  },
  processName(pid: number): string | null {
    try {
      return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || null;
    } catch {
      return null;
    }
  },
};

/** Writes through a temporary file and rename, so a crash never leaves half a record. */
export class FileStateStore implements StateStore {
  constructor(readonly file: string) {}

  load(): string | null {
    try {
      return fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  save(text: string): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}

/** Keeps the record in memory (unit tests). */
export class MemoryStateStore implements StateStore {
  text: string | null = null;

  load(): string | null {
    return this.text;
  }

  save(text: string): void {
    this.text = text;
  }
}
