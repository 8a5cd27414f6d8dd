import { lstat, readFile, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BerthError, Code, type Mount } from '@berth/api';
import { lastLine, runCommand } from './command.js';
import { optionalAddon } from './native-addon.js';

/**
 * build/mount.node: mount(2), umount2(2) and pinned network namespaces, on libuv's thread pool
 * (native/mount.c). Rejections carry the errno's name as `code`.
 */
interface MountAddon {
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  pinNetns(path: string): Promise<void>;
}

/** MS_RDONLY of <sys/mount.h>. */
const MS_RDONLY = 1;
/** mount(2) flags of the options a tmpfs takes as words (<sys/mount.h>); `rw` is no flag. */
const TMPFS_FLAGS: Record<string, number> = {
  rw: 0,
  ro: MS_RDONLY,
  nosuid: 2,
  nodev: 4,
  noexec: 8,
  noatime: 1024,
  nodiratime: 2048,
  relatime: 1 << 21,
  strictatime: 1 << 24,
};
/** statfs(2) f_type of a tmpfs (TMPFS_MAGIC of <linux/magic.h>). */
const TMPFS_MAGIC = 0x01021994;
/** UMOUNT_NOFOLLOW of <sys/mount.h>: a symlink put where a mount point was is not followed. */
const UMOUNT_NOFOLLOW = 8;
/** Rounds of unmounting before giving up on mounts that keep coming back (propagation, a racer). */
const UNMOUNT_ROUNDS = 8;

/** The mount addon, or null when it is not built (mount(8) then does every mount). */
const mountAddon = optionalAddon<MountAddon>('mount');

/**
 * Makes a new network namespace, brings its `lo` up and bind-mounts it onto the existing file
 * `path`, in a thread of the addon's own (no unshare(1) process, no CNI loopback plugin); false
 * when the addon is not built (nothing was done). Rejects with the errno's name as the error's code.
 */
export async function pinNetnsNative(path: string): Promise<boolean> {
  const native = mountAddon();
  if (!native) return false;
  await native.pinNetns(path);
  return true;
}

/**
 * Unmounts the topmost mount at `path` with umount2(2) through the addon (no umount(8) process);
 * false when the addon is not built (nothing was done). Rejects with the errno's name as the
 * error's code.
 */
export async function umountNative(path: string): Promise<boolean> {
  const native = mountAddon();
  if (!native) return false;
  await native.umount2(path, UMOUNT_NOFOLLOW);
  return true;
}

/** True when overlays are mounted by mount(2) through the addon (it is built and loads). */
export function nativeOverlayMounts(): boolean {
  return mountAddon() !== null;
}

/**
 * The mount(2) arguments of an overlay whose options are all the filesystem's own (`key=value`)
 * plus at most `ro`; undefined for anything else, which mount(8) parses as it always has.
 */
export function overlaySyscall(m: Mount): { flags: number; data: string } | undefined {
  if (m.type !== 'overlay') return undefined;
  let flags = 0;
  const data: string[] = [];
  for (const o of m.options) {
    if (o === '') continue;
    if (o === 'ro') flags |= MS_RDONLY;
    else if (o.includes('=')) data.push(o);
    else return undefined;
  }
  return { flags, data: data.join(',') };
}

/**
 * Mounts a rootfs description (containerd-style Mount[]) on target, in order. An overlay with only
 * its own options is one mount(2) call through the addon (a snapshot's usual mount: no process
 * per container); anything else goes to mount(8): a `bind` mount as options only (`-o rbind,ro`),
 * every other type with `-t`.
 */
export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  for (const m of mounts) {
    const direct = overlaySyscall(m);
    const native = direct && mountAddon();
    if (direct && native) {
      await native.mount(m.source, target, m.type, direct.flags, direct.data).catch((err: Error) => {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `mounting the rootfs (${m.type} ${m.source}) on ${target} failed: ${err.message}`,
        );
      });
      continue;
    }
    const opts = m.options.filter((o) => o.length > 0);
    const args: string[] = [];
    if (m.type === 'bind' || m.type === 'rbind') {
      if (!opts.some((o) => o === 'bind' || o === 'rbind')) opts.unshift(m.type);
    } else {
      args.push('-t', m.type);
    }
    if (opts.length) args.push('-o', opts.join(','));
    args.push(m.source, target);
    const r = await runCommand('mount', args);
    if (r.code !== 0) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `mounting the rootfs (${m.type} ${m.source}) on ${target} failed: ${lastLine(r.stderr)}`,
      );
    }
  }
}

/**
 * The mount(2) arguments of a tmpfs from a spec mount's options: flag words (nosuid, nodev,
 * noexec, ro, ...) and the filesystem's own `key=value` (size, mode, nr_inodes, ...). Anything
 * else is INVALID_ARGUMENT (a bind option such as `rbind` means nothing to a tmpfs).
 */
export function tmpfsSyscall(options: string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    if (o === '') continue;
    const flag = TMPFS_FLAGS[o];
    if (flag !== undefined) flags |= flag;
    else if (/^[a-z_]+=[^,]+$/.test(o)) data.push(o);
    else throw new BerthError(Code.INVALID_ARGUMENT, `"${o}" is not an option of a tmpfs mount`);
  }
  return { flags, data: data.join(',') };
}

/**
 * Mounts a new tmpfs on target (an existing directory) with a spec mount's options (see
 * tmpfsSyscall): one mount(2) call through the addon, else mount(8).
 */
export async function mountTmpfs(source: string, target: string, options: string[]): Promise<void> {
  const { flags, data } = tmpfsSyscall(options);
  const failed = (why: string) =>
    new BerthError(Code.FAILED_PRECONDITION, `mounting a tmpfs (${source}) on ${target} failed: ${why}`);
  const native = mountAddon();
  if (native) {
    await native.mount(source, target, 'tmpfs', flags, data).catch((err: Error) => {
      throw failed(err.message);
    });
    return;
  }
  const opts = options.filter((o) => o !== '');
  const r = await runCommand('mount', [
    '-t',
    'tmpfs',
    ...(opts.length ? ['-o', opts.join(',')] : []),
    source,
    target,
  ]);
  if (r.code !== 0) throw failed(lastLine(r.stderr));
}

/**
 * True when a tmpfs is mounted at path itself: statfs(2) says tmpfs and its device is not its
 * parent directory's (a directory inside a tmpfs shares its device). False when path is absent.
 * Two stats instead of a read of the whole mount table.
 */
export async function isTmpfsMountPoint(path: string): Promise<boolean> {
  try {
    const [fs, own, parent] = await Promise.all([statfs(path), lstat(path), lstat(dirname(path))]);
    return fs.type === TMPFS_MAGIC && own.isDirectory() && own.dev !== parent.dev;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** True when something is mounted exactly at path (per /proc/self/mountinfo). */
export async function isMountPoint(path: string): Promise<boolean> {
  return (await mountsUnder(path, { exact: true })).length > 0;
}

/**
 * Mount points at and under path (per /proc/self/mountinfo), in the order they can be unmounted:
 * deepest first, and of mounts stacked on one point the later (upper) first. With `exact`, only
 * those at path itself.
 */
export async function mountsUnder(path: string, opts: { exact?: boolean } = {}): Promise<string[]> {
  const root = path.length > 1 ? path.replace(/\/+$/, '') : path;
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const found: { mp: string; depth: number; order: number }[] = [];
  for (const [order, line] of info.split('\n').entries()) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mp = unescapeMount(field);
    if (mp === root || (!opts.exact && mp.startsWith(root === '/' ? '/' : `${root}/`))) {
      found.push({ mp, depth: mp.split('/').length, order });
    }
  }
  return found.sort((a, b) => b.depth - a.depth || b.order - a.order).map((f) => f.mp);
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/**
 * Unmounts everything at and under path, submounts first, as `umount -R` does; nothing mounted is
 * fine. Through the addon each mount point is one umount2(2) call (no umount(8) process per
 * task); without it umount(8) does the work.
 */
export async function unmountAll(path: string): Promise<void> {
  const native = mountAddon();
  if (!native) {
    while (await isMountPoint(path)) {
      const r = await runCommand('umount', ['-R', path]);
      if (r.code !== 0) {
        throw new BerthError(Code.INTERNAL, `unmounting ${path} failed: ${lastLine(r.stderr)}`);
      }
    }
    return;
  }
  for (let round = 0; ; round++) {
    const points = await mountsUnder(path);
    if (points.length === 0) return;
    if (round === UNMOUNT_ROUNDS) {
      throw new BerthError(
        Code.INTERNAL,
        `unmounting ${path} failed: ${points.length} mounts still there after ${round} rounds (${points[0]})`,
      );
    }
    for (const mp of points) {
      await native.umount2(mp, UMOUNT_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
        // Gone meanwhile (unmounted with its parent, or by someone else): what was wanted.
        if (err.code === 'EINVAL' || err.code === 'ENOENT') return;
        throw new BerthError(Code.INTERNAL, `unmounting ${mp} (under ${path}) failed: ${err.message}`);
      });
    }
  }
}
