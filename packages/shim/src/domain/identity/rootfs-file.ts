import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readlinkSync,
  readSync,
  type Stats,
} from 'node:fs';
import { BerthError, Code } from '@berth/api';

/** How much of a file one read takes. */
const READ_CHUNK = 64 * 1024;

/** As the kernel's MAXSYMLINKS: more links than this in one lookup is a loop. */
const MAX_LINKS = 40;

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
// O_NONBLOCK: a FIFO swapped in after the check must not hang the open.
const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const parts = (p: string) => p.split('/').filter((x) => x !== '' && x !== '.');

const gone = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/**
 * Reads a small regular file of a container's rootfs as the container would see it, without ever
 * leaving `root`: the path is walked one component at a time from an open directory (openat
 * through /proc/self/fd, each step O_NOFOLLOW), and a symlink on the way is resolved as if `root`
 * were `/` (an absolute target starts again at `root`, `..` stops there). So a link such as
 * /etc/passwd -> /host/etc/shadow, or a directory swapped for a link while the container runs,
 * never reaches the node's own files. Undefined when the path does not exist or is not a regular
 * file; INVALID_ARGUMENT on a symlink loop or a file larger than `maxBytes` (however it grows while
 * read). Synchronous: a task's rootfs is a snapshot mount under the state root (createTask takes no
 * other), and its dozen syscalls take µs inline, against a dozen thread-pool trips in a row on
 * the path of every create (1 ms idle, more behind the pool's other work).
 */
export function readRootfsFile(root: string, path: string, maxBytes = 1 << 20): string | undefined {
  const stack: number[] = [openSync(root, DIR_FLAGS)];
  const top = () => stack[stack.length - 1] as number;
  try {
    let pending = parts(path);
    let links = 0;
    while (pending.length > 0) {
      const name = pending.shift() as string;
      if (name === '..') {
        if (stack.length > 1) closeSync(stack.pop() as number);
        continue;
      }
      const at = `/proc/self/fd/${top()}/${name}`;
      let st: Stats;
      try {
        st = lstatSync(at);
      } catch (err) {
        if (gone(err)) return undefined;
        throw err;
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_LINKS) {
          throw new BerthError(
            Code.INVALID_ARGUMENT,
            `"${path}" in the rootfs: too many levels of symbolic links`,
          );
        }
        const target = readlinkSync(at);
        if (target.startsWith('/')) while (stack.length > 1) closeSync(stack.pop() as number);
        pending = [...parts(target), ...pending];
        continue;
      }
      if (pending.length > 0) {
        if (!st.isDirectory()) return undefined;
        stack.push(openSync(at, DIR_FLAGS));
        continue;
      }
      if (!st.isFile()) return undefined;
      const fd = openSync(at, FILE_FLAGS);
      try {
        const fst = fstatSync(fd);
        if (!fst.isFile()) return undefined;
        const tooLarge = () =>
          new BerthError(Code.INVALID_ARGUMENT, `"${path}" in the rootfs is larger than ${maxBytes} bytes`);
        if (fst.size > maxBytes) throw tooLarge();
        // Read to at most maxBytes + 1, whatever the size was at the fstat: a running container
        // can grow the file since, and an unbounded read would hold the event loop (and memory)
        // for as long as it keeps growing.
        const chunks: Buffer[] = [];
        let total = 0;
        for (;;) {
          const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, maxBytes + 1 - total));
          const n = readSync(fd, chunk, 0, chunk.length, null);
          if (n === 0) break;
          chunks.push(chunk.subarray(0, n));
          total += n;
          if (total > maxBytes) throw tooLarge();
        }
        return Buffer.concat(chunks, total).toString('utf8');
      } finally {
        closeSync(fd);
      }
    }
    return undefined;
  } catch (err) {
    // ELOOP: a component became a symlink between the check and the open (a racing container).
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new BerthError(Code.FAILED_PRECONDITION, `"${path}" in the rootfs changed while it was read`);
    }
    throw err;
  } finally {
    for (const fd of stack) {
      try {
        closeSync(fd);
      } catch {
        // Closing a directory descriptor cannot lose data: nothing to report.
      }
    }
  }
}
