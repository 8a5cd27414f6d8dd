// A minimal N-API addon that starts the shim's helper processes without blocking the event loop.
// Node's spawn() forks on the loop's thread and blocks it until the child has exec'd: 5-40 ms on a
// loaded machine, during which the shim answers nothing else (a pod's task create waits behind its
// CNI ADD, and the reverse). Here a thread of its own posix_spawn()s the child (glibc's vfork-style
// clone, no copy of the shim's page tables) and settles a promise on the loop:
// - run(): a short-lived process (a CNI plugin) run to its end: stdin fed, stdout and stderr
//   collected, the deadline enforced, the child reaped.
// - start(): a monitor (conmon) started with socketpairs as its fds 2.. (the caller reads them);
//   its first process, which exits once it has forked the daemon, is reaped by the thread.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 4

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

typedef struct {
  char *file;
  char **argv;
  char **envp;
  char *input;
  size_t input_len;
  long timeout_ms;
  int spawn_err;
  int status;
  int timed_out;
  buf_t out, err;
  // start() only: the working directory, how many socketpairs, and what it started.
  char *cwd;
  int nfds;
  int fds[MAX_FDS];
  pid_t pid;
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
} run_job;

static void free_list(char **list) {
  if (!list) return;
  for (char **p = list; *p; p++) free(*p);
  free(list);
}

static void job_free(run_job *job) {
  free(job->file);
  free_list(job->argv);
  free_list(job->envp);
  free(job->input);
  free(job->cwd);
  free(job->out.data);
  free(job->err.data);
  free(job);
}

static char *string_arg(napi_env env, napi_value v, size_t *out_len) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s && napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    return NULL;
  }
  if (out_len) *out_len = len;
  return s;
}

// A JS array of strings as a NULL-terminated C array; NULL when it is not one.
static char **list_arg(napi_env env, napi_value v) {
  uint32_t n = 0;
  if (napi_get_array_length(env, v, &n) != napi_ok) return NULL;
  char **list = calloc(n + 1, sizeof *list);
  if (!list) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, v, i, &item) != napi_ok || !(list[i] = string_arg(env, item, NULL))) {
      free_list(list);
      return NULL;
    }
  }
  return list;
}

static int append(buf_t *b, const char *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return 0;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Starts the child in a session of its own (as spawn's `detached`), so the deadline's SIGKILL of
// its process group also ends whatever it started; signals as a fresh process has them.
static int start_child(run_job *job, pid_t *pid, int in[2], int out[2], int err[2]) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_init(&at);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawn(pid, job->file, &fa, &at, job->argv, job->envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return rc;
}

// Writes stdin and reads stdout/stderr until both are closed, killing the process group once the
// deadline passes (its pipes then close as the processes die).
static void pump(run_job *job, pid_t pid, int *in_w, int *out_r, int *err_r, long deadline) {
  size_t written = 0;
  char chunk[16384];
  if (job->input_len == 0) close_fd(in_w);
  while (*out_r >= 0 || *err_r >= 0) {
    struct pollfd fds[3];
    int n = 0, i_in = -1, i_out = -1, i_err = -1;
    if (*in_w >= 0) fds[i_in = n++] = (struct pollfd){.fd = *in_w, .events = POLLOUT};
    if (*out_r >= 0) fds[i_out = n++] = (struct pollfd){.fd = *out_r, .events = POLLIN};
    if (*err_r >= 0) fds[i_err = n++] = (struct pollfd){.fd = *err_r, .events = POLLIN};
    long wait = -1;
    if (!job->timed_out) {
      wait = deadline - now_ms();
      if (wait <= 0) {
        job->timed_out = 1;
        kill(-pid, SIGKILL);
        close_fd(in_w);
        continue;
      }
    }
    if (poll(fds, n, (int)wait) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (i_in >= 0 && fds[i_in].revents) {
      ssize_t w = write(*in_w, job->input + written, job->input_len - written);
      if (w > 0) written += (size_t)w;
      // A plugin that exits without reading its config (EPIPE): its exit status tells why.
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == job->input_len) close_fd(in_w);
    }
    int *readers[2] = {out_r, err_r};
    int idx[2] = {i_out, i_err};
    buf_t *bufs[2] = {&job->out, &job->err};
    for (int k = 0; k < 2; k++) {
      if (idx[k] < 0 || !fds[idx[k]].revents) continue;
      ssize_t r = read(*readers[k], chunk, sizeof chunk);
      if (r > 0) {
        if (append(bufs[k], chunk, (size_t)r) != 0) {
          kill(-pid, SIGKILL);
          close_fd(readers[k]);
        }
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(readers[k]);
      }
    }
  }
  close_fd(in_w);
}

// Reaps the child; past the deadline (it closed its pipes but lives on) its group is killed first.
static int reap(run_job *job, pid_t pid, long deadline) {
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, job->timed_out ? 0 : WNOHANG);
    if (r == pid) return st;
    if (r < 0 && errno != EINTR) return 0;
    if (r == 0) {
      if (now_ms() >= deadline) {
        job->timed_out = 1;
        kill(-pid, SIGKILL);
      } else {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
    }
  }
}

static void *run_thread(void *data) {
  run_job *job = data;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    job->spawn_err = errno;
  } else {
    long deadline = now_ms() + job->timeout_ms;
    pid_t pid = 0;
    int rc = start_child(job, &pid, in, out, err);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    if (rc != 0) {
      job->spawn_err = rc;
    } else {
      fcntl(in[1], F_SETFL, O_NONBLOCK);
      fcntl(out[0], F_SETFL, O_NONBLOCK);
      fcntl(err[0], F_SETFL, O_NONBLOCK);
      pump(job, pid, &in[1], &out[0], &err[0], deadline);
      job->status = reap(job, pid, deadline);
    }
  }
  for (int i = 0; i < 2; i++) {
    close_fd(&in[i]);
    close_fd(&out[i]);
    close_fd(&err[i]);
  }
  // settle() frees the job, maybe before the call below returns: the handle is read first.
  napi_threadsafe_function tsfn = job->tsfn;
  napi_call_threadsafe_function(tsfn, job, napi_tsfn_blocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

// Starts the monitor with /dev/null as stdin, one socketpair per fd from 2 on (stdout shares fd 2's), in
// its working directory and a session of its own; hands the parent's ends over, then reaps it.
static void *start_thread(void *data) {
  run_job *job = data;
  int pairs[MAX_FDS][2];
  pid_t pid = 0;
  for (int i = 0; i < job->nfds; i++) pairs[i][0] = pairs[i][1] = -1;
  for (int i = 0; i < job->nfds && !job->spawn_err; i++) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]) != 0) job->spawn_err = errno;
  }
  if (!job->spawn_err) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    // conmon reports a bad option on stdout: it goes where its stderr goes.
    if (job->nfds > 0) posix_spawn_file_actions_adddup2(&fa, pairs[0][1], 1);
    else posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < job->nfds; i++) posix_spawn_file_actions_adddup2(&fa, pairs[i][1], 2 + i);
    if (job->cwd) posix_spawn_file_actions_addchdir_np(&fa, job->cwd);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(&pid, job->file, &fa, &at, job->argv, job->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
      job->spawn_err = rc;
      pid = 0;
    }
  }
  for (int i = 0; i < job->nfds; i++) {
    close_fd(&pairs[i][1]);
    if (job->spawn_err) close_fd(&pairs[i][0]);
    job->fds[i] = pairs[i][0];
  }
  job->pid = pid;
  // settle() frees the job, maybe before the call below returns: nothing of it is read after.
  napi_threadsafe_function tsfn = job->tsfn;
  napi_call_threadsafe_function(tsfn, job, napi_tsfn_blocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return NULL;
}

static void set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

// On the loop's thread: settles the call's promise with {code, signal, stdout, stderr, timedOut}
// (code -1 when a signal ended it), or an Error whose code is the errno name of a failed spawn.
static void settle(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb;
  (void)context;
  run_job *job = data;
  if (env) {
    napi_value result;
    if (job->spawn_err) {
      napi_value code, msg;
      const char *name = job->spawn_err == ENOENT ? "ENOENT" : job->spawn_err == EACCES ? "EACCES" : "EIO";
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
      napi_create_string_utf8(env, strerror(job->spawn_err), NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, code, msg, &result);
      napi_reject_deferred(env, job->deferred, result);
    } else if (job->nfds > 0) {
      napi_value v, fds;
      napi_create_object(env, &result);
      napi_create_int32(env, job->pid, &v);
      set_prop(env, result, "pid", v);
      napi_create_array_with_length(env, (size_t)job->nfds, &fds);
      for (int i = 0; i < job->nfds; i++) {
        napi_create_int32(env, job->fds[i], &v);
        napi_set_element(env, fds, (uint32_t)i, v);
      }
      set_prop(env, result, "fds", fds);
      napi_resolve_deferred(env, job->deferred, result);
    } else {
      napi_value v;
      napi_create_object(env, &result);
      int st = job->status;
      napi_create_int32(env, WIFEXITED(st) ? WEXITSTATUS(st) : -1, &v);
      set_prop(env, result, "code", v);
      napi_create_int32(env, WIFSIGNALED(st) ? WTERMSIG(st) : 0, &v);
      set_prop(env, result, "signal", v);
      napi_create_string_utf8(env, job->out.data ? job->out.data : "", job->out.len, &v);
      set_prop(env, result, "stdout", v);
      napi_create_string_utf8(env, job->err.data ? job->err.data : "", job->err.len, &v);
      set_prop(env, result, "stderr", v);
      napi_get_boolean(env, job->timed_out != 0, &v);
      set_prop(env, result, "timedOut", v);
      napi_resolve_deferred(env, job->deferred, result);
    }
  }
  job_free(job);
}

// Reads file, argv and envp (arguments 0-2) into a new job; NULL after throwing `usage`.
static run_job *new_job(napi_env env, napi_value *argv, const char *usage) {
  run_job *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, "ENOMEM", "berth spawn addon: out of memory");
    return NULL;
  }
  if (!(job->file = string_arg(env, argv[0], NULL)) || !(job->argv = list_arg(env, argv[1])) ||
      !(job->envp = list_arg(env, argv[2]))) {
    job_free(job);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return job;
}

// Starts the job's thread; returns its promise, or NULL after throwing.
static napi_value launch(napi_env env, run_job *job, void *(*thread)(void *)) {
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "berth-spawn", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, settle, &job->tsfn) !=
      napi_ok) {
    job_free(job);
    napi_throw_error(env, "EIO", "berth spawn addon: no thread-safe function");
    return NULL;
  }
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, thread, job);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    napi_release_threadsafe_function(job->tsfn, napi_tsfn_abort);
    job_free(job);
    napi_throw_error(env, "EAGAIN", "berth spawn addon: cannot start a thread");
    return NULL;
  }
  return promise;
}

// run(file, argv, envp, input, timeoutMs): Promise<{code, signal, stdout, stderr, timedOut}>.
static napi_value Run(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  const char *usage = "run(file: string, argv: string[], env: string[], input: string, timeoutMs: number)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  run_job *job = new_job(env, argv, usage);
  if (!job) return NULL;
  int64_t timeout = 0;
  if (!(job->input = string_arg(env, argv[3], &job->input_len)) ||
      napi_get_value_int64(env, argv[4], &timeout) != napi_ok || timeout <= 0) {
    job_free(job);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  job->timeout_ms = (long)timeout;
  return launch(env, job, run_thread);
}

// start(file, argv, envp, cwd, nfds): Promise<{pid, fds}>, fds[i] the parent's end of fd 2 + i.
static napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  const char *usage = "start(file: string, argv: string[], env: string[], cwd: string, nfds: 1-4)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  run_job *job = new_job(env, argv, usage);
  if (!job) return NULL;
  int32_t nfds = 0;
  if (!(job->cwd = string_arg(env, argv[3], NULL)) || napi_get_value_int32(env, argv[4], &nfds) != napi_ok ||
      nfds < 1 || nfds > MAX_FDS) {
    job_free(job);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  job->nfds = nfds;
  return launch(env, job, start_thread);
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "run", NAPI_AUTO_LENGTH, Run, NULL, &fn);
  napi_set_named_property(env, exports, "run", fn);
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, Start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
