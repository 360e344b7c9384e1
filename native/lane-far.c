/*
 * The lane's far ends (the lane as a whole: lane.c). A lone frame to or from
 * a peer two hops away travels as a far message (far-session.ts: sealed end
 * to end, each hop sealing only its 29-byte hop part), and at both ends it
 * took the JS far path: a relayed ping cost twice the JS wakeups of a direct
 * one at each end (1.1 ms against 0.4). These entries let the lane do there
 * what JS did, and only that.
 *
 * Sending: after JS sent a lone plain frame of a (destination MAC, source
 * MAC) pair as a version 2 far message, it installs a far entry beside the
 * direct ones (same table, same MAC pair key): the 29 header bytes it wrote
 * (sleeve header naming the next hop's key phase and us, inner header us to
 * the destination), the hop link's sealing context and counter cell, the far
 * header's first 8 bytes (version, key id), and the far send key's context
 * and counter cell. A frame of that pair is then sealed end to end (AD:
 * inner source and destination, far header; nonce 00 00 00 03 || far
 * counter), its hop part sealed behind the header, and sent to the relay.
 * Both counters move only once both seals held.
 *
 * Receiving: after JS delivered a lone plain frame from a version 2 far
 * message a neighbour passed on to us, it installs a far receive entry: the
 * neighbour, its endpoint and key phase (the hop's opening context and
 * window), the origin, the far key id and that key's opening context and
 * window, and the frame's MAC pair. A datagram from that neighbour is opened
 * in a copy: hop part (inner header from the origin to us, far header of that
 * version and key), then the body; a zero virtio_net_hdr and the entry's MAC
 * pair; both counters new to their windows. Only then do both windows move
 * and the frame goes to the TAP. Anything else goes to JS intact, to judge
 * and count.
 */
#include "lane.h"

#include <string.h>

/* The far body's associated data: inner source and destination, then the far header. */
#define FAR_AD_BYTES (2 * PEER_NAME_BYTES + FAR_HEADER_BYTES)

/* laneSetFar(lane, macs (12), head (29), hopSealer, hopCounter (Float64Array), farHead (8), farSealer,
 * farCounter (Float64Array), addr16, port) -> whether it took the entry (false: the table is full).
 * Replaces the pair's entry, direct or far. */
napi_value wn_lane_set_far(napi_env env, napi_callback_info info) {
  napi_value argv[10], res;
  uint8_t *macs, *head, *far_head, *addr;
  size_t macs_len, head_len, far_head_len, addr_len;
  int64_t port;
  void *counter = NULL, *far_counter = NULL;
  if (wn_get_args(env, info, 10, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL || wn_get_u8(env, argv[1], "macs", &macs, &macs_len) < 0 || wn_get_u8(env, argv[2], "head", &head, &head_len) < 0)
    return NULL;
  wn_aead *hop = wn_aead_sealer(env, argv[3]);
  if (hop == NULL) return NULL;
  if (wn_lane_cells(env, argv[4], napi_float64_array, 1, &counter) < 0) {
    wn_throw_type(env, "hopCounter must be a non-empty Float64Array");
    return NULL;
  }
  if (wn_get_u8(env, argv[5], "farHead", &far_head, &far_head_len) < 0) return NULL;
  wn_aead *far = wn_aead_sealer(env, argv[6]);
  if (far == NULL) return NULL;
  if (wn_lane_cells(env, argv[7], napi_float64_array, 1, &far_counter) < 0) {
    wn_throw_type(env, "farCounter must be a non-empty Float64Array");
    return NULL;
  }
  if (wn_get_u8(env, argv[8], "addr16", &addr, &addr_len) < 0 || wn_get_int(env, argv[9], "port", 1, 65535, &port) < 0) return NULL;
  if (macs_len != LANE_MACS || head_len != LANE_HEAD_BYTES || far_head_len != FAR_HEAD_BYTES || addr_len != 16) {
    wn_throw_range(env, "macs must be %d bytes, head %d, farHead %d, addr16 16 (got %zu, %zu, %zu, %zu)", LANE_MACS, LANE_HEAD_BYTES,
                   FAR_HEAD_BYTES, macs_len, head_len, far_head_len, addr_len);
    return NULL;
  }
  if (head[0] != 2 || (head[1] & ~KEY_PHASE_BIT) != SLEEVE_TYPE_FAR || far_head[0] != FAR_VERSION) {
    wn_throw_range(env, "laneSetFar: head must be a version 2 FAR header (%d) and farHead version %d", SLEEVE_TYPE_FAR, FAR_VERSION);
    return NULL;
  }
  lane_entry *e = NULL;
  int claimed = wn_lane_claim(env, l, macs, addr, port, "laneSetFar", &e);
  if (claimed <= 0) {
    if (claimed == 0) napi_get_boolean(env, false, &res);
    return claimed == 0 ? res : NULL;
  }
  if (napi_create_reference(env, argv[3], 1, &e->aead_ref) != napi_ok || napi_create_reference(env, argv[4], 1, &e->counter_ref) != napi_ok ||
      napi_create_reference(env, argv[6], 1, &e->far_aead_ref) != napi_ok ||
      napi_create_reference(env, argv[7], 1, &e->far_counter_ref) != napi_ok) {
    wn_lane_entry_release(env, e);
    napi_throw_error(env, NULL, "weave_native: cannot reference the lane's keys or counters");
    return NULL;
  }
  e->far = 1;
  memcpy(e->head, head, LANE_HEAD_BYTES);
  memcpy(e->far_head, far_head, FAR_HEAD_BYTES);
  e->aead = hop;
  e->counter = counter;
  e->far_aead = far;
  e->far_counter = far_counter;
  napi_get_boolean(env, true, &res);
  return res;
}

int wn_lane_far_offer(wn_lane *l, lane_entry *e, const uint8_t *frame, int32_t len) {
  /* JS sends a bigger one segmented, or not at all as far. */
  if (len + FAR_OVERHEAD_BYTES > l->max_frame) return 0;
  double counter = *e->counter, far_counter = *e->far_counter;
  /* JS refuses to seal at or past reject_after, either counter; a NaN or negative cell is not ours to judge. */
  if (!(counter >= 0 && counter < l->reject_after) || !(far_counter >= 0 && far_counter < l->reject_after)) return 0;
  uint8_t *p = l->scratch, *far_header = p + LANE_HEAD_BYTES;
  uint8_t ad[FAR_AD_BYTES], nonce[12] = {0, 0, 0, FAR_NONCE_CHANNEL};
  memcpy(p, e->head, LANE_HEAD_BYTES);
  wn_put_be64(p + 8, (uint64_t)counter);
  memcpy(far_header, e->far_head, FAR_HEAD_BYTES);
  wn_put_be64(far_header + FAR_HEAD_BYTES, (uint64_t)far_counter);
  memcpy(p + FAR_BODY_AT, frame, (size_t)len);
  memcpy(ad, p + SLEEVE_HEADER_BYTES, 2 * PEER_NAME_BYTES);
  memcpy(ad + 2 * PEER_NAME_BYTES, far_header, FAR_HEADER_BYTES);
  wn_put_be64(nonce + 4, (uint64_t)far_counter);
  int body = wn_aead_seal_in_place(e->far_aead, p + FAR_BODY_AT, len, ad, FAR_AD_BYTES, nonce);
  if (body < 0) return 0;
  nonce[3] = CHANNEL_UDP_SLEEVE;
  wn_put_be64(nonce + 4, (uint64_t)counter);
  /* The hop part's tag lands between it and the body, where far-path.ts leaves room for it. */
  if (wn_aead_seal_in_place(e->aead, p + SLEEVE_HEADER_BYTES, FAR_HOP_BYTES, p, SLEEVE_HEADER_BYTES, nonce) < 0) return 0;
  *e->counter = counter + 1;
  *e->far_counter = far_counter + 1;
  if (wn_lane_send(l, e, p, FAR_BODY_AT + (size_t)body)) l->far_frames++;
  return 1;
}

/* laneSetFarReceive(lane, type, names (12: the neighbour, us), origin (6), macs (12), hopOpener, ring (Int32Array of 64),
 * highest (Float64Array), farKeyId, farOpener, farRing (Int32Array of 64), farHighest (Float64Array), addr16, port)
 * -> whether it took the entry. Replaces the entry for the same neighbour, type and pair. */
napi_value wn_lane_set_far_receive(napi_env env, napi_callback_info info) {
  napi_value argv[14], res;
  uint8_t *names, *origin, *macs, *addr;
  size_t names_len, origin_len, macs_len, addr_len;
  int64_t type, key_id, port;
  void *ring = NULL, *highest = NULL, *far_ring = NULL, *far_highest = NULL;
  if (wn_get_args(env, info, 14, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL || wn_get_int(env, argv[1], "type", 0, 255, &type) < 0 || wn_get_u8(env, argv[2], "names", &names, &names_len) < 0 ||
      wn_get_u8(env, argv[3], "origin", &origin, &origin_len) < 0 || wn_get_u8(env, argv[4], "macs", &macs, &macs_len) < 0)
    return NULL;
  wn_aead *hop = wn_aead_opener(env, argv[5]);
  if (hop == NULL) return NULL;
  if (wn_lane_cells(env, argv[6], napi_int32_array, RING_BLOCKS, &ring) < 0 || wn_lane_cells(env, argv[7], napi_float64_array, 1, &highest) < 0) {
    wn_throw_type(env, "ring must be an Int32Array of %d, highest a non-empty Float64Array", RING_BLOCKS);
    return NULL;
  }
  if (wn_get_int(env, argv[8], "farKeyId", 0, 0xffffffffLL, &key_id) < 0) return NULL;
  wn_aead *far = wn_aead_opener(env, argv[9]);
  if (far == NULL) return NULL;
  if (wn_lane_cells(env, argv[10], napi_int32_array, RING_BLOCKS, &far_ring) < 0 ||
      wn_lane_cells(env, argv[11], napi_float64_array, 1, &far_highest) < 0) {
    wn_throw_type(env, "farRing must be an Int32Array of %d, farHighest a non-empty Float64Array", RING_BLOCKS);
    return NULL;
  }
  if (wn_get_u8(env, argv[12], "addr16", &addr, &addr_len) < 0 || wn_get_int(env, argv[13], "port", 1, 65535, &port) < 0) return NULL;
  if (names_len != 2 * PEER_NAME_BYTES || origin_len != PEER_NAME_BYTES || macs_len != LANE_MACS || addr_len != 16) {
    wn_throw_range(env, "names must be %d bytes, origin %d, macs %d, addr16 16 (got %zu, %zu, %zu, %zu)", 2 * PEER_NAME_BYTES,
                   PEER_NAME_BYTES, LANE_MACS, names_len, origin_len, macs_len, addr_len);
    return NULL;
  }
  if ((type & ~KEY_PHASE_BIT) != SLEEVE_TYPE_FAR) {
    wn_throw_range(env, "laneSetFarReceive: the type byte must be FAR (%d) with or without the key phase bit", SLEEVE_TYPE_FAR);
    return NULL;
  }
  lane_rx *r = wn_lane_claim_rx(env, l, (uint8_t)type, names, macs, addr, (uint16_t)port);
  if (r == NULL) {
    napi_get_boolean(env, false, &res);
    return res;
  }
  if (napi_create_reference(env, argv[5], 1, &r->aead_ref) != napi_ok || napi_create_reference(env, argv[6], 1, &r->ring_ref) != napi_ok ||
      napi_create_reference(env, argv[7], 1, &r->highest_ref) != napi_ok || napi_create_reference(env, argv[9], 1, &r->far_aead_ref) != napi_ok ||
      napi_create_reference(env, argv[10], 1, &r->far_ring_ref) != napi_ok ||
      napi_create_reference(env, argv[11], 1, &r->far_highest_ref) != napi_ok) {
    wn_lane_rx_release(env, r);
    napi_throw_error(env, NULL, "weave_native: cannot reference the lane's keys or windows");
    return NULL;
  }
  r->far = 1;
  memcpy(r->origin, origin, PEER_NAME_BYTES);
  r->aead = hop;
  r->ring = ring;
  r->highest = highest;
  r->far_key_id = (uint32_t)key_id;
  r->far_aead = far;
  r->far_ring = far_ring;
  r->far_highest = far_highest;
  napi_get_boolean(env, true, &res);
  return res;
}

int wn_lane_far_receive(wn_lane *l, lane_rx *r, const uint8_t *d, int32_t len, const uint8_t *addr16, uint16_t port) {
  if (len < MIN_FAR_MESSAGE || len > FAR_BODY_AT + l->max_frame + TAG_BYTES) return 0;
  uint64_t counter = wn_get_be64(d + 8);
  if ((double)counter >= l->reject_after || !wn_window_would_accept(r->ring, r->highest, counter)) return 0;
  /* Opened in a copy: whatever fails below leaves the datagram as it came, for JS. */
  uint8_t *p = l->rx_scratch, nonce[12] = {0, 0, 0, CHANNEL_UDP_SLEEVE};
  memcpy(p, d, (size_t)len);
  memcpy(nonce + 4, d + 8, 8);
  if (wn_aead_open_in_place(r->aead, p + SLEEVE_HEADER_BYTES, FAR_HOP_BYTES + TAG_BYTES, p, SLEEVE_HEADER_BYTES, nonce) != FAR_HOP_BYTES)
    return 0;
  const uint8_t *inner = p + SLEEVE_HEADER_BYTES, *far_header = inner + INNER_HEADER_BYTES;
  /* To us (names[6..12)), under a far key we have an entry for. */
  if (memcmp(inner + PEER_NAME_BYTES, r->names + PEER_NAME_BYTES, PEER_NAME_BYTES) != 0 || far_header[0] != FAR_VERSION) return 0;
  uint32_t key_id = (uint32_t)far_header[4] << 24 | (uint32_t)far_header[5] << 16 | (uint32_t)far_header[6] << 8 | far_header[7];
  uint64_t far_counter = wn_get_be64(far_header + FAR_HEAD_BYTES);
  /* Any entry of this origin and key names its context and window; the pair is known only once opened. */
  lane_rx *k = NULL;
  for (int i = 0; i < LANE_ENTRIES && k == NULL; i++) {
    lane_rx *x = &l->rx[i];
    if (x->used && x->far && x->aead == r->aead && x->ring == r->ring && x->far_key_id == key_id &&
        memcmp(x->origin, inner, PEER_NAME_BYTES) == 0 && memcmp(x->names, r->names, sizeof x->names) == 0)
      k = x;
  }
  if (k == NULL || (double)far_counter >= l->reject_after || !wn_window_would_accept(k->far_ring, k->far_highest, far_counter)) return 0;
  uint8_t ad[FAR_AD_BYTES];
  memcpy(ad, inner, 2 * PEER_NAME_BYTES);
  memcpy(ad + 2 * PEER_NAME_BYTES, far_header, FAR_HEADER_BYTES);
  nonce[3] = FAR_NONCE_CHANNEL;
  wn_put_be64(nonce + 4, far_counter);
  int plain = wn_aead_open_in_place(k->far_aead, p + FAR_BODY_AT, len - FAR_BODY_AT, ad, FAR_AD_BYTES, nonce);
  if (plain < VNET_HDR_BYTES + ETHERNET_HEADER_BYTES) return 0;
  const uint8_t *frame = p + FAR_BODY_AT;
  static const uint8_t zero_vnet[VNET_HDR_BYTES] = {0};
  /* A plain frame with nothing for the kernel to finish, of a pair JS delivered from this origin before. */
  if (memcmp(frame, zero_vnet, VNET_HDR_BYTES) != 0 || (frame[VNET_HDR_BYTES] & 1) != 0) return 0;
  lane_rx *m = wn_lane_find_rx(l, r->type, r->names, addr16, port, frame + VNET_HDR_BYTES);
  if (m == NULL || !m->far || m->aead != k->aead || m->ring != k->ring || m->far_aead != k->far_aead || m->far_ring != k->far_ring ||
      memcmp(m->origin, k->origin, PEER_NAME_BYTES) != 0)
    return 0;
  wn_window_accept(m->ring, m->highest, counter);
  wn_window_accept(m->far_ring, m->far_highest, far_counter);
  l->far_rx_frames++;
  wn_lane_deliver(l, m, frame, (size_t)plain, len);
  return 1;
}
