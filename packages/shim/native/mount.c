// A minimal N-API addon: mount(2) for the rootfs overlay of each task, which otherwise costs a
// mount(8) process per container. The call runs on libuv's thread pool (a mount can wait on the
// filesystem) and settles a promise: undefined, or an Error whose code is the errno name.
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

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
    napi_value code, msg;
    int err = status == napi_ok ? job->err : ECANCELED;
    napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  job_free(job);
}

// mount(source, target, fstype, flags, data): Promise<void>
static napi_value Mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data) needs 5 arguments");
    return NULL;
  }
  mount_job *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, "ENOMEM", "mount: out of memory");
    return NULL;
  }
  int idx[4] = {0, 1, 2, 4};
  for (int i = 0; i < 4; i++) {
    job->args[i] = string_arg(env, argv[idx[i]]);
    if (!job->args[i]) {
      job_free(job);
      napi_throw_type_error(env, NULL, "mount: source, target, fstype and data must be strings");
      return NULL;
    }
  }
  double flags = 0;
  if (napi_get_value_double(env, argv[3], &flags) != napi_ok) {
    job_free(job);
    napi_throw_type_error(env, NULL, "mount: flags must be a number");
    return NULL;
  }
  job->flags = (unsigned long)flags;
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "berth-mount", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "mount", NAPI_AUTO_LENGTH, Mount, NULL, &fn);
  napi_set_named_property(env, exports, "mount", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
