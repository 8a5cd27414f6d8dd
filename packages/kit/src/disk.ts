import type { FileHandle } from 'node:fs/promises';
import { BerthError, Code } from '@berth/api';

/**
 * errno codes that mean the disk under a path cannot take (or keep) the data being written: full,
 * over a quota, or failing. Each is a fault of the node, not of the request or the image, and
 * retrying at once would only fail again, so all become RESOURCE_EXHAUSTED.
 */
export const DiskFault = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
} as const;
export type DiskFault = keyof typeof DiskFault;

/** The errno code of `err` (or of an error in its `cause` chain) when it is a disk fault. */
export function diskFaultOf(err: unknown): DiskFault | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && Object.hasOwn(DiskFault, code)) return code as DiskFault;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Turns a disk fault met while writing `path` into RESOURCE_EXHAUSTED naming what was being
 * written, the path and the errno (`blob sha256:… of "x": cannot write /var/lib/berth/…: no space
 * left on device (ENOSPC)`), plus `after` (what was done about it). Returns undefined for any other
 * error, so callers can write `throw diskError(err, …) ?? err`. The path comes from the error
 * itself when Node names one (open, mkdir, rename), since that is the file that failed.
 */
export function diskError(
  err: unknown,
  o: { what: string; path: string; after?: string },
): BerthError | undefined {
  const fault = diskFaultOf(err);
  if (!fault) return undefined;
  if (err instanceof BerthError && err.code === Code.RESOURCE_EXHAUSTED) return err;
  const own = (err as { path?: unknown }).path;
  const path = typeof own === 'string' && own.length > 0 ? own : o.path;
  const tail = o.after ? `; ${o.after}` : '';
  return new BerthError(
    Code.RESOURCE_EXHAUSTED,
    `${o.what}: cannot write ${path}: ${DiskFault[fault]} (${fault})${tail}`,
    { cause: err },
  );
}

/**
 * Turns Redis's refusal to take writes it cannot persist (a `MISCONF` reply: its AOF or snapshot
 * could not be written, most often because the disk of its data directory is full) into
 * RESOURCE_EXHAUSTED, so a caller reads what is wrong with the node instead of an INTERNAL error.
 * Redis accepts writes again by itself once it can write (see docs/layout.md, "A full state
 * disk"). Returns undefined for anything else.
 */
export function storeRefusal(err: unknown): BerthError | undefined {
  if (!(err instanceof Error) || err instanceof BerthError || !err.message.startsWith('MISCONF '))
    return undefined;
  return new BerthError(
    Code.RESOURCE_EXHAUSTED,
    `redis refuses writes it cannot persist (is the disk of its data directory full?): ${err.message.slice(0, 300)}`,
    { cause: err },
  );
}

/**
 * Writes all of `bufs` at `position` (or at the file's offset when null), looping over short
 * writes. Node's FileHandle.write/writev make one system call, and a disk that fills up mid-call
 * writes part of the data and returns its length without an error: the next call is the one that
 * fails with ENOSPC. Without the loop the bytes not written would leave a hole (at an explicit
 * position) or be silently dropped. Returns the bytes written.
 */
export async function writeFully(
  fh: FileHandle,
  bufs: readonly Buffer[],
  position: number | null,
): Promise<number> {
  let rest = bufs.filter((b) => b.length > 0);
  let pos = position;
  let total = 0;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, pos ?? undefined);
    if (bytesWritten === 0) {
      // A regular file never takes zero bytes of a non-empty write unless it cannot grow.
      throw Object.assign(new Error(`${DiskFault.ENOSPC}, write`), { code: 'ENOSPC' });
    }
    total += bytesWritten;
    if (pos !== null) pos += bytesWritten;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) skip -= b.length;
      else {
        next.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    rest = next;
  }
  return total;
}
