// Encoded replies to repeated questions, so that answering a name we hold
// costs a map lookup and a copy, not a parse, a store lookup, record objects
// and an encode (issue 14: DNS at well over dnsmasq's rate). Pure: the caller
// passes the store's generation and the randomness.
//
// Keyed by the query's bytes after the id, with the letters of the question
// name lowered, plus the transport: two queries with the same key differ only
// in id and in the case of the name, so the reply to one is the reply to the
// other with the id rewritten, the client's question echoed byte for byte and
// the answer records' names (which echo the question) in the client's case.
// Everything else a reply depends on (flags, EDNS, qtype, class, what the
// client can take) is in the key. The one random part, the order of several
// answers (round robin), is redone on every hit by permuting the answer
// records, which all have the same length when the reply is cached.
//
// The map is keyed by a seeded 30-bit hash of the key bytes, computed while
// the name is lowered, so a lookup builds no string; the entry keeps its key
// bytes and a hit compares them in full. Two keys with one hash take turns in
// the slot (a newer reply replaces the older): rare, and only a miss, since
// the seed comes from the injected randomness and cannot be aimed at.
//
// Correct by construction rather than by notification: an entry belongs to
// one store generation (dns/store.ts bumps it on every entry put or dropped
// and every reachability change), and the first lookup after a change empties
// the cache. Bounded: at most `maxEntries` replies of at most
// MAX_CACHED_REPLY_BYTES each, the oldest evicted first. Truncated replies,
// replies whose answers cannot be permuted as blocks (ANY with A and AAAA),
// and anything that is not a reply echoing the question are not cached.

import type { Rng } from '../common/rng';
import { randomInt } from '../common/rng';
import type { AnswerKind, Transport } from './answer';

export const DEFAULT_ANSWER_CACHE_ENTRIES = 2048;
const MAX_CACHED_QUERY_BYTES = 512;
const MAX_CACHED_REPLY_BYTES = 1232;
const HEADER_BYTES = 12;
const MAX_NAME_WIRE_BYTES = 255;
const FLAG_TC = 0x02;

interface CachedReply {
  /** The key's bytes (transport byte, then the query after its id, name lowered). */
  key: Buffer;
  bytes: Buffer;
  answerKind: AnswerKind;
  /** Wire length of the question name, the zero byte included. */
  nameBytes: number;
  /** Where the answer records start, how long each is and how many there are. */
  answersAt: number;
  stride: number;
  answers: number;
}

export interface CachedOutcome {
  kind: 'reply';
  bytes: Buffer;
  answerKind: AnswerKind;
  truncated: false;
}

/** What answerInto says of a hit besides its bytes; the caller keeps one and passes it each time. */
export interface CacheHit {
  kind: AnswerKind;
}

export interface AnswerCacheCounters {
  hits: number;
  misses: number;
  stored: number;
  evicted: number;
  /** Times the cache was emptied because the store changed. */
  invalidated: number;
}

export class AnswerCache {
  private readonly entries = new Map<number, CachedReply>();
  private generation = -1;
  /** Key under construction: transport byte, then the query after its id. */
  private readonly keyBuf = Buffer.alloc(1 + MAX_CACHED_QUERY_BYTES);
  /** Name length and key length of the query whose key was built last (0 when it had none). */
  private keyNameBytes = 0;
  private keyBytes = 0;
  private readonly seed: number;
  readonly counters: AnswerCacheCounters = { hits: 0, misses: 0, stored: 0, evicted: 0, invalidated: 0 };

  /** `hashBits` below 30 only in tests, to make keys share slots. */
  constructor(private readonly rng: Rng, private readonly maxEntries = DEFAULT_ANSWER_CACHE_ENTRIES, private readonly hashBits = 30) {
    this.seed = randomInt(rng, 0x40000000);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The reply to `query` from the cache, or null when it must be computed. A hit is a buffer of its own. */
  lookup(query: Uint8Array, transport: Transport, generation: number): CachedOutcome | null {
    const hit = this.find(query, 0, query.length, transport, generation);
    if (hit === null) {
      this.counters.misses++;
      return null;
    }
    this.counters.hits++;
    const out = Buffer.allocUnsafe(hit.bytes.length);
    this.write(hit, query, 0, out, 0);
    return { kind: 'reply', bytes: out, answerKind: hit.answerKind, truncated: false };
  }

  /**
   * The batched server's hit path (nothing allocated): the reply to the query
   * at query[at, at + length) written to out[outAt, ...) when it is cached and
   * fits in `outCapacity` bytes. Returns its length, with its kind in
   * `hit.kind`, or -1: a miss, counted here, so the caller computes the
   * reply without asking the cache again.
   */
  answerInto(query: Uint8Array, at: number, length: number, transport: Transport, generation: number,
    out: Uint8Array, outAt: number, outCapacity: number, hit: CacheHit): number {
    const entry = this.find(query, at, length, transport, generation);
    if (entry === null || entry.bytes.length > outCapacity) {
      this.counters.misses++;
      return -1;
    }
    this.counters.hits++;
    this.write(entry, query, at, out, outAt);
    hit.kind = entry.answerKind;
    return entry.bytes.length;
  }

  /** The entry for the query at query[at, at + length), or null; empties the cache first when the store moved on. */
  private find(query: Uint8Array, at: number, length: number, transport: Transport, generation: number): CachedReply | null {
    if (generation !== this.generation) {
      if (this.entries.size > 0) this.counters.invalidated++;
      this.entries.clear();
      this.generation = generation;
    }
    const hash = this.key(query, at, length, transport);
    const entry = hash < 0 ? undefined : this.entries.get(hash);
    return entry === undefined || !this.sameKey(entry.key) ? null : entry;
  }

  /** `entry`'s reply for the query at query[at, ...) (whose key matched) into out[outAt, ...). */
  private write(entry: CachedReply, query: Uint8Array, at: number, out: Uint8Array, outAt: number): void {
    out.set(entry.bytes, outAt);
    out[outAt] = query[at] as number;
    out[outAt + 1] = query[at + 1] as number;
    if (entry.answers > 1) this.permute(out, outAt, entry);
    // The client's question name, echoed in the question and in every answer.
    const name = at + HEADER_BYTES;
    const nameBytes = entry.nameBytes;
    for (let k = 0, o = outAt + HEADER_BYTES; k < nameBytes; k++) out[o + k] = query[name + k] as number;
    for (let i = 0, o = outAt + entry.answersAt; i < entry.answers; i++, o += entry.stride) {
      for (let k = 0; k < nameBytes; k++) out[o + k] = query[name + k] as number;
    }
  }

  /**
   * Keeps `reply`, computed for `query` while the store was at `generation`,
   * when it can serve later queries with the same key (see the file comment).
   */
  remember(query: Uint8Array, transport: Transport, generation: number, reply: Buffer, answerKind: AnswerKind): void {
    if (generation !== this.generation || reply.length > MAX_CACHED_REPLY_BYTES || reply.length < HEADER_BYTES) return;
    const hash = this.key(query, 0, query.length, transport);
    if (hash < 0) return;
    const key = Buffer.from(this.keyBuf.subarray(0, this.keyBytes));
    const nameBytes = this.keyNameBytes;
    if (((reply[2] as number) & FLAG_TC) !== 0 || reply.readUInt16BE(4) !== 1) return;
    const questionEnd = HEADER_BYTES + nameBytes + 4;
    if (reply.length < questionEnd || !reply.subarray(HEADER_BYTES, questionEnd).equals(query.subarray(HEADER_BYTES, questionEnd))) return;
    // Every answer must start with the question's name as sent (it is patched per client), and all have one length.
    const answers = reply.readUInt16BE(6);
    let pos = questionEnd;
    let stride = 0;
    for (let i = 0; i < answers; i++) {
      const start = pos;
      if (pos + nameBytes + 10 > reply.length) return;
      if (!reply.subarray(pos, pos + nameBytes).equals(query.subarray(HEADER_BYTES, HEADER_BYTES + nameBytes))) return;
      pos += nameBytes + 10 + reply.readUInt16BE(pos + nameBytes + 8);
      if (pos > reply.length || (i > 0 && pos - start !== stride)) return;
      stride = pos - start;
    }
    // A key with the same hash gives up its slot (see the file comment).
    if (this.entries.delete(hash)) this.counters.evicted++;
    else if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
      this.counters.evicted++;
    }
    this.entries.set(hash, { key, bytes: Buffer.from(reply), answerKind, nameBytes, answersAt: questionEnd, stride, answers });
    this.counters.stored++;
  }

  /**
   * Builds the key of the query at query[at, at + n) in keyBuf and returns its
   * hash, or -1 for a query that is not worth caching or whose question name
   * is not plain labels (the parser judges those; they are never cached).
   * Reads nothing outside that span. Sets keyNameBytes and keyBytes.
   */
  private key(query: Uint8Array, at: number, n: number, transport: Transport): number {
    this.keyNameBytes = 0;
    this.keyBytes = 0;
    if (n > MAX_CACHED_QUERY_BYTES || n < HEADER_BYTES + 5 || at < 0 || at + n > query.length) return -1;
    const k = this.keyBuf;
    k[0] = transport === 'udp' ? 0x75 : 0x74;
    let h = Math.imul(this.seed ^ k[0], 0x9e3779b1);
    // query[at + i] is k[i - 1]: the name starts at k[HEADER_BYTES - 1].
    for (let i = 2; i < HEADER_BYTES; i++) {
      const b = query[at + i] as number;
      k[i - 1] = b;
      h = Math.imul(h ^ b, 0x01000193);
    }
    let pos = HEADER_BYTES;
    for (;;) {
      if (pos >= n) return -1;
      const len = query[at + pos] as number;
      k[pos - 1] = len;
      h = Math.imul(h ^ len, 0x01000193);
      if (len === 0) break;
      if ((len & 0xc0) !== 0 || pos + 1 + len > n) return -1;
      for (let i = pos + 1; i <= pos + len; i++) {
        let b = query[at + i] as number;
        if (b >= 0x41 && b <= 0x5a) b |= 0x20;
        k[i - 1] = b;
        h = Math.imul(h ^ b, 0x01000193);
      }
      pos += 1 + len;
      if (pos - HEADER_BYTES >= MAX_NAME_WIRE_BYTES) return -1;
    }
    if (pos + 5 > n) return -1;
    for (let i = pos + 1; i < n; i++) {
      const b = query[at + i] as number;
      k[i - 1] = b;
      h = Math.imul(h ^ b, 0x01000193);
    }
    this.keyNameBytes = pos + 1 - HEADER_BYTES;
    this.keyBytes = n - 1;
    h ^= h >>> 15;
    return Math.imul(h, 0x85ebca6b) >>> (32 - this.hashBits);
  }

  /** Whether `key` equals the key built last. */
  private sameKey(key: Buffer): boolean {
    const n = this.keyBytes;
    if (key.length !== n) return false;
    const k = this.keyBuf;
    for (let i = 0; i < n; i++) if (key[i] !== k[i]) return false;
    return true;
  }

  /** Fisher-Yates over the answer records of the reply at out[outAt, ...), which are blocks of one length. */
  private permute(out: Uint8Array, outAt: number, entry: CachedReply): void {
    const stride = entry.stride;
    for (let i = entry.answers - 1; i > 0; i--) {
      const j = randomInt(this.rng, i + 1);
      if (j === i) continue;
      const a = outAt + entry.answersAt + i * stride;
      const b = outAt + entry.answersAt + j * stride;
      // Records are tens of bytes: swapped in place, byte by byte.
      for (let k = 0; k < stride; k++) {
        const x = out[a + k] as number;
        out[a + k] = out[b + k] as number;
        out[b + k] = x;
      }
    }
  }
}
