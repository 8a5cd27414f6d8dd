import { lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, SHIM_SHM_SOURCE } from '@berth/api';
import type { HostLayout } from '@berth/kit';
import { isTmpfsMountPoint, mountTmpfs, unmountAll } from '../runtime/mounts.js';
import { containerFilesDir } from './container-files.js';

/** Name of a container's shareable /dev/shm in its files directory (docs/layout.md). */
export const SHM_DIR = 'shm';

/** Options of the tmpfs that its bind into the container repeats (the rest are the tmpfs's own). */
const BIND_FLAGS = new Set(['ro', 'nosuid', 'nodev', 'noexec']);

type Obj = Record<string, unknown>;

/**
 * Makes the container's shareable /dev/shm (a spec mount of SHIM_SHM_SOURCE): a tmpfs with the
 * mount's options on containers/<ns>/<id>/shm, unless one is mounted there already (an earlier
 * task's whose exit could not unmount it), and turns the mount into a bind of it. Other containers
 * on the node bind that directory too (a CRI pod's containers). Returns the directory, or
 * undefined when the spec asks for none. The task's exit (ExitRecorder) and remove-files unmount it.
 */
export async function mountShareableShm(
  layout: HostLayout,
  spec: Obj,
  opts: { ns: string; id: string },
): Promise<string | undefined> {
  const mounts = Array.isArray(spec.mounts) ? (spec.mounts as Obj[]) : [];
  const marked = mounts.filter((m) => m.source === SHIM_SHM_SOURCE);
  if (marked.length === 0) return undefined;
  const dir = shmDirOf(layout, opts.ns, opts.id);
  for (const m of marked) {
    const options = Array.isArray(m.options) ? m.options.map(String) : [];
    if (m.type !== 'tmpfs') {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `task "${opts.id}": mount "${SHIM_SHM_SOURCE}" on ${String(m.destination)} must be a tmpfs, not ${String(m.type)}`,
      );
    }
    await mkdir(dir, { recursive: true, mode: 0o711 });
    // mount(2) follows a symlink: only the directory made here is mounted on.
    if (!(await lstat(dir)).isDirectory()) {
      throw new BerthError(Code.FAILED_PRECONDITION, `task "${opts.id}": ${dir} is not a directory`);
    }
    if (!(await isTmpfsMountPoint(dir))) await mountTmpfs('shm', dir, options);
    m.type = 'bind';
    m.source = dir;
    m.options = ['rbind', 'rprivate', ...options.filter((o) => BIND_FLAGS.has(o))];
  }
  return dir;
}

/**
 * Unmounts a container's shareable /dev/shm, if it has one, before its files directory is
 * removed: a removal must never reach into a mounted tmpfs (another container may still be using
 * its copy). Containers that still run keep their binds of it until they exit.
 */
export async function unmountShareableShm(layout: HostLayout, ns: string, id: string): Promise<void> {
  if (await hasShareableShm(layout, ns, id)) await unmountAll(shmDirOf(layout, ns, id));
}

/**
 * Whether the container has a shareable /dev/shm directory. Most have none: one lstat, not a
 * read of the whole mount table.
 */
export function hasShareableShm(layout: HostLayout, ns: string, id: string): Promise<boolean> {
  return lstat(shmDirOf(layout, ns, id)).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

function shmDirOf(layout: HostLayout, ns: string, id: string): string {
  return join(containerFilesDir(layout, ns, id), SHM_DIR);
}
