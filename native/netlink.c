/*
 * rtnetlink sockets for the host plumbing (router/host/netlink-socket.ts):
 * attaching a container used to run a handful of `ip` processes; it now sends
 * its requests over a NETLINK_ROUTE socket (issue 14).
 *
 * This file only moves bytes. router/host/netlink-codec.ts encodes every
 * request and decodes every reply (as hostile input); here:
 *  - netlinkOpen(nsPath | null) opens a socket in the network namespace at
 *    nsPath (or in ours): the calling thread enters that namespace for the
 *    socket() call only and returns at once; a socket keeps the namespace it
 *    was made in. The namespace's fd stays open with the handle, so a request
 *    can name it (IFLA_NET_NS_FD moves a veth end into it).
 *  - netlinkTransact(handle, bytes, count, firstSeq) sends the requests in one
 *    sendto() and collects replies until each of the `count` requests (all
 *    sent with NLM_F_ACK, sequence numbers firstSeq..) has its NLMSG_ERROR
 *    (an ack or an error). It runs on the libuv thread pool, so a busy rtnl
 *    lock never stalls the event loop, and resolves with the reply bytes.
 *    Only messages from the kernel (port 0) are kept.
 *  - netlinkClose(handle) closes both fds (later, if a transact is running).
 *
 * It must never leave the calling thread in another namespace: if it cannot
 * get back, the process aborts rather than run on in the wrong one.
 */
#include "weave_native.h"
#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* Replies to one transact: a few acks and a link or two; far below this. */
#define NL_MAX_REPLY_BYTES (1 << 20)
#define NL_RECV_BYTES 65536
/* The kernel answers in microseconds; this only ends a wedged wait. */
#define NL_RECV_TIMEOUT_S 10
#define NL_MAX_REQUEST_BYTES (1 << 16)
#define NL_MAX_COUNT 256

static const napi_type_tag NL_TAG = {0x7765617665726e6cULL, 0x6e65746c696e6b31ULL};

typedef struct wn_nl {
  int fd;
  int ns_fd;
  int busy;   /* a transact owns the fds */
  int closed; /* close() was called: close the fds when the transact ends */
} wn_nl;

typedef struct nl_job {
  wn_nl *nl;
  napi_async_work work;
  napi_deferred deferred;
  napi_ref handle_ref;
  uint8_t *req;
  size_t req_len;
  uint32_t count;
  uint32_t first_seq;
  uint8_t *reply;
  size_t reply_len;
  int err;
  const char *stage;
} nl_job;

static void nl_close_fds(wn_nl *nl) {
  if (nl->fd >= 0) close(nl->fd);
  if (nl->ns_fd >= 0) close(nl->ns_fd);
  nl->fd = -1;
  nl->ns_fd = -1;
}

static void nl_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  wn_nl *nl = data;
  nl_close_fds(nl); /* never busy here: a running transact holds a reference */
  free(nl);
}

static int nl_socket(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -1;
  int one = 1;
  /* Extended acks carry the kernel's own words for an error; capped acks
   * leave out the echoed request. Both best effort (old kernels). */
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct timeval tv = {.tv_sec = NL_RECV_TIMEOUT_S, .tv_usec = 0};
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
      bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* netlinkOpen(nsPath: string | null): handle */
napi_value wn_netlink_open(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  char path[4096];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  int ns_fd = -1, fd;
  if (!wn_is_nullish(env, argv[0])) {
    if (wn_get_string(env, argv[0], "nsPath", path, sizeof path) < 0) return NULL;
    ns_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
      wn_throw_errno(env, "open", path, errno);
      return NULL;
    }
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) {
      int e = errno;
      close(ns_fd);
      wn_throw_errno(env, "open", "/proc/thread-self/ns/net", e);
      return NULL;
    }
    if (setns(ns_fd, CLONE_NEWNET) < 0) {
      int e = errno;
      close(self);
      close(ns_fd);
      wn_throw_errno(env, "setns", path, e);
      return NULL;
    }
    fd = nl_socket();
    int e = errno;
    if (setns(self, CLONE_NEWNET) < 0) abort(); /* see the header comment */
    close(self);
    if (fd < 0) {
      close(ns_fd);
      wn_throw_errno(env, "socket", "NETLINK_ROUTE", e);
      return NULL;
    }
  } else {
    fd = nl_socket();
    if (fd < 0) {
      wn_throw_errno(env, "socket", "NETLINK_ROUTE", errno);
      return NULL;
    }
  }
  wn_nl *nl = calloc(1, sizeof *nl);
  if (nl == NULL) {
    close(fd);
    if (ns_fd >= 0) close(ns_fd);
    napi_throw_error(env, "ENOMEM", "netlinkOpen: out of memory");
    return NULL;
  }
  nl->fd = fd;
  nl->ns_fd = ns_fd;
  if (napi_create_object(env, &obj) != napi_ok || napi_wrap(env, obj, nl, nl_finalize, NULL, NULL) != napi_ok) {
    nl_close_fds(nl);
    free(nl);
    napi_throw_error(env, NULL, "netlinkOpen: cannot create the handle");
    return NULL;
  }
  if (napi_type_tag_object(env, obj, &NL_TAG) != napi_ok) {
    napi_throw_error(env, NULL, "netlinkOpen: cannot tag the handle");
    return NULL;
  }
  return obj;
}

static wn_nl *nl_unwrap(napi_env env, napi_value v) {
  bool tagged = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, &NL_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &p) != napi_ok || p == NULL) {
    wn_throw_type(env, "expected a netlink handle");
    return NULL;
  }
  return p;
}

/* netlinkNsFd(handle): the namespace's fd, -1 for a socket in our own. */
napi_value wn_netlink_ns_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1], res;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_nl *nl = nl_unwrap(env, argv[0]);
  if (nl == NULL) return NULL;
  napi_create_int32(env, nl->closed ? -1 : nl->ns_fd, &res);
  return res;
}

/* netlinkClose(handle): idempotent. */
napi_value wn_netlink_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_nl *nl = nl_unwrap(env, argv[0]);
  if (nl == NULL) return NULL;
  nl->closed = 1;
  if (!nl->busy) nl_close_fds(nl);
  return NULL;
}

/* Counts the NLMSG_ERROR messages in [buf, buf+len) that answer one of ours. */
static uint32_t count_acks(const uint8_t *buf, size_t len, uint32_t first, uint32_t count) {
  uint32_t n = 0;
  size_t off = 0;
  while (len - off >= sizeof(struct nlmsghdr)) {
    struct nlmsghdr h;
    memcpy(&h, buf + off, sizeof h);
    if (h.nlmsg_len < sizeof h || h.nlmsg_len > len - off) break;
    if (h.nlmsg_type == NLMSG_ERROR && h.nlmsg_seq - first < count) n++;
    off += NLMSG_ALIGN(h.nlmsg_len);
    if (off > len) break;
  }
  return n;
}

static void nl_execute(napi_env env, void *data) {
  (void)env;
  nl_job *j = data;
  int fd = j->nl->fd;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t s;
  do {
    s = sendto(fd, j->req, j->req_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (s < 0 && errno == EINTR);
  if (s < 0 || (size_t)s != j->req_len) {
    j->err = s < 0 ? errno : EMSGSIZE;
    j->stage = "sendto";
    return;
  }
  uint8_t *buf = malloc(NL_RECV_BYTES);
  if (buf == NULL) {
    j->err = ENOMEM;
    j->stage = "malloc";
    return;
  }
  uint32_t acked = 0;
  while (acked < j->count) {
    struct sockaddr_nl from;
    struct iovec iov = {.iov_base = buf, .iov_len = NL_RECV_BYTES};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t r = recvmsg(fd, &mh, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      j->err = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
      j->stage = "recvmsg";
      break;
    }
    if (mh.msg_flags & MSG_TRUNC) {
      j->err = EMSGSIZE;
      j->stage = "recvmsg";
      break;
    }
    /* Another process may send to our port; only the kernel answers requests. */
    if (mh.msg_namelen < sizeof from || from.nl_pid != 0) continue;
    if (j->reply_len + (size_t)r > NL_MAX_REPLY_BYTES) {
      j->err = EMSGSIZE;
      j->stage = "recvmsg";
      break;
    }
    uint8_t *grown = realloc(j->reply, j->reply_len + (size_t)r);
    if (grown == NULL) {
      j->err = ENOMEM;
      j->stage = "realloc";
      break;
    }
    j->reply = grown;
    memcpy(j->reply + j->reply_len, buf, (size_t)r);
    j->reply_len += (size_t)r;
    acked += count_acks(buf, (size_t)r, j->first_seq, j->count);
  }
  free(buf);
}

static void free_reply(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void nl_complete(napi_env env, napi_status status, void *data) {
  nl_job *j = data;
  j->nl->busy = 0;
  if (j->nl->closed) nl_close_fds(j->nl);
  napi_value result = NULL;
  if (status != napi_ok && j->err == 0) {
    j->err = ECANCELED;
    j->stage = "transact";
  }
  if (j->err != 0) {
    /* Shaped like wn_throw_errno's errors: code, errno, syscall. */
    char msg[200];
    napi_value code, message, errnum, sc;
    snprintf(msg, sizeof msg, "netlink %s: %s (%s)", j->stage, strerror(j->err), wn_errno_name(j->err));
    if (napi_create_string_utf8(env, wn_errno_name(j->err), NAPI_AUTO_LENGTH, &code) == napi_ok &&
        napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) == napi_ok &&
        napi_create_error(env, code, message, &result) == napi_ok) {
      if (napi_create_int32(env, -j->err, &errnum) == napi_ok) napi_set_named_property(env, result, "errno", errnum);
      if (napi_create_string_utf8(env, j->stage, NAPI_AUTO_LENGTH, &sc) == napi_ok) napi_set_named_property(env, result, "syscall", sc);
    }
    free(j->reply);
    if (result == NULL) napi_get_undefined(env, &result);
    napi_reject_deferred(env, j->deferred, result);
  } else {
    void *bytes = j->reply;
    if (bytes == NULL || napi_create_external_buffer(env, j->reply_len, bytes, free_reply, NULL, &result) != napi_ok) {
      free(bytes);
      napi_create_buffer(env, 0, NULL, &result);
    }
    napi_resolve_deferred(env, j->deferred, result);
  }
  free(j->req);
  napi_delete_reference(env, j->handle_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

/* netlinkTransact(handle, request: Uint8Array, count, firstSeq): Promise<Buffer> */
napi_value wn_netlink_transact(napi_env env, napi_callback_info info) {
  napi_value argv[4], promise, name;
  uint8_t *data;
  size_t len;
  int64_t count, first;
  if (wn_get_args(env, info, 4, argv) < 0) return NULL;
  wn_nl *nl = nl_unwrap(env, argv[0]);
  if (nl == NULL || wn_get_u8(env, argv[1], "request", &data, &len) < 0 ||
      wn_get_int(env, argv[2], "count", 1, NL_MAX_COUNT, &count) < 0 ||
      wn_get_int(env, argv[3], "firstSeq", 0, UINT32_MAX, &first) < 0)
    return NULL;
  if (nl->closed || nl->fd < 0) {
    wn_throw_errno(env, "netlinkTransact", "closed handle", EBADF);
    return NULL;
  }
  if (nl->busy) {
    wn_throw_errno(env, "netlinkTransact", "one transact at a time", EBUSY);
    return NULL;
  }
  if (len < sizeof(struct nlmsghdr) || len > NL_MAX_REQUEST_BYTES) {
    wn_throw_range(env, "request must be %zu to %d bytes, got %zu", sizeof(struct nlmsghdr), NL_MAX_REQUEST_BYTES, len);
    return NULL;
  }
  nl_job *j = calloc(1, sizeof *j);
  if (j == NULL || (j->req = malloc(len)) == NULL) {
    free(j);
    napi_throw_error(env, "ENOMEM", "netlinkTransact: out of memory");
    return NULL;
  }
  memcpy(j->req, data, len);
  j->req_len = len;
  j->count = (uint32_t)count;
  j->first_seq = (uint32_t)first;
  j->nl = nl;
  j->handle_ref = NULL;
  j->work = NULL;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_reference(env, argv[0], 1, &j->handle_ref) != napi_ok ||
      napi_create_string_utf8(env, "WeaveNetlink", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, nl_execute, nl_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    /* A created promise left unsettled is harmless; the error is what the caller sees. */
    if (j->work != NULL) napi_delete_async_work(env, j->work);
    if (j->handle_ref != NULL) napi_delete_reference(env, j->handle_ref);
    free(j->req);
    free(j);
    napi_throw_error(env, NULL, "netlinkTransact: cannot queue the request");
    return NULL;
  }
  nl->busy = 1;
  return promise;
}
