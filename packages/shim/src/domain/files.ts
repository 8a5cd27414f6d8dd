import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { DirWatcher } from '../runtime/monitor.js';

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

/**
 * Makes a log file of LOG_MODE where none is; an existing regular file is left as it is. Never
 * waits: a FIFO at the path fails the open (no reader) or the check (a reader), INVALID_ARGUMENT.
 * Inline (three syscalls on a create's path), as writeAtomicNow.
 */
export function touchLog(path: string): void {
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NONBLOCK,
      LOG_MODE,
    );
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new BerthError(
      e.code === 'ENXIO' || e.code === 'EISDIR' ? Code.INVALID_ARGUMENT : Code.FAILED_PRECONDITION,
      `cannot open the log ${path}: ${e.message}`,
    );
  }
  try {
    if (!fstatSync(fd).isFile()) {
      throw new BerthError(Code.INVALID_ARGUMENT, `the log ${path} is not a regular file`);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Makes the file conmon reopens a log into (`<log>.tmp`, which it truncates and renames over the
 * log) new, with LOG_MODE: whatever was at that name goes first, and the file is made with
 * O_EXCL, so a link put there is never followed.
 */
export async function prepareLogReopen(path: string): Promise<void> {
  const tmp = `${path}.tmp`;
  try {
    await rm(tmp, { force: true });
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    await (await open(tmp, flags, LOG_MODE)).close();
  } catch (err) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `cannot make ${tmp} for the log's reopen: ${(err as Error).message}`,
    );
  }
}

/**
 * Watches for `path` to leave its directory (removed or renamed away, as conmon renames
 * `<log>.tmp` over the log). The watch has started once this resolves, so a caller starts it,
 * then asks for the change; `gone` resolves true once the path is absent, false after `ms`
 * without (or at cancel()).
 */
export async function watchGone(
  path: string,
  ms: number,
): Promise<{ gone: Promise<boolean>; cancel(): void }> {
  const name = basename(path);
  let finish: (gone: boolean) => void = () => undefined;
  const gone = new Promise<boolean>((resolve) => {
    finish = resolve;
  });
  const watcher = new DirWatcher(dirname(path), (changed) => {
    if (changed === name)
      void lstat(path).then(
        () => undefined,
        () => finish(true),
      );
  });
  await watcher.start();
  const timer = setTimeout(() => finish(false), ms);
  void gone.then(() => {
    clearTimeout(timer);
    watcher.close();
  });
  return { gone, cancel: () => finish(false) };
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
