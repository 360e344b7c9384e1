// Coalesces the DNS server's queued UDP replies for UDP GSO: replies of one
// length to one client address and port are laid back to back and leave as
// one datagram with UDP_SEGMENT, which the kernel cuts into the separate
// replies (on loopback, at the client's socket). One route lookup, one skb
// and one trip through the IP stack then carry up to MAX_GROUP_SEGMENTS
// replies, which is most of the kernel's cost per answer. It pays off for a
// client that keeps one socket and many queries in flight (a caching
// resolver in a container, dnsperf); a stub resolver's lone query gains
// nothing and pays one small hash probe. Pure: no I/O.
//
// Only replies of at most MAX_SEGMENT_BYTES are grouped: with the IP and UDP
// headers that stays under the smallest path MTU the kernel accepts
// (net.ipv4.route.min_pmtu, 552), so the kernel never refuses a segment size
// (which would make the addon resend the group unsegmented, as one datagram).

import type { UdpAddressTable } from '../router/overlay/udp-batch';

/** The kernel takes up to 64 segments per GSO send on every version we run on (128 from Linux 6.4). */
export const MAX_GROUP_SEGMENTS = 64;
/** 512 + 28 bytes of headers < 552, the least path MTU Linux ever uses. */
export const MAX_SEGMENT_BYTES = 512;
const TABLE_BITS = 10;

/** Where packed groups go: a slab and its tables, ready for UdpBatchSocket.sendBatch. */
export interface PackedReplies {
  readonly slab: Buffer;
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly segSizes: Uint16Array;
  readonly dests: UdpAddressTable;
}

export class ReplyGroups implements PackedReplies {
  readonly slab: Buffer;
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly segSizes: Uint16Array;
  /** Group of datagram i, its first member and member count, bytes filled so far. */
  private readonly groupOf: Int32Array;
  private readonly first: Int32Array;
  private readonly members: Int32Array;
  private readonly filled: Int32Array;
  /** Open addressing over (address, port, length): group + 1 of the newest group for the key, valid when stamp matches. */
  private readonly table = new Int32Array(1 << TABLE_BITS);
  private readonly stamps = new Int32Array(1 << TABLE_BITS);
  private stamp = 0;

  /** `capacity` datagrams per pack, each at most `slotBytes` long. */
  constructor(capacity: number, slotBytes: number, readonly dests: UdpAddressTable) {
    if (capacity > (1 << TABLE_BITS) / 2) throw new RangeError(`reply groups hold at most ${(1 << TABLE_BITS) / 2} datagrams`);
    this.slab = Buffer.alloc(capacity * slotBytes);
    this.offsets = new Int32Array(capacity);
    this.lengths = new Int32Array(capacity);
    this.segSizes = new Uint16Array(capacity);
    this.groupOf = new Int32Array(capacity);
    this.first = new Int32Array(capacity);
    this.members = new Int32Array(capacity);
    this.filled = new Int32Array(capacity);
  }

  /**
   * Groups datagrams i < n (slab[offsets[i], +lengths[i]) to `from` entry i)
   * and returns how many groups they make. When that is n, nothing was
   * packed: send the input as it is. Otherwise group g is this.slab
   * [offsets[g], +lengths[g]) to this.dests entry g, segments of segSizes[g]
   * bytes (0: a single datagram).
   */
  pack(slab: Buffer, offsets: Int32Array, lengths: Int32Array, from: UdpAddressTable, n: number): number {
    if (n < 2) return n;
    this.stamp = (this.stamp + 1) | 0;
    if (this.stamp === 0) {
      this.stamps.fill(0);
      this.stamp = 1;
    }
    const mask = (1 << TABLE_BITS) - 1;
    let groups = 0;
    for (let i = 0; i < n; i++) {
      const len = lengths[i] as number;
      let g = -1;
      if (len <= MAX_SEGMENT_BYTES) {
        let slot = hashKey(from, i, len) & mask;
        for (;;) {
          if (this.stamps[slot] !== this.stamp) {
            this.stamps[slot] = this.stamp;
            this.table[slot] = groups + 1;
            break;
          }
          const candidate = (this.table[slot] as number) - 1;
          const head = this.first[candidate] as number;
          if (lengths[head] === len && sameAddress(from, head, i)) {
            if ((this.members[candidate] as number) < MAX_GROUP_SEGMENTS) g = candidate;
            // A full group hands its key to the new one.
            else this.table[slot] = groups + 1;
            break;
          }
          slot = (slot + 1) & mask;
        }
      }
      if (g < 0) {
        g = groups++;
        this.first[g] = i;
        this.members[g] = 0;
      }
      this.groupOf[i] = g;
      this.members[g] = (this.members[g] as number) + 1;
    }
    if (groups === n) return n;
    let at = 0;
    for (let g = 0; g < groups; g++) {
      const head = this.first[g] as number;
      const len = lengths[head] as number;
      const m = this.members[g] as number;
      this.offsets[g] = at;
      this.filled[g] = 0;
      this.lengths[g] = m * len;
      this.segSizes[g] = m > 1 ? len : 0;
      this.dests.copyFrom(g, from, head);
      at += m * len;
    }
    for (let i = 0; i < n; i++) {
      const g = this.groupOf[i] as number;
      const src = offsets[i] as number;
      const len = lengths[i] as number;
      slab.copy(this.slab, (this.offsets[g] as number) + (this.filled[g] as number), src, src + len);
      this.filled[g] = (this.filled[g] as number) + len;
    }
    return groups;
  }
}

function hashKey(t: UdpAddressTable, i: number, len: number): number {
  const o = 16 * i;
  const ip = t.ips;
  let h = Math.imul((t.ports[i] as number) ^ (len << 16), 0x9e3779b1);
  for (let k = 0; k < 16; k += 4) {
    h = Math.imul(h ^ ((ip[o + k] as number) | ((ip[o + k + 1] as number) << 8) | ((ip[o + k + 2] as number) << 16) | ((ip[o + k + 3] as number) << 24)), 0x85ebca6b);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

function sameAddress(t: UdpAddressTable, a: number, b: number): boolean {
  if (t.ports[a] !== t.ports[b]) return false;
  const ip = t.ips;
  for (let k = 0; k < 16; k++) if (ip[16 * a + k] !== ip[16 * b + k]) return false;
  return true;
}
