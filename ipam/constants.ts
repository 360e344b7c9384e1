// Protocol values (changing them breaks interoperability between peers) apart
// from implementation limits and timings (local choices). Units in the names.

// --- protocol ---
/** The gossip channel IPAM owns. */
export const IPAM_CHANNEL = 'ipam';
/** Version byte in front of every IPAM gossip message (ipam/messages.ts); 2: ring entries are signed. */
export const IPAM_WIRE_VERSION = 2;
/**
 * How far `rmpeer` raises the version of a dead peer's entries. A dead peer
 * cannot have made that many changes since we last heard of it, so the
 * takeover wins every merge against its last state.
 */
export const RMPEER_VERSION_STEP = 2 ** 32;
/** The default --ipalloc-range, as in Weave Net. */
export const DEFAULT_IPALLOC_RANGE = '10.32.0.0/12';

// --- implementation: limits (checked before any allocation sized by a peer) ---
/** Ring entries in one ring message; a ring grows by at most two entries per donation. */
export const MAX_RING_ENTRIES = 16_384;
/** Earlier grants an entry carries (ipam/ring-signature.ts): how many changes of owner a peer may miss and still check the chain. */
export const MAX_GRANT_HISTORY = 7;
/** Peers in a ring seed or a consensus value. */
export const MAX_SEED_PEERS = 4_096;
/** Peer records in one consensus message. */
export const MAX_CONSENSUS_NODES = 4_096;
/** One gossip message; a full ring of MAX_RING_ENTRIES, every entry granted and signed, is about 2.9 MiB. */
export const MAX_IPAM_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Container ids are Docker ids or names, netns names or pids. */
export const MAX_CONTAINER_ID_BYTES = 256;
/** Allocations kept per peer (persisted, listed in status). */
export const MAX_ALLOCATIONS = 1_000_000;
/** Ring tokens are u32 offsets, so a ring's range has at most 32 host bits. */
export const MAX_RING_HOST_BITS = 32;

// --- implementation: timings ---
export interface IpamTimings {
  /** allocate/claim/prime give up after this long with an error saying what they waited for. */
  requestTimeoutMs: number;
  /** A dead (not removed) container's addresses stay reserved this long, so a quick restart keeps them. */
  releaseGraceMs: number;
  /** Free counts in the ring are reported at most this often (each report is a ring broadcast). */
  freeReportDelayMs: number;
  /** A peer out of space asks another one again after this long without an answer. */
  spaceRequestRetryMs: number;
  /** First consensus retry; grows by 1.5x with jitter up to the max. */
  consensusRetryInitialMs: number;
  consensusRetryMaxMs: number;
}

export const DEFAULT_IPAM_TIMINGS: IpamTimings = {
  requestTimeoutMs: 25_000,
  releaseGraceMs: 60_000,
  freeReportDelayMs: 1_000,
  spaceRequestRetryMs: 2_000,
  consensusRetryInitialMs: 1_000,
  consensusRetryMaxMs: 10_000,
};
