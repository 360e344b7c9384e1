// The mDNS responder on the overlay (RFC 6762): a query for `<name>.local`
// from a container on this host is answered with the addresses our store has
// for `<name>.<domain>`. Two parts:
//
// - mdnsAnswers / mdnsReply: pure, which records answer which questions;
// - MdnsResponder: the adapter. multicast-dns listens on 224.0.0.251:5353,
//   joined on the weave bridge only (its link-local address is the interface;
//   bound to the group address, so unicast to the host's other addresses never
//   reaches it), and multicasts replies out of the bridge. Legacy unicast
//   queries (§6.7: from a port other than 5353) get a unicast reply with the
//   query's id and question, from a second socket bound to the link-local
//   address: only a socket bound to that address is routed back out of the
//   bridge (dns/host-setup.ts adds the policy rule), the wildcard one is not.
//
// It answers only names in our store, and only queries from containers on this
// host (`isLocalClient`): each host answers its own containers, so one query
// gets one answer, and traffic from the host's other interfaces gets none.

import dgram from 'node:dgram';
import type * as packet from 'dns-packet';
import * as dnsPacket from 'dns-packet';
import makeMdns from 'multicast-dns';
import { assertNever } from '../common/errors';
import type { Logger } from '../common/logger';
import { familyOfCanonical } from '../common/ip';
import type { RecordSource, ResolverConfig } from './answer';
import type { DnsCounters } from './api-types';
import { MDNS_GROUP_V4, MDNS_LEGACY_MAX_TTL_S, MDNS_PORT } from './constants';
import { inDomain, isNormalName, lowerName } from './names';

const LOCAL_SUFFIX = '.local';

function classNumber(klass: string | undefined): number {
  if (klass === undefined || klass === 'IN') return 1;
  if (klass === 'ANY') return 255;
  // dns-packet leaves the unicast-response bit in and names the class UNKNOWN_<n>.
  const m = /^UNKNOWN_(\d+)$/.exec(klass);
  return m === null ? -1 : Number(m[1]) & 0x7fff;
}

/** The store name a `.local` question stands for, or null when it is not one of ours. */
export function mdnsStoreName(question: string, domain: string): string | null {
  const name = lowerName(question);
  if (inDomain(name, domain)) return isNormalName(name) ? name : null;
  if (!name.endsWith(LOCAL_SUFFIX)) return null;
  const stem = name.slice(0, -LOCAL_SUFFIX.length);
  const fqdn = `${stem}.${domain}`;
  return stem !== '' && isNormalName(fqdn) ? fqdn : null;
}

/** Answers for the A/AAAA/ANY questions we hold records for; empty when none (then we stay silent). */
export function mdnsAnswers(questions: readonly packet.Question[], cfg: ResolverConfig, records: RecordSource, ttlS: number, flush: boolean): packet.Answer[] {
  const out: packet.Answer[] = [];
  for (const q of questions) {
    const k = classNumber(q.class);
    if (k !== 1 && k !== 255) continue;
    const type = String(q.type);
    if (type !== 'A' && type !== 'AAAA' && type !== 'ANY') continue;
    const fqdn = mdnsStoreName(q.name, cfg.domain);
    if (fqdn === null) continue;
    for (const a of records.lookup(fqdn)) {
      const fam = familyOfCanonical(a);
      if ((type === 'A' && fam !== 4) || (type === 'AAAA' && fam !== 6)) continue;
      out.push({ type: fam === 4 ? 'A' : 'AAAA', name: q.name, ttl: ttlS, class: 'IN', flush, data: a });
    }
  }
  return out;
}

export type MdnsReply =
  | { kind: 'none' }
  | { kind: 'multicast'; answers: packet.Answer[] }
  /** RFC 6762 §6.7: the query's id and question, no cache-flush bits, TTL at most 10 s. */
  | { kind: 'legacy'; bytes: Buffer };

export function mdnsReply(query: packet.DecodedPacket, fromPort: number, cfg: ResolverConfig, records: RecordSource): MdnsReply {
  if (query.type !== 'query' || (query.questions ?? []).length === 0) return { kind: 'none' };
  const legacy = fromPort !== MDNS_PORT;
  const answers = mdnsAnswers(query.questions ?? [], cfg, records, legacy ? Math.min(cfg.ttlS, MDNS_LEGACY_MAX_TTL_S) : cfg.ttlS, !legacy);
  if (answers.length === 0) return { kind: 'none' };
  if (!legacy) return { kind: 'multicast', answers };
  const bytes = dnsPacket.encode({
    id: query.id ?? 0, type: 'response', flags: dnsPacket.AUTHORITATIVE_ANSWER,
    questions: (query.questions ?? []).map((q) => ({ name: q.name, type: q.type, class: 'IN' })),
    answers,
  });
  return { kind: 'legacy', bytes };
}

export interface MdnsResponderDeps {
  records: RecordSource;
  logger: Logger;
  counters: DnsCounters;
  isLocalClient(address: string): boolean;
}

export interface MdnsResponderOptions extends ResolverConfig {
  /** The host's link-local address on the weave bridge. */
  interfaceAddress: string;
  port?: number;
}

export class MdnsResponder {
  private mdns: makeMdns.MulticastDNS | null = null;
  private unicast: dgram.Socket | null = null;

  constructor(private readonly deps: MdnsResponderDeps, private readonly opts: MdnsResponderOptions) {}

  async start(): Promise<void> {
    const port = this.opts.port ?? MDNS_PORT;
    const unicast = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      unicast.once('error', reject);
      unicast.bind(port, this.opts.interfaceAddress, () => {
        unicast.off('error', reject);
        resolve();
      });
    });
    unicast.on('error', (err) => this.deps.logger.warn('mdns unicast socket error', { error: err.message }));
    // Queries sent straight to our address are answered like legacy ones.
    unicast.on('message', (msg, rinfo) => {
      let decoded: packet.DecodedPacket;
      try {
        decoded = dnsPacket.decode(msg);
      } catch {
        return;
      }
      this.onQuery(decoded, rinfo);
    });
    this.unicast = unicast;

    const mdns = makeMdns({
      interface: this.opts.interfaceAddress,
      bind: MDNS_GROUP_V4,
      port,
      reuseAddr: true,
      loopback: false,
      ttl: 255,
    });
    await new Promise<void>((resolve, reject) => {
      mdns.once('ready', () => resolve());
      mdns.once('error', (err: Error) => reject(err));
    });
    mdns.on('error', (err: Error) => this.deps.logger.warn('mdns error', { error: err.message }));
    mdns.on('warning', (err: Error) => this.deps.logger.debug('mdns warning', { error: err.message }));
    mdns.on('query', (query: packet.DecodedPacket, rinfo: dgram.RemoteInfo) => this.onQuery(query, rinfo));
    this.mdns = mdns;
  }

  close(): void {
    this.mdns?.destroy();
    this.mdns = null;
    this.unicast?.close();
    this.unicast = null;
  }

  private onQuery(query: packet.DecodedPacket, rinfo: dgram.RemoteInfo): void {
    if (query.type !== 'query') return;
    this.deps.counters.mdnsQueries++;
    if (!this.deps.isLocalClient(rinfo.address)) return;
    let reply: MdnsReply;
    try {
      reply = mdnsReply(query, rinfo.port, this.opts, this.deps.records);
    } catch (err) {
      this.deps.logger.debug('mdns query not answered', { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    switch (reply.kind) {
      case 'none':
        return;
      case 'multicast':
        this.deps.counters.mdnsAnswered++;
        this.mdns?.respond({ answers: reply.answers });
        return;
      case 'legacy':
        this.deps.counters.mdnsLegacyAnswered++;
        this.unicast?.send(reply.bytes, rinfo.port, rinfo.address);
        return;
      default:
        assertNever(reply);
    }
  }
}
