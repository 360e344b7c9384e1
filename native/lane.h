/*
 * The lone-frame lane's tables, shared by its sending half and handle
 * (lane.c) and its receiving half (lane-receive.c). Private to the addon.
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
} lane_rx;

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
} wn_lane;

/* The lane behind a handle; throws and returns NULL for anything else (lane.c). */
wn_lane *wn_lane_unwrap(napi_env env, napi_value v);
/* Lets a receiving entry's key and window go and empties it (lane-receive.c). */
void wn_lane_rx_release(napi_env env, lane_rx *r);

#endif
