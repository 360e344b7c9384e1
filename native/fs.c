/*
 * Files inside a container's filesystem (its resolv.conf), read, written and
 * removed so that nothing the container controls can aim the daemon's root
 * privileges at a file outside it:
 *
 *  - Every lookup is openat2() relative to the container's root with
 *    RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: a symlink
 *    anywhere on the path is refused (ELOOP), ".." cannot climb out. Kernel 5.6+.
 *  - The file is opened O_PATH first and must be a regular file (fstat)
 *    before it is opened for real through /proc/self/fd, so a FIFO or device
 *    node is never opened at all, and a file larger than the caller's limit is
 *    refused (EFBIG) before it is read or overwritten.
 *  - Path checks cannot see mounts: a process in its own user namespace
 *    (`unshare -Urm` by any user) may bind-mount any host file it can reach,
 *    say a root-only one, over its /etc/resolv.conf. So for a process in
 *    another user namespace the work happens in a child that joins that
 *    namespace and becomes its root: the kernel then allows exactly what that
 *    namespace's owner could do themselves, and a host file owned by someone
 *    else is EACCES.
 *  - The work always runs in a short-lived child process under a deadline: a
 *    FUSE filesystem inside the container could otherwise hang the daemon.
 *    The child arms its own ITIMER_REAL with SIGALRM at its default action
 *    (death, which also ends a wait for a FUSE answer or a lease break), and
 *    the parent reads a SIGALRM death as the timeout.
 *  - The child is a clone(CLONE_VM | CLONE_VFORK) on a stack of its own, like
 *    posix_spawn's: it shares our memory and the calling thread sleeps until
 *    it exits, so nothing is copied. A fork() copied the page tables of the
 *    whole daemon and then took a copy-on-write fault for every page the
 *    daemon wrote next: 5-15 ms per call, several calls per attach (issue 14).
 *    It is still a process of its own, with its own credentials, signal
 *    handlers and fs_struct, which is all that setns(CLONE_NEWUSER) and
 *    setresuid need (they refuse threads, not processes sharing memory).
 *
 * The child shares the memory (and glibc's thread state) of a multithreaded
 * process, so it makes plain system calls only: no malloc, no stdio, and the
 * credential calls raw (glibc's setresuid would try to change every thread of
 * the daemon). All signals are blocked around the clone, so none of the
 * daemon's handlers can run in the child; the child unblocks only its SIGALRM.
 * It reports through the job's result page. JS sees errno-shaped errors
 * (code, errno, syscall) and ERR_NOT_REGULAR for a file that is not a
 * regular file.
 */
#include "weave_native.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Largest file these functions read or replace: far above any resolv.conf. */
#define WN_FS_MAX_BYTES (1024 * 1024)
#define WN_FS_MAX_TIMEOUT_MS 60000
/* The child's stack: a few frames of small locals (the paths live in the job). */
#define WN_FS_CHILD_STACK (64 * 1024)
#define WN_FS_RESOLVE (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
/* Result codes beside errnos. */
#define WN_FS_NOT_REGULAR (-1)
#define WN_FS_NO_REPORT (-2)

enum wn_fs_op { WN_FS_READ = 1, WN_FS_WRITE = 2, WN_FS_UNLINK = 3 };

/* Where a failure happened; also the `syscall` of the JS error. */
static const char *const STAGES[] = {
    "none", "setgroups", "setns", "setresgid", "setresuid", "openat2",
    "fstat", "reopen", "read", "pwrite", "ftruncate", "unlinkat", "prctl", "setitimer",
};
enum {
  ST_NONE, ST_SETGROUPS, ST_SETNS, ST_SETRESGID, ST_SETRESUID, ST_OPENAT2,
  ST_FSTAT, ST_REOPEN, ST_READ, ST_PWRITE, ST_FTRUNCATE, ST_UNLINKAT, ST_PRCTL, ST_TIMER,
};

typedef struct wn_fs_result {
  int32_t err;   /* 0, an errno, WN_FS_NOT_REGULAR or WN_FS_NO_REPORT */
  int32_t stage;
  uint32_t mode; /* st_mode of what was found, for the message */
  uint64_t dev;
  uint64_t ino;
  uint64_t len;  /* bytes of data that follow (reads) */
} wn_fs_result;

typedef struct wn_fs_job {
  int op;
  int root_fd;
  int userns_fd;   /* -1: stay in our own user namespace */
  char rel[PATH_MAX];
  char dir[PATH_MAX]; /* unlink: the parent directory of rel ("" = the root) */
  const char *base;   /* unlink: the last component of rel */
  const uint8_t *data; /* write: what to write (unchanged meanwhile: the calling thread sleeps) */
  size_t data_len;
  int create;
  size_t max_bytes;
  int64_t timeout_ms;
  wn_fs_result *res;
  uint8_t *buf;        /* read: res + header, max_bytes + 1 bytes */
} wn_fs_job;

/* ---- the child: raw system calls only ------------------------------- */

static int fail(wn_fs_result *r, int stage, int err) {
  r->stage = stage;
  r->err = err;
  return -1;
}

static int open_in_root(const wn_fs_job *j, const char *rel, uint64_t flags, uint64_t mode) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = flags;
  how.mode = mode;
  how.resolve = WN_FS_RESOLVE;
  return (int)syscall(SYS_openat2, j->root_fd, rel, &how, sizeof how);
}

/* "/proc/self/fd/N" without snprintf (not async-signal-safe). */
static void fd_path(char *out, int fd) {
  static const char prefix[] = "/proc/self/fd/";
  char digits[16];
  int n = 0;
  memcpy(out, prefix, sizeof prefix - 1);
  do {
    digits[n++] = (char)('0' + fd % 10);
    fd /= 10;
  } while (fd > 0);
  for (int i = 0; i < n; i++) out[sizeof prefix - 1 + i] = digits[n - 1 - i];
  out[sizeof prefix - 1 + n] = '\0';
}

/* Takes on the rights of the target's user namespace: no host groups, its root. */
static int enter_userns(const wn_fs_job *j, wn_fs_result *r) {
  if (j->userns_fd < 0) return 0;
  if (syscall(SYS_setgroups, 0, NULL) < 0) return fail(r, ST_SETGROUPS, errno);
  if (setns(j->userns_fd, CLONE_NEWUSER) < 0) return fail(r, ST_SETNS, errno);
  if (syscall(SYS_setresgid, 0, 0, 0) < 0) return fail(r, ST_SETRESGID, errno);
  if (syscall(SYS_setresuid, 0, 0, 0) < 0) return fail(r, ST_SETRESUID, errno);
  return 0;
}

/* Opens rel O_PATH and checks it: a regular file of at most max_bytes. */
static int open_regular(const wn_fs_job *j, wn_fs_result *r, struct stat *st) {
  int pfd = open_in_root(j, j->rel, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
  if (pfd < 0) return fail(r, ST_OPENAT2, errno);
  if (fstat(pfd, st) < 0) return fail(r, ST_FSTAT, errno);
  r->mode = st->st_mode;
  r->dev = st->st_dev;
  r->ino = st->st_ino;
  /* O_PATH|O_NOFOLLOW hands back a trailing symlink itself. */
  if (S_ISLNK(st->st_mode)) return fail(r, ST_OPENAT2, ELOOP);
  if (!S_ISREG(st->st_mode)) return fail(r, ST_FSTAT, WN_FS_NOT_REGULAR);
  if ((uint64_t)st->st_size > j->max_bytes) return fail(r, ST_FSTAT, EFBIG);
  return pfd;
}

/* Blocking on purpose: the file is known to be regular, and anything that
 * still makes the open wait (a lease, a hung FUSE server) meets the deadline. */
static int reopen(int pfd, int flags, wn_fs_result *r) {
  char p[32];
  fd_path(p, pfd);
  int fd = open(p, flags | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return fail(r, ST_REOPEN, errno);
  return fd;
}

static int child_read(const wn_fs_job *j, wn_fs_result *r) {
  struct stat st;
  int pfd = open_regular(j, r, &st);
  if (pfd < 0) return -1;
  int fd = reopen(pfd, O_RDONLY, r);
  if (fd < 0) return -1;
  size_t got = 0;
  /* One byte past the limit tells a file that grew since fstat. */
  while (got <= j->max_bytes) {
    ssize_t n = read(fd, j->buf + got, j->max_bytes + 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(r, ST_READ, errno);
    if (n == 0) break;
    got += (size_t)n;
  }
  if (got > j->max_bytes) return fail(r, ST_READ, EFBIG);
  r->len = got;
  return 0;
}

static int child_write(const wn_fs_job *j, wn_fs_result *r) {
  struct stat st;
  int fd;
  int pfd = open_regular(j, r, &st);
  if (pfd < 0 && r->err == ENOENT && j->create) {
    /* O_EXCL never follows a symlink, even a dangling one placed meanwhile. */
    r->err = 0;
    fd = open_in_root(j, j->rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0) return fail(r, ST_OPENAT2, errno);
    if (fchmod(fd, 0644) < 0) return fail(r, ST_OPENAT2, errno);
  } else if (pfd < 0) {
    return -1;
  } else {
    fd = reopen(pfd, O_WRONLY, r);
    if (fd < 0) return -1;
  }
  /* In place, same inode: Docker bind-mounts resolv.conf, so a rename over
   * it fails with EBUSY. Writing before truncating means a reader never sees
   * an empty file, only the old or the new bytes. */
  size_t put = 0;
  while (put < j->data_len) {
    ssize_t n = pwrite(fd, j->data + put, j->data_len - put, (off_t)put);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(r, ST_PWRITE, errno);
    put += (size_t)n;
  }
  if (ftruncate(fd, (off_t)j->data_len) < 0) return fail(r, ST_FTRUNCATE, errno);
  r->len = put;
  return 0;
}

static int child_unlink(const wn_fs_job *j, wn_fs_result *r) {
  int dfd = j->root_fd;
  struct stat st;
  if (j->dir[0] != '\0') {
    dfd = open_in_root(j, j->dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (dfd < 0) return fail(r, ST_OPENAT2, errno);
  }
  if (fstatat(dfd, j->base, &st, AT_SYMLINK_NOFOLLOW) < 0) return fail(r, ST_FSTAT, errno);
  r->mode = st.st_mode;
  if (!S_ISREG(st.st_mode)) return fail(r, ST_FSTAT, S_ISLNK(st.st_mode) ? ELOOP : WN_FS_NOT_REGULAR);
  if (unlinkat(dfd, j->base, 0) < 0) return fail(r, ST_UNLINKAT, errno);
  return 0;
}

/* SIGALRM at its default action, unblocked, after timeout_ms: the child dies
 * wherever it is waiting, unless in an uninterruptible sleep. */
static int arm_deadline(const wn_fs_job *j, wn_fs_result *r) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  if (sigaction(SIGALRM, &sa, NULL) < 0) return fail(r, ST_TIMER, errno);
  struct itimerval it;
  memset(&it, 0, sizeof it);
  it.it_value.tv_sec = (time_t)(j->timeout_ms / 1000);
  it.it_value.tv_usec = (suseconds_t)(j->timeout_ms % 1000) * 1000;
  if (setitimer(ITIMER_REAL, &it, NULL) < 0) return fail(r, ST_TIMER, errno);
  sigset_t alarm;
  sigemptyset(&alarm);
  sigaddset(&alarm, SIGALRM);
  if (sigprocmask(SIG_UNBLOCK, &alarm, NULL) < 0) return fail(r, ST_TIMER, errno);
  return 0;
}

/* clone's entry point: runs the job and exits, never returns. */
static int child_main(void *arg) {
  const wn_fs_job *j = arg;
  wn_fs_result *r = j->res;
  r->err = 0;
  r->stage = ST_NONE;
  /* Never outlive the daemon. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
    fail(r, ST_PRCTL, errno);
    _exit(1);
  }
  if (arm_deadline(j, r) < 0 || enter_userns(j, r) < 0) _exit(1);
  int rc = j->op == WN_FS_READ ? child_read(j, r) : j->op == WN_FS_WRITE ? child_write(j, r) : child_unlink(j, r);
  _exit(rc < 0 ? 1 : 0);
}

/* ---- the parent ------------------------------------------------------ */

/* Runs the job in a child; 0 when it exited on its own (its report says how it
 * went), else an errno (stage in *stage): ETIMEDOUT when its deadline killed it. */
static int run_child(const wn_fs_job *j, const char **stage) {
  void *stack = mmap(NULL, WN_FS_CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    *stage = "mmap";
    return errno;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  /* Returns once the child has exited (CLONE_VFORK). The stack grows down. */
  pid_t pid = clone(child_main, (char *)stack + WN_FS_CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)j);
  int err = pid < 0 ? errno : 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  int status = 0;
  if (pid < 0) {
    *stage = "clone";
  } else {
    while (waitpid(pid, &status, 0) < 0) {
      if (errno == EINTR) continue;
      err = errno;
      *stage = "waitpid";
      break;
    }
  }
  munmap(stack, WN_FS_CHILD_STACK);
  if (err != 0) return err;
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
    *stage = "wait";
    return ETIMEDOUT;
  }
  if (!WIFEXITED(status)) {
    /* Killed by someone else halfway: its report cannot be trusted. */
    *stage = "child";
    return EIO;
  }
  return 0;
}

/* Each component non-empty and not "." or "..", no leading "/". */
static int rel_ok(const char *rel) {
  if (rel[0] == '\0' || rel[0] == '/') return 0;
  const char *p = rel;
  for (;;) {
    const char *slash = strchr(p, '/');
    size_t n = slash == NULL ? strlen(p) : (size_t)(slash - p);
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 0;
    if (slash == NULL) return 1;
    p = slash + 1;
  }
}

static void throw_not_regular(napi_env env, const char *rel, uint32_t mode) {
  char msg[PATH_MAX + 96];
  const char *what = S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) ? "a character device" : S_ISBLK(mode) ? "a block device"
                     : S_ISSOCK(mode) ? "a socket" : S_ISDIR(mode) ? "a directory" : "not a regular file";
  snprintf(msg, sizeof msg, "%s is %s", rel, what);
  napi_throw_error(env, "ERR_NOT_REGULAR", msg);
}

static void close_job(wn_fs_job *j) {
  if (j->root_fd >= 0) close(j->root_fd);
  if (j->userns_fd >= 0) close(j->userns_fd);
  j->root_fd = j->userns_fd = -1;
}

/*
 * Opens the root: a directory, or for a process directory (/proc/PID) its
 * "root" and its user namespace, both through one fd of that directory so a
 * reused pid cannot pair one process's root with another's namespace.
 */
static int open_root(napi_env env, wn_fs_job *j, const char *root, int is_process) {
  j->root_fd = j->userns_fd = -1;
  if (!is_process) {
    j->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (j->root_fd < 0) wn_throw_errno(env, "open", root, errno);
    return j->root_fd < 0 ? -1 : 0;
  }
  int pd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (pd < 0) {
    wn_throw_errno(env, "open", root, errno);
    return -1;
  }
  struct stat theirs, ours;
  j->root_fd = openat(pd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int e = errno;
  if (j->root_fd >= 0) {
    j->userns_fd = openat(pd, "ns/user", O_RDONLY | O_CLOEXEC);
    e = errno;
  }
  close(pd);
  if (j->root_fd < 0 || j->userns_fd < 0) {
    wn_throw_errno(env, "open", j->root_fd < 0 ? "root of the process" : "user namespace of the process", e);
    close_job(j);
    return -1;
  }
  if (fstat(j->userns_fd, &theirs) < 0 || stat("/proc/self/ns/user", &ours) < 0) {
    wn_throw_errno(env, "fstat", "user namespace", errno);
    close_job(j);
    return -1;
  }
  if (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino) {
    close(j->userns_fd);
    j->userns_fd = -1;
  }
  return 0;
}

/* Common arguments: (root, isProcess, rel, ...). */
static int job_begin(napi_env env, napi_value *argv, wn_fs_job *j, char *root, size_t root_size) {
  int is_process;
  memset(j, 0, sizeof *j);
  j->root_fd = j->userns_fd = -1;
  if (wn_get_string(env, argv[0], "root", root, root_size) < 0 || wn_get_bool(env, argv[1], "isProcess", &is_process) < 0 ||
      wn_get_string(env, argv[2], "rel", j->rel, sizeof j->rel) < 0)
    return -1;
  if (root[0] == '\0') {
    wn_throw_range(env, "root must not be empty");
    return -1;
  }
  if (!rel_ok(j->rel)) {
    wn_throw_range(env, "rel must be a relative path without empty, '.' or '..' components");
    return -1;
  }
  return open_root(env, j, root, is_process);
}

/* Maps the shared result page, runs the job, turns a failure into a JS error. */
static int job_run(napi_env env, wn_fs_job *j, int64_t timeout_ms) {
  size_t size = sizeof(wn_fs_result) + (j->op == WN_FS_READ ? j->max_bytes + 1 : 0);
  void *shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    wn_throw_errno(env, "mmap", j->rel, errno);
    close_job(j);
    return -1;
  }
  j->res = shared;
  j->buf = (uint8_t *)shared + sizeof(wn_fs_result);
  j->res->err = WN_FS_NO_REPORT;
  const char *stage = "";
  j->timeout_ms = timeout_ms;
  int err = run_child(j, &stage);
  close_job(j);
  if (err == 0 && j->res->err == WN_FS_NO_REPORT) {
    err = EIO;
    stage = "child";
  }
  if (err != 0) {
    wn_throw_errno(env, stage, j->rel, err);
  } else if (j->res->err == WN_FS_NOT_REGULAR) {
    throw_not_regular(env, j->rel, j->res->mode);
  } else if (j->res->err != 0) {
    int s = j->res->stage;
    wn_throw_errno(env, s >= 0 && s < (int)(sizeof STAGES / sizeof STAGES[0]) ? STAGES[s] : "child", j->rel, j->res->err);
  }
  if (err != 0 || j->res->err != 0) {
    munmap(shared, size);
    return -1;
  }
  return 0;
}

static void unmap_job(wn_fs_job *j) {
  munmap(j->res, sizeof(wn_fs_result) + (j->op == WN_FS_READ ? j->max_bytes + 1 : 0));
}

/* fileRead(root, isProcess, rel, maxBytes, timeoutMs) -> { data: Buffer, dev: bigint, ino: bigint } */
napi_value wn_file_read(napi_env env, napi_callback_info info) {
  napi_value argv[5], out, data, dev, ino;
  char root[PATH_MAX];
  wn_fs_job j;
  int64_t max_bytes, timeout_ms;
  if (wn_get_args(env, info, 5, argv) < 0 || wn_get_int(env, argv[3], "maxBytes", 0, WN_FS_MAX_BYTES, &max_bytes) < 0 ||
      wn_get_int(env, argv[4], "timeoutMs", 1, WN_FS_MAX_TIMEOUT_MS, &timeout_ms) < 0 ||
      job_begin(env, argv, &j, root, sizeof root) < 0)
    return NULL;
  j.op = WN_FS_READ;
  j.max_bytes = (size_t)max_bytes;
  if (job_run(env, &j, timeout_ms) < 0) return NULL;
  void *copy = NULL;
  napi_status s = napi_create_buffer_copy(env, (size_t)j.res->len, j.buf, &copy, &data);
  if (s == napi_ok) s = napi_create_bigint_uint64(env, j.res->dev, &dev);
  if (s == napi_ok) s = napi_create_bigint_uint64(env, j.res->ino, &ino);
  if (s == napi_ok) s = napi_create_object(env, &out);
  unmap_job(&j);
  if (s != napi_ok) {
    napi_throw_error(env, NULL, "fileRead: cannot build the result");
    return NULL;
  }
  napi_set_named_property(env, out, "data", data);
  napi_set_named_property(env, out, "dev", dev);
  napi_set_named_property(env, out, "ino", ino);
  return out;
}

/* fileWrite(root, isProcess, rel, data, maxBytes, create, timeoutMs): replaces the content in place. */
napi_value wn_file_write(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  char root[PATH_MAX];
  wn_fs_job j;
  uint8_t *data;
  size_t data_len;
  int64_t max_bytes, timeout_ms;
  int create;
  if (wn_get_args(env, info, 7, argv) < 0 || wn_get_u8(env, argv[3], "data", &data, &data_len) < 0 ||
      wn_get_int(env, argv[4], "maxBytes", 0, WN_FS_MAX_BYTES, &max_bytes) < 0 || wn_get_bool(env, argv[5], "create", &create) < 0 ||
      wn_get_int(env, argv[6], "timeoutMs", 1, WN_FS_MAX_TIMEOUT_MS, &timeout_ms) < 0)
    return NULL;
  if (data_len > (size_t)max_bytes) {
    wn_throw_range(env, "data is %zu bytes, over maxBytes %lld", data_len, (long long)max_bytes);
    return NULL;
  }
  if (job_begin(env, argv, &j, root, sizeof root) < 0) return NULL;
  j.op = WN_FS_WRITE;
  j.data = data;
  j.data_len = data_len;
  j.create = create;
  j.max_bytes = (size_t)max_bytes;
  if (job_run(env, &j, timeout_ms) < 0) return NULL;
  unmap_job(&j);
  return NULL;
}

/* fileUnlink(root, isProcess, rel, timeoutMs): removes a regular file, never a symlink or anything else. */
napi_value wn_file_unlink(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char root[PATH_MAX];
  wn_fs_job j;
  int64_t timeout_ms;
  if (wn_get_args(env, info, 4, argv) < 0 || wn_get_int(env, argv[3], "timeoutMs", 1, WN_FS_MAX_TIMEOUT_MS, &timeout_ms) < 0 ||
      job_begin(env, argv, &j, root, sizeof root) < 0)
    return NULL;
  j.op = WN_FS_UNLINK;
  char *slash = strrchr(j.rel, '/');
  if (slash == NULL) {
    j.dir[0] = '\0';
    j.base = j.rel;
  } else {
    memcpy(j.dir, j.rel, (size_t)(slash - j.rel));
    j.dir[slash - j.rel] = '\0';
    j.base = slash + 1;
  }
  if (job_run(env, &j, timeout_ms) < 0) return NULL;
  unmap_job(&j);
  return NULL;
}
