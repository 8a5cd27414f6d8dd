// berth_fs: the few file-system calls the layer unpacker needs that Node does not offer
// (mknod, xattrs on any inode, lchown/utimensat without following symlinks) plus path
// resolution confined to a root with openat2(RESOLVE_IN_ROOT), so a hostile layer can never
// make the unpacker create, change or chmod anything outside the snapshot directory.
//
// Every function is synchronous and works on directory file descriptors: the caller resolves
// a parent directory once (inside the root) and then names only the final component, which is
// never followed when it is a symlink. Names cross as latin1 strings so that tar names that are
// not valid UTF-8 keep their exact bytes. Errors are thrown as Error objects carrying `code`
// (e.g. "ENOENT"), `errno` and `syscall`, like Node's own fs errors.
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <unistd.h>

#define PATH_BUF 4096
#define MAX_ARGS 12

static const char *errno_code(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EXDEV: return "EXDEV";
    case ELOOP: return "ELOOP";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSPC: return "ENOSPC";
    case EBADF: return "EBADF";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENODATA: return "ENODATA";
    case EMLINK: return "EMLINK";
    case EAGAIN: return "EAGAIN";
    case EBUSY: return "EBUSY";
    case EROFS: return "EROFS";
    case EDQUOT: return "EDQUOT";
    case E2BIG: return "E2BIG";
    case ERANGE: return "ERANGE";
    default: return "EUNKNOWN";
  }
}

// An Error like Node's fs errors (message, code, errno, syscall) for errno e.
static napi_value errno_error(napi_env env, int e, const char *syscall_name, const char *path) {
  char msg[PATH_BUF + 256];
  snprintf(msg, sizeof msg, "%s, %s '%s'", errno_code(e), syscall_name, path ? path : "");
  napi_value m, err, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &err);
  napi_create_string_utf8(env, errno_code(e), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "code", v);
  napi_create_int32(env, -e, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  return err;
}

static napi_value throw_errno(napi_env env, int e, const char *syscall_name, const char *path) {
  napi_throw(env, errno_error(env, e, syscall_name, path));
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = MAX_ARGS;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, NULL, "berth_fs: missing arguments");
    return 0;
  }
  return 1;
}

static int get_i32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "berth_fs: expected an integer");
    return 0;
  }
  return 1;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  if (napi_get_value_int64(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "berth_fs: expected a number");
    return 0;
  }
  return 1;
}

// Names are latin1 strings whose code units are the raw bytes of the path.
static int get_name(napi_env env, napi_value v, char *buf, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_latin1(env, v, buf, cap, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "berth_fs: expected a string");
    return 0;
  }
  if (len >= cap - 1) {
    napi_throw_range_error(env, "ENAMETOOLONG", "berth_fs: path too long");
    return 0;
  }
  if (memchr(buf, 0, len) != NULL) {
    napi_throw_type_error(env, NULL, "berth_fs: path contains a NUL byte");
    return 0;
  }
  return 1;
}

static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static napi_value undef(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static int openat2_in_root(int rootfd, const char *rel, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  int fd;
  do {
    fd = (int)syscall(SYS_openat2, rootfd, rel[0] ? rel : ".", &how, sizeof how);
  } while (fd < 0 && errno == EAGAIN);
  return fd;
}

// openRoot(path): an O_PATH descriptor of a directory that later calls treat as "/".
static napi_value OpenRoot(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  char path[PATH_BUF];
  if (!get_args(env, info, 1, argv) || !get_name(env, argv[0], path, sizeof path)) return NULL;
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", path);
  return num(env, fd);
}

// resolveDir(rootfd, rel): an O_PATH descriptor of directory `rel`, every symlink on the way
// resolved as if rootfd were "/" (absolute targets and ".." cannot leave the root).
static napi_value ResolveDir(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t rootfd;
  char rel[PATH_BUF];
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[0], &rootfd) ||
      !get_name(env, argv[1], rel, sizeof rel))
    return NULL;
  int fd = openat2_in_root(rootfd, rel, O_PATH | O_DIRECTORY);
  if (fd < 0) return throw_errno(env, errno, "openat2", rel);
  return num(env, fd);
}

static napi_value Close(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &fd)) return NULL;
  if (close(fd) < 0) return throw_errno(env, errno, "close", NULL);
  return undef(env);
}

static napi_value stat_array(napi_env env, const struct stat *st) {
  napi_value arr;
  napi_create_array_with_length(env, 11, &arr);
  double vals[11] = {
      (double)st->st_mode,          (double)st->st_uid,           (double)st->st_gid,
      (double)st->st_size,          (double)st->st_atim.tv_sec,   (double)st->st_atim.tv_nsec,
      (double)st->st_mtim.tv_sec,   (double)st->st_mtim.tv_nsec,  (double)major(st->st_rdev),
      (double)minor(st->st_rdev),   (double)st->st_blocks,
  };
  for (uint32_t i = 0; i < 11; i++) napi_set_element(env, arr, i, num(env, vals[i]));
  return arr;
}

// lstatAt(dirfd, name): [mode, uid, gid, size, atimeS, atimeNs, mtimeS, mtimeNs, major, minor,
// blocks], or null when the name does not exist. Never follows a final symlink.
static napi_value LstatAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd;
  char name[PATH_BUF];
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name))
    return NULL;
  struct stat st;
  int flags = AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH);
  if (fstatat(dirfd, name, &st, flags) < 0) {
    if (errno == ENOENT) {
      napi_value n;
      napi_get_null(env, &n);
      return n;
    }
    return throw_errno(env, errno, "fstatat", name);
  }
  return stat_array(env, &st);
}

static napi_value MkdirAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd, mode;
  char name[PATH_BUF];
  if (!get_args(env, info, 3, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name) || !get_i32(env, argv[2], &mode))
    return NULL;
  if (mkdirat(dirfd, name, (mode_t)mode) < 0) return throw_errno(env, errno, "mkdirat", name);
  return undef(env);
}

// Removes `name` under dirfd and, when it is a directory, everything in it, never following
// a symlink: each level is opened with O_NOFOLLOW relative to its parent's descriptor.
static int remove_all_at(int dirfd, const char *name, int depth) {
  if (unlinkat(dirfd, name, 0) == 0) return 0;
  if (errno == ENOENT) return 0;
  if (errno != EISDIR && errno != EPERM) return -1;
  if (depth > 4096) {
    errno = ELOOP;
    return -1;
  }
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  struct dirent *de;
  int rc = 0;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (!de) {
      if (errno) rc = -1;
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (remove_all_at(fd, de->d_name, depth + 1) < 0) {
      rc = -1;
      break;
    }
  }
  int e = errno;
  closedir(d);
  if (rc < 0) {
    errno = e;
    return -1;
  }
  return unlinkat(dirfd, name, AT_REMOVEDIR);
}

static napi_value RemoveAllAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd;
  char name[PATH_BUF];
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name))
    return NULL;
  if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return throw_type(env, "berth_fs.removeAllAt: name must be one path component");
  if (remove_all_at(dirfd, name, 0) < 0) return throw_errno(env, errno, "remove", name);
  return undef(env);
}

// createFileAt(dirfd, name): a new regular file opened for writing (O_EXCL, O_NOFOLLOW).
static napi_value CreateFileAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd;
  char name[PATH_BUF];
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name))
    return NULL;
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return throw_errno(env, errno, "openat", name);
  return num(env, fd);
}

// writeAll(fd, buffer, offset, length): writes every byte, retrying short writes.
static napi_value WriteAll(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  int64_t off, len;
  void *data;
  size_t cap;
  if (!get_args(env, info, 4, argv) || !get_i32(env, argv[0], &fd)) return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &cap) != napi_ok)
    return throw_type(env, "berth_fs.writeAll: expected a Buffer");
  if (!get_i64(env, argv[2], &off) || !get_i64(env, argv[3], &len)) return NULL;
  if (off < 0 || len < 0 || (uint64_t)(off + len) > cap)
    return throw_type(env, "berth_fs.writeAll: range outside the buffer");
  const char *p = (const char *)data + off;
  while (len > 0) {
    ssize_t n = write(fd, p, (size_t)len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return throw_errno(env, errno, "write", NULL);
    }
    p += n;
    len -= n;
  }
  return undef(env);
}

static int read_times(napi_env env, napi_value *argv, struct timespec ts[2]) {
  int64_t as, ans, ms, mns;
  if (!get_i64(env, argv[0], &as) || !get_i64(env, argv[1], &ans) || !get_i64(env, argv[2], &ms) ||
      !get_i64(env, argv[3], &mns))
    return 0;
  ts[0].tv_sec = as;
  ts[0].tv_nsec = ans;
  ts[1].tv_sec = ms;
  ts[1].tv_nsec = mns;
  return 1;
}

// Applies xattrs given as a JS array of [name: string, value: Buffer] pairs; `path` is a
// /proc/self/fd path or NULL with `fd` an open (non O_PATH) descriptor.
// As containerd: an xattr the filesystem does not support (ENOTSUP) is skipped, and so is a user.*
// xattr on an inode other than a regular file or directory (the kernel refuses those with EPERM).
static int apply_xattrs(napi_env env, napi_value list, int fd, const char *path, char *key, size_t keycap,
                        int special) {
  napi_valuetype t;
  napi_typeof(env, list, &t);
  if (t != napi_object) return 0;
  uint32_t n = 0;
  napi_get_array_length(env, list, &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair, k, v;
    napi_get_element(env, list, i, &pair);
    napi_get_element(env, pair, 0, &k);
    napi_get_element(env, pair, 1, &v);
    size_t klen;
    if (napi_get_value_string_latin1(env, k, key, keycap, &klen) != napi_ok) return -2;
    void *data;
    size_t len;
    if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return -2;
    int rc = path ? setxattr(path, key, data, len, 0) : fsetxattr(fd, key, data, len, 0);
    if (rc < 0 && (errno == ENOTSUP || (errno == EPERM && special && strncmp(key, "user.", 5) == 0))) continue;
    if (rc < 0) return -1;
  }
  return 0;
}

// finishFile(fd, uid, gid, mode, atimeS, atimeNs, mtimeS, mtimeNs, xattrs): the metadata of a
// regular file just written, in the order that keeps it: chown (which clears setuid bits and
// security.capability), xattrs, chmod, times; then closes fd.
static napi_value FinishFile(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd, uid, gid, mode;
  struct timespec ts[2];
  if (!get_args(env, info, 9, argv) || !get_i32(env, argv[0], &fd) || !get_i32(env, argv[1], &uid) ||
      !get_i32(env, argv[2], &gid) || !get_i32(env, argv[3], &mode) || !read_times(env, argv + 4, ts))
    return NULL;
  const char *sc = NULL;
  char failed[1024] = "";
  if (fchown(fd, (uid_t)uid, (gid_t)gid) < 0) sc = "fchown";
  if (!sc) {
    int r = apply_xattrs(env, argv[8], fd, NULL, failed, sizeof failed, 0);
    if (r == -2) {
      close(fd);
      return throw_type(env, "berth_fs.finishFile: xattrs must be [string, Buffer][]");
    }
    if (r < 0) sc = "fsetxattr";
  }
  if (!sc && fchmod(fd, (mode_t)mode) < 0) sc = "fchmod";
  if (!sc && futimens(fd, ts) < 0) sc = "futimens";
  int e = errno;
  if (close(fd) < 0 && !sc) {
    e = errno;
    sc = "close";
  }
  if (sc) return throw_errno(env, e, sc, failed);
  return undef(env);
}

// setMetaAt(dirfd, name, uid, gid, mode, xattrs): metadata of a non-regular inode without
// opening it for I/O (device nodes are never opened) and without following a final symlink.
// mode < 0 skips chmod (symlinks have no mode of their own).
static napi_value SetMetaAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd, uid, gid, mode;
  char name[PATH_BUF];
  if (!get_args(env, info, 6, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name) || !get_i32(env, argv[2], &uid) ||
      !get_i32(env, argv[3], &gid) || !get_i32(env, argv[4], &mode))
    return NULL;
  if (fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) < 0)
    return throw_errno(env, errno, "fchownat", name);
  napi_valuetype t;
  napi_typeof(env, argv[5], &t);
  uint32_t nx = 0;
  if (t == napi_object) napi_get_array_length(env, argv[5], &nx);
  if (nx == 0 && mode < 0) return undef(env);
  // An O_PATH descriptor names the inode itself (a symlink stays a symlink); its /proc/self/fd
  // entry lets setxattr/chmod act on exactly that inode with no path walk through the layer.
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "openat", name);
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  char failed[1024] = "";
  struct stat st;
  int special = fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
  int r = nx ? apply_xattrs(env, argv[5], -1, proc, failed, sizeof failed, special) : 0;
  if (r == -2) {
    close(fd);
    return throw_type(env, "berth_fs.setMetaAt: xattrs must be [string, Buffer][]");
  }
  if (r < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "setxattr", failed);
  }
  if (mode >= 0 && fchmodat(AT_FDCWD, proc, (mode_t)mode, 0) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "chmod", name);
  }
  close(fd);
  return undef(env);
}

// setTimesAt(dirfd, name, atimeS, atimeNs, mtimeS, mtimeNs): utimensat without following.
static napi_value SetTimesAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd;
  char name[PATH_BUF];
  struct timespec ts[2];
  if (!get_args(env, info, 6, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name) || !read_times(env, argv + 2, ts))
    return NULL;
  if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0) return throw_errno(env, errno, "utimensat", name);
  return undef(env);
}

// mknodAt(dirfd, name, mode, major, minor): device nodes, FIFOs and overlay whiteouts (c 0 0).
static napi_value MknodAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd, mode, maj, min;
  char name[PATH_BUF];
  if (!get_args(env, info, 5, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name) || !get_i32(env, argv[2], &mode) ||
      !get_i32(env, argv[3], &maj) || !get_i32(env, argv[4], &min))
    return NULL;
  if (mknodat(dirfd, name, (mode_t)mode, makedev((unsigned)maj, (unsigned)min)) < 0)
    return throw_errno(env, errno, "mknodat", name);
  return undef(env);
}

// symlinkAt(target, dirfd, name)
static napi_value SymlinkAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd;
  char target[PATH_BUF], name[PATH_BUF];
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[0], target, sizeof target) ||
      !get_i32(env, argv[1], &dirfd) || !get_name(env, argv[2], name, sizeof name))
    return NULL;
  if (symlinkat(target, dirfd, name) < 0) return throw_errno(env, errno, "symlinkat", name);
  return undef(env);
}

// linkAt(olddirfd, oldname, newdirfd, newname): a hard link to the inode itself (a symlink
// target is linked as the symlink, never followed).
static napi_value LinkAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t ofd, nfd;
  char oname[PATH_BUF], nname[PATH_BUF];
  if (!get_args(env, info, 4, argv) || !get_i32(env, argv[0], &ofd) ||
      !get_name(env, argv[1], oname, sizeof oname) || !get_i32(env, argv[2], &nfd) ||
      !get_name(env, argv[3], nname, sizeof nname))
    return NULL;
  if (linkat(ofd, oname, nfd, nname, 0) < 0) return throw_errno(env, errno, "linkat", nname);
  return undef(env);
}

// setXattrAt(dirfd, name, key, value): one xattr on the inode `name` (not followed); an empty
// name means dirfd itself.
static napi_value SetXattrAt(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t dirfd;
  char name[PATH_BUF], key[1024];
  void *data;
  size_t len, klen;
  if (!get_args(env, info, 4, argv) || !get_i32(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name))
    return NULL;
  if (napi_get_value_string_latin1(env, argv[2], key, sizeof key, &klen) != napi_ok)
    return throw_type(env, "berth_fs.setXattrAt: key must be a string");
  if (napi_get_buffer_info(env, argv[3], &data, &len) != napi_ok)
    return throw_type(env, "berth_fs.setXattrAt: value must be a Buffer");
  int fd = name[0] ? openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : dup(dirfd);
  if (fd < 0) return throw_errno(env, errno, "openat", name);
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  int rc = setxattr(proc, key, data, len, 0);
  int e = errno;
  close(fd);
  if (rc < 0) return throw_errno(env, e, "setxattr", key);
  return undef(env);
}

// listXattrs(path): [[name, Buffer], ...] of an inode, not following a final symlink (for
// verification and copy-up of parent directories).
static napi_value ListXattrs(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  char path[PATH_BUF];
  if (!get_args(env, info, 1, argv) || !get_name(env, argv[0], path, sizeof path)) return NULL;
  ssize_t n = llistxattr(path, NULL, 0);
  if (n < 0) return throw_errno(env, errno, "llistxattr", path);
  char *names = malloc((size_t)n + 1);
  if (!names) return throw_errno(env, ENOMEM, "malloc", path);
  n = llistxattr(path, names, (size_t)n);
  if (n < 0) {
    int e = errno;
    free(names);
    return throw_errno(env, e, "llistxattr", path);
  }
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t idx = 0;
  for (ssize_t off = 0; off < n;) {
    const char *k = names + off;
    size_t kl = strlen(k);
    off += (ssize_t)kl + 1;
    ssize_t vl = lgetxattr(path, k, NULL, 0);
    if (vl < 0) continue;
    void *vbuf;
    napi_value buf, key, pair;
    napi_create_buffer(env, (size_t)vl, &vbuf, &buf);
    if (vl > 0 && lgetxattr(path, k, vbuf, (size_t)vl) < 0) continue;
    napi_create_string_latin1(env, k, kl, &key);
    napi_create_array_with_length(env, 2, &pair);
    napi_set_element(env, pair, 0, key);
    napi_set_element(env, pair, 1, buf);
    napi_set_element(env, arr, idx++, pair);
  }
  free(names);
  return arr;
}


// Disk usage as containerd's fs.DiskUsage counts it: every inode once (hardlinks not double
// counted), size in allocated 512-byte blocks. A small open-addressing set remembers inodes.
struct ino_set {
  unsigned long long *keys;
  size_t cap, len;
};

static int ino_add(struct ino_set *s, unsigned long long k) {
  if ((s->len + 1) * 2 > s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    unsigned long long *nk = calloc(ncap, sizeof *nk);
    if (!nk) return -1;
    for (size_t i = 0; i < s->cap; i++) {
      unsigned long long v = s->keys[i];
      if (!v) continue;
      size_t j = (size_t)(v * 0x9E3779B97F4A7C15ULL) & (ncap - 1);
      while (nk[j]) j = (j + 1) & (ncap - 1);
      nk[j] = v;
    }
    free(s->keys);
    s->keys = nk;
    s->cap = ncap;
  }
  k = k ? k : 1;
  size_t j = (size_t)(k * 0x9E3779B97F4A7C15ULL) & (s->cap - 1);
  while (s->keys[j]) {
    if (s->keys[j] == k) return 0;
    j = (j + 1) & (s->cap - 1);
  }
  s->keys[j] = k;
  s->len++;
  return 1;
}

static int du_walk(int dirfd, const char *name, struct ino_set *set, unsigned long long *bytes, int depth) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT ? 0 : -1;
  int added = ino_add(set, ((unsigned long long)st.st_dev << 40) ^ (unsigned long long)st.st_ino);
  if (added < 0) {
    errno = ENOMEM;
    return -1;
  }
  if (added) *bytes += (unsigned long long)st.st_blocks * 512ULL;
  if (!S_ISDIR(st.st_mode)) return 0;
  if (depth > 4096) {
    errno = ELOOP;
    return -1;
  }
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (du_walk(fd, de->d_name, set, bytes, depth + 1) < 0) {
      rc = -1;
      break;
    }
  }
  int e = errno;
  closedir(d);
  errno = e;
  return rc;
}

// diskUsage(path): [bytes, inodes] of the tree at path (not following symlinks).
static napi_value DiskUsage(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  char path[PATH_BUF];
  if (!get_args(env, info, 1, argv) || !get_name(env, argv[0], path, sizeof path)) return NULL;
  struct ino_set set = {NULL, 0, 0};
  unsigned long long bytes = 0;
  int rc = du_walk(AT_FDCWD, path, &set, &bytes, 0);
  int e = errno;
  size_t inodes = set.len;
  free(set.keys);
  if (rc < 0) return throw_errno(env, e, "diskUsage", path);
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, num(env, (double)bytes));
  napi_set_element(env, arr, 1, num(env, (double)inodes));
  return arr;
}

// diskUsageAsync(path): a Promise of [bytes, inodes], the walk run on libuv's thread pool so the
// event loop keeps serving (a walk of 20,000 files takes ~50 ms). Unlike diskUsage, a missing
// root rejects with ENOENT: the caller (the usage cache) drops the snapshot then.
struct du_work {
  napi_async_work work;
  napi_deferred deferred;
  char path[PATH_BUF];
  unsigned long long bytes;
  size_t inodes;
  int rc, err;
};

static void du_execute(napi_env env, void *data) {
  (void)env;
  struct du_work *w = data;
  struct stat st;
  if (fstatat(AT_FDCWD, w->path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    w->rc = -1;
    w->err = errno;
    return;
  }
  struct ino_set set = {NULL, 0, 0};
  w->rc = du_walk(AT_FDCWD, w->path, &set, &w->bytes, 0);
  w->err = errno;
  w->inodes = set.len;
  free(set.keys);
}

static void du_complete(napi_env env, napi_status status, void *data) {
  struct du_work *w = data;
  if (status != napi_ok) {
    napi_value m, err;
    napi_create_string_utf8(env, "berth_fs: diskUsageAsync was cancelled", NAPI_AUTO_LENGTH, &m);
    napi_create_error(env, NULL, m, &err);
    napi_reject_deferred(env, w->deferred, err);
  } else if (w->rc < 0) {
    napi_reject_deferred(env, w->deferred, errno_error(env, w->err, "diskUsage", w->path));
  } else {
    napi_value arr;
    napi_create_array_with_length(env, 2, &arr);
    napi_set_element(env, arr, 0, num(env, (double)w->bytes));
    napi_set_element(env, arr, 1, num(env, (double)w->inodes));
    napi_resolve_deferred(env, w->deferred, arr);
  }
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value DiskUsageAsync(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  struct du_work *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "diskUsage", NULL);
  if (!get_args(env, info, 1, argv) || !get_name(env, argv[0], w->path, sizeof w->path)) {
    free(w);
    return NULL;
  }
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "berth_fs.diskUsage", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, du_execute, du_complete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return promise;
}

#define EXPORT(name, fn)                                              \
  do {                                                                \
    napi_value f;                                                     \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);  \
    napi_set_named_property(env, exports, name, f);                   \
  } while (0)

static napi_value Init(napi_env env, napi_value exports) {
  EXPORT("openRoot", OpenRoot);
  EXPORT("resolveDir", ResolveDir);
  EXPORT("close", Close);
  EXPORT("lstatAt", LstatAt);
  EXPORT("mkdirAt", MkdirAt);
  EXPORT("removeAllAt", RemoveAllAt);
  EXPORT("createFileAt", CreateFileAt);
  EXPORT("writeAll", WriteAll);
  EXPORT("finishFile", FinishFile);
  EXPORT("setMetaAt", SetMetaAt);
  EXPORT("setTimesAt", SetTimesAt);
  EXPORT("mknodAt", MknodAt);
  EXPORT("symlinkAt", SymlinkAt);
  EXPORT("linkAt", LinkAt);
  EXPORT("setXattrAt", SetXattrAt);
  EXPORT("listXattrs", ListXattrs);
  EXPORT("diskUsage", DiskUsage);
  EXPORT("diskUsageAsync", DiskUsageAsync);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
