/*
 * AES-256-GCM for the UDP sleeve, through the OpenSSL that Node itself links
 * (Node 20: OpenSSL 3, its symbols exported from the node binary, its headers
 * shipped with Node's). node:crypto does the same cipher but builds a cipher
 * object and output buffers per call, which costs as much as the cipher at
 * 64 KiB; here one EVP context is kept per key (the key schedule is expanded
 * once) and each frame only sets the IV, feeds the AAD and runs in place:
 * no allocation per frame.
 *
 * A context is one key in one direction (seal or open), held by a JS handle
 * object. aeadFree() frees it at once (a rekey drops a key at once), the
 * finalizer if JS forgets; EVP_CIPHER_CTX_free cleanses the expanded key.
 * A frame that does not authenticate is not an exception: aeadOpen returns
 * -1 (the caller counts a drop), and the plaintext GCM already wrote in place
 * is wiped, so unauthenticated bytes never stay in the buffer.
 */
#include "weave_native.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#define AEAD_KEY_BYTES 32
#define AEAD_NONCE_BYTES 12
#define AEAD_TAG_BYTES 16
/* Largest message: a UDP datagram's payload. Keeps every length in an int. */
#define AEAD_MAX_BYTES (1 << 20)

static const napi_type_tag AEAD_TAG = {0x7765617665616561ULL, 0x6164323536676d31ULL};

struct wn_aead {
  EVP_CIPHER_CTX *ctx; /* NULL once freed */
  int encrypt;
};

static void aead_release(wn_aead *a) {
  if (a->ctx != NULL) {
    EVP_CIPHER_CTX_free(a->ctx);
    a->ctx = NULL;
  }
}

static void aead_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  aead_release(data);
  free(data);
}

/* aesGcmHardware() -> whether the CPU has AES and carry-less multiply
 * instructions, without which OpenSSL's GCM is table-driven and slower than
 * ChaCha20-Poly1305 (and not constant-time). */
napi_value wn_aes_gcm_hardware(napi_env env, napi_callback_info info) {
  (void)info;
  int ok = 0;
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax, ebx, ecx, edx;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) ok = (ecx & bit_AES) != 0 && (ecx & bit_PCLMUL) != 0;
#elif defined(__aarch64__)
  unsigned long caps = getauxval(AT_HWCAP);
  ok = (caps & HWCAP_AES) != 0 && (caps & HWCAP_PMULL) != 0;
#endif
  napi_value res;
  napi_get_boolean(env, ok, &res);
  return res;
}

/* aeadNew(key: 32 bytes, encrypt: boolean) -> handle. The key is copied into
 * OpenSSL's expanded schedule; the caller zeroes its own copy. */
napi_value wn_aead_new(napi_env env, napi_callback_info info) {
  napi_value argv[2], obj;
  uint8_t *key;
  size_t key_len;
  int encrypt;
  if (wn_get_args(env, info, 2, argv) < 0 || wn_get_u8(env, argv[0], "key", &key, &key_len) < 0 ||
      wn_get_bool(env, argv[1], "encrypt", &encrypt) < 0)
    return NULL;
  if (key_len != AEAD_KEY_BYTES) {
    wn_throw_range(env, "key must be %d bytes, got %zu", AEAD_KEY_BYTES, key_len);
    return NULL;
  }
  wn_aead *a = calloc(1, sizeof *a);
  if (a == NULL) {
    napi_throw_error(env, NULL, "weave_native: out of memory");
    return NULL;
  }
  a->encrypt = encrypt;
  a->ctx = EVP_CIPHER_CTX_new();
  if (a->ctx == NULL || EVP_CipherInit_ex(a->ctx, EVP_aes_256_gcm(), NULL, key, NULL, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_SET_IVLEN, AEAD_NONCE_BYTES, NULL) != 1) {
    aead_release(a);
    free(a);
    napi_throw_error(env, NULL, "weave_native: OpenSSL cannot set up AES-256-GCM");
    return NULL;
  }
  if (napi_create_object(env, &obj) != napi_ok || napi_wrap(env, obj, a, aead_finalize, NULL, NULL) != napi_ok) {
    aead_release(a);
    free(a);
    napi_throw_error(env, NULL, "weave_native: cannot create AEAD handle");
    return NULL;
  }
  /* From here on the finalizer owns a. */
  if (napi_type_tag_object(env, obj, &AEAD_TAG) != napi_ok) {
    napi_throw_error(env, NULL, "weave_native: cannot tag AEAD handle");
    return NULL;
  }
  return obj;
}

static wn_aead *unwrap_aead(napi_env env, napi_value v, int allow_freed) {
  bool tagged = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, &AEAD_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &p) != napi_ok || p == NULL) {
    wn_throw_type(env, "expected an AEAD handle");
    return NULL;
  }
  wn_aead *a = p;
  if (a->ctx == NULL && !allow_freed) {
    napi_throw_error(env, "ERR_CLOSED", "AEAD handle already freed");
    return NULL;
  }
  return a;
}

/* The arguments shared by seal and open: (handle, buf, off, len, ad, nonce).
 * Misuse throws: it is a bug in our JS, never a peer's doing. */
static wn_aead *frame_args(napi_env env, napi_callback_info info, int encrypt, uint8_t **msg, int *len,
                           uint8_t **ad, int *ad_len, uint8_t **nonce) {
  napi_value argv[6];
  uint8_t *buf;
  size_t buf_len, ad_size, nonce_len;
  int64_t off, n;
  if (wn_get_args(env, info, 6, argv) < 0) return NULL;
  wn_aead *a = unwrap_aead(env, argv[0], 0);
  if (a == NULL || wn_get_u8(env, argv[1], "buf", &buf, &buf_len) < 0 ||
      wn_get_int(env, argv[2], "offset", 0, INT32_MAX, &off) < 0 ||
      wn_get_int(env, argv[3], "length", 0, AEAD_MAX_BYTES, &n) < 0 ||
      wn_get_u8(env, argv[4], "ad", ad, &ad_size) < 0 || wn_get_u8(env, argv[5], "nonce", nonce, &nonce_len) < 0)
    return NULL;
  if (a->encrypt != encrypt) {
    wn_throw_type(env, "this AEAD handle was made to %s", a->encrypt ? "seal" : "open");
    return NULL;
  }
  /* Sealing writes the tag after the message: it needs room for it. */
  if (!wn_span_ok(off, n + (encrypt ? AEAD_TAG_BYTES : 0), buf_len)) {
    wn_throw_range(env, "[%lld, +%lld) and its tag do not fit a buffer of %zu bytes", (long long)off, (long long)n, buf_len);
    return NULL;
  }
  if (nonce_len != AEAD_NONCE_BYTES || ad_size > AEAD_MAX_BYTES) {
    wn_throw_range(env, "nonce must be %d bytes (got %zu), ad at most %d", AEAD_NONCE_BYTES, nonce_len, AEAD_MAX_BYTES);
    return NULL;
  }
  *msg = buf + off;
  *len = (int)n;
  *ad_len = (int)ad_size;
  return a;
}

static napi_value int_result(napi_env env, int v) {
  napi_value res;
  napi_create_int32(env, v, &res);
  return res;
}

/* aeadSeal(h, buf, off, len, ad, nonce): encrypts buf[off, off+len) in place
 * and writes the tag after it. Returns len + 16, or -1 if OpenSSL fails. */
napi_value wn_aead_seal(napi_env env, napi_callback_info info) {
  uint8_t *p, *ad, *nonce;
  int len, ad_len;
  wn_aead *a = frame_args(env, info, 1, &p, &len, &ad, &ad_len, &nonce);
  if (a == NULL) return NULL;
  return int_result(env, wn_aead_seal_in_place(a, p, len, ad, ad_len, nonce));
}

int wn_aead_seal_in_place(wn_aead *a, uint8_t *p, int len, const uint8_t *ad, int ad_len, const uint8_t *nonce) {
  EVP_CIPHER_CTX *ctx = a->ctx;
  int outl;
  if (ctx == NULL || !a->encrypt) return -1;
  /* NULL cipher and key: keep the expanded key, set only the IV. */
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
      (ad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &outl, ad, ad_len) != 1) ||
      (len > 0 && EVP_EncryptUpdate(ctx, p, &outl, p, len) != 1) ||
      EVP_EncryptFinal_ex(ctx, p + len, &outl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_BYTES, p + len) != 1)
    return -1;
  return len + AEAD_TAG_BYTES;
}

wn_aead *wn_aead_sealer(napi_env env, napi_value v) {
  wn_aead *a = unwrap_aead(env, v, 0);
  if (a != NULL && !a->encrypt) {
    wn_throw_type(env, "this AEAD handle was made to open");
    return NULL;
  }
  return a;
}

/* aeadOpen(h, buf, off, len, ad, nonce): checks and decrypts buf[off, off+len)
 * (ciphertext and tag) in place. Returns len - 16, or -1 when it does not
 * authenticate (the region's plaintext part is then zeroed). */
napi_value wn_aead_open(napi_env env, napi_callback_info info) {
  uint8_t *p, *ad, *nonce;
  int len, ad_len;
  wn_aead *a = frame_args(env, info, 0, &p, &len, &ad, &ad_len, &nonce);
  if (a == NULL) return NULL;
  return int_result(env, wn_aead_open_in_place(a, p, len, ad, ad_len, nonce));
}

int wn_aead_open_in_place(wn_aead *a, uint8_t *p, int len, const uint8_t *ad, int ad_len, const uint8_t *nonce) {
  EVP_CIPHER_CTX *ctx = a->ctx;
  int outl;
  uint8_t scratch[AEAD_TAG_BYTES];
  if (ctx == NULL || a->encrypt || len < AEAD_TAG_BYTES) return -1;
  int ct_len = len - AEAD_TAG_BYTES;
  /* The tag is copied into the context before the in-place decryption, which
   * writes only before it anyway. */
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_BYTES, p + ct_len) != 1 ||
      (ad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &outl, ad, ad_len) != 1) ||
      (ct_len > 0 && EVP_DecryptUpdate(ctx, p, &outl, p, ct_len) != 1) ||
      EVP_DecryptFinal_ex(ctx, scratch, &outl) <= 0) {
    OPENSSL_cleanse(p, (size_t)ct_len);
    return -1;
  }
  return ct_len;
}

wn_aead *wn_aead_opener(napi_env env, napi_value v) {
  wn_aead *a = unwrap_aead(env, v, 0);
  if (a != NULL && a->encrypt) {
    wn_throw_type(env, "this AEAD handle was made to seal");
    return NULL;
  }
  return a;
}

/* aeadFree(h): frees the context (cleansing the key) at once; idempotent. */
napi_value wn_aead_free(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  wn_aead *a = unwrap_aead(env, argv[0], 1);
  if (a == NULL) return NULL;
  aead_release(a);
  return NULL;
}
