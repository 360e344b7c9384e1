/*
 * Argument checking and error construction. Everything JS hands us is treated
 * as hostile: wrong types, fractional or huge numbers, detached or short
 * typed arrays all become a thrown TypeError/RangeError, never a crash.
 */
#include "weave_native.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int wn_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "weave_native: cannot read arguments");
    return -1;
  }
  if (argc < want) {
    wn_throw_type(env, "expected %zu arguments, got %zu", want, argc);
    return -1;
  }
  return 0;
}

static void throw_fmt(napi_env env, int range, const char *fmt, va_list ap) {
  char msg[256];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (range) napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  else napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

void wn_throw_range(napi_env env, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  throw_fmt(env, 1, fmt, ap);
  va_end(ap);
}

void wn_throw_type(napi_env env, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  throw_fmt(env, 0, fmt, ap);
  va_end(ap);
}

/* libuv knows only the errnos it maps itself (not EBADFD, say); glibc 2.32+
 * knows them all. */
const char *wn_errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  return uv_err_name(-err);
}

/* describeErrno(errno > 0) -> "EBADFD: File descriptor in bad state", for
 * the errnos the read callback and stats() report. */
napi_value wn_describe_errno(napi_env env, napi_callback_info info) {
  napi_value argv[1], res;
  int64_t e;
  char msg[160];
  if (wn_get_args(env, info, 1, argv) < 0 || wn_get_int(env, argv[0], "errno", 0, 4095, &e) < 0) return NULL;
  snprintf(msg, sizeof msg, "%s: %s", wn_errno_name((int)e), strerror((int)e));
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &res);
  return res;
}

/* Error shaped like Node's system errors (code, errno < 0, syscall) so the
 * TS side can map it without parsing the message. */
void wn_throw_errno(napi_env env, const char *syscall, const char *detail, int err) {
  char msg[320];
  const char *name = wn_errno_name(err);
  snprintf(msg, sizeof msg, "%s %s: %s (%s)", syscall, detail, strerror(err), name);
  napi_value code, message, error, errnum, sc;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok) {
    napi_throw_error(env, NULL, msg);
    return;
  }
  if (napi_create_int32(env, -err, &errnum) == napi_ok)
    napi_set_named_property(env, error, "errno", errnum);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc) == napi_ok)
    napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
}

int wn_get_int(napi_env env, napi_value v, const char *what, int64_t min, int64_t max, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    wn_throw_type(env, "%s must be a number", what);
    return -1;
  }
  napi_get_value_double(env, v, &d);
  /* Reject NaN, fractions and anything outside [min, max] before converting,
   * so a huge double can never wrap into a small integer. */
  if (!(d == floor(d)) || d < (double)min || d > (double)max) {
    wn_throw_range(env, "%s must be an integer in [%lld, %lld], got %g", what, (long long)min,
                   (long long)max, d);
    return -1;
  }
  *out = (int64_t)d;
  return 0;
}

int wn_get_bool(napi_env env, napi_value v, const char *what, int *out) {
  bool b;
  if (napi_get_value_bool(env, v, &b) != napi_ok) {
    wn_throw_type(env, "%s must be a boolean", what);
    return -1;
  }
  *out = b ? 1 : 0;
  return 0;
}

int wn_get_string(napi_env env, napi_value v, const char *what, char *buf, size_t bufsize) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    wn_throw_type(env, "%s must be a string", what);
    return -1;
  }
  if (len + 1 > bufsize) {
    wn_throw_range(env, "%s is %zu bytes long, the limit is %zu", what, len, bufsize - 1);
    return -1;
  }
  napi_get_value_string_utf8(env, v, buf, bufsize, &len);
  /* An embedded NUL would silently shorten the name the kernel sees. */
  if (strlen(buf) != len) {
    wn_throw_range(env, "%s contains a NUL character", what);
    return -1;
  }
  return 0;
}

static int get_typed(napi_env env, napi_value v, const char *what, napi_typedarray_type want,
                     const char *want_name, void **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *ptr = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL) != napi_ok || type != want) {
    wn_throw_type(env, "%s must be a %s", what, want_name);
    return -1;
  }
  /* A detached buffer reports length 0; a NULL pointer only goes with length 0. */
  if (ptr == NULL) length = 0;
  *data = ptr;
  *len = length;
  return 0;
}

int wn_get_u8(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  return get_typed(env, v, what, napi_uint8_array, "Buffer or Uint8Array", (void **)data, len);
}

int wn_get_i32(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len) {
  return get_typed(env, v, what, napi_int32_array, "Int32Array", (void **)data, len);
}

int wn_get_u16(napi_env env, napi_value v, const char *what, uint16_t **data, size_t *len) {
  return get_typed(env, v, what, napi_uint16_array, "Uint16Array", (void **)data, len);
}

int wn_is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  return t == napi_undefined || t == napi_null;
}

int wn_span_ok(int64_t off, int64_t len, size_t buflen) {
  return off >= 0 && len >= 0 && (uint64_t)off + (uint64_t)len <= (uint64_t)buflen;
}

void wn_set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  if (napi_create_double(env, v, &n) == napi_ok) napi_set_named_property(env, obj, key, n);
}
