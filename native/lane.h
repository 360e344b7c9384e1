/*
 * The lone-frame lane's tables, shared by its sending half and handle
 * (lane.c), its receiving half (lane-receive.c) and its relaying half
 * (lane-relay.c). Private to the addon.
 */
#ifndef WEAVE_LANE_H
#define WEAVE_LANE_H

#include "weave_native.h"

#define LANE_ENTRIES 32
#define PEER_NAME_BYTES 6
#define SEEN_RECORD_BYTES (LANE_MACS + PEER_NAME_BYTES)
/* replay-window.ts: RING_BLOCKS words of 32 bits, WINDOW_SIZE counters behind the highest. */
#define RING_BLOCKS 64
#define WINDOW_SIZE ((RING_BLOCKS - 1) * 32)
#define LANE_MACS 12 /* destination then source MAC: a frame's first 12 bytes */
#define SLEEVE_HEADER_BYTES 16
#define INNER_HEADER_BYTES 13
#define LANE_HEAD_BYTES (SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES)
#define VNET_HDR_BYTES 10
#define ETHERNET_HEADER_BYTES 14
#define TAG_BYTES 16
#define CHANNEL_UDP_SLEEVE 2
/* Counters stay exact doubles (replay-window.ts caps them far below). */
#define MAX_EXACT_COUNTER 9007199254740991.0
#define RELAY_ENTRIES 32
/* far-session.ts: a far message's type, hop part and end-to-end overhead. */
#define SLEEVE_TYPE_FAR 3
#define KEY_PHASE_BIT 0x80
#define FAR_HEADER_BYTES 16
#define FAR_HOP_BYTES (INNER_HEADER_BYTES + FAR_HEADER_BYTES)
#define FAR_BODY_AT (SLEEVE_HEADER_BYTES + FAR_HOP_BYTES + TAG_BYTES)
#define FAR_OVERHEAD_BYTES (FAR_HEADER_BYTES + TAG_BYTES)
/* far-path.ts: a minimal frame sealed end to end behind the hop part. */
#define MIN_FAR_MESSAGE (FAR_BODY_AT + VNET_HDR_BYTES + ETHERNET_HEADER_BYTES + TAG_BYTES)
#define FAR_NONCE_CHANNEL 3
#define FAR_VERSION 1
/* The far header's first bytes, the same for every message under one key: version, zeros, key id. */
#define FAR_HEAD_BYTES 8


typedef struct lane_entry {
  int used;
  uint8_t macs[LANE_MACS];
  uint8_t head[LANE_HEAD_BYTES];
  struct sockaddr_storage to;
  socklen_t to_len;
  wn_aead *aead;
  napi_ref aead_ref;
  double *counter;
  napi_ref counter_ref;
  uint64_t seen; /* frames sent since the last laneTakeSeen */
  /* A far entry (lane-far.c): head names a peer two hops away, and the frame
   * is sealed end to end first, under far_aead on far_counter. */
  int far;
  uint8_t far_head[FAR_HEAD_BYTES];
  wn_aead *far_aead;
  napi_ref far_aead_ref;
  double *far_counter;
  napi_ref far_counter_ref;
} lane_entry;

typedef struct lane_rx {
  int used;
  uint8_t type;                      /* the datagrams' type byte: FRAME and the key phase */
  uint8_t names[2 * PEER_NAME_BYTES]; /* the neighbour (header sender, inner source), then us (inner destination) */
  uint8_t macs[LANE_MACS];
  uint8_t from[16];                  /* source address as the reader reports it (IPv6 form) */
  uint16_t port;
  wn_aead *aead;
  napi_ref aead_ref;
  int32_t *ring; /* RING_BLOCKS words */
  napi_ref ring_ref;
  double *highest;
  napi_ref highest_ref;
  uint64_t seen;
  /* A far entry (lane-far.c): the frames come from `origin` through the
   * neighbour names[0], sealed end to end under key far_key_id, whose
   * opening context and replay window these are. */
  int far;
  uint8_t origin[PEER_NAME_BYTES];
  uint32_t far_key_id;
  wn_aead *far_aead;
  napi_ref far_aead_ref;
  int32_t *far_ring;
  napi_ref far_ring_ref;
  double *far_highest;
  napi_ref far_highest_ref;
} lane_rx;

/* A far message (far-session.ts) that a neighbour sends us for another peer,
 * relayed as JS relays it in place (relay-in-place.ts). */
typedef struct lane_relay {
  int used;
  uint8_t in_head[1 + PEER_NAME_BYTES]; /* the datagrams' type byte (FAR, key phase) and sender: header bytes 1..7 */
  uint8_t from[16];                     /* the sender's address as the reader reports it (IPv6 form) */
  uint16_t port;
  uint8_t names[2 * PEER_NAME_BYTES];   /* the inner header's source and destination */
  wn_aead *opener;
  napi_ref opener_ref;
  int32_t *ring; /* the incoming key phase's replay window, RING_BLOCKS words */
  napi_ref ring_ref;
  double *highest;
  napi_ref highest_ref;
  uint8_t out_head[1 + PEER_NAME_BYTES]; /* what we write there: FAR with our key phase, and our name */
  wn_aead *sealer;
  napi_ref sealer_ref;
  double *counter;
  napi_ref counter_ref;
  struct sockaddr_storage to;
  socklen_t to_len;
  int32_t out_stride; /* body bytes per segment towards the next hop; 0: it takes no version 3 */
  uint64_t seen;
} lane_relay;

typedef struct wn_lane {
  napi_env env;
  wn_chan *udp;
  napi_ref udp_ref;
  wn_chan *tap; /* the TAP that took this lane (tapSetLane); NULL when none */
  int32_t max_frame;   /* vnet header + MTU + Ethernet overhead: JS refuses more */
  double reject_after; /* the first counter a receiver refuses */
  uint8_t *scratch;    /* LANE_HEAD_BYTES + max_frame + TAG_BYTES */
  lane_entry e[LANE_ENTRIES];
  lane_rx rx[LANE_ENTRIES];
  uint8_t *rx_scratch; /* LANE_HEAD_BYTES + max_frame + TAG_BYTES */
  uint64_t frames, bytes, dropped_again, errors;
  uint64_t rx_frames, rx_bytes, rx_write_errors;
  lane_relay relay[RELAY_ENTRIES];
  uint64_t relay_frames, relay_bytes, relay_errors;
  uint64_t far_frames, far_rx_frames; /* of frames and rx_frames: those sealed end to end */
} wn_lane;

static inline uint64_t wn_get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static inline void wn_put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* replay-window.ts's wouldAccept and accept, on its shared ring and highest
 * counter: a counter is taken once, and only within WINDOW_SIZE of the highest. */
static inline int wn_window_would_accept(const int32_t *ring, const double *highest_cell, uint64_t counter) {
  uint64_t highest = (uint64_t)*highest_cell;
  if (counter > highest) return 1;
  if (highest - counter > WINDOW_SIZE) return 0;
  uint32_t word = (uint32_t)ring[(counter / 32) & (RING_BLOCKS - 1)];
  return (word & (1u << (counter & 31))) == 0;
}

static inline void wn_window_accept(int32_t *ring, double *highest_cell, uint64_t counter) {
  uint64_t highest = (uint64_t)*highest_cell, block = counter / 32;
  if (counter > highest) {
    uint64_t current = highest / 32, advance = block - current;
    if (advance > RING_BLOCKS) advance = RING_BLOCKS;
    for (uint64_t i = 1; i <= advance; i++) ring[(current + i) & (RING_BLOCKS - 1)] = 0;
    *highest_cell = (double)counter;
  }
  ring[block & (RING_BLOCKS - 1)] = (int32_t)((uint32_t)ring[block & (RING_BLOCKS - 1)] | (1u << (counter & 31)));
}

/* A typed array's data: 0 when v is one of `type` with at least `min` elements, else -1 (nothing thrown; lane.c). */
int wn_lane_cells(napi_env env, napi_value v, napi_typedarray_type type, size_t min, void **data);
/* The lane behind a handle; throws and returns NULL for anything else (lane.c). */
wn_lane *wn_lane_unwrap(napi_env env, napi_value v);
/* Lets a sending entry's keys and counters go and empties it (lane.c). */
void wn_lane_entry_release(napi_env env, lane_entry *e);
/* For laneSet and laneSetFar (`fn`): the pair's sending entry, else a free
 * one, emptied, then used for `macs` to addr16:port, in *out: 1; 0 when the
 * table is full; -1 when thrown (an endpoint the socket cannot reach) (lane.c). */
int wn_lane_claim(napi_env env, wn_lane *l, const uint8_t *macs, const uint8_t *addr, int64_t port, const char *fn, lane_entry **out);
/* Sends p[0, n) to e's endpoint and counts it as a lane frame, or a failed
 * send as a drop, as a failed sendmmsg drops a datagram: 1 when sent (lane.c). */
int wn_lane_send(wn_lane *l, lane_entry *e, const uint8_t *p, size_t n);
/* Lets a receiving entry's keys and windows go and empties it (lane-receive.c). */
void wn_lane_rx_release(napi_env env, lane_rx *r);
/* The receiving entry for datagrams of this type byte from neighbour
 * `sender` at from:port carrying the MAC pair `macs` (NULL: any pair) (lane-receive.c). */
lane_rx *wn_lane_find_rx(wn_lane *l, uint8_t type, const uint8_t *sender, const uint8_t *from, uint16_t port, const uint8_t *macs);
/* For laneSetReceive and laneSetFarReceive: the receiving entry of this
 * type, neighbour, endpoint and pair, else a free one, emptied, then used
 * for them; NULL when the table is full (lane-receive.c). */
lane_rx *wn_lane_claim_rx(napi_env env, wn_lane *l, uint8_t type, const uint8_t *names, const uint8_t *macs, const uint8_t *from,
                          uint16_t port);
/* Writes an opened frame (vnet header first) to the lane's TAP for entry r, counting it (lane-receive.c). */
void wn_lane_deliver(wn_lane *l, lane_rx *r, const uint8_t *frame, size_t frame_len, int32_t datagram_len);
/* The far halves (lane-far.c): a far entry's frame sealed and sent (1) or
 * left to JS (0); a datagram for a far receiving entry opened and delivered
 * (1) or left, intact, to JS (0). */
int wn_lane_far_offer(wn_lane *l, lane_entry *e, const uint8_t *frame, int32_t len);
int wn_lane_far_receive(wn_lane *l, lane_rx *r, const uint8_t *d, int32_t len, const uint8_t *addr16, uint16_t port);
/* Lets a relaying entry's keys, window and counter go and empties it (lane-relay.c). */
void wn_lane_relay_release(napi_env env, lane_relay *r);

#endif
