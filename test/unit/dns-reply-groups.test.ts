// cli/dns-reply-groups.ts: queued DNS replies of one length to one client
// address and port are packed back to back for one UDP GSO send; anything
// else (another port, address or length, a reply over 512 bytes, a group at
// its 64-segment cap) starts its own group, every byte lands once, and a
// batch with nothing to share is left as it is. Pure: no sockets.

import t from 'tap';
import { MAX_GROUP_SEGMENTS, MAX_SEGMENT_BYTES, ReplyGroups } from '../../cli/dns-reply-groups';
import { UdpAddressTable } from '../../router/overlay/udp-batch';

const SLOT = 1232;
const CAP = 256;

interface Reply { to: string; port: number; len: number }

/** Queues replies as the port does: slot i at i * SLOT, its bytes tagged with i so every byte can be traced. */
function queue(replies: Reply[]): { slab: Buffer; offsets: Int32Array; lengths: Int32Array; dests: UdpAddressTable } {
  const slab = Buffer.alloc(CAP * SLOT);
  const offsets = new Int32Array(CAP);
  const lengths = new Int32Array(CAP);
  const dests = new UdpAddressTable(CAP);
  replies.forEach((r, i) => {
    offsets[i] = i * SLOT;
    lengths[i] = r.len;
    slab.fill(i & 0xff, i * SLOT, i * SLOT + r.len);
    slab[i * SLOT] = i & 0xff;
    dests.set(i, r.to, r.port);
  });
  return { slab, offsets, lengths, dests };
}

/** Every datagram the kernel would deliver: groups cut into segments, with their destinations. */
function deliveries(g: ReplyGroups, count: number): Array<{ to: string; port: number; bytes: Buffer }> {
  const out: Array<{ to: string; port: number; bytes: Buffer }> = [];
  for (let i = 0; i < count; i++) {
    const at = g.offsets[i]!;
    const len = g.lengths[i]!;
    const seg = g.segSizes[i]! === 0 ? len : g.segSizes[i]!;
    for (let o = 0; o < len; o += seg) out.push({ to: g.dests.address(i), port: g.dests.port(i), bytes: Buffer.from(g.slab.subarray(at + o, at + Math.min(o + seg, len))) });
  }
  return out;
}

function key(d: { to: string; port: number; bytes: Buffer }): string {
  return `${d.to}:${d.port}:${d.bytes.toString('hex')}`;
}

function sent(q: ReturnType<typeof queue>, n: number): string[] {
  return Array.from({ length: n }, (_, i) => key({ to: q.dests.address(i), port: q.dests.port(i), bytes: Buffer.from(q.slab.subarray(q.offsets[i]!, q.offsets[i]! + q.lengths[i]!)) })).sort();
}

t.test('one client socket, one length: one GSO datagram with every reply', async (t) => {
  const replies = Array.from({ length: 10 }, () => ({ to: '127.0.0.1', port: 5300, len: 60 }));
  const q = queue(replies);
  const g = new ReplyGroups(CAP, SLOT, new UdpAddressTable(CAP));
  const n = g.pack(q.slab, q.offsets, q.lengths, q.dests, replies.length);
  t.equal(n, 1);
  t.equal(g.lengths[0], 600);
  t.equal(g.segSizes[0], 60);
  t.equal(g.dests.address(0), '127.0.0.1');
  t.equal(g.dests.port(0), 5300);
  t.same(deliveries(g, n).map(key).sort(), sent(q, replies.length), 'the same datagrams to the same places');
});

t.test('port, address and length each split groups; members keep their order', async (t) => {
  const replies: Reply[] = [];
  for (let i = 0; i < 60; i++) replies.push({ to: i % 3 === 0 ? '10.32.0.5' : '127.0.0.1', port: 5300 + (i % 2), len: 40 + (i % 4 === 0 ? 1 : 0) });
  const q = queue(replies);
  const g = new ReplyGroups(CAP, SLOT, new UdpAddressTable(CAP));
  const n = g.pack(q.slab, q.offsets, q.lengths, q.dests, replies.length);
  t.ok(n > 1 && n < replies.length, `${n} groups`);
  const all = deliveries(g, n);
  t.same(all.map(key).sort(), sent(q, replies.length), 'nothing lost, duplicated or sent elsewhere');
  for (let i = 0; i < n; i++) {
    const seg = g.segSizes[i]!;
    if (seg !== 0) t.equal(g.lengths[i]! % seg, 0, 'a group holds whole replies of one length');
  }
  // Within one destination and length, the first byte (the reply's index) rises.
  const seen = new Map<string, number>();
  for (const d of all) {
    const k = `${d.to}:${d.port}:${d.bytes.length}`;
    t.ok((seen.get(k) ?? -1) < d.bytes[0]!, 'in queue order');
    seen.set(k, d.bytes[0]!);
  }
});

t.test('a group stops at the segment cap and the next one takes over', async (t) => {
  const count = MAX_GROUP_SEGMENTS * 2 + 5;
  const replies = Array.from({ length: count }, () => ({ to: '127.0.0.1', port: 9, len: 30 }));
  const q = queue(replies);
  const g = new ReplyGroups(CAP, SLOT, new UdpAddressTable(CAP));
  const n = g.pack(q.slab, q.offsets, q.lengths, q.dests, count);
  t.equal(n, 3);
  t.same([g.lengths[0], g.lengths[1], g.lengths[2]], [MAX_GROUP_SEGMENTS * 30, MAX_GROUP_SEGMENTS * 30, 5 * 30]);
  t.same(deliveries(g, n).map(key).sort(), sent(q, count));
});

t.test('replies over 512 bytes and lone replies are not grouped; nothing to share leaves the batch as it is', async (t) => {
  const big = [{ to: '127.0.0.1', port: 9, len: MAX_SEGMENT_BYTES + 1 }, { to: '127.0.0.1', port: 9, len: MAX_SEGMENT_BYTES + 1 }];
  const g = new ReplyGroups(CAP, SLOT, new UdpAddressTable(CAP));
  const qb = queue(big);
  t.equal(g.pack(qb.slab, qb.offsets, qb.lengths, qb.dests, 2), 2, 'two large replies: sent as they are');
  const distinct = Array.from({ length: 50 }, (_, i) => ({ to: '127.0.0.1', port: 1000 + i, len: 50 }));
  const qd = queue(distinct);
  t.equal(g.pack(qd.slab, qd.offsets, qd.lengths, qd.dests, 50), 50, 'fifty client sockets: nothing packed');
  t.equal(g.pack(qd.slab, qd.offsets, qd.lengths, qd.dests, 1), 1);
  t.equal(g.pack(qd.slab, qd.offsets, qd.lengths, qd.dests, 0), 0);
  const mixed = [...big, { to: '127.0.0.1', port: 9, len: MAX_SEGMENT_BYTES }, { to: '127.0.0.1', port: 9, len: MAX_SEGMENT_BYTES }];
  const qm = queue(mixed);
  const n = g.pack(qm.slab, qm.offsets, qm.lengths, qm.dests, 4);
  t.equal(n, 3, 'the two 512-byte replies share a datagram, the large ones do not');
  t.same(deliveries(g, n).map(key).sort(), sent(qm, 4));
});

t.test('a full batch of one length to many sockets, packed again and again (the table is reused)', async (t) => {
  const g = new ReplyGroups(CAP, SLOT, new UdpAddressTable(CAP));
  for (let round = 0; round < 5; round++) {
    const replies = Array.from({ length: CAP }, (_, i) => ({ to: `127.0.${round}.${(i % 7) + 1}`, port: 4000 + (i % 5), len: 33 + round }));
    const q = queue(replies);
    const n = g.pack(q.slab, q.offsets, q.lengths, q.dests, CAP);
    t.equal(n, 35, `round ${round}: 7 addresses x 5 ports`);
    t.same(deliveries(g, n).map(key).sort(), sent(q, CAP));
  }
});

t.test('one client socket, every reply another length: nothing packed, however the table collides', async (t) => {
  const replies = Array.from({ length: CAP }, (_, i) => ({ to: '127.0.0.1', port: 5300, len: 20 + i }));
  const q = queue(replies);
  const g = new ReplyGroups(CAP, SLOT, new UdpAddressTable(CAP));
  t.equal(g.pack(q.slab, q.offsets, q.lengths, q.dests, CAP), CAP);
  const same = Array.from({ length: CAP }, (_, i) => ({ to: `10.${i}.0.1`, port: 53, len: 20 }));
  const qs = queue(same);
  t.equal(g.pack(qs.slab, qs.offsets, qs.lengths, qs.dests, CAP), CAP, 'nor 256 addresses on one port');
});
