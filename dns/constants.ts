// DNS constants: protocol values (RFCs) first, then our implementation limits.
// Units are in the names.

// ---------------------------------------------------------------------------
// Protocol

/** The gossip channel the record store travels on. */
export const DNS_CHANNEL = 'dns';
/** As Weave Net: names of containers live under this domain unless --dns-domain says otherwise. */
export const DEFAULT_DOMAIN = 'weave.local';
/** Weave Net's default: records change as containers come and go, so resolvers must not keep them. */
export const DEFAULT_TTL_S = 1;
/** An upper bound for --dns-ttl: a day. Longer would keep dead containers' addresses in caches. */
export const MAX_TTL_S = 86_400;
export const DNS_PORT = 53;
export const MDNS_PORT = 5353;
export const MDNS_GROUP_V4 = '224.0.0.251';
/** RFC 6762 §6.7: unicast replies to legacy resolvers SHOULD NOT carry a TTL above ten seconds. */
export const MDNS_LEGACY_MAX_TTL_S = 10;
/** RFC 1035 §4.2.1: a UDP reply without EDNS fits in 512 bytes. */
export const UDP_PLAIN_MAX_BYTES = 512;
/** RFC 1035 §2.3.4. */
export const MAX_NAME_BYTES = 253;
export const MAX_LABEL_BYTES = 63;
/** RFC 3927: 169.254.0.0/16; the first and last /24 are reserved, so x and y avoid 0 and 255. */
export const LINK_LOCAL_PREFIX = '169.254';
export const LINK_LOCAL_ROUTE = '169.254.0.0/16';

// ---------------------------------------------------------------------------
// Implementation limits

/** What we advertise and accept as EDNS UDP size (RFC 6891 suggests 4096; DNS flag day 2020 suggests 1232). */
export const EDNS_MAX_UDP_BYTES = 1232;
/** Entries in one gossip message; a full state is split across several. */
export const MAX_ENTRIES_PER_MESSAGE = 2048;
/** Entries in the whole store: far above any real mesh, stops a runaway or hostile peer. */
export const MAX_ENTRIES_TOTAL = 200_000;
/** Container ids: Docker's 64 hex characters, netns:NAME (255) and a little room. */
export const MAX_CONTAINER_ID_BYTES = 300;
/** How long a removal is remembered, so that a late copy of the record cannot bring it back (Weave Net: 10 min). */
export const TOMBSTONE_TTL_MS = 10 * 60_000;
/**
 * How long the records of a peer that became unreachable are kept (hidden from
 * answers all along) before they are dropped: a brief partition then heals
 * without re-sending everything.
 */
export const DEPARTED_PEER_GRACE_MS = 60_000;
/** How often the owner ticks the store (tombstone and departed-peer expiry). */
export const STORE_TICK_MS = 10_000;
/** Per upstream server and attempt. */
export const FORWARD_TIMEOUT_MS = 2_000;
/** Forwarded queries in flight at once; beyond this we answer SERVFAIL at once. */
export const MAX_FORWARDS_IN_FLIGHT = 512;
/** Open TCP connections to the server; beyond this new ones are closed. */
export const MAX_TCP_CONNECTIONS = 128;
/** Open TCP connections from one client address: one container cannot take every slot. */
export const MAX_TCP_CONNECTIONS_PER_CLIENT = 16;
/** A TCP client that completes no query for this long is disconnected (RFC 7766 suggests seconds); stray bytes do not count. */
export const TCP_IDLE_TIMEOUT_MS = 10_000;
/** A TCP query whose first bytes arrived must be complete within this (queries are small and sent in one write). */
export const TCP_QUERY_RECEIVE_TIMEOUT_MS = 2_000;
/** Answers queued on one TCP connection that the client does not read; beyond this it is closed. */
export const MAX_TCP_UNREAD_BYTES = 256 * 1024;
/** The host's resolv.conf is looked at again at most this often (its mtime, then its content). */
export const RESOLV_CONF_CHECK_MS = 2_000;
/** Upstream servers taken from resolv.conf (glibc uses at most 3, MAXNS). */
export const MAX_UPSTREAMS = 3;
/** Addresses registered under one name: round robin beyond this is pointless. */
export const MAX_ADDRESSES_PER_NAME = 64;
/** resolv.conf files we read are small; anything bigger is not one. */
export const MAX_RESOLV_CONF_BYTES = 64 * 1024;
