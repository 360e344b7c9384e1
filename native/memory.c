/*
 * Giving idle memory back to the kernel. The data plane's slabs (TAP reads,
 * UDP receives, the send stage) are sized for bursts of 64 KiB super-frames;
 * a bulk transfer makes every page of them resident, and they stay so for
 * good although an idle router only ever touches the first slot. Between
 * bursts the router asks (router/overlay/idle-memory.ts):
 *
 * releasePages(buf, offset, length) drops the whole pages inside that range
 * of a buffer with MADV_DONTNEED: they are freed at once and read back as
 * zeros when touched again (a minor fault each). Only pages lying entirely
 * inside the range are touched, so no neighbouring allocation loses a byte;
 * the caller must not need the range's contents any more.
 *
 * trimHeap() is malloc_trim(0): glibc returns the free pages of every arena
 * (OpenSSL's and libuv's short-lived allocations during a burst) to the kernel.
 */
#include "weave_native.h"

#include <errno.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

/* releasePages(buf, offset, length) -> bytes released (whole pages inside the range; 0 if none). */
napi_value wn_release_pages(napi_env env, napi_callback_info info) {
  napi_value argv[3], res;
  uint8_t *data;
  size_t len;
  int64_t off, n;
  if (wn_get_args(env, info, 3, argv) < 0) return NULL;
  if (wn_get_u8(env, argv[0], "buf", &data, &len) < 0) return NULL;
  if (wn_get_int(env, argv[1], "offset", 0, INT64_MAX, &off) < 0) return NULL;
  if (wn_get_int(env, argv[2], "length", 0, INT64_MAX, &n) < 0) return NULL;
  if (!wn_span_ok(off, n, len)) {
    wn_throw_range(env, "releasePages: [%lld, +%lld) is outside the buffer's %zu bytes", (long long)off, (long long)n, len);
    return NULL;
  }
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)data + (uintptr_t)off + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)data + (uintptr_t)off + (uintptr_t)n) & ~(page - 1);
  double released = 0;
  if (data != NULL && end > start) {
    if (madvise((void *)start, end - start, MADV_DONTNEED) != 0) {
      wn_throw_errno(env, "madvise", "releasePages", errno);
      return NULL;
    }
    released = (double)(end - start);
  }
  if (napi_create_double(env, released, &res) != napi_ok) return NULL;
  return res;
}

/* trimHeap() -> whether malloc_trim released anything. */
napi_value wn_trim_heap(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res;
  if (napi_get_boolean(env, malloc_trim(0) == 1, &res) != napi_ok) return NULL;
  return res;
}
