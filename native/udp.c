/*
 * Batched UDP: a non-blocking socket we create and bind, sendmmsg for N
 * datagrams per call, recvmmsg for up to max_batch datagrams per wakeup.
 * UDP GSO both ways: a datagram sent with a segment size leaves as one
 * sendmsg with UDP_SEGMENT (the kernel, or the NIC, cuts it into datagrams of
 * that size), and a reader that asked for UDP_GRO may receive several such
 * datagrams coalesced in one slot, with their size from the UDP_GRO cmsg.
 *
 * Addresses cross the JS boundary in one format for both families: 16 bytes
 * per datagram in IPv6 form (IPv4 as ::ffff:a.b.c.d) plus a Uint16Array of
 * ports in host order. That keeps the tables flat and allocation-free.
 */
#include "weave_native.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t V4_MAPPED_PREFIX[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int set_buf(int fd, int force_opt, int opt, int64_t bytes) {
  if (bytes <= 0) return 0;
  int v = (int)bytes;
  /* The FORCE variant ignores net.core.[rw]mem_max; it needs CAP_NET_ADMIN,
   * which the daemon has. Fall back to the capped one without it. */
  if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) == 0) return 0;
  return setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
}

/* Fills a sockaddr of the family from text; 0 when the text is not an address of it. */
static socklen_t parse_sockaddr(int64_t family, const char *addr, int64_t port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, addr, &sin->sin_addr) == 1 ? sizeof *sin : 0;
  }
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons((uint16_t)port);
  return inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1 ? sizeof *sin6 : 0;
}

/* udpOpen(family 4|6, address, port, rcvbufBytes, sndbufBytes[, peerAddress, peerPort]) -> handle.
 * Buffer sizes of 0 keep the kernel defaults. With a peer the socket is
 * connected to it after the bind: the kernel then delivers only the peer's
 * datagrams, and udpSend's port 0 means "the peer". */
napi_value wn_udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int64_t family, port, rcvbuf, sndbuf, peer_port = 0;
  char addr[INET6_ADDRSTRLEN], peer[INET6_ADDRSTRLEN] = "";
  size_t argc = 7;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc >= 7 && (wn_get_string(env, argv[5], "peerAddress", peer, sizeof peer) < 0 ||
                    wn_get_int(env, argv[6], "peerPort", 1, 65535, &peer_port) < 0))
    return NULL;
  if (wn_get_args(env, info, 5, argv) < 0 ||
      wn_get_int(env, argv[0], "family", 4, 6, &family) < 0 ||
      wn_get_string(env, argv[1], "address", addr, sizeof addr) < 0 ||
      wn_get_int(env, argv[2], "port", 0, 65535, &port) < 0 ||
      wn_get_int(env, argv[3], "rcvbufBytes", 0, 1 << 30, &rcvbuf) < 0 ||
      wn_get_int(env, argv[4], "sndbufBytes", 0, 1 << 30, &sndbuf) < 0)
    return NULL;
  if (family != 4 && family != 6) {
    wn_throw_range(env, "family must be 4 or 6");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  if (family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1) {
      wn_throw_range(env, "not an IPv4 address: %s", addr);
      return NULL;
    }
    sslen = sizeof *sin;
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1) {
      wn_throw_range(env, "not an IPv6 address: %s", addr);
      return NULL;
    }
    sslen = sizeof *sin6;
  }
  int af = family == 4 ? AF_INET : AF_INET6;
  int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    wn_throw_errno(env, "socket", "udpOpen", errno);
    return NULL;
  }
  const char *step = "setsockopt SO_RCVBUF";
  if (set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf) < 0) goto fail;
  step = "setsockopt SO_SNDBUF";
  if (set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf) < 0) goto fail;
  step = "bind";
  if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) goto fail;
  if (peer[0] != '\0') {
    step = "connect";
    sslen = parse_sockaddr(family, peer, peer_port, &ss);
    if (sslen == 0) {
      close(fd);
      wn_throw_range(env, "not an IPv%d address: %s", (int)family, peer);
      return NULL;
    }
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) goto fail;
  }

  wn_chan *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    napi_throw_error(env, "ENOMEM", "udpOpen: out of memory");
    return NULL;
  }
  c->kind = WN_UDP;
  c->fd = fd;
  c->family = af;
  return wn_wrap_new(env, c);

fail: {
  int e = errno;
  char detail[96];
  close(fd);
  snprintf(detail, sizeof detail, "%s%s%s:%lld", family == 6 ? "[" : "", addr, family == 6 ? "]" : "",
           (long long)port);
  wn_throw_errno(env, step, detail, e);
  return NULL;
}
}

static void put_addr(const struct sockaddr_storage *ss, uint8_t *a16, uint16_t *port) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    memcpy(a16, V4_MAPPED_PREFIX, 12);
    memcpy(a16 + 12, &sin->sin_addr, 4);
    *port = ntohs(sin->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
    memcpy(a16, &sin6->sin6_addr, 16);
    *port = ntohs(sin6->sin6_port);
  } else {
    memset(a16, 0, 16);
    *port = 0;
  }
}

int wn_udp_enable_gro(wn_chan *c) {
  int one = 1;
  return setsockopt(c->fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one);
}

/* The UDP_GRO segment size of a received datagram, or 0 when it was not coalesced. */
static uint16_t gro_size(struct msghdr *h) {
  if (h->msg_controllen == 0) return 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm != NULL; cm = CMSG_NXTHDR(h, cm)) {
    if (cm->cmsg_level == IPPROTO_UDP && cm->cmsg_type == UDP_GRO && cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int size;
      memcpy(&size, CMSG_DATA(cm), sizeof size);
      return size > 0 && size <= 0xffff ? (uint16_t)size : 0;
    }
  }
  return 0;
}

uint32_t wn_udp_read_batch(wn_chan *c, uint8_t *slab, const int32_t *offs, int32_t *lens,
                           uint8_t *addrs, uint16_t *ports, uint16_t *segs, uint32_t n, int *fatal) {
  struct mmsghdr *m = c->rx_msgs;
  int ctrl = segs != NULL && c->rx_ctrl != NULL;
  for (uint32_t i = 0; i < n; i++) {
    c->rx_iov[i].iov_base = slab + offs[i];
    c->rx_iov[i].iov_len = c->capacity;
    memset(&m[i], 0, sizeof m[i]);
    m[i].msg_hdr.msg_name = &c->rx_names[i];
    m[i].msg_hdr.msg_namelen = sizeof c->rx_names[i];
    m[i].msg_hdr.msg_iov = &c->rx_iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
    if (ctrl) {
      m[i].msg_hdr.msg_control = c->rx_ctrl + (size_t)i * WN_RX_CTRL_BYTES;
      m[i].msg_hdr.msg_controllen = WN_RX_CTRL_BYTES;
    }
  }
  int r;
  do {
    r = recvmmsg(c->fd, m, n, MSG_DONTWAIT, NULL);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) return 0;
    if (e == EBADF || e == ENOTSOCK || e == EFAULT) {
      *fatal = e;
      return 0;
    }
    /* A pending socket error (ICMP unreachable and the like) is returned once
     * and cleared; the socket stays usable. */
    c->st.rx_errors++;
    c->st.last_rx_errno = e;
    return 0;
  }
  /* Truncated datagrams (slot smaller than the datagram) are dropped; later
   * ones slide down so the batch stays dense. */
  uint32_t w = 0;
  for (uint32_t k = 0; k < (uint32_t)r; k++) {
    uint32_t len = m[k].msg_len;
    if (m[k].msg_hdr.msg_flags & MSG_TRUNC) {
      c->st.rx_errors++;
      c->st.last_rx_errno = EMSGSIZE;
      continue;
    }
    if (w != k) memmove(slab + offs[w], slab + offs[k], len);
    lens[w] = (int32_t)len;
    if (ctrl) segs[w] = gro_size(&m[k].msg_hdr);
    put_addr(&c->rx_names[k], addrs + 16 * (size_t)w, &ports[w]);
    c->st.rx_bytes += len;
    w++;
  }
  return w;
}

/* Fills a sockaddr for the socket's family from a 16-byte address. Returns
 * its length, or 0 if an IPv6 address is given to an IPv4 socket. */
socklen_t wn_udp_make_dest(int family, const uint8_t *a16, uint16_t port, struct sockaddr_storage *ss) {
  if (family == AF_INET) {
    if (memcmp(a16, V4_MAPPED_PREFIX, 12) != 0) return 0;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    memcpy(&sin->sin_addr, a16 + 12, 4);
    return sizeof *sin;
  }
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
  memset(sin6, 0, sizeof *sin6);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  memcpy(&sin6->sin6_addr, a16, 16);
  return sizeof *sin6;
}

#define SEND_CHUNK 64

/* udpSend(handle, slab, offsets, lengths, addrs, ports, count[, segSizes]) -> datagrams sent.
 * A port of 0 sends to the connected peer (udpOpen with a peer).
 * segSizes (Uint16Array or null): a datagram i longer than a non-zero
 * segSizes[i] leaves with UDP_SEGMENT, as datagrams of segSizes[i] bytes
 * (the last one shorter) from one sendmsg. The kernel refuses (EINVAL) a
 * segment that does not fit the route's MTU, more than its
 * UDP_MAX_SEGMENTS, or a socket with SO_NO_CHECK: such a datagram is sent
 * again whole, once (IP-fragmented if need be).
 * Arguments are checked in full before anything is sent. Kernel errors are
 * per datagram and only counted: EAGAIN drops the rest of the batch (the
 * send buffer is full), any other error skips just the datagram it names. */
napi_value wn_udp_send(napi_env env, napi_callback_info info) {
  napi_value argv[7], res;
  uint8_t *slab, *addrs;
  uint16_t *ports;
  int32_t *offs, *lens;
  size_t slab_len, offs_len, lens_len, addrs_len, ports_len, segs_len = 0;
  uint16_t *segs = NULL;
  int64_t count;
  napi_value argv8[8];
  size_t argc = 8;
  if (wn_get_args(env, info, 7, argv) < 0) return NULL;
  if (napi_get_cb_info(env, info, &argc, argv8, NULL, NULL) != napi_ok) return NULL;
  if (argc >= 8 && !wn_is_nullish(env, argv8[7]) && wn_get_u16(env, argv8[7], "segSizes", &segs, &segs_len) < 0)
    return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], WN_UDP);
  if (c == NULL || wn_get_u8(env, argv[1], "slab", &slab, &slab_len) < 0 ||
      wn_get_i32(env, argv[2], "offsets", &offs, &offs_len) < 0 ||
      wn_get_i32(env, argv[3], "lengths", &lens, &lens_len) < 0 ||
      wn_get_u8(env, argv[4], "addrs", &addrs, &addrs_len) < 0 ||
      wn_get_u16(env, argv[5], "ports", &ports, &ports_len) < 0 ||
      wn_get_int(env, argv[6], "count", 0, INT32_MAX, &count) < 0)
    return NULL;
  size_t n = (size_t)count;
  if (n > offs_len || n > lens_len || n > ports_len || n > addrs_len / 16 || (segs != NULL && n > segs_len)) {
    wn_throw_range(env, "count %zu exceeds offsets (%zu), lengths (%zu), ports (%zu) or addrs (%zu/16)", n,
                   offs_len, lens_len, ports_len, addrs_len);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (!wn_span_ok(offs[i], lens[i], slab_len)) {
      wn_throw_range(env, "datagram %zu (offset %d, length %d) is outside the slab of %zu bytes", i, offs[i],
                     lens[i], slab_len);
      return NULL;
    }
    if (c->family == AF_INET && ports[i] != 0 && memcmp(addrs + 16 * i, V4_MAPPED_PREFIX, 12) != 0) {
      wn_throw_range(env, "datagram %zu: an IPv4 socket needs an IPv4 destination", i);
      return NULL;
    }
  }

  struct mmsghdr m[SEND_CHUNK];
  struct iovec iov[SEND_CHUNK];
  struct sockaddr_storage names[SEND_CHUNK];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctrl[SEND_CHUNK];
  size_t next = 0, whole = (size_t)-1;
  uint32_t sent = 0;
  while (next < n) {
    size_t chunk = n - next < SEND_CHUNK ? n - next : SEND_CHUNK;
    for (size_t j = 0; j < chunk; j++) {
      size_t i = next + j;
      iov[j].iov_base = slab + offs[i];
      iov[j].iov_len = (size_t)lens[i];
      memset(&m[j], 0, sizeof m[j]);
      /* Port 0: the connected peer (no address, so the kernel uses the socket's). */
      m[j].msg_hdr.msg_name = ports[i] == 0 ? NULL : &names[j];
      m[j].msg_hdr.msg_namelen = ports[i] == 0 ? 0 : wn_udp_make_dest(c->family, addrs + 16 * i, ports[i], &names[j]);
      m[j].msg_hdr.msg_iov = &iov[j];
      m[j].msg_hdr.msg_iovlen = 1;
      if (segs != NULL && segs[i] != 0 && lens[i] > segs[i] && i != whole) {
        memset(&ctrl[j], 0, sizeof ctrl[j]);
        m[j].msg_hdr.msg_control = ctrl[j].buf;
        m[j].msg_hdr.msg_controllen = sizeof ctrl[j].buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m[j].msg_hdr);
        cm->cmsg_level = IPPROTO_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(cm), &segs[i], sizeof(uint16_t));
      }
    }
    int r = sendmmsg(c->fd, m, (unsigned)chunk, 0);
    if (r > 0) {
      for (int j = 0; j < r; j++) c->st.tx_bytes += m[j].msg_len;
      c->st.tx_packets += (uint64_t)r;
      sent += (uint32_t)r;
      next += (size_t)r;
      continue;
    }
    int e = r < 0 ? errno : EIO;
    if (e == EINTR) continue;
    c->st.last_tx_errno = e;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      c->st.tx_dropped_again += n - next;
      break;
    }
    /* The kernel refuses a segment size the route's MTU cannot carry (a PMTU
     * learned since) with EINVAL: that datagram goes again whole, to be
     * IP-fragmented, and its segments still describe themselves. */
    if ((e == EINVAL || e == EMSGSIZE) && whole != next && segs != NULL && segs[next] != 0 && lens[next] > segs[next]) {
      whole = next;
      continue;
    }
    /* sendmmsg reports an error only for the first datagram of the call:
     * the ones before it were sent and counted above. */
    c->st.tx_errors++;
    next++;
  }
  napi_create_uint32(env, sent, &res);
  return res;
}

/* localAddress(handle) -> { family: 4|6, address, port } */
napi_value wn_local_address(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj, v;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], WN_UDP);
  if (c == NULL) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(c->fd, (struct sockaddr *)&ss, &len) < 0) {
    wn_throw_errno(env, "getsockname", "localAddress", errno);
    return NULL;
  }
  char text[INET6_ADDRSTRLEN] = "";
  int port;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    port = ntohs(sin6->sin6_port);
  }
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  napi_create_int32(env, ss.ss_family == AF_INET ? 4 : 6, &v);
  napi_set_named_property(env, obj, "family", v);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "address", v);
  napi_create_int32(env, port, &v);
  napi_set_named_property(env, obj, "port", v);
  return obj;
}

/* udpNoChecksum(handle) -> whether the socket now sends without UDP checksums.
 * SO_NO_CHECK on an IPv4 socket: its datagrams carry checksum 0 ("none",
 * RFC 768), so neither end spends a pass over each datagram on it. Only for
 * a socket whose every datagram is authenticated by other means (the sleeve's
 * AEAD), which catches corruption too. IPv6 requires the checksum: false. */
napi_value wn_udp_no_checksum(napi_env env, napi_callback_info info) {
  napi_value argv[1], res;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], WN_UDP);
  if (c == NULL) return NULL;
  int one = 1;
  bool done = c->family == AF_INET && setsockopt(c->fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) == 0;
  napi_get_boolean(env, done, &res);
  return res;
}
