// A minimal N-API addon that makes a sealed in-memory copy of an executable (the shim's runc).
// runc 1.1's `runc init` re-executes itself from a private copy of its binary (a sealed memfd, or
// as Debian's 1.1.5 here does, a read-only bind mount of it: mount, remount, open, lazy unmount)
// unless /proc/self/exe already is a sealed memfd (CVE-2019-5736: a container must not reach the
// host's binary): a second execve, its dynamic loading and the mounts on every `runc create`.
// Run from such a copy, made once here, runc init finds itself sealed and goes on. Runs on libuv's
// thread pool and settles a promise: the memfd's descriptor (close-on-exec), or an Error whose
// code is the errno name.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errno-error.h"

// Exactly the seals runc checks for (F_GET_SEALS must equal them): no write, grow, shrink or
// further sealing.
#define RUNC_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

typedef struct {
  char *path;
  int fd;
  int err;
  napi_deferred deferred;
  napi_async_work work;
} copy_job;

static void execute(napi_env env, void *data) {
  (void)env;
  copy_job *job = data;
  job->fd = -1;
  int src = open(job->path, O_RDONLY | O_CLOEXEC);
  if (src < 0) {
    job->err = errno;
    return;
  }
  int fd = memfd_create("runc", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  struct stat st;
  if (fd < 0 || fstat(src, &st) != 0) goto fail;
  if (!S_ISREG(st.st_mode)) {
    errno = EINVAL;
    goto fail;
  }
  off_t off = 0;
  while (off < st.st_size) {
    ssize_t n = sendfile(fd, src, &off, (size_t)(st.st_size - off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO; // the file shrank while being copied
      goto fail;
    }
  }
  if (fchmod(fd, 0755) != 0 || fcntl(fd, F_ADD_SEALS, RUNC_SEALS) != 0) goto fail;
  close(src);
  job->fd = fd;
  return;
fail:
  job->err = errno ? errno : EIO;
  if (fd >= 0) close(fd);
  close(src);
}

static const char *errno_name(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ENOSYS: return "ENOSYS";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    default: return "EIO";
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  copy_job *job = data;
  napi_value result;
  if (status == napi_ok && job->err == 0) {
    napi_create_int32(env, job->fd, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    if (job->fd >= 0) close(job->fd);
    int err = job_errno(status, job->err);
    reject_errno(env, job->deferred, err, errno_name(err));
  }
  napi_delete_async_work(env, job->work);
  free(job->path);
  free(job);
}

// sealedCopy(path): Promise<number> -- a sealed memfd holding the file's bytes, mode 0755.
static napi_value SealedCopy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "sealedCopy(path) needs a path");
    return NULL;
  }
  copy_job *job = calloc(1, sizeof *job);
  if (job) job->path = malloc(len + 1);
  if (!job || !job->path) {
    free(job);
    napi_throw_error(env, "ENOMEM", "berth sealed addon: out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], job->path, len + 1, &len);
  job->fd = -1;
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "berth-sealed-copy", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sealedCopy", NAPI_AUTO_LENGTH, SealedCopy, NULL, &fn);
  napi_set_named_property(env, exports, "sealedCopy", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
