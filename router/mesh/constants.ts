// Protocol values (changing them breaks interoperability) apart from
// implementation limits and timings (local choices). Units are in the names.

// --- protocol ---
/** Largest control message payload a peer may announce; checked before allocation. */
export const MAX_CONTROL_MESSAGE_BYTES = 8 * 1024 * 1024;
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
  handshakeTimeoutMs: 10_000,
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
