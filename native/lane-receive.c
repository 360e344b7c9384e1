/*
 * The lone-frame lane's receiving half (the lane as a whole: lane.c). After
 * JS delivered to our bridge a lone plain frame that a neighbour sent
 * straight to us, it installs a receive entry for that neighbour, its
 * endpoint, the datagram's type byte (the key phase) and the frame's MAC
 * pair, naming the opening context and the phase's replay window
 * (router/overlay/replay-window.ts, whose ring and highest counter live off
 * the JS heap for this). A UDP wakeup of one such datagram is then opened in
 * a copy, checked (inner header from that neighbour to us, a virtio_net_hdr
 * of zeros, the entry's MAC pair, a counter the window accepts, by
 * replay-window.ts's rules) and written to the TAP. Anything that is not
 * exactly that goes to JS intact: forged, replayed and unexpected datagrams
 * are JS's to judge and count.
 */
#include "lane.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void wn_lane_rx_release(napi_env env, lane_rx *r) {
  if (r->aead_ref != NULL) napi_delete_reference(env, r->aead_ref);
  if (r->ring_ref != NULL) napi_delete_reference(env, r->ring_ref);
  if (r->highest_ref != NULL) napi_delete_reference(env, r->highest_ref);
  if (r->far_aead_ref != NULL) napi_delete_reference(env, r->far_aead_ref);
  if (r->far_ring_ref != NULL) napi_delete_reference(env, r->far_ring_ref);
  if (r->far_highest_ref != NULL) napi_delete_reference(env, r->far_highest_ref);
  memset(r, 0, sizeof *r);
}

lane_rx *wn_lane_find_rx(wn_lane *l, uint8_t type, const uint8_t *sender, const uint8_t *from, uint16_t port, const uint8_t *macs) {
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
  size_t names_len, macs_len, addr_len;
  int64_t type, port;
  void *ring = NULL, *highest = NULL;
  if (wn_get_args(env, info, 9, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL || wn_get_int(env, argv[1], "type", 0, 255, &type) < 0 || wn_get_u8(env, argv[2], "names", &names, &names_len) < 0 ||
      wn_get_u8(env, argv[3], "macs", &macs, &macs_len) < 0)
    return NULL;
  wn_aead *a = wn_aead_opener(env, argv[4]);
  if (a == NULL) return NULL;
  if (wn_lane_cells(env, argv[5], napi_int32_array, RING_BLOCKS, &ring) < 0 || wn_lane_cells(env, argv[6], napi_float64_array, 1, &highest) < 0) {
    wn_throw_type(env, "ring must be an Int32Array of %d, highest a non-empty Float64Array", RING_BLOCKS);
    return NULL;
  }
  if (wn_get_u8(env, argv[7], "addr16", &addr, &addr_len) < 0 || wn_get_int(env, argv[8], "port", 1, 65535, &port) < 0) return NULL;
  if (names_len != 2 * PEER_NAME_BYTES || macs_len != LANE_MACS || addr_len != 16) {
    wn_throw_range(env, "names must be %d bytes, macs %d, addr16 16 (got %zu, %zu, %zu)", 2 * PEER_NAME_BYTES, LANE_MACS, names_len,
                   macs_len, addr_len);
    return NULL;
  }
  lane_rx *r = wn_lane_claim_rx(env, l, (uint8_t)type, names, macs, addr, (uint16_t)port);
  if (r == NULL) {
    napi_get_boolean(env, false, &res);
    return res;
  }
  if (napi_create_reference(env, argv[4], 1, &r->aead_ref) != napi_ok || napi_create_reference(env, argv[5], 1, &r->ring_ref) != napi_ok ||
      napi_create_reference(env, argv[6], 1, &r->highest_ref) != napi_ok) {
    wn_lane_rx_release(env, r);
    napi_throw_error(env, NULL, "weave_native: cannot reference the lane's key or window");
    return NULL;
  }
  r->aead = a;
  r->ring = ring;
  r->highest = highest;
  napi_get_boolean(env, true, &res);
  return res;
}

lane_rx *wn_lane_claim_rx(napi_env env, wn_lane *l, uint8_t type, const uint8_t *names, const uint8_t *macs, const uint8_t *from,
                          uint16_t port) {
  lane_rx *r = wn_lane_find_rx(l, type, names, from, port, macs);
  for (int i = 0; r == NULL && i < LANE_ENTRIES; i++)
    if (!l->rx[i].used) r = &l->rx[i];
  if (r == NULL) return NULL;
  wn_lane_rx_release(env, r);
  r->used = 1;
  r->type = type;
  memcpy(r->names, names, sizeof r->names);
  memcpy(r->macs, macs, LANE_MACS);
  memcpy(r->from, from, 16);
  r->port = port;
  return r;
}

int wn_lane_receive(wn_chan *c, const uint8_t *d, int32_t len, const uint8_t *addr16, uint16_t port) {
  wn_lane *l = c->lane;
  if (l == NULL || l->tap == NULL || l->tap->fd < 0 || l->tap->closing) return 0;
  /* A version 2 datagram with room for an inner header, a vnet header, an Ethernet header and the tag. */
  if (len < LANE_HEAD_BYTES + VNET_HDR_BYTES + ETHERNET_HEADER_BYTES + TAG_BYTES || d[0] != 2) return 0;
  /* Any entry of this neighbour, endpoint and key phase names the key and
   * window (they all hold the same ones); which MAC pair it carries is known
   * only once opened. */
  lane_rx *r = wn_lane_find_rx(l, d[1], d + 2, addr16, port, NULL);
  if (r == NULL) return 0;
  if (r->far) return wn_lane_far_receive(l, r, d, len, addr16, port);
  /* A FRAME no bigger than what the lane sends. */
  if (len > LANE_HEAD_BYTES + l->max_frame + TAG_BYTES) return 0;
  uint64_t counter = wn_get_be64(d + 8);
  if ((double)counter >= l->reject_after || !wn_window_would_accept(r->ring, r->highest, counter)) return 0;
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
  lane_rx *m = wn_lane_find_rx(l, r->type, r->names, r->from, r->port, frame + VNET_HDR_BYTES);
  if (m == NULL || m->aead != r->aead || m->ring != r->ring) return 0;
  wn_window_accept(m->ring, m->highest, counter);
  wn_lane_deliver(l, m, frame, (size_t)plain - INNER_HEADER_BYTES, len);
  return 1;
}

void wn_lane_deliver(wn_lane *l, lane_rx *r, const uint8_t *frame, size_t frame_len, int32_t datagram_len) {
  r->seen++;
  l->rx_frames++;
  l->rx_bytes += (uint64_t)datagram_len;
  /* Written as tapWriteOne writes: a full or failing device drops the frame and counts it. */
  if (write(l->tap->fd, frame, frame_len) < 0) {
    l->rx_write_errors++;
    l->tap->st.tx_errors++;
    l->tap->st.last_tx_errno = errno;
  } else {
    l->tap->st.tx_packets++;
    l->tap->st.tx_bytes += frame_len;
  }
}
