/*
 * TAP devices: open (create if missing), batch read, batch write.
 *
 * With IFF_VNET_HDR every frame read or written starts with a virtio_net_hdr
 * (10 or 12 bytes) that describes checksum and GSO state; this code does not
 * interpret it, it is simply part of each frame. Slot sizes come from the
 * caller, so GSO super-frames (up to ~64 KB) fit when the caller asks; a
 * frame that fills its slot is dropped as truncated (see the read loop).
 */
#include "weave_native.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TUN_F_ALL 0x7f /* CSUM TSO4 TSO6 TSO_ECN UFO USO4 USO6 */

/* tapOpen(name, persist, vnetHdrBytes (0|10|12), offloadFlags) -> handle {name} */
napi_value wn_tap_open(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char name[IFNAMSIZ];
  int persist;
  int64_t vnet_hdr, offload;
  if (wn_get_args(env, info, 4, argv) < 0 ||
      wn_get_string(env, argv[0], "TAP device name", name, sizeof name) < 0 ||
      wn_get_bool(env, argv[1], "persist", &persist) < 0 ||
      wn_get_int(env, argv[2], "vnetHdrBytes", 0, 12, &vnet_hdr) < 0 ||
      wn_get_int(env, argv[3], "offloadFlags", 0, TUN_F_ALL, &offload) < 0)
    return NULL;
  if (name[0] == '\0') {
    wn_throw_range(env, "TAP device name is empty");
    return NULL;
  }
  if (vnet_hdr != 0 && vnet_hdr != 10 && vnet_hdr != 12) {
    wn_throw_range(env, "vnetHdrBytes must be 0, 10 or 12, got %lld", (long long)vnet_hdr);
    return NULL;
  }
  /* Offloads without a vnet header would hand us frames with unfinished
   * checksums or GSO with no header saying so. */
  if (offload != 0 && vnet_hdr == 0) {
    wn_throw_range(env, "offloadFlags need a vnet header (vnetHdrBytes 10 or 12)");
    return NULL;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    wn_throw_errno(env, "open", "/dev/net/tun", errno);
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, strlen(name) + 1);
  const char *step = "TUNSETIFF";
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) goto fail;
  if (vnet_hdr) {
    /* A persistent device remembers the size a previous user set. */
    int sz = (int)vnet_hdr;
    step = "TUNSETVNETHDRSZ";
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) goto fail;
  }
  /* Always, even with 0: a persistent TAP keeps the offloads of its previous
   * user, and stale ones break traffic silently. */
  step = "TUNSETOFFLOAD";
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)offload) < 0) goto fail;
  step = "TUNSETPERSIST";
  if (ioctl(fd, TUNSETPERSIST, (unsigned long)persist) < 0) goto fail;

  wn_chan *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    napi_throw_error(env, "ENOMEM", "tapOpen: out of memory");
    return NULL;
  }
  c->kind = WN_TAP;
  c->fd = fd;
  memcpy(c->ifname, ifr.ifr_name, IFNAMSIZ);
  c->ifname[IFNAMSIZ - 1] = '\0';
  napi_value obj = wn_wrap_new(env, c), nm;
  if (obj == NULL) return NULL;
  if (napi_create_string_utf8(env, c->ifname, NAPI_AUTO_LENGTH, &nm) == napi_ok)
    napi_set_named_property(env, obj, "name", nm);
  return obj;

fail: {
  int e = errno;
  char detail[64];
  close(fd);
  snprintf(detail, sizeof detail, "on TAP %s", name);
  wn_throw_errno(env, step, detail, e);
  return NULL;
}
}

uint32_t wn_tap_read_batch(wn_chan *c, uint8_t *slab, const int32_t *offs, int32_t *lens,
                           uint32_t n, int *fatal) {
  uint32_t count = 0;
  /* Bounded so a stream of per-frame errors cannot spin here. */
  for (uint32_t attempts = 0; count < n && attempts < 2 * n; attempts++) {
    ssize_t r = read(c->fd, slab + offs[count], c->capacity);
    if (r >= (ssize_t)c->capacity) {
      /* The kernel (6.x) truncates a frame longer than the slot to the slot
       * size without saying so. A read that fills the slot is therefore
       * treated as truncated and dropped; callers size slots at least one
       * byte larger than the largest frame. */
      c->st.rx_errors++;
      c->st.last_rx_errno = EMSGSIZE;
      continue;
    }
    if (r > 0) {
      lens[count++] = (int32_t)r;
      c->st.rx_bytes += (uint64_t)r;
      continue;
    }
    if (r == 0) break;
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) break;
    /* Per-frame failures (EINVAL: slot smaller than the vnet header; EFAULT
     * and EMSGSIZE: copy-out failures older kernels report for oversized
     * frames) drop that frame only; the next may be fine. */
    if (e == EFAULT || e == EINVAL || e == EMSGSIZE) {
      c->st.rx_errors++;
      c->st.last_rx_errno = e;
      continue;
    }
    /* EBADFD: the device was deleted under us. Anything else: unknown, stop
     * rather than spin. */
    *fatal = e;
    break;
  }
  return count;
}

static int write_frame(wn_chan *c, const uint8_t *p, int32_t len) {
  ssize_t r;
  do {
    r = write(c->fd, p, (size_t)len);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) {
    c->st.tx_packets++;
    c->st.tx_bytes += (uint64_t)r;
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) c->st.tx_dropped_again++;
  else c->st.tx_errors++;
  c->st.last_tx_errno = errno;
  return 0;
}

/* tapWrite(handle, slab, offsets, lengths, count) -> frames written.
 * All spans are checked before the first write, so a bad argument writes
 * nothing. Kernel errors are per frame and only counted. */
napi_value wn_tap_write(napi_env env, napi_callback_info info) {
  napi_value argv[5], res;
  uint8_t *slab;
  int32_t *offs, *lens;
  size_t slab_len, offs_len, lens_len;
  int64_t count;
  if (wn_get_args(env, info, 5, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], WN_TAP);
  if (c == NULL || wn_get_u8(env, argv[1], "slab", &slab, &slab_len) < 0 ||
      wn_get_i32(env, argv[2], "offsets", &offs, &offs_len) < 0 ||
      wn_get_i32(env, argv[3], "lengths", &lens, &lens_len) < 0 ||
      wn_get_int(env, argv[4], "count", 0, INT32_MAX, &count) < 0)
    return NULL;
  if ((size_t)count > offs_len || (size_t)count > lens_len) {
    wn_throw_range(env, "count %lld exceeds offsets (%zu) or lengths (%zu)", (long long)count, offs_len,
                   lens_len);
    return NULL;
  }
  for (int64_t i = 0; i < count; i++) {
    if (!wn_span_ok(offs[i], lens[i], slab_len)) {
      wn_throw_range(env, "frame %lld (offset %d, length %d) is outside the slab of %zu bytes",
                     (long long)i, offs[i], lens[i], slab_len);
      return NULL;
    }
  }
  uint32_t written = 0;
  for (int64_t i = 0; i < count; i++) written += (uint32_t)write_frame(c, slab + offs[i], lens[i]);
  napi_create_uint32(env, written, &res);
  return res;
}

/* tapWriteOne(handle, buf, offset, length) -> boolean written */
napi_value wn_tap_write_one(napi_env env, napi_callback_info info) {
  napi_value argv[4], res;
  uint8_t *buf;
  size_t buf_len;
  int64_t off, len;
  if (wn_get_args(env, info, 4, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], WN_TAP);
  if (c == NULL || wn_get_u8(env, argv[1], "buf", &buf, &buf_len) < 0 ||
      wn_get_int(env, argv[2], "offset", 0, INT32_MAX, &off) < 0 ||
      wn_get_int(env, argv[3], "length", 0, INT32_MAX, &len) < 0)
    return NULL;
  if (!wn_span_ok(off, len, buf_len)) {
    wn_throw_range(env, "frame (offset %lld, length %lld) is outside the buffer of %zu bytes",
                   (long long)off, (long long)len, buf_len);
    return NULL;
  }
  napi_get_boolean(env, write_frame(c, buf + off, (int32_t)len) != 0, &res);
  return res;
}
