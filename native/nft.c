/*
 * nftables transactions without a process. Port security
 * (router/host/port-security.ts) changes its table on every attach and
 * detach; spawning `nft` from the daemon costs 15-20 ms of the attach (a fork
 * of a large process, then nft loading its cache), the transaction itself a
 * fraction of a millisecond. libnftables.so.1, which the nft command is built
 * on (Debian's libnftables1, a dependency of the nftables package), runs the
 * same JSON in-process.
 *
 * The library is loaded with dlopen on first use, so the addon neither links
 * against it nor needs its headers, and a host without it only loses the
 * speed (the caller then spawns nft). Its API is the stable one of
 * libnftables(3): nft_ctx_new, nft_ctx_output_set_flags (the JSON flag makes
 * nft_run_cmd_from_buffer read JSON, as `nft -j` does), nft_ctx_buffer_error,
 * nft_run_cmd_from_buffer, nft_ctx_get_error_buffer, nft_ctx_free.
 *
 * nftRun(script) -> null when the transaction was applied, else nft's error
 * text. Throws when the library cannot be loaded. Runs on the calling thread:
 * callers keep transactions small (one port's rules) and never overlap them.
 *
 * nftUnload() unloads the library again: it and what it pulls in (libnftnl,
 * libmnl, libjansson, libgmp, ...) are 3-4 MB of the router's RSS, worth
 * keeping only while attaches come; the caller unloads it once they stop
 * (and malloc's free pages, its cache among them, go back to the kernel).
 * Loading it again costs about 3 ms.
 */
#include "weave_native.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* libnftables.h: enum nft_output_flags, NFT_CTX_OUTPUT_JSON; NFT_CTX_DEFAULT. */
#define NFT_CTX_DEFAULT 0u
#define NFT_CTX_OUTPUT_JSON (1u << 4)
/* Well beyond a table of thousands of ports; a bigger script is a bug upstream. */
#define NFT_MAX_SCRIPT_BYTES (64u << 20)

struct nft_lib {
  void *(*ctx_new)(uint32_t flags);
  void (*ctx_free)(void *ctx);
  void (*output_set_flags)(void *ctx, unsigned int flags);
  int (*buffer_output)(void *ctx);
  int (*buffer_error)(void *ctx);
  const char *(*get_error_buffer)(void *ctx);
  int (*run_cmd_from_buffer)(void *ctx, const char *buf);
};

static struct nft_lib nft;
static void *nft_handle;
static int nft_loaded; /* 0: not loaded, 1: loaded, -1: unavailable */
static char nft_load_error[256];

static int load_nft(void) {
  if (nft_loaded != 0) return nft_loaded;
  void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *e = dlerror();
    snprintf(nft_load_error, sizeof nft_load_error, "%s", e != NULL ? e : "dlopen failed");
    nft_loaded = -1;
    return -1;
  }
  struct { const char *name; void **slot; } syms[] = {
    {"nft_ctx_new", (void **)&nft.ctx_new},
    {"nft_ctx_free", (void **)&nft.ctx_free},
    {"nft_ctx_output_set_flags", (void **)&nft.output_set_flags},
    {"nft_ctx_buffer_output", (void **)&nft.buffer_output},
    {"nft_ctx_buffer_error", (void **)&nft.buffer_error},
    {"nft_ctx_get_error_buffer", (void **)&nft.get_error_buffer},
    {"nft_run_cmd_from_buffer", (void **)&nft.run_cmd_from_buffer},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(h, syms[i].name);
    if (*syms[i].slot == NULL) {
      snprintf(nft_load_error, sizeof nft_load_error, "libnftables.so.1 has no %s", syms[i].name);
      dlclose(h);
      nft_loaded = -1;
      return -1;
    }
  }
  nft_handle = h;
  nft_loaded = 1;
  return 1;
}

/* nftUnload() -> whether the library was loaded (and is now unloaded). */
napi_value wn_nft_unload(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res;
  int was = nft_loaded == 1;
  if (was) {
    dlclose(nft_handle);
    nft_handle = NULL;
    memset(&nft, 0, sizeof nft);
    nft_loaded = 0;
    /* What libnftables malloc'd (its ruleset cache) is free now: give the pages back too. */
    malloc_trim(0);
  }
  if (napi_get_boolean(env, was, &res) != napi_ok) return NULL;
  return res;
}

/* nftRun(script: string) -> null | string (nft's error). */
napi_value wn_nft_run(napi_env env, napi_callback_info info) {
  napi_value argv[1], res;
  size_t len = 0;
  if (wn_get_args(env, info, 1, argv) < 0) return NULL;
  if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok) {
    wn_throw_type(env, "nftRun: script must be a string");
    return NULL;
  }
  if (len == 0 || len > NFT_MAX_SCRIPT_BYTES) {
    wn_throw_range(env, "nftRun: script of %zu bytes (1 to %u)", len, NFT_MAX_SCRIPT_BYTES);
    return NULL;
  }
  if (load_nft() < 0) {
    napi_throw_error(env, "ENOENT", nft_load_error);
    return NULL;
  }
  char *script = malloc(len + 1);
  if (script == NULL) {
    wn_throw_errno(env, "malloc", "nftRun", ENOMEM);
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], script, len + 1, &len);
  void *ctx = nft.ctx_new(NFT_CTX_DEFAULT);
  if (ctx == NULL) {
    free(script);
    wn_throw_errno(env, "nft_ctx_new", "nftRun", ENOMEM);
    return NULL;
  }
  nft.output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
  /* Buffered: nothing of nft's reaches our stdout or stderr. */
  nft.buffer_output(ctx);
  nft.buffer_error(ctx);
  int rc = nft.run_cmd_from_buffer(ctx, script);
  free(script);
  napi_status st;
  if (rc == 0) {
    st = napi_get_null(env, &res);
  } else {
    const char *e = nft.get_error_buffer(ctx);
    st = napi_create_string_utf8(env, e != NULL && e[0] != '\0' ? e : "nft refused the transaction", NAPI_AUTO_LENGTH, &res);
  }
  nft.ctx_free(ctx);
  return st == napi_ok ? res : NULL;
}
