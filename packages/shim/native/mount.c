// A minimal N-API addon for the mounts the shim makes per container or pod, which otherwise cost a
// process each: mount(2) of a task's rootfs overlay (instead of mount(8)), umount2(2) of what is
// mounted there (instead of umount(8)), and a pinned network namespace with its loopback up
// (instead of unshare(1) and the CNI loopback plugin). Each call runs on libuv's thread pool and
// settles a promise: undefined, or an Error whose code is the errno name.
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errno-error.h"

typedef struct {
  char *args[4]; // source, target, fstype, data
  unsigned long flags;
  int err;
  napi_deferred deferred;
  napi_async_work work;
} mount_job;

static char *string_arg(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s && napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    return NULL;
  }
  return s;
}

static void job_free(mount_job *job) {
  for (int i = 0; i < 4; i++) free(job->args[i]);
  free(job);
}

static void execute(napi_env env, void *data) {
  (void)env;
  mount_job *job = data;
  job->err = mount(job->args[0], job->args[1], job->args[2], job->flags, job->args[3]) == 0 ? 0 : errno;
}

static void umount_execute(napi_env env, void *data) {
  (void)env;
  mount_job *job = data;
  job->err = umount2(job->args[1], (int)job->flags) == 0 ? 0 : errno;
}

// Sets IFF_UP on `lo` of the calling thread's network namespace, as the CNI loopback plugin's ADD
// does (the kernel then gives it 127.0.0.1/8 and ::1): 0, or the errno.
static int loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int err = 0;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) err = errno;
  if (!err) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) err = errno;
  }
  close(fd);
  return err;
}

// A thread of its own enters the new namespace and ends with it: the pool's threads never leave
// the process's namespace (unshare moves only the calling thread, as Go's LockOSThread is used).
// lo comes up before the pin: a failure leaves no namespace behind (none was mounted).
static void *netns_thread(void *data) {
  mount_job *job = data;
  if (unshare(CLONE_NEWNET) != 0) {
    job->err = errno;
    return NULL;
  }
  job->err = loopback_up();
  if (job->err) return NULL;
  char self[64];
  snprintf(self, sizeof self, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
  job->err = mount(self, job->args[1], NULL, MS_BIND, NULL) == 0 ? 0 : errno;
  return NULL;
}

static void netns_execute(napi_env env, void *data) {
  (void)env;
  mount_job *job = data;
  pthread_t t;
  int rc = pthread_create(&t, NULL, netns_thread, job);
  if (rc != 0) {
    job->err = rc;
    return;
  }
  pthread_join(t, NULL);
}

static const char *errno_name(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EBUSY: return "EBUSY";
    case ENOTDIR: return "ENOTDIR";
    case ENODEV: return "ENODEV";
    case EACCES: return "EACCES";
    default: return "EIO";
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  mount_job *job = data;
  napi_value result;
  if (status == napi_ok && job->err == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    int err = job_errno(status, job->err);
    reject_errno(env, job->deferred, err, errno_name(err));
  }
  napi_delete_async_work(env, job->work);
  job_free(job);
}

static napi_value queue(napi_env env, mount_job *job, napi_async_execute_callback run) {
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "berth-mount", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, run, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

// Reads a call's `want` arguments into argv and allocates its job; on failure throws (naming the
// call's `usage`) and returns NULL.
static mount_job *new_job(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
                          const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  mount_job *job = calloc(1, sizeof *job);
  if (!job) napi_throw_error(env, "ENOMEM", "berth mount addon: out of memory");
  return job;
}

// Takes argument v as the job's string i, and flags_v (unless NULL) as its flags; on failure frees
// the job, throws `what` and returns 0.
static int take_args(napi_env env, mount_job *job, const int *slots, const napi_value *values, int n,
                     napi_value flags_v, const char *what) {
  for (int i = 0; i < n; i++) {
    job->args[slots[i]] = string_arg(env, values[i]);
    if (!job->args[slots[i]]) goto bad;
  }
  if (flags_v) {
    double flags = 0;
    if (napi_get_value_double(env, flags_v, &flags) != napi_ok) goto bad;
    job->flags = (unsigned long)flags;
  }
  return 1;
bad:
  job_free(job);
  napi_throw_type_error(env, NULL, what);
  return 0;
}

// mount(source, target, fstype, flags, data): Promise<void>
static napi_value Mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  mount_job *job = new_job(env, info, 5, argv, "mount(source, target, fstype, flags, data) needs 5 arguments");
  if (!job) return NULL;
  const int slots[4] = {0, 1, 2, 3};
  const napi_value strings[4] = {argv[0], argv[1], argv[2], argv[4]};
  if (!take_args(env, job, slots, strings, 4, argv[3], "mount: source, target, fstype and data must be strings and flags a number"))
    return NULL;
  return queue(env, job, execute);
}

// umount2(target, flags): Promise<void> -- the topmost mount at target (flags: MNT_DETACH, UMOUNT_NOFOLLOW...).
static napi_value Umount2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  mount_job *job = new_job(env, info, 2, argv, "umount2(target, flags) needs 2 arguments");
  if (!job) return NULL;
  const int slots[1] = {1};
  if (!take_args(env, job, slots, argv, 1, argv[1], "umount2: target must be a string and flags a number"))
    return NULL;
  return queue(env, job, umount_execute);
}

// pinNetns(path): Promise<void> -- a new network namespace, lo up, bind-mounted onto the existing file path.
static napi_value PinNetns(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_job *job = new_job(env, info, 1, argv, "pinNetns(path) needs a path");
  if (!job) return NULL;
  const int slots[1] = {1};
  if (!take_args(env, job, slots, argv, 1, NULL, "pinNetns: the path must be a string")) return NULL;
  return queue(env, job, netns_execute);
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "mount", NAPI_AUTO_LENGTH, Mount, NULL, &fn);
  napi_set_named_property(env, exports, "mount", fn);
  napi_create_function(env, "umount2", NAPI_AUTO_LENGTH, Umount2, NULL, &fn);
  napi_set_named_property(env, exports, "umount2", fn);
  napi_create_function(env, "pinNetns", NAPI_AUTO_LENGTH, PinNetns, NULL, &fn);
  napi_set_named_property(env, exports, "pinNetns", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
