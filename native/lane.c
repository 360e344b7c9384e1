/*
 * The lone-frame lane. A ping, a DNS query, a keystroke: a TAP wakeup that
 * brings one small frame costs the JS frame path ~100 us when it starts cold
 * (a quiet router's caches and branch history are gone between frames),
 * several times the kernel's own work. The lane sends such a frame from the
 * TAP's poll callback instead, in C, without entering JS.
 *
 * It makes no decision of its own. JS installs an entry after it has sent a
 * lone frame of a (destination MAC, source MAC) pair to a direct neighbour
 * over UDP, naming everything it used: the neighbour's endpoint, the sealing
 * context of the current key (aead.c), the cell that holds that key's send
 * counter (a Float64Array JS's own seal reads and bumps too: one counter,
 * never two), and the 29 header bytes it wrote (sleeve header, counter
 * bytes aside, and inner header). JS clears every entry whenever anything
 * that decision rests on changes (MAC table, routes, links, keys, endpoints;
 * router/overlay/lone-lane.ts). A frame the lane has no entry for, a GSO
 * super-frame, a group address, a frame larger than the MTU, a spent
 * counter, a closed socket: all go to JS as before.
 *
 * The datagram is the one router/overlay/sleeve-send.ts builds (version 2,
 * sleeve-codec.ts): header, inner header, the frame with its virtio_net_hdr,
 * AES-256-GCM tag; nonce 00 00 00 02 || counter, the header as associated
 * data. Only AES-256-GCM links get entries (their key already lives here).
 *
 * Receiving is the mirror image: after JS delivered to our bridge a lone
 * plain frame that a neighbour sent straight to us, it installs a receive
 * entry for that neighbour, its endpoint, the datagram's type byte (the key
 * phase) and the frame's MAC pair, naming the opening context and the
 * phase's replay window (router/overlay/replay-window.ts, whose ring and
 * highest counter live off the JS heap for this). A UDP wakeup of one such
 * datagram is then opened in a copy, checked (inner header from that
 * neighbour to us, a virtio_net_hdr of zeros, the entry's MAC pair, a
 * counter the window accepts, the same rules as replay-window.ts) and
 * written to the TAP. Anything that is not exactly that goes to JS intact:
 * forged, replayed and unexpected datagrams are JS's to judge and count.
 *
 * Single-threaded like the rest of the addon: the poll callbacks and JS
 * never run at once, so the shared counter and windows need no lock.
 */
#include "weave_native.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static const napi_type_tag LANE_TAG = {0x7765617665616c61ULL, 0x6e656c6f6e653031ULL};

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

static void entry_release(napi_env env, lane_entry *e) {
  if (e->aead_ref != NULL) napi_delete_reference(env, e->aead_ref);
  if (e->counter_ref != NULL) napi_delete_reference(env, e->counter_ref);
  memset(e, 0, sizeof *e);
}

static void rx_release(napi_env env, lane_rx *r) {
  if (r->aead_ref != NULL) napi_delete_reference(env, r->aead_ref);
  if (r->ring_ref != NULL) napi_delete_reference(env, r->ring_ref);
  if (r->highest_ref != NULL) napi_delete_reference(env, r->highest_ref);
  memset(r, 0, sizeof *r);
}

static void lane_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  wn_lane *l = data;
  for (int i = 0; i < LANE_ENTRIES; i++) {
    entry_release(env, &l->e[i]);
    rx_release(env, &l->rx[i]);
  }
  if (l->udp->lane == l) l->udp->lane = NULL;
  if (l->udp_ref != NULL) napi_delete_reference(env, l->udp_ref);
  free(l->scratch);
  free(l->rx_scratch);
  free(l);
}

static wn_lane *unwrap_lane(napi_env env, napi_value v) {
  bool tagged = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, &LANE_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &p) != napi_ok || p == NULL) {
    wn_throw_type(env, "expected a lane handle");
    return NULL;
  }
  return p;
}

/* laneNew(udpHandle, maxFrameBytes, rejectAfterCounter) -> lane: sends over that socket. */
napi_value wn_lane_new(napi_env env, napi_callback_info info) {
  napi_value argv[3], obj;
  int64_t max_frame;
  double reject_after;
  if (wn_get_args(env, info, 3, argv) < 0) return NULL;
  wn_chan *u = wn_unwrap(env, argv[0], WN_UDP);
  if (u == NULL || wn_get_int(env, argv[1], "maxFrameBytes", VNET_HDR_BYTES + ETHERNET_HEADER_BYTES, 65535, &max_frame) < 0)
    return NULL;
  if (napi_get_value_double(env, argv[2], &reject_after) != napi_ok || !(reject_after >= 1 && reject_after <= MAX_EXACT_COUNTER)) {
    wn_throw_range(env, "rejectAfterCounter must be a number from 1 to 2^53 - 1");
    return NULL;
  }
  wn_lane *l = calloc(1, sizeof *l);
  uint8_t *scratch = malloc(LANE_HEAD_BYTES + (size_t)max_frame + TAG_BYTES);
  uint8_t *rx_scratch = malloc(LANE_HEAD_BYTES + (size_t)max_frame + TAG_BYTES);
  const char *why = "weave_native: out of memory";
  if (l == NULL || scratch == NULL || rx_scratch == NULL) goto fail;
  l->env = env;
  l->udp = u;
  l->max_frame = (int32_t)max_frame;
  l->reject_after = reject_after;
  l->scratch = scratch;
  l->rx_scratch = rx_scratch;
  why = "weave_native: cannot create lane handle";
  if (napi_create_reference(env, argv[0], 1, &l->udp_ref) != napi_ok || napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, l, lane_finalize, NULL, NULL) != napi_ok)
    goto fail;
  /* From here on the finalizer owns l. The socket's datagrams may now take it. */
  u->lane = l;
  if (napi_type_tag_object(env, obj, &LANE_TAG) != napi_ok) {
    napi_throw_error(env, NULL, "weave_native: cannot tag lane handle");
    return NULL;
  }
  return obj;

fail:
  if (l != NULL && l->udp_ref != NULL) napi_delete_reference(env, l->udp_ref);
  free(scratch);
  free(rx_scratch);
  free(l);
  napi_throw_error(env, NULL, why);
  return NULL;
}

static lane_entry *find(wn_lane *l, const uint8_t *macs) {
  for (int i = 0; i < LANE_ENTRIES; i++) {
    lane_entry *e = &l->e[i];
    if (e->used && memcmp(e->macs, macs, LANE_MACS) == 0) return e;
  }
  return NULL;
}

/* laneSet(lane, macs (12), head (29), aeadSealer, counterCell (Float64Array), addr16, port)
 * -> whether it took the entry (false: the table is full). Replaces the pair's entry. */
napi_value wn_lane_set(napi_env env, napi_callback_info info) {
  napi_value argv[7], res;
  uint8_t *macs, *head, *addr;
  size_t macs_len, head_len, addr_len, cells;
  int64_t port;
  void *cell_data = NULL;
  napi_typedarray_type type;
  if (wn_get_args(env, info, 7, argv) < 0) return NULL;
  wn_lane *l = unwrap_lane(env, argv[0]);
  if (l == NULL || wn_get_u8(env, argv[1], "macs", &macs, &macs_len) < 0 || wn_get_u8(env, argv[2], "head", &head, &head_len) < 0)
    return NULL;
  wn_aead *a = wn_aead_sealer(env, argv[3]);
  if (a == NULL) return NULL;
  if (napi_get_typedarray_info(env, argv[4], &type, &cells, &cell_data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      cells < 1 || cell_data == NULL) {
    wn_throw_type(env, "counterCell must be a non-empty Float64Array");
    return NULL;
  }
  if (wn_get_u8(env, argv[5], "addr16", &addr, &addr_len) < 0 || wn_get_int(env, argv[6], "port", 1, 65535, &port) < 0) return NULL;
  if (macs_len != LANE_MACS || head_len != LANE_HEAD_BYTES || addr_len != 16) {
    wn_throw_range(env, "macs must be %d bytes, head %d, addr16 16 (got %zu, %zu, %zu)", LANE_MACS, LANE_HEAD_BYTES, macs_len,
                   head_len, addr_len);
    return NULL;
  }
  struct sockaddr_storage to;
  socklen_t to_len = wn_udp_make_dest(l->udp->family, addr, (uint16_t)port, &to);
  if (to_len == 0) {
    wn_throw_range(env, "laneSet: an IPv6 address for an IPv4 socket");
    return NULL;
  }
  lane_entry *e = find(l, macs);
  for (int i = 0; e == NULL && i < LANE_ENTRIES; i++)
    if (!l->e[i].used) e = &l->e[i];
  if (e == NULL) {
    napi_get_boolean(env, false, &res);
    return res;
  }
  entry_release(env, e);
  if (napi_create_reference(env, argv[3], 1, &e->aead_ref) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &e->counter_ref) != napi_ok) {
    entry_release(env, e);
    napi_throw_error(env, NULL, "weave_native: cannot reference the lane's key or counter");
    return NULL;
  }
  e->used = 1;
  memcpy(e->macs, macs, LANE_MACS);
  memcpy(e->head, head, LANE_HEAD_BYTES);
  e->to = to;
  e->to_len = to_len;
  e->aead = a;
  e->counter = cell_data;
  napi_get_boolean(env, true, &res);
  return res;
}

/* laneClear(lane): forgets every entry (and lets their keys and counters go). */
napi_value wn_lane_clear(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_lane *l = unwrap_lane(env, argv[0]);
  if (l == NULL) return NULL;
  for (int i = 0; i < LANE_ENTRIES; i++) {
    entry_release(env, &l->e[i]);
    rx_release(env, &l->rx[i]);
  }
  return NULL;
}

/* laneTakeSeen(lane, out) -> n: records of 18 bytes (a MAC pair, then the
 * neighbour it came from, zeros for a pair we sent) for the entries that
 * carried frames since the last call, so JS keeps their MACs from ageing. */
napi_value wn_lane_take_seen(napi_env env, napi_callback_info info) {
  napi_value argv[2], res;
  uint8_t *out;
  size_t out_len;
  if (wn_get_args(env, info, 2, argv) < 0) return NULL;
  wn_lane *l = unwrap_lane(env, argv[0]);
  if (l == NULL || wn_get_u8(env, argv[1], "out", &out, &out_len) < 0) return NULL;
  if (out_len < 2 * LANE_ENTRIES * SEEN_RECORD_BYTES) {
    wn_throw_range(env, "out needs %d bytes", 2 * LANE_ENTRIES * SEEN_RECORD_BYTES);
    return NULL;
  }
  uint32_t n = 0;
  for (int i = 0; i < LANE_ENTRIES; i++) {
    lane_entry *e = &l->e[i];
    if (!e->used || e->seen == 0) continue;
    uint8_t *rec = out + SEEN_RECORD_BYTES * n++;
    memcpy(rec, e->macs, LANE_MACS);
    memset(rec + LANE_MACS, 0, PEER_NAME_BYTES);
    e->seen = 0;
  }
  for (int i = 0; i < LANE_ENTRIES; i++) {
    lane_rx *r = &l->rx[i];
    if (!r->used || r->seen == 0) continue;
    uint8_t *rec = out + SEEN_RECORD_BYTES * n++;
    memcpy(rec, r->macs, LANE_MACS);
    memcpy(rec + LANE_MACS, r->names, PEER_NAME_BYTES);
    r->seen = 0;
  }
  napi_create_uint32(env, n, &res);
  return res;
}

/* The receiving entry for datagrams of this type byte from neighbour
 * `sender` at from:port, carrying the MAC pair `macs` (NULL: any pair). */
static lane_rx *find_rx(wn_lane *l, uint8_t type, const uint8_t *sender, const uint8_t *from, uint16_t port, const uint8_t *macs) {
  for (int i = 0; i < LANE_ENTRIES; i++) {
    lane_rx *x = &l->rx[i];
    if (x->used && x->type == type && x->port == port && memcmp(x->names, sender, PEER_NAME_BYTES) == 0 && memcmp(x->from, from, 16) == 0 &&
        (macs == NULL || memcmp(x->macs, macs, LANE_MACS) == 0))
      return x;
  }
  return NULL;
}

/* laneSetReceive(lane, type, names (12: the neighbour, us), macs (12), aeadOpener,
 * ring (Int32Array of 64), highest (Float64Array), addr16, port) -> whether it took
 * the entry. Replaces the entry for the same neighbour, type and pair. */
napi_value wn_lane_set_receive(napi_env env, napi_callback_info info) {
  napi_value argv[9], res;
  uint8_t *names, *macs, *addr;
  size_t names_len, macs_len, addr_len, ring_len, highest_len;
  int64_t type, port;
  void *ring = NULL, *highest = NULL;
  napi_typedarray_type ring_type, highest_type;
  if (wn_get_args(env, info, 9, argv) < 0) return NULL;
  wn_lane *l = unwrap_lane(env, argv[0]);
  if (l == NULL || wn_get_int(env, argv[1], "type", 0, 255, &type) < 0 || wn_get_u8(env, argv[2], "names", &names, &names_len) < 0 ||
      wn_get_u8(env, argv[3], "macs", &macs, &macs_len) < 0)
    return NULL;
  wn_aead *a = wn_aead_opener(env, argv[4]);
  if (a == NULL) return NULL;
  if (napi_get_typedarray_info(env, argv[5], &ring_type, &ring_len, &ring, NULL, NULL) != napi_ok || ring_type != napi_int32_array ||
      ring_len != RING_BLOCKS || ring == NULL ||
      napi_get_typedarray_info(env, argv[6], &highest_type, &highest_len, &highest, NULL, NULL) != napi_ok ||
      highest_type != napi_float64_array || highest_len < 1 || highest == NULL) {
    wn_throw_type(env, "ring must be an Int32Array of %d, highest a non-empty Float64Array", RING_BLOCKS);
    return NULL;
  }
  if (wn_get_u8(env, argv[7], "addr16", &addr, &addr_len) < 0 || wn_get_int(env, argv[8], "port", 1, 65535, &port) < 0) return NULL;
  if (names_len != 2 * PEER_NAME_BYTES || macs_len != LANE_MACS || addr_len != 16) {
    wn_throw_range(env, "names must be %d bytes, macs %d, addr16 16 (got %zu, %zu, %zu)", 2 * PEER_NAME_BYTES, LANE_MACS, names_len,
                   macs_len, addr_len);
    return NULL;
  }
  lane_rx *r = find_rx(l, (uint8_t)type, names, addr, (uint16_t)port, macs);
  for (int i = 0; r == NULL && i < LANE_ENTRIES; i++)
    if (!l->rx[i].used) r = &l->rx[i];
  if (r == NULL) {
    napi_get_boolean(env, false, &res);
    return res;
  }
  rx_release(env, r);
  if (napi_create_reference(env, argv[4], 1, &r->aead_ref) != napi_ok || napi_create_reference(env, argv[5], 1, &r->ring_ref) != napi_ok ||
      napi_create_reference(env, argv[6], 1, &r->highest_ref) != napi_ok) {
    rx_release(env, r);
    napi_throw_error(env, NULL, "weave_native: cannot reference the lane's key or window");
    return NULL;
  }
  r->used = 1;
  r->type = (uint8_t)type;
  memcpy(r->names, names, sizeof r->names);
  memcpy(r->macs, macs, LANE_MACS);
  memcpy(r->from, addr, 16);
  r->port = (uint16_t)port;
  r->aead = a;
  r->ring = ring;
  r->highest = highest;
  napi_get_boolean(env, true, &res);
  return res;
}

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  if (napi_create_double(env, v, &n) == napi_ok) napi_set_named_property(env, obj, key, n);
}

/* laneStats(lane) -> {frames, bytes, txDroppedAgain, txErrors, entries, rxFrames, rxBytes, rxWriteErrors} since laneNew. */
napi_value wn_lane_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_lane *l = unwrap_lane(env, argv[0]);
  if (l == NULL || napi_create_object(env, &obj) != napi_ok) return NULL;
  int used = 0;
  for (int i = 0; i < LANE_ENTRIES; i++) used += l->e[i].used + l->rx[i].used;
  set_num(env, obj, "frames", (double)l->frames);
  set_num(env, obj, "bytes", (double)l->bytes);
  set_num(env, obj, "txDroppedAgain", (double)l->dropped_again);
  set_num(env, obj, "txErrors", (double)l->errors);
  set_num(env, obj, "entries", used);
  set_num(env, obj, "rxFrames", (double)l->rx_frames);
  set_num(env, obj, "rxBytes", (double)l->rx_bytes);
  set_num(env, obj, "rxWriteErrors", (double)l->rx_write_errors);
  return obj;
}

void wn_lane_detach(napi_env env, wn_chan *c) {
  if (c->lane != NULL && c->lane->tap == c) c->lane->tap = NULL;
  if (c->lane_ref != NULL) napi_delete_reference(env, c->lane_ref);
  c->lane_ref = NULL;
  c->lane = NULL;
}

/* tapSetLane(tapHandle, lane | null): the lane that may send this TAP's lone frames. */
napi_value wn_tap_set_lane(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (wn_get_args(env, info, 2, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], WN_TAP);
  if (c == NULL) return NULL;
  wn_lane *l = NULL;
  if (!wn_is_nullish(env, argv[1]) && (l = unwrap_lane(env, argv[1])) == NULL) return NULL;
  wn_lane_detach(env, c);
  if (l != NULL) {
    if (napi_create_reference(env, argv[1], 1, &c->lane_ref) != napi_ok) {
      napi_throw_error(env, NULL, "weave_native: cannot reference the lane");
      return NULL;
    }
    c->lane = l;
    l->tap = c;
  }
  return NULL;
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

int wn_lane_offer(wn_chan *c, uint8_t *frame, int32_t len) {
  wn_lane *l = c->lane;
  /* virtio_net_hdr byte 1 is gso_type: 0 for a plain frame. Byte 0 of the
   * destination MAC has the group bit. */
  if (l == NULL || len < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES || len > l->max_frame || frame[1] != 0 ||
      (frame[VNET_HDR_BYTES] & 1) != 0)
    return 0;
  lane_entry *e = find(l, frame + VNET_HDR_BYTES);
  wn_chan *u = l->udp;
  if (e == NULL || u->fd < 0 || u->closing) return 0;
  double counter = *e->counter;
  /* JS refuses to seal at or past reject_after; a NaN or negative cell is not ours to judge. */
  if (!(counter >= 0 && counter < l->reject_after)) return 0;
  uint8_t *p = l->scratch, nonce[12] = {0, 0, 0, CHANNEL_UDP_SLEEVE};
  memcpy(p, e->head, LANE_HEAD_BYTES);
  put_be64(p + 8, (uint64_t)counter);
  put_be64(nonce + 4, (uint64_t)counter);
  memcpy(p + LANE_HEAD_BYTES, frame, (size_t)len);
  /* The header is both the datagram's start and the associated data; the AEAD writes only after it. */
  int sealed = wn_aead_seal_in_place(e->aead, p + SLEEVE_HEADER_BYTES, INNER_HEADER_BYTES + len, p, SLEEVE_HEADER_BYTES, nonce);
  if (sealed < 0) return 0;
  *e->counter = counter + 1;
  size_t n = SLEEVE_HEADER_BYTES + (size_t)sealed;
  e->seen++;
  if (sendto(u->fd, p, n, 0, (struct sockaddr *)&e->to, e->to_len) < 0) {
    /* Counted and dropped, as a failed sendmmsg drops a datagram. */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      l->dropped_again++;
      u->st.tx_dropped_again++;
    } else {
      l->errors++;
      u->st.tx_errors++;
      u->st.last_tx_errno = errno;
    }
    return 1;
  }
  l->frames++;
  l->bytes += n;
  u->st.tx_packets++;
  u->st.tx_bytes += n;
  return 1;
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

/* replay-window.ts's wouldAccept and accept, on its shared ring and highest
 * counter: a counter is taken once, and only within WINDOW_SIZE of the highest. */
static int window_would_accept(const lane_rx *r, uint64_t counter) {
  uint64_t highest = (uint64_t)*r->highest;
  if (counter > highest) return 1;
  if (highest - counter > WINDOW_SIZE) return 0;
  uint32_t word = (uint32_t)r->ring[(counter / 32) & (RING_BLOCKS - 1)];
  return (word & (1u << (counter & 31))) == 0;
}

static void window_accept(lane_rx *r, uint64_t counter) {
  uint64_t highest = (uint64_t)*r->highest, block = counter / 32;
  if (counter > highest) {
    uint64_t current = highest / 32, advance = block - current;
    if (advance > RING_BLOCKS) advance = RING_BLOCKS;
    for (uint64_t i = 1; i <= advance; i++) r->ring[(current + i) & (RING_BLOCKS - 1)] = 0;
    *r->highest = (double)counter;
  }
  r->ring[block & (RING_BLOCKS - 1)] = (int32_t)((uint32_t)r->ring[block & (RING_BLOCKS - 1)] | (1u << (counter & 31)));
}

int wn_lane_receive(wn_chan *c, const uint8_t *d, int32_t len, const uint8_t *addr16, uint16_t port) {
  wn_lane *l = c->lane;
  if (l == NULL || l->tap == NULL || l->tap->fd < 0 || l->tap->closing) return 0;
  /* A version 2 FRAME with room for an inner header, a vnet header, an
   * Ethernet header and the tag; no bigger than what the lane sends. */
  if (len < LANE_HEAD_BYTES + VNET_HDR_BYTES + ETHERNET_HEADER_BYTES + TAG_BYTES || len > LANE_HEAD_BYTES + l->max_frame + TAG_BYTES ||
      d[0] != 2)
    return 0;
  /* Any entry of this neighbour, endpoint and key phase names the key and
   * window (they all hold the same ones); which MAC pair it carries is known
   * only once opened. */
  lane_rx *r = find_rx(l, d[1], d + 2, addr16, port, NULL);
  if (r == NULL) return 0;
  uint64_t counter = get_be64(d + 8);
  if ((double)counter >= l->reject_after || !window_would_accept(r, counter)) return 0;
  /* Opened in a copy: whatever fails below leaves the datagram as it came, for JS. */
  uint8_t *p = l->rx_scratch, nonce[12] = {0, 0, 0, CHANNEL_UDP_SLEEVE};
  memcpy(p, d, (size_t)len);
  memcpy(nonce + 4, d + 8, 8);
  int plain = wn_aead_open_in_place(r->aead, p + SLEEVE_HEADER_BYTES, len - SLEEVE_HEADER_BYTES, p, SLEEVE_HEADER_BYTES, nonce);
  if (plain < INNER_HEADER_BYTES + VNET_HDR_BYTES + ETHERNET_HEADER_BYTES) return 0;
  const uint8_t *inner = p + SLEEVE_HEADER_BYTES, *frame = inner + INNER_HEADER_BYTES;
  static const uint8_t zero_vnet[VNET_HDR_BYTES] = {0};
  /* From that neighbour to us, a plain frame with nothing for the kernel to
   * finish (a zero virtio_net_hdr), of the pair JS delivered before. */
  if (memcmp(inner, r->names, 2 * PEER_NAME_BYTES) != 0 || memcmp(frame, zero_vnet, VNET_HDR_BYTES) != 0 ||
      (frame[VNET_HDR_BYTES] & 1) != 0)
    return 0;
  lane_rx *m = find_rx(l, r->type, r->names, r->from, r->port, frame + VNET_HDR_BYTES);
  if (m == NULL || m->aead != r->aead || m->ring != r->ring) return 0;
  r = m;
  window_accept(r, counter);
  size_t frame_len = (size_t)plain - INNER_HEADER_BYTES;
  r->seen++;
  l->rx_frames++;
  l->rx_bytes += (uint64_t)len;
  /* Written as tapWriteOne writes: a full or failing device drops the frame and counts it. */
  if (write(l->tap->fd, frame, frame_len) < 0) {
    l->rx_write_errors++;
    l->tap->st.tx_errors++;
    l->tap->st.last_tx_errno = errno;
  } else {
    l->tap->st.tx_packets++;
    l->tap->st.tx_bytes += frame_len;
  }
  return 1;
}
