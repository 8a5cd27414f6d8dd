import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { diskError } from '@berth/kit';
import { EntryType, nameText, type TarEntry, type TarSink } from '@berth/tar';
import { errCode, type NativeFs, nativeFs, type Timespec } from '../fs/native.js';

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/** Prefix of a whiteout entry and the name of the opaque-directory marker (OCI layer spec). */
export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/**
 * Cleans a tar name into a path relative to the layer root: "." and empty components dropped,
 * ".." resolved lexically and clamped at the root (as containerd's filepath.Clean + RootPath),
 * a leading "/" ignored. Returns "" when the entry names the root itself.
 */
export function cleanName(name: string): string {
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return out.join('/');
}

/**
 * Directory times are applied at the end, so each directory entry is remembered until then; this
 * bounds that memory (about 150 MB) against a layer made of nothing but directory entries.
 */
const MAX_DIRS = 1_000_000;

const EPOCH: Timespec = { sec: 0, nsec: 0 };
// Go's time.Unix(0, 1<<63-1): containerd's boundTime maps anything outside [epoch, 2262] to the epoch.
const MAX_SEC = 9_223_372_036;

/** containerd's boundTime: times before 1970 or past 2262 become the epoch. */
export function boundTime(t: Timespec): Timespec {
  return t.sec < 0 || t.sec > MAX_SEC ? EPOCH : t;
}

/** The times an entry gets: atime is the later of atime and mtime (containerd's latestTime). */
function timesOf(e: TarEntry): { at: Timespec; mt: Timespec } {
  const mt = boundTime(e.mtime);
  const a = e.atime ? boundTime(e.atime) : mt;
  const at = a.sec > mt.sec || (a.sec === mt.sec && a.nsec > mt.nsec) ? a : mt;
  return { at, mt };
}

function split(rel: string): [string, string] {
  const i = rel.lastIndexOf('/');
  return i < 0 ? ['', rel] : [rel.slice(0, i), rel.slice(i + 1)];
}

interface DirTime {
  rel: string;
  atimeS: number;
  atimeNs: number;
  mtimeS: number;
  mtimeNs: number;
}

/** Options of a LayerWriter. */
export interface LayerWriterOptions {
  /** The directory the layer is written into (a snapshot's fs dir, i.e. an overlay upperdir). */
  root: string;
  /** fs dirs of the parent snapshots, nearest first: a parent dir missing from the layer copies its attributes from them. */
  parents: readonly string[];
  /** What the layer is called in error messages. */
  what: string;
}

/**
 * Writes tar entries into a directory exactly as containerd's overlay fast path does: regular
 * files, dirs, symlinks, hardlinks, devices, FIFOs with modes, owners, xattrs and times;
 * `.wh.<name>` becomes a 0/0 character device and `.wh..wh..opq` the trusted.overlay.opaque=y
 * xattr. Every parent is resolved with openat2(RESOLVE_IN_ROOT) and the final component is never
 * followed, so nothing outside `root` is ever created, written, chmod-ed or chown-ed.
 */
export class LayerWriter implements TarSink {
  private readonly fs: NativeFs = nativeFs();
  private rootFd: number;
  private parentRel: string | undefined;
  private parentFd = -1;
  private file: { fd: number; e: TarEntry; rel: string } | undefined;
  private readonly dirs: DirTime[] = [];
  private lowerFds: (number | undefined)[] | undefined;
  /** Inodes created (for usage accounting). */
  inodes = 0;

  constructor(private readonly opts: LayerWriterOptions) {
    this.rootFd = this.fs.openRoot(opts.root);
  }

  entry(e: TarEntry): void {
    const rel = cleanName(e.name);
    if (rel === '') return; // resolves to the root: ignored, as containerd does
    try {
      this.apply(e, rel);
    } catch (err) {
      throw this.wrap(err, e.name);
    }
  }

  data(chunk: Buffer): void {
    const f = this.file;
    if (!f) return;
    try {
      this.fs.writeAll(f.fd, chunk, 0, chunk.length);
    } catch (err) {
      throw this.wrap(err, f.e.name);
    }
  }

  endEntry(): void {
    const f = this.file;
    if (!f) return;
    this.file = undefined;
    const { e } = f;
    const { at, mt } = timesOf(e);
    try {
      this.fs.finishFile(f.fd, e.uid, e.gid, e.mode, at.sec, at.nsec, mt.sec, mt.nsec, e.xattrs);
    } catch (err) {
      throw this.wrap(err, e.name);
    }
  }

  /** Sets directory times last, since creating entries inside a directory changes its mtime. */
  finish(): void {
    this.dropParent();
    for (const d of this.dirs) {
      const [p, base] = split(d.rel);
      let fd: number;
      try {
        fd = this.fs.resolveDir(this.rootFd, p);
      } catch (err) {
        if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') continue;
        throw this.wrap(err, d.rel);
      }
      try {
        this.fs.setTimesAt(fd, base, d.atimeS, d.atimeNs, d.mtimeS, d.mtimeNs);
      } catch (err) {
        if (errCode(err) !== 'ENOENT') throw this.wrap(err, d.rel);
      } finally {
        this.fs.close(fd);
      }
    }
  }

  /** Releases every descriptor; safe to call more than once and after errors. */
  close(): void {
    if (this.file) {
      try {
        this.fs.close(this.file.fd);
      } catch {}
      this.file = undefined;
    }
    this.dropParent();
    for (const fd of this.lowerFds ?? []) if (fd !== undefined && fd >= 0) this.fs.close(fd);
    this.lowerFds = undefined;
    if (this.rootFd >= 0) {
      try {
        this.fs.close(this.rootFd);
      } catch {}
      this.rootFd = -1;
    }
  }

  private apply(e: TarEntry, rel: string): void {
    const [parent, base] = split(rel);
    const fs = this.fs;
    if (base.startsWith(WHITEOUT_PREFIX)) {
      this.whiteout(e, parent, base);
      return;
    }
    const dfd = this.parentDir(parent);
    const { at, mt } = timesOf(e);
    switch (e.type) {
      case EntryType.file: {
        const fd = this.replace(dfd, base, false, () => fs.createFileAt(dfd, base)) as number;
        this.inodes++;
        if (e.size === 0) {
          fs.finishFile(fd, e.uid, e.gid, e.mode, at.sec, at.nsec, mt.sec, mt.nsec, e.xattrs);
        } else {
          this.file = { fd, e, rel };
        }
        return;
      }
      case EntryType.dir: {
        this.replace(dfd, base, true, () => fs.mkdirAt(dfd, base, 0o700));
        this.inodes++;
        fs.setMetaAt(dfd, base, e.uid, e.gid, e.mode, e.xattrs);
        if (this.dirs.length >= MAX_DIRS) {
          throw new BerthError(
            Code.RESOURCE_EXHAUSTED,
            `more than ${MAX_DIRS} directory entries in one layer`,
          );
        }
        this.dirs.push({ rel, atimeS: at.sec, atimeNs: at.nsec, mtimeS: mt.sec, mtimeNs: mt.nsec });
        return;
      }
      case EntryType.symlink: {
        this.replace(dfd, base, false, () => fs.symlinkAt(e.linkname, dfd, base));
        this.inodes++;
        fs.setMetaAt(dfd, base, e.uid, e.gid, -1, e.xattrs);
        fs.setTimesAt(dfd, base, at.sec, at.nsec, mt.sec, mt.nsec);
        return;
      }
      case EntryType.hardlink: {
        const target = cleanName(e.linkname);
        if (target === '') throw new BerthError(Code.INVALID_ARGUMENT, `hardlink to the layer root`);
        const [tp, tb] = split(target);
        let tfd: number;
        try {
          tfd = fs.resolveDir(this.rootFd, tp);
        } catch (err) {
          throw this.missingLink(err, e);
        }
        try {
          this.replace(dfd, base, false, () => fs.linkAt(tfd, tb, dfd, base));
        } catch (err) {
          throw this.missingLink(err, e);
        } finally {
          fs.close(tfd);
        }
        return;
      }
      case EntryType.char:
      case EntryType.block:
      case EntryType.fifo: {
        const kind = e.type === EntryType.char ? S_IFCHR : e.type === EntryType.block ? S_IFBLK : S_IFIFO;
        this.replace(dfd, base, false, () => fs.mknodAt(dfd, base, kind | 0o600, e.devmajor, e.devminor));
        this.inodes++;
        fs.setMetaAt(dfd, base, e.uid, e.gid, e.mode, e.xattrs);
        fs.setTimesAt(dfd, base, at.sec, at.nsec, mt.sec, mt.nsec);
        return;
      }
    }
  }

  private missingLink(err: unknown, e: TarEntry): unknown {
    const c = errCode(err);
    if (c === 'ENOENT' || c === 'ENOTDIR') {
      return new BerthError(
        Code.INVALID_ARGUMENT,
        `hardlink target "${nameText(e.linkname)}" does not exist in the layer`,
      );
    }
    return err;
  }

  /**
   * Creates `base` in dfd; if something is already there it is removed first, except a
   * directory that a directory entry merges into (containerd's rule for duplicate entries).
   */
  private replace<T>(dfd: number, base: string, isDir: boolean, create: () => T): T | undefined {
    try {
      return create();
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
    }
    const st = this.fs.lstatAt(dfd, base);
    if (st && isDir && ((st[0] as number) & S_IFMT) === S_IFDIR) return undefined;
    this.fs.removeAllAt(dfd, base);
    return create();
  }

  private whiteout(e: TarEntry, parent: string, base: string): void {
    const dfd = this.parentDir(parent);
    if (base === WHITEOUT_OPAQUE) {
      this.fs.setXattrAt(dfd, '', 'trusted.overlay.opaque', Buffer.from('y'));
      return;
    }
    const orig = base.slice(WHITEOUT_PREFIX.length);
    if (orig === '' || orig === '.' || orig === '..') {
      throw new BerthError(Code.INVALID_ARGUMENT, `invalid whiteout name "${nameText(base)}"`);
    }
    this.fs.mknodAt(dfd, orig, S_IFCHR, 0, 0);
    this.inodes++;
    this.fs.setMetaAt(dfd, orig, e.uid, e.gid, -1, undefined);
  }

  private dropParent(): void {
    if (this.parentFd >= 0) this.fs.close(this.parentFd);
    this.parentFd = -1;
    this.parentRel = undefined;
  }

  /** The directory `rel` inside the root (cached for runs of entries in one directory). */
  private parentDir(rel: string): number {
    if (this.parentRel === rel && this.parentFd >= 0) return this.parentFd;
    this.dropParent();
    let fd: number;
    try {
      fd = this.fs.resolveDir(this.rootFd, rel);
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
      fd = this.makeParents(rel);
    }
    this.parentFd = fd;
    this.parentRel = rel;
    return fd;
  }

  /**
   * Creates the missing directories of `rel` one level at a time, each inside the resolved
   * directory above it; a new directory takes mode, owner and times from the nearest parent
   * snapshot that has it (so the overlay shows the same directory), else 0755 root.
   */
  private makeParents(rel: string): number {
    const comps = rel.split('/');
    let prev = this.fs.resolveDir(this.rootFd, '');
    try {
      for (let i = 1; i <= comps.length; i++) {
        const prefix = comps.slice(0, i).join('/');
        let next: number;
        try {
          next = this.fs.resolveDir(this.rootFd, prefix);
        } catch (err) {
          if (errCode(err) !== 'ENOENT') throw err;
          const name = comps[i - 1] as string;
          this.fs.mkdirAt(prev, name, 0o755);
          this.inodes++;
          this.copyFromLower(prev, name, prefix);
          next = this.fs.resolveDir(this.rootFd, prefix);
        }
        this.fs.close(prev);
        prev = next;
      }
      return prev;
    } catch (err) {
      this.fs.close(prev);
      throw err;
    }
  }

  private copyFromLower(dfd: number, name: string, prefix: string): void {
    this.lowerFds ??= this.opts.parents.map((p) => {
      try {
        return this.fs.openRoot(p);
      } catch {
        return undefined;
      }
    });
    for (const lfd of this.lowerFds) {
      if (lfd === undefined) continue;
      let fd: number;
      try {
        fd = this.fs.resolveDir(lfd, prefix);
      } catch (err) {
        // Absent there: look further down. Present but not a directory (a file, or the whiteout
        // that deleted it): the directory below was replaced, so its attributes do not apply and
        // the defaults do, as containerd's mkparent.
        if (errCode(err) === 'ENOENT') continue;
        break;
      }
      try {
        const st = this.fs.lstatAt(fd, '');
        if (!st) continue;
        const [mode, uid, gid, , as, ans, ms, mns] = st as [
          number,
          number,
          number,
          number,
          number,
          number,
          number,
          number,
        ];
        this.fs.setMetaAt(dfd, name, uid, gid, mode & 0o7777, this.lowerXattrs(fd));
        this.fs.setTimesAt(dfd, name, as, ans, ms, mns);
        return;
      } finally {
        this.fs.close(fd);
      }
    }
    this.fs.setMetaAt(dfd, name, 0, 0, 0o755, undefined);
  }

  /**
   * The xattrs a directory created for a lower one takes from it, as containerd's copyUpXAttrs:
   * all but trusted.* (trusted.overlay.opaque there must not hide the layers below this one).
   * Read through /proc/self/fd/N/. so the directory is the one resolved inside the parent's root.
   */
  private lowerXattrs(fd: number): [string, Buffer][] | undefined {
    const all = this.fs.listXattrs(`/proc/self/fd/${fd}/.`).filter(([k]) => !k.startsWith('trusted.'));
    return all.length > 0 ? all : undefined;
  }

  private wrap(err: unknown, name: string): BerthError {
    const what = `${this.opts.what}: entry "${nameText(name)}"`;
    if (err instanceof BerthError) return new BerthError(err.code, `${what}: ${err.message}`, { cause: err });
    const c = errCode(err);
    const msg = (err as Error)?.message ?? String(err);
    // A full, over-quota or failing disk names the file in the snapshot that could not be written;
    // the unpacker removes the whole extract snapshot after this.
    const full = diskError(err, { what: this.opts.what, path: join(this.opts.root, cleanName(name)) });
    if (full) return full;
    const layerFault = [
      'ENOENT',
      'EEXIST',
      'ENOTDIR',
      'EISDIR',
      'ELOOP',
      'EXDEV',
      'ENAMETOOLONG',
      'EINVAL',
      'EMLINK',
      'EPERM',
    ];
    if (c && layerFault.includes(c)) {
      return new BerthError(Code.INVALID_ARGUMENT, `${what} cannot be applied: ${msg}`, { cause: err });
    }
    return new BerthError(Code.INTERNAL, `${what}: ${msg}`, { cause: err });
  }
}
