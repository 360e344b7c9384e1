// The query core: given the bytes of a query, decides whether we answer it
// from the record store (our domain, bare names we hold, reverse lookups of
// addresses we hold) or whether it goes upstream, and builds the reply. Pure:
// the records come through RecordSource, randomness through Rng, and nothing
// here touches a socket. The server (dns/server.ts) carries the outcome out.
//
// Answers, as the issue asks and RFC 2308 describes:
// - a known name: its A / AAAA records (ANY gives both), shuffled for round
//   robin; a type we have nothing for: NOERROR with no answers (NODATA);
// - an unknown name in our domain: NXDOMAIN; both negative answers carry our
//   SOA so resolvers know how long to remember them (the TTL);
// - PTR for the addresses of our records;
// - malformed queries: FORMERR when the header is readable, else silence;
//   responses are never answered (no loops between servers).

import type * as packet from 'dns-packet';
import type { Rng } from '../common/rng';
import { randomInt } from '../common/rng';
import { familyOfCanonical, formatIp } from '../common/ip';
import { parseReverseName } from './reverse-name';
import { EDNS_MAX_UDP_BYTES, UDP_PLAIN_MAX_BYTES } from './constants';
import { buildReply, ParsedQuery, parseQuery, QCLASS_ANY, QCLASS_IN, QTYPE, RCODE, Rcode } from './message';
import { inDomain, isNormalName, lowerName } from './names';

export interface RecordSource {
  /** Visible addresses of a normal-form name. */
  lookup(name: string): string[];
  /** Visible names holding an address. */
  reverse(address: string): string[];
  /** True when a visible name lies below this one. */
  hasNamesBelow(name: string): boolean;
}

export interface ResolverConfig {
  /** Normal form, e.g. "weave.local". */
  domain: string;
  ttlS: number;
}

export type Transport = 'udp' | 'tcp';

export type AnswerKind = 'answer' | 'nodata' | 'nxdomain' | 'formerr' | 'notimp' | 'refused' | 'badvers';

export type QueryOutcome =
  | { kind: 'reply'; bytes: Buffer; answerKind: AnswerKind; truncated: boolean }
  /** Not ours: send upstream. `maxBytes` is what the client can take over this transport. */
  | { kind: 'forward'; query: ParsedQuery; maxBytes: number }
  | { kind: 'drop'; why: 'short' | 'response' };

/** Replies over TCP are framed with a u16 length. */
const TCP_MAX_BYTES = 65_535;

export function maxReplyBytes(query: ParsedQuery | null, transport: Transport): number {
  if (transport === 'tcp') return TCP_MAX_BYTES;
  const asked = query?.edns?.udpPayloadBytes ?? UDP_PLAIN_MAX_BYTES;
  return Math.min(Math.max(asked, UDP_PLAIN_MAX_BYTES), EDNS_MAX_UDP_BYTES);
}

export function handleQuery(bytes: Uint8Array, transport: Transport, cfg: ResolverConfig, records: RecordSource, rng: Rng): QueryOutcome {
  const parsed = parseQuery(bytes);
  switch (parsed.kind) {
    case 'drop':
      return parsed;
    case 'error': {
      const q = parsed.query;
      const reply = buildReply({
        id: parsed.id, opcode: parsed.opcode, recursionDesired: parsed.recursionDesired, rcode: parsed.rcode,
        authoritative: false, questionBytes: q?.questionBytes ?? null, answers: [], authorities: [],
        edns: q?.edns !== null && q?.edns !== undefined, maxBytes: maxReplyBytes(q, transport),
      }, EDNS_MAX_UDP_BYTES);
      return { kind: 'reply', bytes: reply.bytes, answerKind: parsed.rcode === RCODE.NOTIMP ? 'notimp' : 'formerr', truncated: reply.truncated };
    }
    case 'query':
      return answerQuery(parsed.query, transport, cfg, records, rng);
  }
}

function answerQuery(q: ParsedQuery, transport: Transport, cfg: ResolverConfig, records: RecordSource, rng: Rng): QueryOutcome {
  const maxBytes = maxReplyBytes(q, transport);
  const reply = (rcode: Rcode, answerKind: AnswerKind, answers: packet.Answer[], authorities: packet.Answer[], authoritative = true): QueryOutcome => {
    const r = buildReply({
      id: q.id, opcode: q.opcode, recursionDesired: q.recursionDesired, rcode, authoritative,
      questionBytes: q.questionBytes, answers, authorities, edns: q.edns !== null, maxBytes,
    }, EDNS_MAX_UDP_BYTES);
    return { kind: 'reply', bytes: r.bytes, answerKind, truncated: r.truncated };
  };
  // RFC 6891 §6.1.3: we speak EDNS version 0 only.
  if (q.edns !== null && q.edns.version > 0) return reply(RCODE.BADVERS, 'badvers', [], [], false);

  const name = lowerName(q.qname);
  const soa = (): packet.Answer[] => [soaRecord(cfg)];

  // Reverse lookups: ours when we hold the address, else upstream's.
  const rev = parseReverseName(name);
  if (rev.kind === 'address') {
    const names = records.reverse(formatIp(rev.address));
    if (names.length === 0) return { kind: 'forward', query: q, maxBytes };
    if (!classOk(q.qclass)) return reply(RCODE.REFUSED, 'refused', [], []);
    if (q.qtype !== QTYPE.PTR && q.qtype !== QTYPE.ANY) return reply(RCODE.NOERROR, 'nodata', [], []);
    return reply(RCODE.NOERROR, 'answer', names.map((n) => ({ type: 'PTR', name: q.qname, ttl: cfg.ttlS, class: 'IN', data: n })), []);
  }

  let fqdn: string;
  if (inDomain(name, cfg.domain)) {
    fqdn = name;
  } else if (name !== '' && !name.includes('.') && records.lookup(`${name}.${cfg.domain}`).length > 0) {
    // A bare name we hold ("web"): answered as asked, for resolvers without our search domain.
    fqdn = `${name}.${cfg.domain}`;
  } else {
    return { kind: 'forward', query: q, maxBytes };
  }
  if (!classOk(q.qclass)) return reply(RCODE.REFUSED, 'refused', [], []);

  const addresses = isNormalName(fqdn) ? records.lookup(fqdn) : [];
  if (fqdn === cfg.domain && q.qtype === QTYPE.SOA) return reply(RCODE.NOERROR, 'answer', soa(), []);
  if (addresses.length === 0 && fqdn !== cfg.domain && !(isNormalName(fqdn) && records.hasNamesBelow(fqdn))) {
    return reply(RCODE.NXDOMAIN, 'nxdomain', [], soa());
  }
  const wanted = addresses.filter((a) =>
    q.qtype === QTYPE.ANY || (q.qtype === QTYPE.A && familyOfCanonical(a) === 4) || (q.qtype === QTYPE.AAAA && familyOfCanonical(a) === 6));
  if (wanted.length === 0) return reply(RCODE.NOERROR, 'nodata', [], soa());
  shuffle(wanted, rng);
  const answers: packet.Answer[] = wanted.map((a) => ({
    type: familyOfCanonical(a) === 4 ? 'A' : 'AAAA', name: q.qname, ttl: cfg.ttlS, class: 'IN', data: a,
  }));
  return reply(RCODE.NOERROR, 'answer', answers, []);
}

function classOk(qclass: number): boolean {
  return qclass === QCLASS_IN || qclass === QCLASS_ANY;
}

/** Our zone's SOA; its minimum (the negative-caching TTL, RFC 2308 §4) is our TTL. */
export function soaRecord(cfg: ResolverConfig): packet.Answer {
  return {
    type: 'SOA', name: cfg.domain, ttl: cfg.ttlS, class: 'IN',
    data: { mname: `ns.${cfg.domain}`, rname: `hostmaster.${cfg.domain}`, serial: 1, refresh: 3600, retry: 600, expire: 86_400, minimum: cfg.ttlS },
  };
}

/** Fisher-Yates, in place. */
export function shuffle<T>(items: T[], rng: Rng): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(rng, i + 1);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
}

/** SERVFAIL for a query we could not forward (every upstream failed or none is configured). */
export function servfail(q: ParsedQuery, transport: Transport): Buffer {
  return buildReply({
    id: q.id, opcode: q.opcode, recursionDesired: q.recursionDesired, rcode: RCODE.SERVFAIL, authoritative: false,
    questionBytes: q.questionBytes, answers: [], authorities: [], edns: q.edns !== null, maxBytes: maxReplyBytes(q, transport),
  }, EDNS_MAX_UDP_BYTES).bytes;
}
