// Protocol values (changing them breaks interoperability) apart from
// implementation limits and timings (local choices). Units are in the names.

// --- protocol ---
/** Largest control message payload an authenticated peer may announce; checked before allocation. */
export const MAX_CONTROL_MESSAGE_BYTES = 8 * 1024 * 1024;
/**
 * Largest message a peer may announce before its handshake completes. The
 * largest the handshake codecs accept is an Auth during a password roll,
 * 2 x 2 sealed identities of at most 256 bytes each (1033 bytes; a real one is
 * about 400, a Hello under 100; handshake-messages.ts); the rest is margin.
 * test/unit/handshake-limits.test.ts holds the codecs to it. A stranger gets
 * no more than this.
 */
export const MAX_HANDSHAKE_MESSAGE_BYTES = 2048;
/** Gossip channel names are short ASCII identifiers. */
export const MAX_CHANNEL_NAME_BYTES = 32;
export const TOPOLOGY_CHANNEL = 'topology';

// --- implementation: timings ---
export interface RouterTimings {
  /** Send a heartbeat when we have sent nothing for this long. */
  heartbeatIntervalMs: number;
  /** Close a connection when nothing arrived for this long. */
  heartbeatTimeoutMs: number;
  /** Give up on a handshake that has not completed in this time. */
  handshakeTimeoutMs: number;
  /** Full-state gossip to a few neighbours, for anti-entropy. */
  gossipIntervalMs: number;
  /** Topology changes within this window cost one route computation. */
  routeDebounceMs: number;
  /** First retry delay of a failed target; grows by 1.5x with jitter up to the max (mesh connection_maker.go). */
  retryInitialMs: number;
  retryMaxMs: number;
  /** How often the connector re-evaluates targets (discovery, due retries). */
  connectorCheckMs: number;
  /** How long a failed inbound connection stays listed in status. */
  failedConnectionRetentionMs: number;
}

export const DEFAULT_TIMINGS: RouterTimings = {
  heartbeatIntervalMs: 5_000,
  heartbeatTimeoutMs: 30_000,
  handshakeTimeoutMs: 5_000,
  gossipIntervalMs: 30_000,
  routeDebounceMs: 100,
  retryInitialMs: 2_000,
  retryMaxMs: 6 * 60_000,
  connectorCheckMs: 5_000,
  failedConnectionRetentionMs: 5 * 60_000,
};

/** For end-to-end tests and demos (WEAVE_TEST_FAST=1): same behaviour, shorter waits. */
export const FAST_TIMINGS: RouterTimings = {
  heartbeatIntervalMs: 300,
  heartbeatTimeoutMs: 3_000,
  handshakeTimeoutMs: 3_000,
  gossipIntervalMs: 1_000,
  routeDebounceMs: 20,
  retryInitialMs: 200,
  retryMaxMs: 2_000,
  connectorCheckMs: 300,
  failedConnectionRetentionMs: 60_000,
};

// --- implementation: limits ---
/** Failed connections kept for status, most recent first. */
export const MAX_FAILED_CONNECTIONS_LISTED = 32;
/** Bytes a connection may queue towards a slow peer before it is closed. */
export const MAX_CONNECTION_BACKLOG_BYTES = 32 * 1024 * 1024;

// --- implementation: what strangers may cost us before they authenticate ---
// Inbound connections still in the handshake are held to these, apart from
// --conn-limit (which counts established peers only), and our own outbound
// dials are never counted. When a cap is hit the oldest handshake goes first:
// a real peer completes in a few round trips, an idle stranger never does.
/** Inbound handshakes in progress at once, from all sources. */
export const MAX_HANDSHAKES_IN_PROGRESS = 64;
/** Inbound handshakes in progress at once from one source (an IPv4 address, an IPv6 /64). */
export const MAX_HANDSHAKES_PER_SOURCE = 8;
/** Handshakes dropped before completing are counted over this window for status and health. */
export const HANDSHAKE_DROP_WINDOW_MS = 60_000;
/** Dropped handshakes per window above which health warns even without a cap being hit. */
export const HANDSHAKE_DROPS_WARN_COUNT = 100;
/** At most one log line summarising dropped handshakes per this interval. */
export const HANDSHAKE_DROP_LOG_INTERVAL_MS = 60_000;
