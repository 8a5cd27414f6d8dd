import { rm, statfs, writeFile } from 'node:fs/promises';
import { BerthError, Code } from '@berth/api';
import { lastLine, runCommand } from '../runtime/command.js';
import { pinNetnsNative, umountNative } from '../runtime/mounts.js';

/**
 * Pinned network namespaces: a new namespace's `/proc/<pid>/ns/net` bind-mounted onto a file, so
 * it lives on after the process that made it exits (as `ip netns add` and CRI-O's pinns do). The
 * files sit under the run root; a reboot takes them, as it takes the namespaces.
 */

/** Paths of the `unshare` and `umount` binaries (util-linux); overridable for unusual hosts. */
export interface NetnsTools {
  unshare: string;
  umount: string;
}
const TOOLS: NetnsTools = { unshare: '/usr/bin/unshare', umount: '/usr/bin/umount' };

/** statfs(2) f_type of nsfs, the filesystem of namespace files (linux/magic.h NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;

/**
 * True when `path` is a pinned namespace: an nsfs mounted on it. One statfs(2) rather than a read
 * of /proc/self/mountinfo, which costs more as mounts grow and, read in chunks while other mounts
 * come and go, can miss a line (a pinned namespace taken for gone would be made again while a
 * container joins it).
 */
export async function isNetnsMounted(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw err;
  }
}

/**
 * Creates a pinned network namespace at `path` and returns it; when one is already mounted there it
 * is reused (idempotent). The empty file is created first because a bind mount needs a target;
 * on failure the file is removed again so nothing half-made stays.
 */
export async function createNetns(path: string, tools: NetnsTools = TOOLS): Promise<string> {
  await createPodNetns(path, tools);
  return path;
}

/**
 * createNetns, telling whether the namespace's `lo` is up already: true when the addon made it
 * (it sets lo up in the same thread), so a pod's setup can skip the CNI loopback plugin; false
 * for one made by unshare(1) or found already mounted (its lo is as someone left it).
 */
export async function createPodNetns(
  path: string,
  tools: NetnsTools = TOOLS,
): Promise<{ loopbackUp: boolean }> {
  if (await isNetnsMounted(path)) return { loopbackUp: false };
  await writeFile(path, '', { mode: 0o444, flag: 'w' });
  // In-process through the addon when it is built (one process less per pod), else unshare(1).
  try {
    if (await pinNetnsNative(path)) return { loopbackUp: true };
  } catch (err) {
    await rm(path, { force: true });
    throw new BerthError(
      Code.INTERNAL,
      `cannot create network namespace "${path}": ${(err as Error).message}`,
    );
  }
  const r = await runCommand(tools.unshare, [`--net=${path}`, 'true']);
  if (r.code !== 0) {
    await rm(path, { force: true });
    throw new BerthError(
      Code.INTERNAL,
      `cannot create network namespace "${path}": ${lastLine(r.stderr) || `unshare exited ${r.code}`}`,
    );
  }
  return { loopbackUp: false };
}

/**
 * Unmounts and deletes a pinned network namespace; a missing one is not an error (idempotent).
 * Processes still inside keep the namespace alive; it is freed when the last one leaves.
 */
export async function removeNetns(path: string, tools: NetnsTools = TOOLS): Promise<void> {
  // A namespace may be mounted twice when two creates raced; unmount until none is left.
  for (let i = 0; i < 8 && (await isNetnsMounted(path)); i++) {
    // In-process through the addon when it is built (one process less per pod), else umount(8).
    let failure: string | undefined;
    try {
      if (!(await umountNative(path))) {
        const r = await runCommand(tools.umount, [path]);
        if (r.code !== 0) failure = lastLine(r.stderr) || `umount exited ${r.code}`;
      }
    } catch (err) {
      failure = (err as Error).message;
    }
    if (failure !== undefined && (await isNetnsMounted(path))) {
      throw new BerthError(Code.INTERNAL, `cannot unmount network namespace "${path}": ${failure}`);
    }
  }
  await rm(path, { force: true });
}
