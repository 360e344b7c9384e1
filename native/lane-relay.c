/*
 * The lane's relaying half (the lane as a whole: lane.c). A relay's pass of
 * a far message (router/overlay/far-session.ts: sealed end to end, each hop
 * sealing only its 29-byte hop part) costs a third of a core at speed, and a
 * third of that was JS. After JS relayed such a message in place
 * (relay-in-place.ts) from one neighbour to the next, it installs a relaying
 * entry: the incoming type byte (FAR and the key phase), sender, endpoint,
 * the inner source and destination, the incoming phase's opening context
 * and replay window, and what it sealed with towards the next hop (our type
 * byte and name, sealing context, counter cell, endpoint, and the segment
 * stride that link takes). A received slot that matches is then relayed
 * here, in the UDP poll callback, before JS sees the batch:
 *
 *   - a version 2 datagram (one that JS too would send on as version 2), or
 *     a version 3 message whose segments all came in the slot (UDP_GRO), in
 *     order, of the next hop's stride;
 *   - its hop part (after the header, in chunk 0) is opened in a copy with
 *     the header as associated data, and must name the entry's source and
 *     destination with at least 2 hops left; the counter must be below the
 *     reject bound and new to the window;
 *   - the hop part is resealed (hops - 1) under the next link's key and
 *     counter, with a header of the same version naming us; a version 3
 *     message gets that header in every segment (index, count and stride
 *     stay); then one sendmsg, with UDP_SEGMENT for version 3.
 *
 * The window moves and the counter is spent only once all of that held;
 * otherwise the slot goes to JS as it came, and so does every later slot of
 * the same sender in that batch, so that no frame of a flow overtakes one JS
 * still has to pass on. A slot taken here reads as length -1 to JS.
 */
#include "lane.h"

#include <errno.h>
#include <netinet/udp.h>
#include <string.h>

/* sleeve-segments.ts */
#define SEGMENT_HEADER_BYTES 20
#define MAX_SEGMENTS 64
#define MAX_GSO_PAYLOAD_BYTES 65507
#define MAX_SEGMENTED_BODY_BYTES (MAX_GSO_PAYLOAD_BYTES - 2 * SEGMENT_HEADER_BYTES)
/* Senders whose slots went to JS in one batch, remembered to keep their order. */
#define MAX_PUNTED 16

void wn_lane_relay_release(napi_env env, lane_relay *r) {
  if (r->opener_ref != NULL) napi_delete_reference(env, r->opener_ref);
  if (r->ring_ref != NULL) napi_delete_reference(env, r->ring_ref);
  if (r->highest_ref != NULL) napi_delete_reference(env, r->highest_ref);
  if (r->sealer_ref != NULL) napi_delete_reference(env, r->sealer_ref);
  if (r->counter_ref != NULL) napi_delete_reference(env, r->counter_ref);
  memset(r, 0, sizeof *r);
}

/* The relaying entry for datagrams with header bytes 1..7 `in_head` from
 * from:port, carrying the inner names `names` (NULL: any). */
static lane_relay *find_relay(wn_lane *l, const uint8_t *in_head, const uint8_t *from, uint16_t port, const uint8_t *names) {
  for (int i = 0; i < RELAY_ENTRIES; i++) {
    lane_relay *r = &l->relay[i];
    if (r->used && r->port == port && memcmp(r->in_head, in_head, sizeof r->in_head) == 0 && memcmp(r->from, from, 16) == 0 &&
        (names == NULL || memcmp(r->names, names, sizeof r->names) == 0))
      return r;
  }
  return NULL;
}

/* laneSetRelay(lane, inHead (7: type byte, sender), names (12: inner source, destination), aeadOpener,
 * ring (Int32Array of 64), highest (Float64Array), fromAddr16, fromPort, outHead (7: type byte, our name),
 * aeadSealer, counterCell (Float64Array), toAddr16, toPort, outStride) -> whether it took the entry.
 * Replaces the entry for the same sender, endpoint, type and names. */
napi_value wn_lane_set_relay(napi_env env, napi_callback_info info) {
  napi_value argv[14], res;
  uint8_t *in_head, *names, *from, *out_head, *to_addr;
  size_t in_len, names_len, from_len, out_len, to_len;
  int64_t from_port, to_port, out_stride;
  void *ring = NULL, *highest = NULL, *counter = NULL;
  if (wn_get_args(env, info, 14, argv) < 0) return NULL;
  wn_lane *l = wn_lane_unwrap(env, argv[0]);
  if (l == NULL || wn_get_u8(env, argv[1], "inHead", &in_head, &in_len) < 0 || wn_get_u8(env, argv[2], "names", &names, &names_len) < 0)
    return NULL;
  wn_aead *opener = wn_aead_opener(env, argv[3]);
  if (opener == NULL) return NULL;
  if (wn_lane_cells(env, argv[4], napi_int32_array, RING_BLOCKS, &ring) < 0 || wn_lane_cells(env, argv[5], napi_float64_array, 1, &highest) < 0) {
    wn_throw_type(env, "ring must be an Int32Array of %d, highest a non-empty Float64Array", RING_BLOCKS);
    return NULL;
  }
  if (wn_get_u8(env, argv[6], "fromAddr16", &from, &from_len) < 0 || wn_get_int(env, argv[7], "fromPort", 1, 65535, &from_port) < 0 ||
      wn_get_u8(env, argv[8], "outHead", &out_head, &out_len) < 0)
    return NULL;
  wn_aead *sealer = wn_aead_sealer(env, argv[9]);
  if (sealer == NULL) return NULL;
  if (wn_lane_cells(env, argv[10], napi_float64_array, 1, &counter) < 0) {
    wn_throw_type(env, "counterCell must be a non-empty Float64Array");
    return NULL;
  }
  if (wn_get_u8(env, argv[11], "toAddr16", &to_addr, &to_len) < 0 || wn_get_int(env, argv[12], "toPort", 1, 65535, &to_port) < 0 ||
      wn_get_int(env, argv[13], "outStride", 0, MAX_GSO_PAYLOAD_BYTES, &out_stride) < 0)
    return NULL;
  if (in_len != 1 + PEER_NAME_BYTES || out_len != 1 + PEER_NAME_BYTES || names_len != 2 * PEER_NAME_BYTES || from_len != 16 || to_len != 16) {
    wn_throw_range(env, "inHead and outHead must be %d bytes, names %d, addresses 16", 1 + PEER_NAME_BYTES, 2 * PEER_NAME_BYTES);
    return NULL;
  }
  if ((in_head[0] & ~KEY_PHASE_BIT) != SLEEVE_TYPE_FAR || (out_head[0] & ~KEY_PHASE_BIT) != SLEEVE_TYPE_FAR) {
    wn_throw_range(env, "laneSetRelay: both type bytes must be FAR (%d) with or without the key phase bit", SLEEVE_TYPE_FAR);
    return NULL;
  }
  if (out_stride != 0 && out_stride < TAG_BYTES + FAR_HOP_BYTES) {
    wn_throw_range(env, "laneSetRelay: a stride of %d bytes cannot hold the hop part", (int)out_stride);
    return NULL;
  }
  struct sockaddr_storage to;
  socklen_t to_size = wn_udp_make_dest(l->udp->family, to_addr, (uint16_t)to_port, &to);
  if (to_size == 0) {
    wn_throw_range(env, "laneSetRelay: an IPv6 address for an IPv4 socket");
    return NULL;
  }
  lane_relay *r = find_relay(l, in_head, from, (uint16_t)from_port, names);
  for (int i = 0; r == NULL && i < RELAY_ENTRIES; i++)
    if (!l->relay[i].used) r = &l->relay[i];
  if (r == NULL) {
    napi_get_boolean(env, false, &res);
    return res;
  }
  wn_lane_relay_release(env, r);
  if (napi_create_reference(env, argv[3], 1, &r->opener_ref) != napi_ok || napi_create_reference(env, argv[4], 1, &r->ring_ref) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &r->highest_ref) != napi_ok || napi_create_reference(env, argv[9], 1, &r->sealer_ref) != napi_ok ||
      napi_create_reference(env, argv[10], 1, &r->counter_ref) != napi_ok) {
    wn_lane_relay_release(env, r);
    napi_throw_error(env, NULL, "weave_native: cannot reference the relay's keys, window or counter");
    return NULL;
  }
  r->used = 1;
  memcpy(r->in_head, in_head, sizeof r->in_head);
  memcpy(r->from, from, 16);
  r->port = (uint16_t)from_port;
  memcpy(r->names, names, sizeof r->names);
  r->opener = opener;
  r->ring = ring;
  r->highest = highest;
  memcpy(r->out_head, out_head, sizeof r->out_head);
  r->sealer = sealer;
  r->counter = counter;
  r->to = to;
  r->to_len = to_size;
  r->out_stride = (int32_t)out_stride;
  napi_get_boolean(env, true, &res);
  return res;
}

/* sleeve-segments.ts's fitsSegmented: whether JS would send this body as version 3 at `stride`. */
static int fits_segmented(int32_t body, int32_t stride) {
  int32_t n = (body + stride - 1) / stride;
  return n >= 2 && n <= MAX_SEGMENTS && body + n * SEGMENT_HEADER_BYTES <= MAX_GSO_PAYLOAD_BYTES;
}

/* sleeve-segments.ts's wholeSegments and readSegment: whether d[0, len), coalesced at seg bytes per
 * datagram, is all segments of one far message in order. Returns their count, or 0. */
static int whole_segments(const uint8_t *d, int32_t len, int32_t seg) {
  if (seg <= SEGMENT_HEADER_BYTES || len <= seg) return 0;
  int32_t n = (len + seg - 1) / seg, stride = seg - SEGMENT_HEADER_BYTES;
  if (n < 2 || n > MAX_SEGMENTS || (n - 1) * stride >= MAX_SEGMENTED_BODY_BYTES || len - n * SEGMENT_HEADER_BYTES > MAX_SEGMENTED_BODY_BYTES)
    return 0;
  for (int32_t i = 0; i < n; i++) {
    const uint8_t *p = d + i * seg;
    int32_t chunk = (i == n - 1 ? len - i * seg : seg) - SEGMENT_HEADER_BYTES;
    if (chunk < 1 || p[0] != 3 || p[16] != i || p[17] != n || ((p[18] << 8) | p[19]) != stride) return 0;
    if (i > 0 && memcmp(p, d, SLEEVE_HEADER_BYTES) != 0) return 0;
  }
  return n;
}

/* Relays one slot if an entry says how: 1 when taken (sent, or dropped by a failing send), 0 to leave it, intact, to JS. */
static int relay_one(wn_lane *l, uint8_t *d, int32_t len, int32_t seg, const uint8_t *addr16, uint16_t port) {
  /* The entry first: most slots of a router that relays are its own traffic, to be left at once. */
  lane_relay *r = find_relay(l, d + 1, addr16, port, NULL);
  if (r == NULL) return 0;
  int segments = 0;
  int32_t body;
  if (seg > 0) {
    if ((segments = whole_segments(d, len, seg)) == 0) return 0;
    body = len - segments * SEGMENT_HEADER_BYTES;
  } else {
    if (len < MIN_FAR_MESSAGE || d[0] != 2) return 0;
    body = len - SLEEVE_HEADER_BYTES;
  }
  if (body < MIN_FAR_MESSAGE - SLEEVE_HEADER_BYTES) return 0;
  uint64_t counter = wn_get_be64(d + 8);
  if ((double)counter >= l->reject_after || !wn_window_would_accept(r->ring, r->highest, counter)) return 0;
  /* The hop part: right after the header (version 2) or after chunk 0's segment header (version 3). */
  uint8_t *hop = d + (segments > 0 ? SEGMENT_HEADER_BYTES : SLEEVE_HEADER_BYTES);
  uint8_t part[FAR_HOP_BYTES + TAG_BYTES], nonce[12] = {0, 0, 0, CHANNEL_UDP_SLEEVE};
  memcpy(part, hop, sizeof part);
  memcpy(nonce + 4, d + 8, 8);
  if (wn_aead_open_in_place(r->opener, part, sizeof part, d, SLEEVE_HEADER_BYTES, nonce) != FAR_HOP_BYTES) return 0;
  uint8_t hops = part[2 * PEER_NAME_BYTES];
  if (hops < 2) return 0;
  lane_relay *m = find_relay(l, d + 1, addr16, port, part);
  if (m == NULL || m->opener != r->opener || m->ring != r->ring) return 0;
  r = m;
  /* The next hop takes it as it is: a version 3 message at its stride, or a body JS would not segment either. */
  if (segments > 0 ? seg != r->out_stride + SEGMENT_HEADER_BYTES : r->out_stride > 0 && fits_segmented(body, r->out_stride)) return 0;
  double out = *r->counter;
  if (!(out >= 0 && out < l->reject_after)) return 0;
  uint8_t header[SLEEVE_HEADER_BYTES];
  header[0] = d[0];
  memcpy(header + 1, r->out_head, sizeof r->out_head);
  wn_put_be64(header + 8, (uint64_t)out);
  wn_put_be64(nonce + 4, (uint64_t)out);
  part[2 * PEER_NAME_BYTES] = (uint8_t)(hops - 1);
  if (wn_aead_seal_in_place(r->sealer, part, FAR_HOP_BYTES, header, SLEEVE_HEADER_BYTES, nonce) != FAR_HOP_BYTES + TAG_BYTES) return 0;
  /* Everything held: from here on the message is ours. */
  wn_window_accept(r->ring, r->highest, counter);
  *r->counter = out + 1;
  memcpy(hop, part, sizeof part);
  if (segments > 0)
    for (int i = 0; i < segments; i++) memcpy(d + i * seg, header, SLEEVE_HEADER_BYTES);
  else
    memcpy(d, header, SLEEVE_HEADER_BYTES);
  struct iovec iov = {.iov_base = d, .iov_len = (size_t)len};
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctrl;
  struct msghdr msg = {.msg_name = &r->to, .msg_namelen = r->to_len, .msg_iov = &iov, .msg_iovlen = 1};
  if (segments > 0) {
    uint16_t size = (uint16_t)seg;
    memset(&ctrl, 0, sizeof ctrl);
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof ctrl.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = IPPROTO_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof size);
    memcpy(CMSG_DATA(cm), &size, sizeof size);
  }
  r->seen++;
  wn_chan *u = l->udp;
  if (sendmsg(u->fd, &msg, 0) < 0) {
    /* Counted and dropped, as a failed sendmmsg drops a datagram. */
    l->relay_errors++;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      u->st.tx_dropped_again++;
    } else {
      u->st.tx_errors++;
      u->st.last_tx_errno = errno;
    }
    return 1;
  }
  l->relay_frames++;
  l->relay_bytes += (uint64_t)len;
  u->st.tx_packets++;
  u->st.tx_bytes += (uint64_t)len;
  return 1;
}

uint32_t wn_lane_relay_batch(wn_chan *c, uint8_t *slab, const int32_t *offs, int32_t *lens, const uint8_t *addrs, const uint16_t *ports,
                             const uint16_t *segs, uint32_t got) {
  wn_lane *l = c->lane;
  if (l == NULL || l->udp != c || c->fd < 0 || c->closing) return 0;
  int any = 0;
  for (int i = 0; i < RELAY_ENTRIES && !any; i++) any = l->relay[i].used;
  if (!any) return 0;
  uint8_t punted[MAX_PUNTED][PEER_NAME_BYTES];
  int npunted = 0;
  uint32_t taken = 0;
  for (uint32_t i = 0; i < got; i++) {
    uint8_t *d = slab + offs[i];
    int32_t len = lens[i];
    /* A slot too short to name its sender has no order to keep. */
    if (len < SLEEVE_HEADER_BYTES) continue;
    int after_punt = npunted == MAX_PUNTED;
    for (int k = 0; k < npunted && !after_punt; k++) after_punt = memcmp(punted[k], d + 2, PEER_NAME_BYTES) == 0;
    if (!after_punt && relay_one(l, d, len, segs != NULL ? segs[i] : 0, addrs + 16 * i, ports[i])) {
      lens[i] = -1;
      taken++;
    } else if (!after_punt) {
      memcpy(punted[npunted++], d + 2, PEER_NAME_BYTES);
    }
  }
  return taken;
}
