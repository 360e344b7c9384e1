// The rtnetlink codec (router/host/netlink-codec.ts) byte by byte: requests
// against layouts written out by hand from linux/rtnetlink.h, the veth's
// nested peer walked attribute by attribute, replies (acks, errors with the
// kernel's words, a link) decoded, and hostile replies refused with a typed
// error, never a crash. With root, the addon's socket (native/netlink.c) once
// against a real kernel in a namespace of its own.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { decodeReplies, describeRequest, encodeRequest, encodeRequests } from '../../router/host/netlink-codec';
import type { RtRequest } from '../../router/host/netlink-codec';
import { nativeNetlink, replyText } from '../../router/host/netlink-socket';
import { RouterError } from '../../router/mesh/errors';

const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

t.test('requests, byte for byte (little-endian host)', { skip: LE ? false : 'big-endian host' }, async (t) => {
  t.equal(hex(encodeRequest({ op: 'getLink', name: 'weave' }, 7)),
    '2c000000 1200 0500 07000000 00000000'.replace(/ /g, '') + // len 44, RTM_GETLINK, REQUEST|ACK, seq 7
    '00 00 0000 00000000 00000000 00000000'.replace(/ /g, '') + // ifinfomsg: any family, index 0
    '0a00 0300 776561766500 0000'.replace(/ /g, ''), // IFLA_IFNAME "weave\0", padded to 12
    'RTM_GETLINK by name');
  t.equal(hex(encodeRequest({ op: 'addAddress', index: 5, cidr: '10.32.1.1/12' }, 1)),
    '28000000 1400 0506 01000000 00000000'.replace(/ /g, '') + // len 40, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE
    '02 0c 00 00 05000000'.replace(/ /g, '') + // AF_INET, /12, no flags, universe, index 5
    '0800 0200 0a200101 0800 0100 0a200101'.replace(/ /g, ''), // IFA_LOCAL and IFA_ADDRESS
    'RTM_NEWADDR IPv4');
  t.equal(hex(encodeRequest({ op: 'addAddress', index: 5, cidr: 'fd00::1/64' }, 1)).slice(32, 48),
    '0a40020005000000', 'IPv6: AF_INET6, /64, IFA_F_NODAD');
  t.equal(hex(encodeRequest({ op: 'addRoute', index: 5, cidr: '224.0.0.0/4' }, 2)),
    '2c000000 1800 0506 02000000 00000000'.replace(/ /g, '') + // len 44, RTM_NEWROUTE
    '02 04 00 00 fe 03 fd 01 00000000'.replace(/ /g, '') + // AF_INET, /4, main table, boot, scope link, unicast
    '0800 0100 e0000000 0800 0400 05000000'.replace(/ /g, ''), // RTA_DST, RTA_OIF
    'RTM_NEWROUTE via the interface, no gateway');
  t.equal(hex(encodeRequest({ op: 'setLink', index: 3, up: true }, 4)),
    '20000000 1300 0500 04000000 00000000 00 00 0000 03000000 01000000 01000000'.replace(/ /g, ''), 'RTM_SETLINK up: IFF_UP in flags and change');
  t.equal(hex(encodeRequest({ op: 'setLink', index: 3, mac: '02:aa:00:00:00:01' }, 4)).slice(64),
    '0a00010002aa000000010000', 'IFLA_ADDRESS, 6 bytes padded to 8');
  t.equal(hex(encodeRequest({ op: 'setLink', index: 3, arpNotify: true }, 4)).slice(64),
    '1400 1a00 1000 0200 0c00 0100 0800 1600 01000000'.replace(/ /g, ''), 'IFLA_AF_SPEC > AF_INET > IFLA_INET_CONF > ARP_NOTIFY (22) = 1');
  t.equal(hex(encodeRequest({ op: 'setArpParms', index: 3, baseReachableMs: 5000, delayProbeMs: 2000, ucastProbes: 1 }, 4)),
    '50000000 4300 0500 04000000 00000000 02 00 0000'.replace(/ /g, '') + // len 80, RTM_SETNEIGHTBL, ndtmsg AF_INET
    '0e00 0100 6172705f636163686500 0000'.replace(/ /g, '') + // NDTA_NAME "arp_cache\0"
    '2c00 0600 0800 0100 03000000'.replace(/ /g, '') + // NDTA_PARMS: NDTPA_IFINDEX 3
    '0c00 0400 8813000000000000 0c00 0700 d007000000000000 0800 0a00 01000000'.replace(/ /g, ''), // base 5000, delay 2000 (u64 ms), ucast 1
    'RTM_SETNEIGHTBL for the interface\'s ARP parameters');
  t.equal(hex(encodeRequest({ op: 'delLink', name: 'vethwe1' }, 9)).slice(8, 12), '1100', 'RTM_DELLINK');
});

/** Attributes of [from, to) as [type, value] pairs, little-endian. */
function walk(b: Uint8Array, from: number, to: number): [number, Uint8Array][] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: [number, Uint8Array][] = [];
  for (let at = from; at < to;) {
    const len = v.getUint16(at, true);
    out.push([v.getUint16(at + 2, true), b.subarray(at + 4, at + len)]);
    at += (len + 3) & ~3;
  }
  return out;
}

t.test('the veth: host end on the bridge and up, the peer with its own ifinfomsg, MTU, GSO limit and namespace fd', { skip: LE ? false : 'big-endian host' }, async (t) => {
  const b = encodeRequest({ op: 'newVeth', name: 'vethwe1', mtu: 1376, master: 4, peer: { name: 'ethwe', mtu: 1376, nsFd: 21, gsoMaxBytes: 65536 } }, 3);
  const v = new DataView(b.buffer);
  t.equal(v.getUint32(0, true), b.length, 'length covers the message');
  t.equal(v.getUint16(4, true), 16, 'RTM_NEWLINK');
  t.equal(v.getUint16(6, true), 0x605, 'REQUEST|ACK|EXCL|CREATE');
  t.equal(v.getUint32(24, true), 1, 'IFF_UP');
  const top = new Map(walk(b, 32, b.length));
  t.equal(Buffer.from(top.get(3) ?? []).toString(), 'vethwe1\0', 'IFLA_IFNAME');
  t.equal(hex(top.get(4) ?? new Uint8Array()), '60050000', 'IFLA_MTU 1376');
  t.equal(hex(top.get(10) ?? new Uint8Array()), '04000000', 'IFLA_MASTER: the bridge index');
  const info = top.get(18) as Uint8Array;
  const linkinfo = new Map(walk(info, 0, info.length));
  t.equal(Buffer.from(linkinfo.get(1) ?? []).toString(), 'veth\0', 'IFLA_INFO_KIND');
  const data = linkinfo.get(2) as Uint8Array;
  const [[peerType, peer]] = walk(data, 0, data.length) as [[number, Uint8Array]];
  t.equal(peerType, 1, 'VETH_INFO_PEER');
  t.equal(hex(peer.subarray(0, 16)), '00'.repeat(16), 'the peer\'s own ifinfomsg');
  const p = new Map(walk(peer, 16, peer.length));
  t.equal(Buffer.from(p.get(3) ?? []).toString(), 'ethwe\0', 'peer IFLA_IFNAME');
  t.equal(hex(p.get(41) ?? new Uint8Array()), '00000100', 'peer IFLA_GSO_MAX_SIZE 65536');
  t.equal(hex(p.get(28) ?? new Uint8Array()), '15000000', 'peer IFLA_NET_NS_FD 21');
  t.equal(hex(p.get(4) ?? new Uint8Array()), '60050000', 'peer IFLA_MTU');
  t.match(describeRequest({ op: 'newVeth', name: 'vethwe1', mtu: 1376, master: 4, peer: { name: 'ethwe', mtu: 1376, nsFd: 21, gsoMaxBytes: 65536 } }, { dev: () => 'weave', netns: '/run/netns/x' }),
    'link add name vethwe1 mtu 1376 master weave up type veth peer name ethwe mtu 1376 gso_max_size 65536 netns /run/netns/x');
});

t.test('values the kernel must never see are refused before encoding', async (t) => {
  const bad: RtRequest[] = [
    { op: 'getLink', name: 'a b' },
    { op: 'getLink', name: 'x'.repeat(16) },
    { op: 'setLink', index: 0, up: true },
    { op: 'setLink', index: 3, mac: '02:aa:00:00:00' },
    { op: 'addAddress', index: 3, cidr: '10.32.1.1' },
    { op: 'addRoute', index: 3, cidr: 'nonsense/4' },
    { op: 'newVeth', name: 'v', mtu: 20, master: 4, peer: { name: 'ethwe', mtu: 1376, nsFd: 3, gsoMaxBytes: 65536 } },
    { op: 'newVeth', name: 'v', mtu: 1376, master: 4, peer: { name: 'ethwe', mtu: 1376, nsFd: -1, gsoMaxBytes: 65536 } },
  ];
  for (const r of bad) t.throws(() => encodeRequest(r, 1), describeRequest(r));
});

/** An NLMSG_ERROR answering `seq`, with the request's header (capped ack) and optionally the kernel's words. */
function errorReply(seq: number, errno: number, said?: string): Uint8Array {
  const text = said === undefined ? new Uint8Array() : new Uint8Array([...Buffer.from(said), 0]);
  const attr = said === undefined ? 0 : (4 + text.length + 3) & ~3;
  const b = new Uint8Array(16 + 4 + 16 + attr);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, said === undefined ? 0x100 : 0x300, true); // NLM_F_CAPPED (| NLM_F_ACK_TLVS)
  v.setUint32(8, seq, true);
  v.setInt32(16, -errno, true);
  v.setUint32(20, 16, true);
  v.setUint32(28, seq, true);
  if (said !== undefined) {
    v.setUint16(36, 4 + text.length, true);
    v.setUint16(38, 1, true); // NLMSGERR_ATTR_MSG
    b.set(text, 40);
  }
  return b;
}

function linkReply(seq: number, index: number, mac: string): Uint8Array {
  const b = new Uint8Array(16 + 16 + 12);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, true);
  v.setUint16(4, 16, true);
  v.setUint32(8, seq, true);
  v.setInt32(20, index, true);
  v.setUint16(32, 10, true);
  v.setUint16(34, 1, true); // IFLA_ADDRESS
  b.set(mac.split(':').map((x) => parseInt(x, 16)), 36);
  return b;
}

const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

t.test('replies: in request order, errors with the kernel\'s words, a link, strangers skipped', { skip: LE ? false : 'big-endian host' }, async (t) => {
  const r = decodeReplies(cat(errorReply(11, 17, 'ipv4: Address already assigned'), linkReply(10, 7, '02:aa:00:00:00:01'), errorReply(10, 0), errorReply(99, 22), errorReply(12, 0)), 10, 3);
  t.same(r, [
    { errno: 0, said: null, link: { index: 7, mac: '02:aa:00:00:00:01' } },
    { errno: 17, said: 'ipv4: Address already assigned', link: null },
    { errno: 0, said: null, link: null },
  ]);
  t.match(replyText({ open: () => { throw new Error('unused'); }, describeErrno: () => 'EEXIST: File exists' }, r[1] as (typeof r)[number]),
    'File exists (EEXIST): ipv4: Address already assigned', 'an error as a person reads it');
  t.same(decodeReplies(cat(errorReply(0xffffffff, 0), errorReply(0, 0)), 0xffffffff, 2).map((x) => x.errno), [0, 0], 'sequence numbers wrap');
  t.throws(() => decodeReplies(errorReply(10, 0), 10, 2), RouterError, 'a request without an answer');
});

t.test('hostile replies: a typed error or a reply, never a crash (seeded)', { skip: LE ? false : 'big-endian host' }, async (t) => {
  let seed = 0x5eed1234;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 16; };
  const good = cat(linkReply(1, 3, '02:00:00:00:00:01'), errorReply(1, 0), errorReply(2, 17, 'nope'));
  let odd = 0;
  for (let i = 0; i < 3000; i++) {
    const b = new Uint8Array(good);
    for (let k = 0; k < 1 + (rnd() % 6); k++) b[rnd() % b.length] = rnd() & 0xff;
    const cut = i % 2 === 0 ? b.subarray(0, rnd() % (b.length + 1)) : b;
    try {
      decodeReplies(cut, 1, 2);
    } catch (err) {
      if (!(err instanceof RouterError)) t.fail(`seed ${seed}: ${String(err)}`);
      odd++;
    }
  }
  t.ok(odd > 0, 'damage is noticed');
});

t.test('encodeRequests: one buffer, consecutive sequence numbers', { skip: LE ? false : 'big-endian host' }, async (t) => {
  const b = encodeRequests([{ op: 'getLink', name: 'a' }, { op: 'getLink', name: 'b' }], 41);
  const v = new DataView(b.buffer);
  t.equal(v.getUint32(8, true), 41);
  t.equal(v.getUint32(v.getUint32(0, true) + 8, true), 42);
});

const root = process.getuid?.() === 0;

t.test('the addon against a real kernel: a veth into a namespace, an address, a clear error', { skip: root ? false : 'needs root' }, async (t) => {
  const ns = `wtnl${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => { execFileSync('ip', ['netns', 'del', ns]); });
  const inner = nativeNetlink.open(`/var/run/netns/${ns}`);
  t.teardown(() => inner.close());
  t.ok(inner.nsFd >= 0, 'the namespace fd stays open with the socket');
  // A bridge and a veth inside the test namespace only: both ends there, nothing on this host.
  const [lo] = await inner.request([{ op: 'getLink', name: 'lo' }]);
  t.equal(lo?.errno, 0);
  t.equal(lo?.link?.index, 1, 'lo is 1 in a fresh namespace');
  execFileSync('ip', ['-n', ns, 'link', 'add', 'wtbr', 'type', 'bridge']);
  const [br] = await inner.request([{ op: 'getLink', name: 'wtbr' }]);
  const [veth] = await inner.request([{ op: 'newVeth', name: 'wtv0', mtu: 1400, master: br?.link?.index ?? 0, peer: { name: 'wtv1', mtu: 1400, nsFd: inner.nsFd, gsoMaxBytes: 32768 } }]);
  t.equal(veth?.errno, 0, 'veth made');
  const [peer] = await inner.request([{ op: 'getLink', name: 'wtv1' }]);
  const index = peer?.link?.index ?? 0;
  const r = await inner.request([
    { op: 'addAddress', index, cidr: '10.99.0.1/24' },
    { op: 'setLink', index, up: true },
    { op: 'addAddress', index, cidr: '10.99.0.1/24' },
  ]);
  t.same(r.map((x) => x.errno), [0, 0, 17], 'every request runs and gets its own answer');
  t.match(replyText(nativeNetlink, r[2] as (typeof r)[number]), /^File exists \(EEXIST\)/);
  const shown = execFileSync('ip', ['-n', ns, '-d', 'addr', 'show', 'dev', 'wtv1'], { encoding: 'utf8' });
  t.match(shown, /inet 10\.99\.0\.1\/24/);
  t.match(shown, /gso_max_size 32768/);
  t.match(shown, /mtu 1400/);
  t.match(execFileSync('ip', ['-n', ns, 'link', 'show', 'dev', 'wtv0'], { encoding: 'utf8' }), /master wtbr/);
  const [gone] = await inner.request([{ op: 'getLink', name: 'nosuchlink' }]);
  t.equal(gone?.errno, 19, 'ENODEV for a link that is not there');
});
