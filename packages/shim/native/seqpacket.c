// A minimal N-API addon: Node's net module cannot open AF_UNIX SOCK_SEQPACKET sockets, which is
// what conmon's attach socket is. This opens one (connect) and half-closes it (shutdown); reads and
// writes then go through fs on the returned descriptor. And setWinsize: Node cannot set a
// terminal's size, which a process's pty needs before the process starts.
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == ENOENT ? "ENOENT" : err == ECONNREFUSED ? "ECONNREFUSED" : "EIO", msg);
  return NULL;
}

// connect(path: string): number -- a blocking, close-on-exec SEQPACKET socket connected to path.
static napi_value Connect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "connect(path) needs a path");
    return NULL;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], addr.sun_path, sizeof addr.sun_path, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "connect(path): path must be a string");
    return NULL;
  }
  if (len >= sizeof addr.sun_path - 1) {
    napi_throw_range_error(env, NULL, "connect(path): path longer than a unix socket address allows");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, addr.sun_path, err);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// shutdown(fd: number, how: 0|1|2): void -- SHUT_WR tells conmon stdin is done; SHUT_RDWR also
// wakes a read blocked on the socket, so it can be closed safely.
static napi_value Shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1, how = SHUT_RDWR;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &how) != napi_ok) {
    napi_throw_type_error(env, NULL, "shutdown(fd, how) needs two numbers");
    return NULL;
  }
  if (shutdown(fd, how) < 0 && errno != ENOTCONN) return throw_errno(env, "shutdown", errno);
  return NULL;
}

// setWinsize(path: string, rows: number, cols: number): undefined -- opens the terminal at path
// (no controlling terminal taken, not blocking) and sets its window size (TIOCSWINSZ): on a pty's
// slave it is the pair's size, as its master's resize would set it, done when the call returns.
static napi_value SetWinsize(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[4096];
  size_t len = 0;
  uint32_t rows = 0, cols = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok ||
      len >= sizeof path - 1 || napi_get_value_uint32(env, argv[1], &rows) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &cols) != napi_ok || rows > 0xffff || cols > 0xffff) {
    napi_throw_type_error(env, NULL, "setWinsize(path, rows, cols) needs a path and two sizes");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open", errno);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = (unsigned short)rows;
  ws.ws_col = (unsigned short)cols;
  int rc = ioctl(fd, TIOCSWINSZ, &ws);
  int err = errno;
  close(fd);
  if (rc < 0) return throw_errno(env, "TIOCSWINSZ", err);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"connect", NULL, Connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shutdown", NULL, Shutdown, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setWinsize", NULL, SetWinsize, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, 3, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
