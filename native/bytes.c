/*
 * copyBytes(dst, dstOffset, src, srcOffset, length): memmove between two
 * byte buffers (or within one). The frame path copies each captured frame
 * into the send stage; Node 20's Buffer.prototype.copy builds a Uint8Array
 * view of its source for every copy of a part of it (lib/buffer.js,
 * _copyActual), ~96 bytes of heap per frame, which a bulk transfer turns
 * into megabytes of garbage a second and, through promotion, a slowly
 * growing old space. This call makes no JS object at all.
 */
#include "weave_native.h"

#include <string.h>

napi_value wn_copy_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint8_t *dst, *src;
  size_t dst_len, src_len;
  int64_t dst_off, src_off, n;
  if (wn_get_args(env, info, 5, argv) < 0) return NULL;
  if (wn_get_u8(env, argv[0], "dst", &dst, &dst_len) < 0) return NULL;
  if (wn_get_int(env, argv[1], "dstOffset", 0, INT64_MAX, &dst_off) < 0) return NULL;
  if (wn_get_u8(env, argv[2], "src", &src, &src_len) < 0) return NULL;
  if (wn_get_int(env, argv[3], "srcOffset", 0, INT64_MAX, &src_off) < 0) return NULL;
  if (wn_get_int(env, argv[4], "length", 0, INT64_MAX, &n) < 0) return NULL;
  if (!wn_span_ok(dst_off, n, dst_len) || !wn_span_ok(src_off, n, src_len)) {
    wn_throw_range(env, "copyBytes: %lld bytes from [%lld] of %zu to [%lld] of %zu leave a buffer",
                   (long long)n, (long long)src_off, src_len, (long long)dst_off, dst_len);
    return NULL;
  }
  if (n > 0) memmove(dst + dst_off, src + src_off, (size_t)n);
  return NULL;
}
