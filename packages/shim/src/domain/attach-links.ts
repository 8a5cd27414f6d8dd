import { lstat, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Removes the link conmon made as `<socketDir>/<cuuid>` for a task or exec (it points at the
 * bundle or the exec's directory, keeping the attach socket's path under 108 bytes). conmon never
 * removes it, so without this every removed container left one dangling link behind.
 */
export async function removeAttachLink(socketDir: string, cuuid: string): Promise<void> {
  await rm(join(socketDir, cuuid), { force: true });
}

/**
 * Removes every link in `socketDir` whose target is gone (left by a task removed while no agent
 * ran, or by an agent that died between removing a bundle and its link). A link whose bundle or
 * exec directory still exists is kept: its process may be attached to. Returns the names removed.
 */
export async function sweepAttachLinks(socketDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(socketDir).catch(() => [] as string[])) {
    const path = join(socketDir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isSymbolicLink()) continue;
    const target = await stat(path).catch((err: NodeJS.ErrnoException) => err);
    if (target instanceof Error && (target.code === 'ENOENT' || target.code === 'ENOTDIR')) {
      await rm(path, { force: true });
      removed.push(name);
    }
  }
  return removed;
}
