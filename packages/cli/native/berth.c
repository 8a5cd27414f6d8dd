/*
 * The `berth` command (scripts/setup.sh links /usr/local/bin/berth to its build, dist/berth).
 *
 * A served command (src/served.ts: `ps`, `images`, `run` without -i/-t, help and version) is sent
 * to the `berth up` supervisor on its control socket, which runs it with its code loaded and NATS
 * connected; this process relays its output, its exit code and, while the command takes them
 * (`berth run`), the signals it gets. That costs a process start and a round trip instead of
 * starting Node and loading the CLI. Anything else, or whatever the supervisor refuses, does not
 * answer, or cannot take, runs as bin/berth runs it: Node on bin/berth.js, after the same move of
 * NODE_EXTRA_CA_CERTS (see bin/berth). The protocol is src/served-protocol.ts's.
 *
 * What it trusts is what bin/berth.js trusted: a socket owned by root or by this user (the
 * command line and environment, with any passwords in it, go nowhere else), the config file only
 * as a regular file named by an absolute path. The supervisor checks the rest (served.ts check()):
 * the same build, the same config and run root, nothing it cannot do as this run would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* How long the supervisor may take to accept or refuse before this process runs the command. */
#define ANSWER_MS 2000
/* The largest config file read here (the supervisor reads no larger one either). */
#define CONFIG_MAX (1024 * 1024)

/* Frame types (served-protocol.ts FRAME_TYPE). */
enum { F_ACCEPTED = 'A', F_REFUSED = 'R', F_OUT = 'O', F_ERR = 'E', F_EXIT = 'X', F_TAKEN = 'S', F_LEFT = 'U' };

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP};
static const char *const forwarded_names[] = {"SIGINT", "SIGTERM", "SIGHUP"};
#define NFORWARDED 3

/* A growable byte buffer; out of memory ends the process (nothing was sent or printed yet). */
struct buf {
  char *p;
  size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (b->len + n + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      fputs("berth: out of memory\n", stderr);
      exit(1);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* True when s is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
static int utf8_ok(const unsigned char *s) {
  while (*s) {
    unsigned c = *s;
    int n;
    unsigned min;
    if (c < 0x80) {
      s++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, min = 0x80, c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, min = 0x800, c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, min = 0x10000, c &= 0x07;
    } else {
      return 0;
    }
    for (int i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80) return 0;
      c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    s += n + 1;
  }
  return 1;
}

/* Appends s as a JSON string (s is UTF-8: only quotes, backslashes and controls are escaped). */
static void json_string(struct buf *b, const char *s) {
  put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      puts_(b, e);
    } else {
      put(b, (const char *)&c, 1);
    }
  }
  put(b, "\"", 1);
}

/* ---- the run root from the config file: its top-level "runRoot", as JSON.parse reads it ---- */

struct scan {
  const char *s;
  size_t n, at;
};

static void ws(struct scan *j) {
  while (j->at < j->n && strchr(" \t\r\n", j->s[j->at]) && j->s[j->at]) j->at++;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int hex4(struct scan *j, unsigned *out) {
  if (j->at + 4 > j->n) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(j->s[j->at + i]);
    if (h < 0) return -1;
    v = v * 16 + (unsigned)h;
  }
  j->at += 4;
  *out = v;
  return 0;
}

static void put_utf8(struct buf *b, unsigned c) {
  char u[4];
  size_t n;
  if (c < 0x80) u[0] = (char)c, n = 1;
  else if (c < 0x800) u[0] = (char)(0xc0 | c >> 6), u[1] = (char)(0x80 | (c & 0x3f)), n = 2;
  else if (c < 0x10000)
    u[0] = (char)(0xe0 | c >> 12), u[1] = (char)(0x80 | ((c >> 6) & 0x3f)), u[2] = (char)(0x80 | (c & 0x3f)), n = 3;
  else
    u[0] = (char)(0xf0 | c >> 18), u[1] = (char)(0x80 | ((c >> 12) & 0x3f)), u[2] = (char)(0x80 | ((c >> 6) & 0x3f)),
    u[3] = (char)(0x80 | (c & 0x3f)), n = 4;
  put(b, u, n);
}

/* Reads a JSON string at j->at (its opening quote) into out; -1 when malformed. */
static int jstring(struct scan *j, struct buf *out) {
  if (j->at >= j->n || j->s[j->at] != '"') return -1;
  j->at++;
  while (j->at < j->n) {
    unsigned char c = (unsigned char)j->s[j->at++];
    if (c == '"') return 0;
    if (c < 0x20) return -1;
    if (c != '\\') {
      put(out, (const char *)&c, 1);
      continue;
    }
    if (j->at >= j->n) return -1;
    char e = j->s[j->at++];
    unsigned u, lo;
    switch (e) {
    case '"': case '\\': case '/': put(out, &e, 1); break;
    case 'b': put(out, "\b", 1); break;
    case 'f': put(out, "\f", 1); break;
    case 'n': put(out, "\n", 1); break;
    case 'r': put(out, "\r", 1); break;
    case 't': put(out, "\t", 1); break;
    case 'u':
      if (hex4(j, &u)) return -1;
      /* A lone surrogate cannot be a file name JSON.parse would give back as this: refused. */
      if (u >= 0xd800 && u <= 0xdbff) {
        if (j->at + 2 > j->n || j->s[j->at] != '\\' || j->s[j->at + 1] != 'u') return -1;
        j->at += 2;
        if (hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff) return -1;
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
      } else if (u >= 0xdc00 && u <= 0xdfff) {
        return -1;
      }
      if (u == 0) return -1;
      put_utf8(out, u);
      break;
    default: return -1;
    }
  }
  return -1;
}

/* Skips one JSON value (the supervisor's JSON.parse judges it; this only has to find its end). */
static int jskip(struct scan *j) {
  ws(j);
  if (j->at >= j->n) return -1;
  char c = j->s[j->at];
  if (c == '"') {
    struct buf tmp = {0};
    int r = jstring(j, &tmp);
    free(tmp.p);
    return r;
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    while (j->at < j->n) {
      c = j->s[j->at];
      if (c == '"') {
        if (jskip(j)) return -1;
        continue;
      }
      if (c == '{' || c == '[') depth++;
      if (c == '}' || c == ']') depth--;
      j->at++;
      if (depth == 0) return 0;
    }
    return -1;
  }
  while (j->at < j->n && !strchr(",}] \t\r\n", j->s[j->at])) j->at++;
  return 0;
}

/*
 * The string value of the config's top-level "runRoot" into out: 1 found, 0 absent, -1 when it
 * cannot be told here (malformed, not a string): then the command runs on Node, which decides.
 */
static int config_run_root(const char *s, size_t n, struct buf *out) {
  struct scan j = {s, n, 0};
  int found = 0;
  ws(&j);
  if (j.at >= j.n || s[j.at] != '{') return -1;
  j.at++;
  ws(&j);
  if (j.at < j.n && s[j.at] == '}') {
    j.at++;
  } else {
    for (;;) {
      struct buf key = {0};
      ws(&j);
      int bad = jstring(&j, &key);
      int match = !bad && key.p && key.len == 7 && memcmp(key.p, "runRoot", 7) == 0;
      free(key.p);
      if (bad) return -1;
      ws(&j);
      if (j.at >= j.n || s[j.at] != ':') return -1;
      j.at++;
      ws(&j);
      if (match) {
        /* JSON.parse keeps the last of duplicate keys. */
        if (j.at < j.n && s[j.at] == '"') {
          out->len = 0;
          if (jstring(&j, out)) return -1;
          found = 1;
        } else {
          return -1;
        }
      } else if (jskip(&j)) {
        return -1;
      }
      ws(&j);
      if (j.at < j.n && s[j.at] == ',') {
        j.at++;
        continue;
      }
      if (j.at < j.n && s[j.at] == '}') {
        j.at++;
        break;
      }
      return -1;
    }
  }
  ws(&j);
  return j.at == j.n ? found : -1;
}

/* ---- finding the supervisor ---- */

/* Where the command word is, past the global options (bin/berth.js commandAt): -1 when unsure. */
static int command_at(int argc, char **argv, int *traced) {
  int i = 1;
  *traced = 0;
  for (;;) {
    if (i >= argc) return i;
    const char *a = argv[i];
    if (strcmp(a, "--trace") == 0) {
      *traced = 1;
      i++;
    } else if (strcmp(a, "-n") == 0 || strcmp(a, "--namespace") == 0) {
      if (i + 1 >= argc) return -1;
      i += 2;
    } else if ((a[0] == '-' && a[1] == 'n' && a[2]) || strncmp(a, "--namespace=", 12) == 0) {
      i++;
    } else {
      return i;
    }
  }
}

/* The words served (served.ts SERVED_COMMANDS, and the help and version words of cli.ts). */
static const char *const served_words[] = {"ps", "images", "run", "--help", "-h", "help", "--version", "version", 0};

static int served_word(const char *w) {
  if (!w) return 1; /* `berth` alone prints the help */
  for (int i = 0; served_words[i]; i++)
    if (strcmp(w, served_words[i]) == 0) return 1;
  return 0;
}

/* The run root as the config finds it: BERTH_RUN_ROOT, else the config file's, else /run/berth. */
static int run_root(struct buf *out) {
  const char *env = getenv("BERTH_RUN_ROOT");
  if (env && *env) {
    puts_(out, env);
    return 0;
  }
  const char *file = getenv("BERTH_CONFIG");
  if (!file) file = "/etc/berth/config.json";
  /* A relative path is the command's own run's to resolve; a fifo or device is read once, by it. */
  if (file[0] != '/') return -1;
  struct stat st;
  if (stat(file, &st) != 0) {
    if (errno != ENOENT) return -1;
    puts_(out, "/run/berth");
    return 0;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX) return -1;
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  struct buf text = {0};
  char chunk[8192];
  ssize_t r;
  while ((r = read(fd, chunk, sizeof chunk)) > 0 && text.len <= CONFIG_MAX) put(&text, chunk, (size_t)r);
  close(fd);
  int found = r < 0 || text.len > CONFIG_MAX ? -1 : config_run_root(text.p ? text.p : "", text.len, out);
  free(text.p);
  if (found < 0 || (found == 1 && out->len == 0)) return -1;
  if (found == 0) puts_(out, "/run/berth");
  /* A run root with a NUL in it is no path. */
  return strlen(out->p) == out->len ? 0 : -1;
}

/* ---- talking to the supervisor ---- */

/* The conversation with the supervisor, shared with the signal handling below. */
static struct {
  int sock;
  int accepted; /* it sent A (and this client said go) */
  int taken;    /* the command takes signals (S, until U) */
  int pending;  /* a signal that came before A: the command is then not started */
} conv = {.sock = -1};

static int sigpipe_fds[2] = {-1, -1};

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  (void)!write(sigpipe_fds[1], &b, 1);
  errno = saved;
}

/* Ends this process by `sig`, as the CLI run by hand would end. */
static void die_by(int sig) {
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, 0);
  raise(sig);
  _exit(128 + sig);
}

/* To the supervisor: a socket it closed must not end this process by SIGPIPE. */
static int send_all(int sock, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(sock, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/*
 * The signals that came: forwarded while the command takes them, kept while it was not accepted
 * yet, else the end of this process, as of the CLI run by hand.
 */
static void handle_signals(void) {
  unsigned char sig;
  while (read(sigpipe_fds[0], &sig, 1) == 1) {
    if (!conv.accepted) {
      conv.pending = sig;
      continue;
    }
    if (!conv.taken) die_by(sig);
    for (int i = 0; i < NFORWARDED; i++)
      if (forwarded[i] == sig) {
        char line[64];
        snprintf(line, sizeof line, "{\"op\":\"signal\",\"signal\":\"%s\"}\n", forwarded_names[i]);
        (void)send_all(conv.sock, line, strlen(line));
      }
  }
}

/*
 * Writes all of it to stdout or stderr: waiting on a descriptor left non-blocking (EAGAIN), and
 * handling the signals that interrupt a write blocked on a slow reader meanwhile.
 */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    /* A signal that cut a write short (some bytes taken: no EINTR) is handled now, too. */
    handle_signals();
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd q[2] = {{.fd = fd, .events = POLLOUT}, {.fd = sigpipe_fds[0], .events = POLLIN}};
        if (poll(q, 2, -1) < 0 && errno != EINTR) return -1;
        if (q[1].revents & POLLIN) handle_signals();
        continue;
      }
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* What came of asking the supervisor. */
enum { LOCAL = -1 };

/*
 * Asks the supervisor to run the command: its exit code, or LOCAL when this process must run it
 * (not served, refused, no answer within ANSWER_MS, or gone before it printed anything of a
 * command that can be run again).
 */
static int serve(int argc, char **argv, const char *pkg) {
  const char *v = getenv("BERTH_CLI_LOCAL");
  if (v && strcmp(v, "1") == 0) return LOCAL;
  v = getenv("BERTH_TRACE");
  if (v && strcmp(v, "1") == 0) return LOCAL;
  int traced;
  int at = command_at(argc, argv, &traced);
  if (at < 0 || traced) return LOCAL;
  const char *word = at < argc ? argv[at] : 0;
  if (!served_word(word)) return LOCAL;
  /* `run` starts a container: never run twice, so never run here once the supervisor took it. */
  int redo = !word || strcmp(word, "run") != 0;
  for (int i = 1; i < argc; i++)
    if (!utf8_ok((const unsigned char *)argv[i])) return LOCAL;
  for (char **e = environ; *e; e++)
    if (!utf8_ok((const unsigned char *)*e) || !strchr(*e, '=')) return LOCAL;

  struct buf root = {0};
  if (run_root(&root)) return LOCAL;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int plen = snprintf(addr.sun_path, sizeof addr.sun_path, "%s%s", root.p,
                      root.len && root.p[root.len - 1] == '/' ? "supervisor.sock" : "/supervisor.sock");
  free(root.p);
  /* A run root is an absolute path (the config says so): another is the command's own run's to judge. */
  if (plen < 0 || (size_t)plen >= sizeof addr.sun_path || addr.sun_path[0] != '/') return LOCAL;
  struct stat st;
  /* The command line and its environment go only to a socket of root or of this user. */
  if (stat(addr.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()))
    return LOCAL;
  char bundle[PATH_MAX];
  if (snprintf(bundle, sizeof bundle, "%s/dist/bundle/served.cjs", pkg) >= (int)sizeof bundle) return LOCAL;
  if (stat(bundle, &st) != 0) return LOCAL;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd) || cwd[0] != '/' || !utf8_ok((unsigned char *)cwd)) return LOCAL;

  struct buf req = {0};
  puts_(&req, "{\"op\":\"run\",\"argv\":[");
  for (int i = 1; i < argc; i++) {
    if (i > 1) put(&req, ",", 1);
    json_string(&req, argv[i]);
  }
  puts_(&req, "],\"env\":{");
  int first = 1;
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    /* A name the environment repeats: JSON.parse keeps the last, getenv (Node's too) the first. */
    int dup = 0;
    for (char **f = environ; f < e; f++)
      if (strncmp(*f, *e, (size_t)(eq - *e) + 1) == 0) dup = 1;
    if (dup) continue;
    if (!first) put(&req, ",", 1);
    first = 0;
    struct buf name = {0};
    put(&name, *e, (size_t)(eq - *e));
    json_string(&req, name.p ? name.p : "");
    free(name.p);
    put(&req, ":", 1);
    json_string(&req, eq + 1);
  }
  char tail[128];
  snprintf(tail, sizeof tail, "},\"bundleMtimeNs\":\"%lld%09ld\",\"cwd\":", (long long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec);
  puts_(&req, tail);
  json_string(&req, cwd);
  puts_(&req, "}\n");

  /* Connecting, sending and the answer share the one ANSWER_MS (each call at most that long). */
  long long deadline = now_ms() + ANSWER_MS;
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return LOCAL;
  /* A supervisor that does not take the connection or the request (its backlog or buffer full)
   * costs at most ANSWER_MS, as one that does not answer. */
  struct timeval limit = {.tv_sec = ANSWER_MS / 1000, .tv_usec = (ANSWER_MS % 1000) * 1000};
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  struct ucred peer;
  socklen_t peer_len = sizeof peer;
  int ok = connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0 &&
           /* The listening process runs as root or as this user (the file's owner aside). */
           getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) == 0 &&
           (peer.uid == 0 || peer.uid == geteuid()) && send_all(sock, req.p, req.len) == 0;
  free(req.p);
  if (!ok) {
    close(sock);
    return LOCAL;
  }
  struct timeval none = {0};
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  conv.sock = sock;

  /* Signals go through a pipe to the loop below, which forwards them or ends this process by them. */
  if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(sock);
    return LOCAL;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < NFORWARDED; i++) sigaction(forwarded[i], &sa, 0);

  int printed = 0;
  unsigned char head[5];
  size_t head_len = 0, left = 0;
  int type = 0;
  char small[4096];
  size_t small_len = 0;
  char chunk[65536];
  for (;;) {
    struct pollfd p[2] = {{.fd = sock, .events = POLLIN}, {.fd = sigpipe_fds[0], .events = POLLIN}};
    int timeout = conv.accepted ? -1 : (int)(deadline - now_ms());
    /* No answer in time: this process runs the command; the supervisor, never told `go`, does not. */
    if (!conv.accepted && timeout <= 0) break;
    int n = poll(p, 2, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) break;
    if (p[1].revents & POLLIN) handle_signals();
    if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t r = read(sock, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t i = 0; i < r;) {
      if (head_len < 5) {
        /* An old supervisor answers in JSON lines: not a frame this client knows. */
        if (head_len == 0 && !conv.accepted && chunk[i] != F_ACCEPTED && chunk[i] != F_REFUSED) goto gone;
        head[head_len++] = (unsigned char)chunk[i++];
        if (head_len < 5) continue;
        type = head[0];
        left = (size_t)head[1] << 24 | (size_t)head[2] << 16 | (size_t)head[3] << 8 | head[4];
        small_len = 0;
      }
      size_t take = (size_t)(r - i) < left ? (size_t)(r - i) : left;
      if (type == F_OUT || type == F_ERR) {
        if (take > 0) {
          printed = 1;
          /* A reader that went away (`berth ps | head -1`): SIGPIPE ends this process, as it would Node's. */
          if (write_all(type == F_OUT ? 1 : 2, chunk + i, take) != 0) {
            if (errno == EPIPE) die_by(SIGPIPE);
            fprintf(stderr, "berth: cannot write the output: %s\n", strerror(errno));
            _exit(1);
          }
        }
      } else {
        if (small_len + take > sizeof small - 1) goto gone;
        memcpy(small + small_len, chunk + i, take);
        small_len += take;
      }
      i += (ssize_t)take;
      left -= take;
      if (left > 0) continue;
      head_len = 0;
      small[small_len] = 0;
      switch (type) {
      case F_ACCEPTED:
        /* A signal came while it waited: the CLI run by hand would have ended before doing
         * anything, so the command is not started (never told go) and this process ends by it. */
        if (conv.pending) {
          close(sock);
          die_by(conv.pending);
        }
        /* The command runs once told so: had this client given up, it would not. */
        if (send_all(sock, "{\"op\":\"go\"}\n", 12) != 0) goto gone;
        conv.accepted = 1;
        break;
      case F_REFUSED:
        goto gone;
      case F_TAKEN:
        conv.taken = 1;
        break;
      case F_LEFT:
        conv.taken = 0;
        break;
      case F_EXIT:
        close(sock);
        return atoi(small) & 0xff;
      case F_OUT:
      case F_ERR:
        break;
      default:
        goto gone;
      }
      if (!conv.accepted) goto gone;
    }
  }
gone:
  close(sock);
  if (conv.pending) die_by(conv.pending);
  if (!conv.accepted || (redo && !printed)) {
    for (int i = 0; i < NFORWARDED; i++) signal(forwarded[i], SIG_DFL);
    return LOCAL;
  }
  fputs("berth: the berth up supervisor went away before the command finished\n", stderr);
  return 1;
}

/* As bin/berth: Node started without NODE_EXTRA_CA_CERTS, which moves to BERTH_EXTRA_CA_CERTS. */
static void move_extra_ca(void) {
  unsetenv("BERTH_EXTRA_CA_CERTS");
  const char *ca = getenv("NODE_EXTRA_CA_CERTS");
  struct stat st;
  if (!ca || !*ca || stat(ca, &st) != 0 || !S_ISREG(st.st_mode) || access(ca, R_OK) != 0) return;
  const char *opts = getenv("NODE_OPTIONS");
  char *spaced = 0;
  if (asprintf(&spaced, " %s", opts ? opts : "") < 0) return;
  int preload = strstr(spaced, "--require") || strstr(spaced, " -r ") || strstr(spaced, "--import") ||
                strstr(spaced, "--loader") || strstr(spaced, "--experimental-loader");
  free(spaced);
  if (preload) return;
  char *copy = strdup(ca);
  if (!copy) return;
  setenv("BERTH_EXTRA_CA_CERTS", copy, 1);
  unsetenv("NODE_EXTRA_CA_CERTS");
  free(copy);
}

int main(int argc, char **argv) {
  /* The package directory: this file is its dist/berth. */
  char self[PATH_MAX];
  /* Without /proc (a chroot), the path it was started by, when that names it. */
  if (!realpath("/proc/self/exe", self) && !(strchr(argv[0], '/') && realpath(argv[0], self))) {
    perror("berth: cannot find its own file");
    return 1;
  }
  char *slash = strrchr(self, '/');
  if (slash) *slash = 0;
  slash = strrchr(self, '/');
  if (slash) *slash = 0;
  move_extra_ca();
  int code = serve(argc, argv, self);
  if (code != LOCAL) return code;
  char js[PATH_MAX];
  if (snprintf(js, sizeof js, "%s/bin/berth.js", self) >= (int)sizeof js) return 1;
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) return 1;
  args[0] = "node";
  args[1] = js;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  execvp("node", args);
  fprintf(stderr, "berth: cannot run node: %s\n", strerror(errno));
  return 127;
}
