import { lstatSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { BerthError, Code, type Mount } from '@berth/api';

/** Options a bind of a snapshot may carry (what the snapshot-service hands out, and harmless flags). */
const BIND_FLAGS = new Set(['bind', 'rbind', 'ro', 'rw', 'nosuid', 'nodev', 'noexec', 'rprivate', 'private']);
/** Overlay options without a path; `index=off` is what the snapshot-service adds where the kernel has it. */
const OVERLAY_FLAGS = new Set(['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'userxattr', 'volatile']);
const OVERLAY_SETTINGS = /^(index|metacopy|redirect_dir|xino)=(on|off|auto|follow|nofollow)$/;

type Dir = 'fs' | 'work';

/**
 * Checks the rootfs mounts of a `create` before anything is made: only mounts the
 * snapshot-service makes are accepted, a bind of a snapshot's `fs` directory or an overlay whose
 * lowerdir, upperdir and workdir are snapshots' `fs` and `work` directories, all exactly
 * `<snapshotsRoot>/<id>/{fs,work}` (no other path, no `..`, no symlink on the way). runc creates
 * the mount points of /dev, /proc and the like inside whatever the rootfs is: a bind of a host
 * directory (/etc) would let a caller of the shim create and leave files anywhere on the host.
 * Throws INVALID_ARGUMENT naming the mount and the field.
 */
export async function checkRootfsMounts(
  mounts: readonly Mount[],
  snapshotsRoot: string,
  task: string,
): Promise<void> {
  const bad = (field: string, why: string) =>
    new BerthError(
      Code.INVALID_ARGUMENT,
      `task "${task}": ${field} ${why}; the shim mounts only snapshots under ${snapshotsRoot}`,
    );
  if (mounts.length === 0) {
    throw bad('rootfs', "is empty: a task's root filesystem must be a snapshot's mounts");
  }
  for (const [i, m] of mounts.entries()) {
    const at = `rootfs[${i}]`;
    for (const o of m.options) {
      // mount(8) gets the options joined by commas: a comma inside one would smuggle in another.
      if (o.includes(',')) throw bad(`${at}.options`, `"${o.slice(0, 200)}" contains a comma`);
    }
    if (m.type === 'bind' || m.type === 'rbind') {
      for (const o of m.options) {
        if (o !== '' && !BIND_FLAGS.has(o))
          throw bad(`${at}.options`, `"${o.slice(0, 200)}" is not an option of a snapshot bind`);
      }
      await checkDir(m.source, 'fs', snapshotsRoot, bad, `${at}.source`);
      continue;
    }
    if (m.type !== 'overlay') {
      throw bad(`${at}.type`, `"${m.type.slice(0, 100)}" is not a type of snapshot mount (bind or overlay)`);
    }
    if (m.source !== 'overlay') throw bad(`${at}.source`, `"${m.source.slice(0, 200)}" must be "overlay"`);
    const dirs: Partial<Record<'lowerdir' | 'upperdir' | 'workdir', string>> = {};
    for (const o of m.options) {
      if (o === '' || OVERLAY_FLAGS.has(o) || OVERLAY_SETTINGS.test(o)) continue;
      const eq = o.indexOf('=');
      const key = eq > 0 ? o.slice(0, eq) : '';
      if (key !== 'lowerdir' && key !== 'upperdir' && key !== 'workdir') {
        throw bad(`${at}.options`, `"${o.slice(0, 200)}" is not an option of a snapshot overlay`);
      }
      if (dirs[key] !== undefined) throw bad(`${at}.options`, `name ${key} twice`);
      dirs[key] = o.slice(eq + 1);
    }
    if (!dirs.lowerdir) throw bad(`${at}.options`, 'have no lowerdir');
    for (const [j, dir] of dirs.lowerdir.split(':').entries()) {
      await checkDir(dir, 'fs', snapshotsRoot, bad, `${at} lowerdir[${j}]`);
    }
    if ((dirs.upperdir === undefined) !== (dirs.workdir === undefined)) {
      throw bad(`${at}.options`, 'must name both upperdir and workdir, or neither');
    }
    if (dirs.upperdir !== undefined && dirs.workdir !== undefined) {
      const upper = await checkDir(dirs.upperdir, 'fs', snapshotsRoot, bad, `${at} upperdir`);
      const work = await checkDir(dirs.workdir, 'work', snapshotsRoot, bad, `${at} workdir`);
      if (upper !== work)
        throw bad(`${at} workdir`, `"${dirs.workdir}" is not the upperdir's snapshot's work directory`);
    }
  }
}

/**
 * Checks that `path` is exactly `<root>/<id>/<kind>` and that neither `<id>` nor `<kind>` is a
 * symlink (the snapshot-service makes both; a container can write only inside `fs`). Returns the id.
 */
async function checkDir(
  path: string,
  kind: Dir,
  root: string,
  bad: (field: string, why: string) => BerthError,
  field: string,
): Promise<string> {
  const prefix = `${root}/`;
  const rest = path.startsWith(prefix) ? path.slice(prefix.length) : '';
  const m = /^(\d{1,20})\/(fs|work)$/.exec(rest);
  if (!m || m[2] !== kind) {
    throw bad(field, `"${path.slice(0, 200)}" is not a snapshot's ${kind} directory (${root}/<id>/${kind})`);
  }
  const id = m[1] as string;
  for (const p of [join(root, id), path]) {
    // Inline: a stat takes microseconds in the kernel, a thread-pool trip for each of a create's
    // six to ten of them cost 0.2-0.4 ms apiece on a loaded node, one after the other.
    const st = lstatOrUndefined(p);
    if (!st?.isDirectory()) {
      throw bad(
        field,
        `"${path.slice(0, 200)}": ${p} is ${st ? 'not a directory (a symlink or a file)' : 'missing'}`,
      );
    }
  }
  return id;
}

/** The lstat of `path`, or undefined when it cannot be had (missing, a file on the way, no access). */
function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
