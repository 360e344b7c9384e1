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
 * router/overlay/lane-entries.ts). A frame the lane has no entry for, a GSO
 * super-frame, a group address, a frame larger than the MTU, a spent
 * counter, a closed socket: all go to JS as before.
 *
 * The datagram is the one router/overlay/sleeve-send.ts builds (version 2,
 * sleeve-codec.ts): header, inner header, the frame with its virtio_net_hdr,
 * AES-256-GCM tag; nonce 00 00 00 02 || counter, the header as associated
 * data. Only AES-256-GCM links get entries (their key already lives here).
 *
 * Receiving mirrors it (lane-receive.c), a far message passing through us
 * to another peer can be relayed the same way (lane-relay.c), and lone
 * frames to and from a peer two hops away, sealed end to end, take far
 * entries in the same tables (lane-far.c); they share lane.h's tables.
 *
 * Single-threaded like the rest of the addon: the poll callbacks and JS
 * never run at once, so the shared counter and windows need no lock.
 */
#include "lane.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const napi_type_tag LANE_TAG = {0x7765617665616c61ULL, 0x6e656c6f6e653031ULL};

void wn_lane_entry_release(napi_env env, lane_entry *e) {
  if (e->aead_ref != NULL) napi_delete_reference(env, e->aead_ref);
  if (e->counter_ref != NULL) napi_delete_reference(env, e->counter_ref);
  if (e->far_aead_ref != NULL) napi_delete_reference(env, e->far_aead_ref);
  if (e->far_counter_ref != NULL) napi_delete_reference(env, e->far_counter_ref);
  memset(e, 0, sizeof *e);
}

static void lane_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  wn_lane *l = data;
  for (int i = 0; i < LANE_ENTRIES; i++) {
    wn_lane_entry_release(env, &l->e[i]);
    wn_lane_rx_release(env, &l->rx[i]);
  }
  for (int i = 0; i < RELAY_ENTRIES; i++) wn_lane_relay_release(env, &l->relay[i]);
  if (l->udp->lane == l) l->udp->lane = NULL;
  if (l->udp_ref != NULL) napi_delete_reference(env, l->udp_ref);
  free(l->scratch);
  free(l->rx_scratch);
  free(l);
}

int wn_lane_cells(napi_env env, napi_value v, napi_typedarray_type type, size_t min, void **data) {
  napi_typedarray_type got;
  size_t n;
  return napi_get_typedarray_info(env, v, &got, &n, data, NULL, NULL) == napi_ok && got == type && n >= min && *data != NULL ? 0 : -1;
}

wn_lane *wn_lane_unwrap(napi_env env, napi_value v) {
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
  uint8_t *scratch = malloc(FAR_BODY_AT + (size_t)max_frame + TAG_BYTES);
  uint8_t *rx_scratch = malloc(FAR_BODY_AT + (size_t)max_frame + TAG_BYTES);
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

int wn_lane_claim(napi_env env, wn_lane *l, const uint8_t *macs, const uint8_t *addr, int64_t port, const char *fn, lane_entry **out) {
  struct sockaddr_storage to;
  socklen_t to_len = wn_udp_make_dest(l->udp->family, addr, (uint16_t)port, &to);
  if (to_len == 0) {
    wn_throw_range(env, "%s: an IPv6 address for an IPv4 socket", fn);
    return -1;
  }
  lane_entry *e = find(l, macs);
  for (int i = 0; e == NULL && i < LANE_ENTRIES; i++)
    if (!l->e[i].used) e = &l->e[i];
  if (e == NULL) return 0;
  wn_lane_entry_release(env, e);
  e->used = 1;
  memcpy(e->macs, macs, LANE_MACS);
  e->to = to;
  e->to_len = to_len;
  *out = e;
  return 1;
}

/* laneSet(lane, macs (12), head (29), aeadSealer, counterCell (Float64Array), addr16, port)
 * -> whether it took the entry (false: the table is full). Replaces the pair's entry. */
napi_value wn_lane_set(napi_env env, napi_callback_info info) {
  napi_value argv[7], res;
  uint8_t *macs, *head, *addr;
  size_t macs_len, head_len, addr_len;
  int64_t port;
  void *cell_data = NULL;
  if (wn_get_args(env, info, 7, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL || wn_get_u8(env, argv[1], "macs", &macs, &macs_len) < 0 || wn_get_u8(env, argv[2], "head", &head, &head_len) < 0)
    return NULL;
  wn_aead *a = wn_aead_sealer(env, argv[3]);
  if (a == NULL) return NULL;
  if (wn_lane_cells(env, argv[4], napi_float64_array, 1, &cell_data) < 0) {
    wn_throw_type(env, "counterCell must be a non-empty Float64Array");
    return NULL;
  }
  if (wn_get_u8(env, argv[5], "addr16", &addr, &addr_len) < 0 || wn_get_int(env, argv[6], "port", 1, 65535, &port) < 0) return NULL;
  if (macs_len != LANE_MACS || head_len != LANE_HEAD_BYTES || addr_len != 16) {
    wn_throw_range(env, "macs must be %d bytes, head %d, addr16 16 (got %zu, %zu, %zu)", LANE_MACS, LANE_HEAD_BYTES, macs_len,
                   head_len, addr_len);
    return NULL;
  }
  lane_entry *e = NULL;
  int claimed = wn_lane_claim(env, l, macs, addr, port, "laneSet", &e);
  if (claimed <= 0) {
    if (claimed == 0) napi_get_boolean(env, false, &res);
    return claimed == 0 ? res : NULL;
  }
  if (napi_create_reference(env, argv[3], 1, &e->aead_ref) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &e->counter_ref) != napi_ok) {
    wn_lane_entry_release(env, e);
    napi_throw_error(env, NULL, "weave_native: cannot reference the lane's key or counter");
    return NULL;
  }
  memcpy(e->head, head, LANE_HEAD_BYTES);
  e->aead = a;
  e->counter = cell_data;
  napi_get_boolean(env, true, &res);
  return res;
}

/* laneClear(lane): forgets every entry (and lets their keys and counters go). */
napi_value wn_lane_clear(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL) return NULL;
  for (int i = 0; i < LANE_ENTRIES; i++) {
    wn_lane_entry_release(env, &l->e[i]);
    wn_lane_rx_release(env, &l->rx[i]);
  }
  for (int i = 0; i < RELAY_ENTRIES; i++) wn_lane_relay_release(env, &l->relay[i]);
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
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
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
    memcpy(rec + LANE_MACS, r->far ? r->origin : r->names, PEER_NAME_BYTES);
    r->seen = 0;
  }
  napi_create_uint32(env, n, &res);
  return res;
}

/* laneStats(lane) -> {frames, bytes, txDroppedAgain, txErrors, entries, rxFrames, rxBytes, rxWriteErrors, relayFrames,
 * relayBytes, relayErrors, farFrames, farRxFrames} since laneNew. */
napi_value wn_lane_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL || napi_create_object(env, &obj) != napi_ok) return NULL;
  int used = 0;
  for (int i = 0; i < LANE_ENTRIES; i++) used += l->e[i].used + l->rx[i].used;
  for (int i = 0; i < RELAY_ENTRIES; i++) used += l->relay[i].used;
  wn_set_num(env, obj, "frames", (double)l->frames);
  wn_set_num(env, obj, "bytes", (double)l->bytes);
  wn_set_num(env, obj, "txDroppedAgain", (double)l->dropped_again);
  wn_set_num(env, obj, "txErrors", (double)l->errors);
  wn_set_num(env, obj, "entries", used);
  wn_set_num(env, obj, "rxFrames", (double)l->rx_frames);
  wn_set_num(env, obj, "rxBytes", (double)l->rx_bytes);
  wn_set_num(env, obj, "rxWriteErrors", (double)l->rx_write_errors);
  wn_set_num(env, obj, "relayFrames", (double)l->relay_frames);
  wn_set_num(env, obj, "relayBytes", (double)l->relay_bytes);
  wn_set_num(env, obj, "relayErrors", (double)l->relay_errors);
  wn_set_num(env, obj, "farFrames", (double)l->far_frames);
  wn_set_num(env, obj, "farRxFrames", (double)l->far_rx_frames);
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
  if (!wn_is_nullish(env, argv[1]) && (l = wn_lane_unwrap(env, argv[1])) == NULL) return NULL;
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
  if (e->far) return wn_lane_far_offer(l, e, frame, len);
  double counter = *e->counter;
  /* JS refuses to seal at or past reject_after; a NaN or negative cell is not ours to judge. */
  if (!(counter >= 0 && counter < l->reject_after)) return 0;
  uint8_t *p = l->scratch, nonce[12] = {0, 0, 0, CHANNEL_UDP_SLEEVE};
  memcpy(p, e->head, LANE_HEAD_BYTES);
  wn_put_be64(p + 8, (uint64_t)counter);
  wn_put_be64(nonce + 4, (uint64_t)counter);
  memcpy(p + LANE_HEAD_BYTES, frame, (size_t)len);
  /* The header is both the datagram's start and the associated data; the AEAD writes only after it. */
  int sealed = wn_aead_seal_in_place(e->aead, p + SLEEVE_HEADER_BYTES, INNER_HEADER_BYTES + len, p, SLEEVE_HEADER_BYTES, nonce);
  if (sealed < 0) return 0;
  *e->counter = counter + 1;
  wn_lane_send(l, e, p, SLEEVE_HEADER_BYTES + (size_t)sealed);
  return 1;
}

int wn_lane_send(wn_lane *l, lane_entry *e, const uint8_t *p, size_t n) {
  wn_chan *u = l->udp;
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
    return 0;
  }
  l->frames++;
  l->bytes += n;
  u->st.tx_packets++;
  u->st.tx_bytes += n;
  return 1;
}
