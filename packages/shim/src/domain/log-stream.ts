import { access, type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, type ShimTaskRef } from '@berth/api';
import { containerFilesDir } from './container-files.js';
import type { ShimHost } from './host.js';
import { checkName, taskPaths } from './paths.js';

/** How often a followed log is read again for new lines (conmon writes without telling anyone). */
const FOLLOW_POLL_MS = 50;
const READ_BYTES = 64 * 1024;

/** Options of {@link sendLogFile}. */
export interface SendLogOptions {
  /** Start with the last `tail` logical lines (a run of P chunks and their F chunk); all when absent. */
  tail?: number;
  /** Keep reading new lines until this settles (the process's exit is persisted), then the rest. */
  until?: Promise<unknown>;
  /** Stops reading at once. */
  signal: AbortSignal;
  /** Takes whole CRI log lines (newlines included); its promise settling is the reader's credit. */
  write: (lines: Buffer) => Promise<void>;
}

/**
 * Sends a CRI-format log file to `write` as whole lines, never reading further ahead than the
 * writer accepts: the file is the buffer, so a slow reader costs no memory here and loses nothing.
 * A line still being written (no newline yet) waits for its end, or goes out last once `until`
 * settled.
 */
export async function sendLogFile(path: string, o: SendLogOptions): Promise<void> {
  let finished = o.until === undefined;
  const settled = () => {
    finished = true;
  };
  void o.until?.then(settled, settled);
  // conmon creates the file when the process starts: until then there is nothing to send yet.
  let fh = await openIfThere(path);
  try {
    let offset = fh && o.tail !== undefined ? await tailOffset(fh, o.tail) : 0;
    const buf = Buffer.alloc(READ_BYTES);
    let carry = Buffer.alloc(0);
    for (;;) {
      const wasFinished = finished;
      if (!fh) fh = await openIfThere(path);
      for (;;) {
        if (o.signal.aborted || !fh) break;
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const data = carry.length
          ? Buffer.concat([carry, buf.subarray(0, bytesRead)])
          : buf.subarray(0, bytesRead);
        const nl = data.lastIndexOf(0x0a);
        // Copies: `buf` is reused by the next read while the writer may still hold the lines.
        carry = Buffer.from(data.subarray(nl + 1));
        if (nl >= 0) await o.write(Buffer.from(data.subarray(0, nl + 1)));
      }
      if (wasFinished || o.signal.aborted) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, FOLLOW_POLL_MS);
        const early = () => {
          clearTimeout(t);
          resolve();
        };
        o.until?.then(early, early);
        o.signal.addEventListener('abort', early, { once: true });
      });
    }
    if (carry.length && !o.signal.aborted) await o.write(Buffer.concat([carry, Buffer.from('\n')]));
  } finally {
    await fh?.close();
  }
}

async function openIfThere(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * The offset where the last `n` logical lines of a CRI log start. One pass keeps the offsets
 * after the last n+1 full (F) lines, so memory does not grow with the file.
 */
async function tailOffset(fh: FileHandle, n: number): Promise<number> {
  const ring: number[] = [0];
  const buf = Buffer.alloc(READ_BYTES);
  let offset = 0;
  let head = Buffer.alloc(0);
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    if (bytesRead === 0) break;
    let from = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, from);
      if (nl < 0 || nl >= bytesRead) break;
      const line = Buffer.concat([head, buf.subarray(from, nl)]);
      head = Buffer.alloc(0);
      if (isFullLine(line)) {
        ring.push(offset + nl + 1);
        if (ring.length > n + 1) ring.shift();
      }
      from = nl + 1;
    }
    // Only the start of a line is needed to read its tag: keep at most 128 bytes of it.
    if (head.length < 128) head = Buffer.concat([head, buf.subarray(from, Math.min(bytesRead, from + 128))]);
    offset += bytesRead;
  }
  return ring.length === n + 1 ? (ring[0] ?? 0) : 0;
}

/** True for a CRI line tagged F (the last chunk of a logical line). */
function isFullLine(line: Buffer): boolean {
  const a = line.indexOf(0x20);
  const b = a < 0 ? -1 : line.indexOf(0x20, a + 1);
  return (
    b >= 0 &&
    line[b + 1] === 0x46 /* F */ &&
    (line[b + 2] === 0x20 || line[b + 2] === 0x3a || line.length === b + 2)
  );
}

/**
 * The log file of a task or exec on this node: its record's, else (no task here now) the log a
 * container keeps across runs, else the default one, if present. Only paths the shim itself
 * chose are ever read: the caller names a task, never a file.
 */
export async function logFileOf(host: ShimHost, ref: ShimTaskRef): Promise<string> {
  checkName('namespace', ref.namespace);
  checkName('task id', ref.id);
  if (ref.execId) checkName('exec id', ref.execId);
  const rec = await host.store.get(ref.namespace, ref.id, ref.execId);
  if (rec) return rec.logPath;
  const what = ref.execId ? `exec "${ref.execId}" of task "${ref.id}"` : `container "${ref.id}"`;
  if (!ref.execId) {
    for (const p of [
      join(containerFilesDir(host.layout, ref.namespace, ref.id), 'container.log'),
      taskPaths(host.layout, ref.namespace, ref.id).defaultLog,
    ]) {
      if (
        await access(p).then(
          () => true,
          () => false,
        )
      )
        return p;
    }
  }
  throw new BerthError(
    Code.NOT_FOUND,
    `no log of ${what} in namespace "${ref.namespace}" on node "${host.node}"`,
  );
}
