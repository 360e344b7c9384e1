// The shapes of the DNS endpoints of the HTTP API, shared by the daemon side
// (dns/http-routes.ts, dns/daemon.ts) and the CLI (cli/dns-commands.ts). Types only.

export interface DnsRecordView {
  name: string;
  address: string;
  /** Container id (Docker: full id), netns:NAME, pid:PID, or weave:api. */
  container: string;
  origin: string;
  /** The origin's nickname, when the mesh knows it. */
  originNickname: string | null;
  version: number;
  tombstone: boolean;
  /** Answered right now (live, and its origin reachable). */
  visible: boolean;
}

export interface DnsCounters {
  queries: number;
  answered: number;
  nodata: number;
  nxdomain: number;
  formerr: number;
  notimp: number;
  refused: number;
  truncated: number;
  forwarded: number;
  forwardFailed: number;
  dropped: number;
  clientsRefused: number;
  mdnsQueries: number;
  mdnsAnswered: number;
  mdnsLegacyAnswered: number;
}

export interface DnsStatusReport {
  domain: string;
  ttlS: number;
  /** The link-local address containers on this host use, or null when DNS could not set it up. */
  address: string | null;
  /** Where the server listens, host:port, UDP and TCP. */
  listening: string[];
  upstreams: string[];
  upstreamSource: string;
  mdns: boolean;
  /** Problems worth a look (bind failures, an address clash with another peer). */
  warnings: string[];
  records: DnsRecordView[];
  counters: DnsCounters;
}

export interface DnsAddRequest {
  /** Host name: relative (goes under the domain) or fully qualified under it. Default: the container's name. */
  name?: string;
  /** Addresses; default: the container's addresses. */
  addresses?: string[];
  /** A container attached on this host (Docker name or id, netns:NAME, pid:PID); its records go when it does. */
  container?: string;
}

export interface DnsRemoveRequest {
  name?: string;
  addresses?: string[];
  container?: string;
}

export interface DnsChangeReply {
  /** Records added or removed by this call, as name address pairs. */
  changed: { name: string; address: string }[];
}

export interface DnsLookupReply {
  name: string;
  addresses: string[];
}

export interface DnsReverseReply {
  address: string;
  names: string[];
}
