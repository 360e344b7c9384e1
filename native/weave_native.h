/*
 * weave_native: the data plane's door to the kernel. A "channel" is one
 * non-blocking fd (a TAP device or a UDP socket) plus an optional uv_poll
 * reader that fills a caller-provided slab with up to max_batch packets per
 * wakeup and then calls one JS function per batch.
 *
 * This addon owns fds and the poll handle, nothing else: no allocation per
 * packet, no threads, no policy. Bad arguments become JS exceptions; kernel
 * errors on the data path become counters, never exceptions.
 *
 * fs.c is the daemon's one other door that needs C: files inside a
 * container's root, opened so that they cannot lead outside it. aead.c
 * seals the sleeve with AES-256-GCM through Node's own OpenSSL, a context
 * kept per key. memory.c gives idle slab pages back to the kernel. lane.c
 * sends a TAP wakeup's one small frame without JS, replaying a decision JS
 * made and installed there (lane-receive.c: the same for one datagram;
 * lane-relay.c: far messages relayed; lane-far.c: far messages at the ends).
 */
#ifndef WEAVE_NATIVE_H
#define WEAVE_NATIVE_H

#include <node_api.h>
#include <uv.h>
#include <net/if.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Bumped whenever the JS-visible interface changes, so router/overlay/native.ts can
 * tell a stale build/ from a current one. */
#define WEAVE_NATIVE_ABI 9

/* Upper bound on packets per wakeup / per sendmmsg chunk. The JS side asks
 * for 64 by default (the measured sweet spot); the cap bounds scratch memory. */
#define WN_MAX_BATCH 256

/* Room for one UDP_GRO control message (an int) per received datagram. */
#define WN_RX_CTRL_BYTES 32

enum wn_kind { WN_TAP = 1, WN_UDP = 2 };

typedef struct wn_stats {
  uint64_t rx_batches;
  uint64_t rx_packets;
  uint64_t rx_bytes;
  uint64_t rx_errors;     /* packets the kernel dropped on read (too big for the slot) or truncated */
  uint64_t poll_errors;   /* POLLERR wakeups; the poll was re-armed each time */
  uint64_t tx_packets;
  uint64_t tx_bytes;
  uint64_t tx_dropped_again; /* EAGAIN: kernel queue full, packet dropped */
  uint64_t tx_errors;        /* any other per-packet send/write error */
  int last_rx_errno;
  int last_tx_errno;
} wn_stats;

typedef struct wn_chan {
  napi_env env;
  int kind;
  int fd;            /* -1 once closed */
  int family;        /* UDP: AF_INET or AF_INET6 */
  int refs;          /* owners: the JS wrapper (until finalized) and the open poll handle */

  /* Reader state. poll_open: uv_poll_init done and uv_close not yet called.
   * reading: JS wants frames (not paused). */
  int poll_open;
  int reading;
  int closing;       /* close() was called; no more callbacks into JS */
  int teardown;      /* env is going away: touch no napi_* in callbacks */
  int unrefd;        /* JS asked that reading not keep the event loop alive */
  uv_poll_t poll;
  napi_async_cleanup_hook_handle hook;

  napi_ref self_ref; /* strong while the poll is open: keeps the handle object alive */
  napi_ref cb_ref;
  napi_ref slab_ref;
  napi_ref offs_ref;
  napi_ref lens_ref;
  napi_ref addrs_ref; /* UDP only */
  napi_ref ports_ref; /* UDP only */
  napi_ref segs_ref;  /* UDP with UDP_GRO only: per slot, the coalesced segment size or 0 */
  napi_async_context actx;
  uint32_t capacity;  /* bytes available at each slot offset */
  uint32_t max_batch;

  /* recvmmsg scratch, allocated once by readStart for UDP. */
  struct mmsghdr *rx_msgs;
  struct iovec *rx_iov;
  struct sockaddr_storage *rx_names;
  uint8_t *rx_ctrl;   /* UDP_GRO cmsg space, WN_RX_CTRL_BYTES per slot */

  wn_stats st;
  char ifname[IFNAMSIZ];

  /* The lone-frame lane (lane.c) that may take a batch of one frame (TAP: it
   * sends it) or one datagram (UDP: it delivers it); NULL when none. A TAP
   * keeps its lane alive through lane_ref; a UDP socket's lane (the one
   * sending on it) keeps the socket alive instead and clears this pointer
   * when it goes. */
  struct wn_lane *lane;
  napi_ref lane_ref;
} wn_chan;

/* Argument helpers (args.c). Each returns 0 on success, or throws a JS
 * exception and returns -1. `what` names the argument in the message. */
int wn_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
int wn_get_int(napi_env env, napi_value v, const char *what, int64_t min, int64_t max, int64_t *out);
int wn_get_bool(napi_env env, napi_value v, const char *what, int *out);
int wn_get_string(napi_env env, napi_value v, const char *what, char *buf, size_t bufsize);
int wn_get_u8(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len);
int wn_get_i32(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len);
int wn_get_u16(napi_env env, napi_value v, const char *what, uint16_t **data, size_t *len);
int wn_is_nullish(napi_env env, napi_value v);
const char *wn_errno_name(int err);
napi_value wn_describe_errno(napi_env env, napi_callback_info info);
void wn_throw_errno(napi_env env, const char *syscall, const char *detail, int err);
void wn_throw_range(napi_env env, const char *fmt, ...);
void wn_throw_type(napi_env env, const char *fmt, ...);
/* Sets obj[key] to the number v (stats objects; a failure leaves the key out). */
void wn_set_num(napi_env env, napi_value obj, const char *key, double v);
/* Checks that [off, off+len) lies within a buffer of buflen bytes. */
int wn_span_ok(int64_t off, int64_t len, size_t buflen);

/* Handle objects (addon.c). */
napi_value wn_wrap_new(napi_env env, wn_chan *c);
void wn_release(wn_chan *c);

/* TAP (tap.c) */
napi_value wn_tap_open(napi_env env, napi_callback_info info);
napi_value wn_tap_write(napi_env env, napi_callback_info info);
napi_value wn_tap_write_one(napi_env env, napi_callback_info info);
uint32_t wn_tap_read_batch(wn_chan *c, uint8_t *slab, const int32_t *offs, int32_t *lens,
                           uint32_t n, int *fatal);

/* UDP (udp.c) */
napi_value wn_udp_open(napi_env env, napi_callback_info info);
napi_value wn_udp_send(napi_env env, napi_callback_info info);
napi_value wn_local_address(napi_env env, napi_callback_info info);
napi_value wn_udp_no_checksum(napi_env env, napi_callback_info info);
uint32_t wn_udp_read_batch(wn_chan *c, uint8_t *slab, const int32_t *offs, int32_t *lens,
                           uint8_t *addrs, uint16_t *ports, uint16_t *segs, uint32_t n, int *fatal);
/* Fills a sockaddr for a socket of `family` from a 16-byte address (IPv4
 * mapped for an IPv4 socket); its length, or 0 when the family cannot reach it. */
socklen_t wn_udp_make_dest(int family, const uint8_t *a16, uint16_t port, struct sockaddr_storage *ss);
/* Asks the kernel to hand over coalesced UDP segments (UDP_GRO); 0 when it took. */
int wn_udp_enable_gro(wn_chan *c);

/* Files inside a container's root (fs.c): openat2 confined to the root, in a
 * child that takes on the rights of the target's user namespace. */
napi_value wn_file_read(napi_env env, napi_callback_info info);
napi_value wn_file_write(napi_env env, napi_callback_info info);
napi_value wn_file_unlink(napi_env env, napi_callback_info info);

/* AES-256-GCM contexts kept per key, through Node's OpenSSL (aead.c). */
napi_value wn_aes_gcm_hardware(napi_env env, napi_callback_info info);
napi_value wn_aead_new(napi_env env, napi_callback_info info);
napi_value wn_aead_seal(napi_env env, napi_callback_info info);
napi_value wn_aead_open(napi_env env, napi_callback_info info);
napi_value wn_aead_free(napi_env env, napi_callback_info info);
typedef struct wn_aead wn_aead;
/* For lane.c: the context behind a sealing handle (throws and returns NULL
 * otherwise), and a seal of p[0, len) in place with the tag after it:
 * len + 16, or -1 once the context is freed or OpenSSL fails. */
wn_aead *wn_aead_sealer(napi_env env, napi_value v);
int wn_aead_seal_in_place(wn_aead *a, uint8_t *p, int len, const uint8_t *ad, int ad_len, const uint8_t *nonce);
/* The same for an opening handle: p[0, len) is ciphertext and tag, opened in
 * place; the plaintext length, or -1 (the plaintext part is then wiped). */
wn_aead *wn_aead_opener(napi_env env, napi_value v);
int wn_aead_open_in_place(wn_aead *a, uint8_t *p, int len, const uint8_t *ad, int ad_len, const uint8_t *nonce);

/* The lone-frame lane (lane.c). */
napi_value wn_lane_new(napi_env env, napi_callback_info info);
napi_value wn_lane_set(napi_env env, napi_callback_info info);
napi_value wn_lane_set_receive(napi_env env, napi_callback_info info);
napi_value wn_lane_set_relay(napi_env env, napi_callback_info info);
napi_value wn_lane_set_far(napi_env env, napi_callback_info info);
napi_value wn_lane_set_far_receive(napi_env env, napi_callback_info info);
napi_value wn_lane_clear(napi_env env, napi_callback_info info);
napi_value wn_lane_take_seen(napi_env env, napi_callback_info info);
napi_value wn_lane_stats(napi_env env, napi_callback_info info);
napi_value wn_tap_set_lane(napi_env env, napi_callback_info info);
/* Sends the frame slab[0, len) read from the TAP c if its lane has an entry
 * for it: 1 when the lane took it (sent or dropped as JS would), 0 to leave
 * it to JS. */
int wn_lane_offer(wn_chan *c, uint8_t *frame, int32_t len);
/* Delivers the datagram d[0, len) from addr16:port read from the UDP socket
 * c to the lane's TAP if a receive entry expects it and it opens, is new and
 * carries what the entry says: 1 when delivered, 0 to leave it, intact, to JS. */
int wn_lane_receive(wn_chan *c, const uint8_t *d, int32_t len, const uint8_t *addr16, uint16_t port);
/* Relays the far messages among the `got` slots just read from the UDP
 * socket c that its lane has relaying entries for (lane-relay.c); each slot
 * taken gets length -1. Returns how many it took. */
uint32_t wn_lane_relay_batch(wn_chan *c, uint8_t *slab, const int32_t *offs, int32_t *lens, const uint8_t *addrs, const uint16_t *ports,
                             const uint16_t *segs, uint32_t got);
/* Detaches a channel's lane (its close or finalizer). */
void wn_lane_detach(napi_env env, wn_chan *c);

/* Idle memory back to the kernel (memory.c). */
napi_value wn_release_pages(napi_env env, napi_callback_info info);
napi_value wn_copy_bytes(napi_env env, napi_callback_info info);
napi_value wn_trim_heap(napi_env env, napi_callback_info info);

/* nftables in-process (nft.c) */
napi_value wn_nft_run(napi_env env, napi_callback_info info);
napi_value wn_nft_unload(napi_env env, napi_callback_info info);

/* Shared by tap.c and udp.c: unwraps a handle of the given kind that is not
 * closed. Throws and returns NULL otherwise. */
wn_chan *wn_unwrap(napi_env env, napi_value v, int kind);
/* As wn_unwrap, but any kind (kind 0) and closed handles are accepted. */
wn_chan *wn_unwrap_any(napi_env env, napi_value v, int kind, int allow_closed);

#endif
