/*
 * Module init, handle objects and the readiness-driven reader shared by TAP
 * and UDP channels.
 *
 * Lifetime: a wn_chan is owned by (1) the JS handle object, released by its
 * finalizer, and (2) the uv_poll handle while it is open, released in the
 * uv_close callback. It is freed when both let go. While the poll is open a
 * strong reference keeps the JS handle object alive (like a listening server
 * socket), so reading never stops because JS dropped its last reference.
 *
 * Reading: the poll is level-triggered. Each wakeup reads until EAGAIN or the
 * batch is full, then makes ONE call into JS with the count; a full batch
 * leaves the fd readable, so the loop comes back after serving other handles.
 * The slab and length arrays are looked up again at each wakeup rather than
 * cached as raw pointers: a detached ArrayBuffer then shows up as length 0
 * and stops the reader with EINVAL instead of writing into freed memory.
 */
#include "weave_native.h"
#include "netlink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const napi_type_tag WN_TAG = {0x7765617665746170ULL, 0x6e61746976653031ULL};

void wn_release(wn_chan *c) {
  if (--c->refs > 0) return;
  free(c->rx_msgs);
  free(c->rx_iov);
  free(c->rx_names);
  free(c->rx_ctrl);
  free(c);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  wn_chan *c = data;
  if (!c->teardown) wn_lane_detach(env, c);
  /* With the poll open the async cleanup hook closes the fd (this only
   * happens at env teardown); otherwise nobody else will. */
  if (!c->poll_open && c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  wn_release(c);
}

napi_value wn_wrap_new(napi_env env, wn_chan *c) {
  napi_value obj;
  c->env = env;
  c->refs = 1;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, c, on_finalize, NULL, NULL) != napi_ok) {
    if (c->fd >= 0) close(c->fd);
    free(c);
    napi_throw_error(env, NULL, "weave_native: cannot create handle object");
    return NULL;
  }
  /* From here on the finalizer owns c, even if tagging fails. */
  if (napi_type_tag_object(env, obj, &WN_TAG) != napi_ok) {
    napi_throw_error(env, NULL, "weave_native: cannot tag handle object");
    return NULL;
  }
  return obj;
}

wn_chan *wn_unwrap_any(napi_env env, napi_value v, int kind, int allow_closed) {
  napi_valuetype t;
  bool tagged = false;
  void *p = NULL;
  /* The type tag proves the object was wrapped by us, not by another addon
   * whose pointer we would otherwise misread. */
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, v, &WN_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &p) != napi_ok || p == NULL) {
    wn_throw_type(env, "expected a weave_native handle");
    return NULL;
  }
  wn_chan *c = p;
  if (kind != 0 && c->kind != kind) {
    wn_throw_type(env, "expected a %s handle", kind == WN_TAP ? "TAP" : "UDP");
    return NULL;
  }
  if (!allow_closed && (c->fd < 0 || c->closing)) {
    napi_throw_error(env, "ERR_CLOSED", "handle is closed");
    return NULL;
  }
  return c;
}

wn_chan *wn_unwrap(napi_env env, napi_value v, int kind) {
  return wn_unwrap_any(env, v, kind, 0);
}

/* ---- reader ---------------------------------------------------------- */

static void delete_ref(napi_env env, napi_ref *r) {
  if (*r != NULL) {
    napi_delete_reference(env, *r);
    *r = NULL;
  }
}

static void on_poll_closed(uv_handle_t *h) {
  wn_chan *c = h->data;
  if (!c->teardown) {
    napi_env env = c->env;
    napi_handle_scope scope;
    int scoped = napi_open_handle_scope(env, &scope) == napi_ok;
    delete_ref(env, &c->cb_ref);
    delete_ref(env, &c->slab_ref);
    delete_ref(env, &c->offs_ref);
    delete_ref(env, &c->lens_ref);
    delete_ref(env, &c->addrs_ref);
    delete_ref(env, &c->ports_ref);
    delete_ref(env, &c->segs_ref);
    wn_lane_detach(env, c);
    if (c->actx != NULL) {
      napi_async_destroy(env, c->actx);
      c->actx = NULL;
    }
    delete_ref(env, &c->self_ref);
    if (scoped) napi_close_handle_scope(env, scope);
  }
  /* Removing the hook is also how a teardown-triggered close reports done. */
  if (c->hook != NULL) {
    napi_remove_async_cleanup_hook(c->hook);
    c->hook = NULL;
  }
  wn_release(c);
}

static void begin_close(wn_chan *c) {
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  if (c->poll_open) {
    /* uv_close removes the fd from epoll synchronously, so closing the fd
     * right after is safe and makes a non-persistent TAP vanish now. */
    c->poll_open = 0;
    uv_close((uv_handle_t *)&c->poll, on_poll_closed);
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
}

static void on_env_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
  wn_chan *c = arg;
  (void)handle; /* same as c->hook; removed in on_poll_closed */
  c->teardown = 1;
  begin_close(c);
}

static napi_value get_ref(napi_env env, napi_ref r) {
  napi_value v = NULL;
  if (r == NULL || napi_get_reference_value(env, r, &v) != napi_ok) return NULL;
  return v;
}

/* Non-throwing typed array lookup for the hot path; types were checked by
 * readStart and a typed array cannot change type, only detach. */
static void *peek(napi_env env, napi_ref r, size_t *len) {
  napi_value v = get_ref(env, r);
  void *data = NULL;
  size_t length = 0;
  napi_typedarray_type type;
  *len = 0;
  if (v == NULL || napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok)
    return NULL;
  if (data == NULL) return NULL;
  *len = length;
  return data;
}

static void call_js(wn_chan *c, uint32_t count, int err) {
  napi_env env = c->env;
  /* napi_make_callback wants an object as receiver; the handle is one. */
  napi_value cb = get_ref(env, c->cb_ref), recv = get_ref(env, c->self_ref), argv[2];
  if (cb == NULL || recv == NULL) return;
  napi_create_uint32(env, count, &argv[0]);
  napi_create_int32(env, err, &argv[1]);
  napi_status s = napi_make_callback(env, c->actx, recv, cb, 2, argv, NULL);
  if (s == napi_pending_exception) {
    /* No JS frame above us to catch it: report it the way an event
     * listener's exception is reported ('uncaughtException'). */
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
}

/* Reads one batch. Returns the count; *fatal is set to an errno when the
 * reader must stop (buffers gone, device detached). */
static uint32_t read_batch(wn_chan *c, int *fatal) {
  napi_env env = c->env;
  size_t slab_len, offs_len, lens_len, addrs_len = 0, ports_len = 0;
  uint8_t *slab = peek(env, c->slab_ref, &slab_len);
  int32_t *offs = peek(env, c->offs_ref, &offs_len);
  int32_t *lens = peek(env, c->lens_ref, &lens_len);
  uint8_t *addrs = NULL;
  uint16_t *ports = NULL, *segs = NULL;
  uint32_t n = c->max_batch;
  if (c->kind == WN_UDP) {
    size_t segs_len = 0;
    addrs = peek(env, c->addrs_ref, &addrs_len);
    ports = peek(env, c->ports_ref, &ports_len);
    if (c->segs_ref != NULL) segs = peek(env, c->segs_ref, &segs_len);
    if (addrs == NULL || ports == NULL || addrs_len < 16 * (size_t)n || ports_len < n ||
        (c->segs_ref != NULL && (segs == NULL || segs_len < n))) {
      *fatal = EINVAL;
      return 0;
    }
  }
  if (slab == NULL || offs == NULL || lens == NULL || offs_len < n || lens_len < n) {
    *fatal = EINVAL;
    return 0;
  }
  /* JS may have rewritten the offsets since the last batch. */
  for (uint32_t i = 0; i < n; i++) {
    if (!wn_span_ok(offs[i], c->capacity, slab_len)) {
      *fatal = EINVAL;
      return 0;
    }
  }
  if (c->kind == WN_TAP) {
    uint32_t got = wn_tap_read_batch(c, slab, offs, lens, n, fatal);
    /* One frame alone: the lane may send it without JS (lane.c). */
    if (got == 1 && c->lane != NULL && wn_lane_offer(c, slab + offs[0], lens[0])) return 0;
    return got;
  }
  uint32_t got = wn_udp_read_batch(c, slab, offs, lens, addrs, ports, segs, n, fatal);
  /* One datagram alone, not coalesced: the lane may deliver it without JS (lane.c). */
  if (got == 1 && c->lane != NULL && (segs == NULL || segs[0] == 0) && wn_lane_receive(c, slab + offs[0], lens[0], addrs, ports[0])) return 0;
  /* Far messages for other peers: the lane may relay them without JS (lane-relay.c); JS then skips their slots. */
  if (got > 0 && c->lane != NULL && wn_lane_relay_batch(c, slab, offs, lens, addrs, ports, segs, got) == got) return 0;
  return got;
}

static void on_poll(uv_poll_t *p, int status, int events) {
  wn_chan *c = p->data;
  (void)events;
  if (c->closing || c->teardown) return;
  int rearm = 0, soft = 0;
  if (status < 0) {
    /* libuv stops a poll handle for good on POLLERR (reported as UV_EBADF);
     * re-arm it below. For UDP, fetching SO_ERROR clears the pending error
     * (e.g. an ICMP unreachable) so epoll does not report it again at once. */
    c->st.poll_errors++;
    if (c->kind == WN_UDP) {
      int soerr = 0;
      socklen_t l = sizeof soerr;
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == 0 && soerr != 0) {
        c->st.last_rx_errno = soerr;
        soft = soerr;
      }
    }
    rearm = 1;
  }
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  int fatal = 0;
  uint64_t rx_errors_before = c->st.rx_errors;
  uint32_t count = read_batch(c, &fatal);
  /* recvmmsg can return the pending error itself (and clear it) instead of
   * poll reporting it; a truncated datagram is not the peer's error. */
  if (soft == 0 && c->kind == WN_UDP && c->st.rx_errors != rx_errors_before && c->st.last_rx_errno != EMSGSIZE)
    soft = c->st.last_rx_errno;
  if (count > 0) {
    c->st.rx_batches++;
    c->st.rx_packets += count;
  }
  if (fatal != 0) {
    c->st.last_rx_errno = fatal;
    c->reading = 0;
    uv_poll_stop(&c->poll);
  } else if (rearm && c->reading) {
    uv_poll_start(&c->poll, UV_READABLE, on_poll);
  }
  /* Frames read before a fatal error are delivered in the same call. A
   * socket error that leaves the reader running (a connected socket's ICMP
   * port unreachable: the peer is not there) is passed as a negative errno,
   * so a connected socket's owner can give up on its peer at once. */
  int err = fatal != 0 ? fatal : -soft;
  if (count > 0 || err != 0) call_js(c, count, err);
  napi_close_handle_scope(env, scope);
}

/* readStart(handle, slab, offsets, lengths, capacityBytes, maxBatch, addrs|null, ports|null, cb[, segSizes])
 * -> whether the kernel coalesces UDP segments for this reader. With a
 * Uint16Array segSizes (UDP only) the socket asks for UDP_GRO: a datagram may
 * then hold several segments of segSizes[i] bytes each (the last may be
 * shorter), and segSizes[i] is 0 for a datagram that was not coalesced. */
static napi_value read_start(napi_env env, napi_callback_info info) {
  napi_value argv[10], res;
  size_t argc = 10;
  uint16_t *segs = NULL;
  size_t segs_len = 0;
  if (wn_get_args(env, info, 9, argv) < 0) return NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int want_gro = argc >= 10 && !wn_is_nullish(env, argv[9]);
  wn_chan *c = wn_unwrap(env, argv[0], 0);
  if (c == NULL) return NULL;
  if (c->poll_open) {
    napi_throw_error(env, "ERR_ALREADY_READING", "readStart: this handle is already reading");
    return NULL;
  }
  uint8_t *slab, *addrs = NULL;
  uint16_t *ports = NULL;
  int32_t *offs, *lens;
  size_t slab_len, offs_len, lens_len, addrs_len = 0, ports_len = 0;
  int64_t capacity, max_batch;
  napi_valuetype cbt;
  if (wn_get_u8(env, argv[1], "slab", &slab, &slab_len) < 0 ||
      wn_get_i32(env, argv[2], "offsets", &offs, &offs_len) < 0 ||
      wn_get_i32(env, argv[3], "lengths", &lens, &lens_len) < 0 ||
      wn_get_int(env, argv[4], "capacityBytes", 1, INT32_MAX, &capacity) < 0 ||
      wn_get_int(env, argv[5], "maxBatch", 1, WN_MAX_BATCH, &max_batch) < 0)
    return NULL;
  if (c->kind == WN_UDP) {
    if (wn_get_u8(env, argv[6], "addrs", &addrs, &addrs_len) < 0 ||
        wn_get_u16(env, argv[7], "ports", &ports, &ports_len) < 0)
      return NULL;
    if (addrs_len < 16 * (size_t)max_batch || ports_len < (size_t)max_batch) {
      wn_throw_range(env, "addrs needs %lld bytes and ports %lld entries", (long long)(16 * max_batch),
                     (long long)max_batch);
      return NULL;
    }
    if (want_gro && (wn_get_u16(env, argv[9], "segSizes", &segs, &segs_len) < 0)) return NULL;
    if (want_gro && segs_len < (size_t)max_batch) {
      wn_throw_range(env, "segSizes needs %lld entries", (long long)max_batch);
      return NULL;
    }
  } else if (!wn_is_nullish(env, argv[6]) || !wn_is_nullish(env, argv[7]) || want_gro) {
    wn_throw_type(env, "addrs, ports and segSizes must be null for a TAP handle");
    return NULL;
  }
  if (napi_typeof(env, argv[8], &cbt) != napi_ok || cbt != napi_function) {
    wn_throw_type(env, "callback must be a function");
    return NULL;
  }
  if (offs_len < (size_t)max_batch || lens_len < (size_t)max_batch) {
    wn_throw_range(env, "offsets and lengths need at least %lld entries", (long long)max_batch);
    return NULL;
  }
  for (int64_t i = 0; i < max_batch; i++) {
    if (!wn_span_ok(offs[i], capacity, slab_len)) {
      wn_throw_range(env, "slot %lld at offset %d with %lld bytes does not fit in a slab of %zu bytes",
                     (long long)i, offs[i], (long long)capacity, slab_len);
      return NULL;
    }
  }

  if (c->kind == WN_UDP) {
    /* Sized for the cap, not this call's maxBatch, so scratch left by a
     * failed readStart fits whatever a retry asks for. */
    if (c->rx_msgs == NULL) c->rx_msgs = calloc(WN_MAX_BATCH, sizeof *c->rx_msgs);
    if (c->rx_iov == NULL) c->rx_iov = calloc(WN_MAX_BATCH, sizeof *c->rx_iov);
    if (c->rx_names == NULL) c->rx_names = calloc(WN_MAX_BATCH, sizeof *c->rx_names);
    if (want_gro && c->rx_ctrl == NULL) c->rx_ctrl = calloc(WN_MAX_BATCH, WN_RX_CTRL_BYTES);
    if (c->rx_msgs == NULL || c->rx_iov == NULL || c->rx_names == NULL || (want_gro && c->rx_ctrl == NULL)) {
      napi_throw_error(env, "ENOMEM", "readStart: out of memory");
      return NULL; /* scratch is freed with the channel */
    }
  }

  uv_loop_t *loop;
  napi_value resource_name;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, NULL, "readStart: no event loop");
    return NULL;
  }
  int rc = uv_poll_init(loop, &c->poll, c->fd);
  if (rc != 0) {
    wn_throw_errno(env, "uv_poll_init", "readStart", -rc);
    return NULL;
  }
  /* From here on the poll handle exists and must be closed via begin_close;
   * it holds its own reference to c. */
  c->poll.data = c;
  c->poll_open = 1;
  c->refs++;
  if (napi_create_reference(env, argv[0], 1, &c->self_ref) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &c->slab_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &c->offs_ref) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &c->lens_ref) != napi_ok ||
      (c->kind == WN_UDP && (napi_create_reference(env, argv[6], 1, &c->addrs_ref) != napi_ok ||
                             napi_create_reference(env, argv[7], 1, &c->ports_ref) != napi_ok)) ||
      (want_gro && napi_create_reference(env, argv[9], 1, &c->segs_ref) != napi_ok) ||
      napi_create_reference(env, argv[8], 1, &c->cb_ref) != napi_ok ||
      napi_create_string_utf8(env, c->kind == WN_TAP ? "WeaveTapRead" : "WeaveUdpRead",
                              NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_async_init(env, argv[0], resource_name, &c->actx) != napi_ok ||
      napi_add_async_cleanup_hook(env, on_env_teardown, c, &c->hook) != napi_ok) {
    begin_close(c);
    napi_throw_error(env, NULL, "readStart: cannot set up the reader; handle closed");
    return NULL;
  }
  c->capacity = (uint32_t)capacity;
  c->max_batch = (uint32_t)max_batch;
  c->reading = 1;
  /* A kernel without UDP_GRO delivers every segment alone: still correct. */
  int gro = want_gro && wn_udp_enable_gro(c) == 0;
  if (want_gro) memset(segs, 0, segs_len * sizeof *segs);
  if (c->unrefd) uv_unref((uv_handle_t *)&c->poll);
  rc = uv_poll_start(&c->poll, UV_READABLE, on_poll);
  if (rc != 0) {
    begin_close(c);
    wn_throw_errno(env, "uv_poll_start", "readStart", -rc);
    return NULL;
  }
  napi_get_boolean(env, gro, &res);
  return res;
}

/* readNow(handle) -> count: one batch read at once, outside the poll, into
 * the buffers readStart registered; the caller delivers it (no callback).
 * 0 when the handle is not reading. A fatal error is left for the poll,
 * which meets it again at its next wakeup and reports it. */
static napi_value read_now(napi_env env, napi_callback_info info) {
  napi_value argv[1], res;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap(env, argv[0], 0);
  if (c == NULL) return NULL;
  uint32_t count = 0;
  if (c->poll_open && c->reading && !c->closing && !c->teardown) {
    int fatal = 0;
    count = read_batch(c, &fatal);
    if (count > 0) {
      c->st.rx_batches++;
      c->st.rx_packets += count;
    }
  }
  napi_create_uint32(env, count, &res);
  return res;
}

/* readPause(handle): stop polling; the kernel queues (and eventually drops)
 * packets meanwhile. A paused handle does not keep the process alive. */
static napi_value read_pause(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap_any(env, argv[0], 0, 1);
  if (c == NULL) return NULL;
  c->reading = 0;
  if (c->poll_open) uv_poll_stop(&c->poll);
  return NULL;
}

static napi_value read_resume(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap_any(env, argv[0], 0, 1);
  if (c == NULL) return NULL;
  if (!c->poll_open || c->closing) return NULL;
  c->reading = 1;
  int rc = uv_poll_start(&c->poll, UV_READABLE, on_poll);
  if (rc != 0) wn_throw_errno(env, "uv_poll_start", "readResume", -rc);
  return NULL;
}

/* setRef(handle, bool): whether an active reader keeps the event loop alive. */
static napi_value set_ref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int on;
  if (wn_get_args(env, info, 2, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap_any(env, argv[0], 0, 1);
  if (c == NULL || wn_get_bool(env, argv[1], "ref", &on) < 0) return NULL;
  c->unrefd = !on;
  if (c->poll_open) {
    if (on) uv_ref((uv_handle_t *)&c->poll);
    else uv_unref((uv_handle_t *)&c->poll);
  }
  return NULL;
}

/* close(handle): idempotent. Stops the reader and closes the fd now; no
 * callback into JS happens after it returns, even if called from inside one. */
static napi_value close_handle(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap_any(env, argv[0], 0, 1);
  if (c == NULL) return NULL;
  begin_close(c);
  return NULL;
}

static napi_value stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_chan *c = wn_unwrap_any(env, argv[0], 0, 1);
  if (c == NULL || napi_create_object(env, &obj) != napi_ok) return NULL;
  const wn_stats *s = &c->st;
  wn_set_num(env, obj, "rxBatches", (double)s->rx_batches);
  wn_set_num(env, obj, "rxPackets", (double)s->rx_packets);
  wn_set_num(env, obj, "rxBytes", (double)s->rx_bytes);
  wn_set_num(env, obj, "rxErrors", (double)s->rx_errors);
  wn_set_num(env, obj, "pollErrors", (double)s->poll_errors);
  wn_set_num(env, obj, "txPackets", (double)s->tx_packets);
  wn_set_num(env, obj, "txBytes", (double)s->tx_bytes);
  wn_set_num(env, obj, "txDroppedAgain", (double)s->tx_dropped_again);
  wn_set_num(env, obj, "txErrors", (double)s->tx_errors);
  wn_set_num(env, obj, "lastRxErrno", (double)s->last_rx_errno);
  wn_set_num(env, obj, "lastTxErrno", (double)s->last_tx_errno);
  return obj;
}

NAPI_MODULE_INIT() {
  napi_value abi;
  if (napi_create_uint32(env, WEAVE_NATIVE_ABI, &abi) != napi_ok) return NULL;
  napi_property_descriptor props[] = {
      {"abiVersion", NULL, NULL, NULL, NULL, abi, napi_enumerable, NULL},
      {"tapOpen", NULL, wn_tap_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapWrite", NULL, wn_tap_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapWriteOne", NULL, wn_tap_write_one, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpOpen", NULL, wn_udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSend", NULL, wn_udp_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"localAddress", NULL, wn_local_address, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpNoChecksum", NULL, wn_udp_no_checksum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readStart", NULL, read_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readNow", NULL, read_now, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readPause", NULL, read_pause, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readResume", NULL, read_resume, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setRef", NULL, set_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_handle, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"describeErrno", NULL, wn_describe_errno, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fileRead", NULL, wn_file_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fileWrite", NULL, wn_file_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fileUnlink", NULL, wn_file_unlink, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkOpen", NULL, wn_netlink_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkNsFd", NULL, wn_netlink_ns_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkTransact", NULL, wn_netlink_transact, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkClose", NULL, wn_netlink_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"releasePages", NULL, wn_release_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"trimHeap", NULL, wn_trim_heap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nftRun", NULL, wn_nft_run, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nftUnload", NULL, wn_nft_unload, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyBytes", NULL, wn_copy_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aesGcmHardware", NULL, wn_aes_gcm_hardware, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadNew", NULL, wn_aead_new, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadSeal", NULL, wn_aead_seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadOpen", NULL, wn_aead_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadFree", NULL, wn_aead_free, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneNew", NULL, wn_lane_new, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneSet", NULL, wn_lane_set, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneSetReceive", NULL, wn_lane_set_receive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneSetRelay", NULL, wn_lane_set_relay, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneSetFar", NULL, wn_lane_set_far, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneSetFarReceive", NULL, wn_lane_set_far_receive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneClear", NULL, wn_lane_clear, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneTakeSeen", NULL, wn_lane_take_seen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"laneStats", NULL, wn_lane_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapSetLane", NULL, wn_tap_set_lane, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
