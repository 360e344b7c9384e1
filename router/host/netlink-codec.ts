// rtnetlink messages for the container links, as bytes and back: the few
// requests an attach makes (a veth pair with one end born in the container's
// namespace, addresses, routes, MTU and GSO limit, bridge master, up, MAC,
// ARP tuning) and the kernel's replies (acks, errors with the kernel's own
// words, one link). Pure: no sockets (netlink-socket.ts sends them). Each
// request carries NLM_F_ACK, so every one gets exactly one NLMSG_ERROR.
//
// Layout (host byte order, every part padded to 4 bytes; linux/netlink.h,
// linux/rtnetlink.h):
//
//   nlmsghdr  len u32 | type u16 | flags u16 | seq u32 | pid u32     16 bytes
//   then the family header of the type:
//     ifinfomsg (LINK)  family u8 | pad u8 | type u16 | index i32 | flags u32 | change u32
//     ifaddrmsg (ADDR)  family u8 | prefixlen u8 | flags u8 | scope u8 | index u32
//     rtmsg (ROUTE)     family u8 | dst_len u8 | src_len u8 | tos u8 | table u8 |
//                       protocol u8 | scope u8 | type u8 | flags u32
//     ndtmsg (NEIGHTBL) family u8 | pad u8 | pad u16
//   then attributes:  len u16 | type u16 | value (nested: more attributes)
//   NLMSG_ERROR reply: error i32 (-errno, 0 = ack) | the request's nlmsghdr |
//     with NLM_F_ACK_TLVS: attributes (NLMSGERR_ATTR_MSG: the kernel's text)
//
// Replies are hostile input like any other: every length is checked against
// what is left before it is read, and a reply that does not parse is an error,
// never a crash.

import { familyBytes, ipToBytes } from '../../common/ip';
import { parseIpWithPrefix } from '../../common/ip-cidr';
import { RouterError } from '../mesh/errors';
import { validateIfName } from './host-link';

const NLMSG_HDR_BYTES = 16;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const RTM_SETNEIGHTBL = 67;

const AF_UNSPEC = 0;
const AF_INET = 2;
const AF_INET6 = 10;
const IFF_UP = 0x1;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_AF_SPEC = 26;
const IFLA_NET_NS_FD = 28;
const IFLA_GSO_MAX_SIZE = 41;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_INET_CONF = 1;
const IPV4_DEVCONF_ARP_NOTIFY = 22;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_F_NODAD = 0x02;

const RTA_DST = 1;
const RTA_OIF = 4;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RTN_UNICAST = 1;

const NDTA_NAME = 1;
const NDTA_PARMS = 6;
const NDTPA_IFINDEX = 1;
const NDTPA_BASE_REACHABLE_TIME = 4;
const NDTPA_DELAY_PROBE_TIME = 7;
const NDTPA_UCAST_PROBES = 10;

/** One request; `index` is an interface index in the namespace the socket lives in. */
export type RtRequest =
  | { op: 'getLink'; name: string }
  | { op: 'delLink'; name: string }
  /** A veth pair: `name` here, on `master` and up; the peer born in the namespace of `nsFd`. */
  | { op: 'newVeth'; name: string; mtu: number; master: number; peer: { name: string; mtu: number; nsFd: number; gsoMaxBytes: number } }
  | { op: 'setLink'; index: number; up?: true; mac?: string; arpNotify?: boolean }
  /** The interface's own ARP parameters (`ip ntable change name arp_cache dev ...`). */
  | { op: 'setArpParms'; index: number; baseReachableMs: number; delayProbeMs: number; ucastProbes: number }
  /** `cidr` is an address with its prefix (10.32.0.5/12); IPv6 without duplicate address detection. */
  | { op: 'addAddress'; index: number; cidr: string }
  /** A route to `cidr` (a block) via the interface, no gateway: scope link, main table. */
  | { op: 'addRoute'; index: number; cidr: string };

/** What the kernel said to one request. */
export interface RtReply {
  /** 0 for success, else the errno. */
  errno: number;
  /** The kernel's extended ack text, if any ("Invalid prefix for given prefix length"). */
  said: string | null;
  /** getLink: the link found. */
  link: { index: number; mac: string | null } | null;
}

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const textEncoder = new TextEncoder();

/** Builds one message: attributes appended in order, nests closed with end(). */
class MessageWriter {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  private len = 0;
  private readonly nests: number[] = [];

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): this { this.ensure(1); this.view.setUint8(this.len++, v); return this; }
  u16(v: number): this { this.ensure(2); this.view.setUint16(this.len, v, HOST_LE); this.len += 2; return this; }
  u32(v: number): this { this.ensure(4); this.view.setUint32(this.len, v >>> 0, HOST_LE); this.len += 4; return this; }
  u64(v: number): this { this.ensure(8); this.view.setBigUint64(this.len, BigInt(v), HOST_LE); this.len += 8; return this; }
  bytes(b: Uint8Array): this { this.ensure(b.length); this.buf.set(b, this.len); this.len += b.length; return this; }

  private pad(): void {
    while (this.len % 4 !== 0) this.u8(0);
  }

  attr(type: number, value: Uint8Array): this {
    this.u16(4 + value.length).u16(type).bytes(value);
    this.pad();
    return this;
  }

  attrU32(type: number, v: number): this { return this.attr(type, le32(v)); }
  attrU64(type: number, v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), HOST_LE);
    return this.attr(type, b);
  }
  /** A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING policies take it. */
  attrString(type: number, s: string): this { return this.attr(type, new Uint8Array([...textEncoder.encode(s), 0])); }

  begin(type: number): this {
    this.nests.push(this.len);
    return this.u16(0).u16(type);
  }

  end(): this {
    const at = this.nests.pop();
    if (at === undefined) throw new Error('netlink: end() without begin()');
    this.view.setUint16(at, this.len - at, HOST_LE);
    return this;
  }

  /** Writes the message length into the header at 0 and returns the bytes. */
  finish(): Uint8Array {
    this.pad();
    this.view.setUint32(0, this.len, HOST_LE);
    return this.buf.slice(0, this.len);
  }
}

function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, HOST_LE);
  return b;
}

function header(type: number, flags: number, seq: number): MessageWriter {
  return new MessageWriter().u32(0).u16(type).u16(flags | NLM_F_REQUEST | NLM_F_ACK).u32(seq).u32(0);
}

function ifinfo(w: MessageWriter, family: number, index: number, flags: number, change: number): MessageWriter {
  return w.u8(family).u8(0).u16(0).u32(index).u32(flags).u32(change);
}

function checkIndex(index: number): number {
  if (!Number.isInteger(index) || index < 1 || index > 0x7fffffff) throw RouterError.config(`netlink: bad interface index ${String(index)}`);
  return index;
}

function macBytes(mac: string): Uint8Array {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw RouterError.config(`netlink: bad MAC address ${JSON.stringify(mac)}`);
  return new Uint8Array(mac.split(':').map((x) => parseInt(x, 16)));
}

function u32InRange(v: number, what: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw RouterError.config(`netlink: ${what} must be ${min} to ${max}, got ${String(v)}`);
  return v;
}

/** The bytes of `req` with sequence number `seq`. Throws RouterError('config') on a value the kernel must never see. */
export function encodeRequest(req: RtRequest, seq: number): Uint8Array {
  switch (req.op) {
    case 'getLink':
    case 'delLink': {
      const w = header(req.op === 'getLink' ? RTM_GETLINK : RTM_DELLINK, 0, seq);
      return ifinfo(w, AF_UNSPEC, 0, 0, 0).attrString(IFLA_IFNAME, validateIfName(req.name, 'interface name')).finish();
    }
    case 'newVeth': {
      const w = header(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq);
      ifinfo(w, AF_UNSPEC, 0, IFF_UP, IFF_UP)
        .attrString(IFLA_IFNAME, validateIfName(req.name, 'interface name'))
        .attrU32(IFLA_MTU, u32InRange(req.mtu, 'MTU', 68, 65535))
        .attrU32(IFLA_MASTER, checkIndex(req.master))
        .begin(IFLA_LINKINFO).attrString(IFLA_INFO_KIND, 'veth').begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
      // The peer's own ifinfomsg, then its attributes, inside VETH_INFO_PEER.
      return ifinfo(w, AF_UNSPEC, 0, 0, 0)
        .attrString(IFLA_IFNAME, validateIfName(req.peer.name, 'interface name'))
        .attrU32(IFLA_MTU, u32InRange(req.peer.mtu, 'MTU', 68, 65535))
        .attrU32(IFLA_GSO_MAX_SIZE, u32InRange(req.peer.gsoMaxBytes, 'gso_max_size', 1, 65536))
        .attrU32(IFLA_NET_NS_FD, u32InRange(req.peer.nsFd, 'namespace fd', 0, 0x7fffffff))
        .end().end().end().finish();
    }
    case 'setLink': {
      const w = header(RTM_SETLINK, 0, seq);
      ifinfo(w, AF_UNSPEC, checkIndex(req.index), req.up === true ? IFF_UP : 0, req.up === true ? IFF_UP : 0);
      if (req.mac !== undefined) w.attr(IFLA_ADDRESS, macBytes(req.mac));
      if (req.arpNotify !== undefined) {
        w.begin(IFLA_AF_SPEC).begin(AF_INET).begin(IFLA_INET_CONF).attrU32(IPV4_DEVCONF_ARP_NOTIFY, req.arpNotify ? 1 : 0).end().end().end();
      }
      return w.finish();
    }
    case 'setArpParms': {
      const w = header(RTM_SETNEIGHTBL, 0, seq).u8(AF_INET).u8(0).u16(0);
      return w.attrString(NDTA_NAME, 'arp_cache')
        .begin(NDTA_PARMS)
        .attrU32(NDTPA_IFINDEX, checkIndex(req.index))
        .attrU64(NDTPA_BASE_REACHABLE_TIME, u32InRange(req.baseReachableMs, 'base_reachable_time_ms', 0, 0x7fffffff))
        .attrU64(NDTPA_DELAY_PROBE_TIME, u32InRange(req.delayProbeMs, 'delay_probe_time_ms', 0, 0x7fffffff))
        .attrU32(NDTPA_UCAST_PROBES, u32InRange(req.ucastProbes, 'ucast_solicit', 0, 255))
        .end().finish();
    }
    case 'addAddress': {
      const { address, prefixLen } = parseIpWithPrefix(req.cidr);
      const v6 = address.family === 6;
      const bytes = ipToBytes(address);
      const w = header(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq)
        .u8(v6 ? AF_INET6 : AF_INET).u8(prefixLen).u8(v6 ? IFA_F_NODAD : 0).u8(RT_SCOPE_UNIVERSE).u32(checkIndex(req.index));
      // As `ip addr add`: IPv4 names the address as both local and peer address.
      if (!v6) w.attr(IFA_LOCAL, bytes);
      return w.attr(IFA_ADDRESS, bytes).finish();
    }
    case 'addRoute': {
      const { address, prefixLen } = parseIpWithPrefix(req.cidr);
      const bytes = ipToBytes(address);
      if (bytes.length !== familyBytes(address.family)) throw RouterError.config(`netlink: bad route ${req.cidr}`);
      const w = header(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq)
        .u8(address.family === 6 ? AF_INET6 : AF_INET).u8(prefixLen).u8(0).u8(0)
        .u8(RT_TABLE_MAIN).u8(RTPROT_BOOT).u8(RT_SCOPE_LINK).u8(RTN_UNICAST).u32(0);
      return w.attr(RTA_DST, bytes).attrU32(RTA_OIF, checkIndex(req.index)).finish();
    }
  }
}

/** Requests with sequence numbers firstSeq, firstSeq+1, ... as one buffer for one send. */
export function encodeRequests(reqs: readonly RtRequest[], firstSeq: number): Uint8Array {
  const parts = reqs.map((r, i) => encodeRequest(r, (firstSeq + i) >>> 0));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function bad(what: string): RouterError {
  return new RouterError('io', `netlink: malformed reply (${what})`);
}

/** Attributes in [from, to) of `buf` as type -> value; nested types keep only the low 14 bits. */
function attrs(view: DataView, buf: Uint8Array, from: number, to: number): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  let at = from;
  while (to - at >= 4) {
    const len = view.getUint16(at, HOST_LE);
    const type = view.getUint16(at + 2, HOST_LE) & 0x3fff;
    if (len < 4 || len > to - at) throw bad('attribute length');
    if (!out.has(type)) out.set(type, buf.subarray(at + 4, at + len));
    at += (len + 3) & ~3;
  }
  return out;
}

function cString(b: Uint8Array | undefined, maxChars: number): string | null {
  if (b === undefined) return null;
  const nul = b.indexOf(0);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(b.subarray(0, nul < 0 ? b.length : nul));
  return text.slice(0, maxChars);
}

/**
 * One reply per request of `count` sent from `firstSeq` on, in request order.
 * Messages that answer nothing of ours are skipped; a request left without an
 * answer, or a reply that does not parse, is an error.
 */
export function decodeReplies(bytes: Uint8Array, firstSeq: number, count: number): RtReply[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const replies: (RtReply | null)[] = new Array<RtReply | null>(count).fill(null);
  const links: ({ index: number; mac: string | null } | null)[] = new Array<{ index: number; mac: string | null } | null>(count).fill(null);
  let at = 0;
  while (bytes.length - at >= NLMSG_HDR_BYTES) {
    const len = view.getUint32(at, HOST_LE);
    const type = view.getUint16(at + 4, HOST_LE);
    const flags = view.getUint16(at + 6, HOST_LE);
    const i = (view.getUint32(at + 8, HOST_LE) - firstSeq) >>> 0;
    if (len < NLMSG_HDR_BYTES || len > bytes.length - at) throw bad('message length');
    const end = at + len;
    const body = at + NLMSG_HDR_BYTES;
    if (i < count && type === NLMSG_ERROR) {
      if (end - body < 4 + NLMSG_HDR_BYTES) throw bad('short error message');
      const err = -view.getInt32(body, HOST_LE) | 0;
      if (err < 0 || err > 4095) throw bad('errno out of range');
      // With NETLINK_CAP_ACK the request comes back as its header only.
      const tlvs = (flags & NLM_F_ACK_TLVS) !== 0 ? attrs(view, bytes, body + 4 + NLMSG_HDR_BYTES, end) : new Map<number, Uint8Array>();
      replies[i] = { errno: err, said: cString(tlvs.get(NLMSGERR_ATTR_MSG), 200), link: links[i] ?? null };
    } else if (i < count && type === RTM_NEWLINK) {
      if (end - body < 16) throw bad('short link message');
      const a = attrs(view, bytes, body + 16, end);
      const mac = a.get(IFLA_ADDRESS);
      links[i] = {
        index: view.getInt32(body + 4, HOST_LE),
        mac: mac !== undefined && mac.length === 6 ? [...mac].map((x) => x.toString(16).padStart(2, '0')).join(':') : null,
      };
    }
    at += (len + 3) & ~3;
  }
  return replies.map((r, i) => {
    if (r === null) throw bad(`no answer to request ${i + 1} of ${count}`);
    return { ...r, link: links[i] ?? null };
  });
}

/** How describeRequest names what a request only knows by number. */
export interface DescribeNames {
  /** An interface by its index; default: the number. */
  dev?: (index: number) => string;
  /** The namespace a veth's peer goes to; default `fd`. */
  netns?: string;
}

/** `req` as `ip` would spell it, for messages and test fakes. */
export function describeRequest(req: RtRequest, names: DescribeNames = {}): string {
  const dev = names.dev ?? ((i: number) => String(i));
  switch (req.op) {
    case 'getLink': return `link show dev ${req.name}`;
    case 'delLink': return `link del dev ${req.name}`;
    case 'newVeth':
      return `link add name ${req.name} mtu ${req.mtu} master ${dev(req.master)} up type veth ` +
        `peer name ${req.peer.name} mtu ${req.peer.mtu} gso_max_size ${req.peer.gsoMaxBytes} netns ${names.netns ?? 'fd'}`;
    case 'setLink':
      return [`link set dev ${dev(req.index)}`, req.mac !== undefined ? `address ${req.mac}` : '', req.arpNotify !== undefined ? `arp_notify ${req.arpNotify ? 1 : 0}` : '',
        req.up === true ? 'up' : ''].filter((s) => s !== '').join(' ');
    case 'setArpParms':
      return `ntable change name arp_cache dev ${dev(req.index)} base_reachable ${req.baseReachableMs} delay_probe ${req.delayProbeMs} ucast_probes ${req.ucastProbes}`;
    case 'addAddress': return `addr add ${req.cidr} dev ${dev(req.index)}${req.cidr.includes(':') ? ' nodad' : ''}`;
    case 'addRoute': return `route add ${req.cidr} dev ${dev(req.index)}`;
  }
}
