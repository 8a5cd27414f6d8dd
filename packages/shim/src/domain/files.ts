import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Writes a file whole or not at all: a temp name in the same directory, then rename. */
export async function writeAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  const tmp = join(dirname(path), `.tmp-${randomBytes(6).toString('hex')}`);
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * writeAtomic done inline, for a small file on the path of a request (a task's task.json): a few
 * µs in the page cache, against three thread-pool trips that wait behind the pool's other work.
 */
export function writeAtomicNow(path: string, data: string, mode = 0o600): void {
  const tmp = join(dirname(path), `.tmp-${randomBytes(6).toString('hex')}`);
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * The mode of a container's log, as containerd makes it: its owner writes, its group reads (a log
 * collector in that group). conmon before 2.1.13 makes the logs it creates 0600 but keeps the mode
 * of a file that is there: the shim makes them first.
 */
export const LOG_MODE = 0o640;

/** Makes a log file of LOG_MODE where none is; an existing one is left as it is. */
export async function touchLog(path: string): Promise<void> {
  await (await open(path, 'a', LOG_MODE)).close();
}

/**
 * Makes the file conmon reopens a log into (`<log>.tmp`, which it truncates and renames over the
 * log) with LOG_MODE, whatever a crashed monitor left there before.
 */
export async function prepareLogReopen(path: string): Promise<void> {
  const fh = await open(`${path}.tmp`, 'w', LOG_MODE);
  try {
    await fh.chmod(LOG_MODE);
  } finally {
    await fh.close();
  }
}

/** True when a path exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The modification time of a file as an ISO string (when conmon wrote an exit file). */
export async function mtimeOf(path: string): Promise<string | undefined> {
  try {
    return (await stat(path)).mtime.toISOString();
  } catch {
    return undefined;
  }
}
