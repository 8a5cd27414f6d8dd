// node:fs's callback functions, not node:fs/promises: that module loads readline, the file
// watchers and directory streams with it, ~5 ms of `berth ps` and `berth run` (which import this).
import { close, open, read, stat } from 'node:fs';
import { promisify } from 'node:util';
import { type CriLogLine, parseCriLine } from '@berth/api';

const openFile = promisify(open);
const closeFile = promisify(close);
const statFile = promisify(stat);
/** Reads into `buf` from `offset` of the file; resolves to the bytes read. */
const readAt = (fd: number, buf: Buffer, offset: number) =>
  new Promise<number>((resolve, reject) =>
    read(fd, buf, 0, buf.length, offset, (err, n) => (err ? reject(err) : resolve(n))),
  );

export { parseCriLine };
/** One line of a container's CRI-format log (see @berth/api). */
export type LogLine = CriLogLine;

/** Where printed log content goes. */
export interface LogSink {
  /** A promise when the sink is behind: the reader waits for it before the next line. */
  write(line: LogLine): void | Promise<void>;
}

/** A sink printing content (optionally prefixed by its timestamp) to stdout/stderr by stream. */
export function printSink(
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
  timestamps: boolean,
): LogSink {
  let midLine = { stdout: false, stderr: false };
  return {
    write(l) {
      const prefix = timestamps && !midLine[l.stream] ? `${l.time} ` : '';
      const to = l.stream === 'stdout' ? out : err;
      const ok = to.write(`${prefix}${l.content}${l.full ? '\n' : ''}`);
      midLine = { ...midLine, [l.stream]: !l.full };
      // A stream that buffers past its mark (a served command's, whose client reads slowly) makes
      // the log's reader wait, as a pipe's blocking write makes the CLI run by hand wait; one that
      // ended or broke takes nothing more and is waited for no longer.
      if (ok || !(to as Partial<NodeJS.WriteStream>).writableNeedDrain) return undefined;
      return new Promise<void>((resolve) => {
        const done = () => {
          for (const e of ['drain', 'close', 'error']) to.off(e, done);
          resolve();
        };
        for (const e of ['drain', 'close', 'error']) to.once(e, done);
      });
    },
  };
}

/**
 * Reads a CRI log file from `offset`, handing complete lines to the sink; returns the new offset.
 * Stops early once `stopped()` says so.
 */
async function readFrom(
  path: string,
  offset: number,
  sink: LogSink,
  carry: { s: string },
  stopped: () => boolean = () => false,
): Promise<number> {
  const fd = await openFile(path, 'r').catch(() => undefined);
  if (fd === undefined) return offset;
  try {
    const buf = Buffer.alloc(64 * 1024);
    while (!stopped()) {
      const bytesRead = await readAt(fd, buf, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
      const text = carry.s + buf.subarray(0, bytesRead).toString('utf8');
      const lines = text.split('\n');
      carry.s = lines.pop() ?? '';
      for (const l of lines) {
        const parsed = parseCriLine(l);
        const behind = parsed ? sink.write(parsed) : undefined;
        if (behind) await behind;
      }
    }
  } finally {
    await closeFile(fd);
  }
  return offset;
}

/** Prints the last `tail` lines (all when undefined) of a log; returns the offset after them. */
export async function printLog(path: string, sink: LogSink, tail?: number): Promise<number> {
  const size = await statFile(path).then(
    (s) => s.size,
    () => 0,
  );
  if (tail === undefined) return readFrom(path, 0, sink, { s: '' });
  const lines: LogLine[] = [];
  const end = await readFrom(
    path,
    0,
    {
      write: (l) => {
        lines.push(l);
      },
    },
    { s: '' },
  );
  // A logical line may span several P chunks: count lines by their final F chunk.
  let start = lines.length;
  let seen = 0;
  while (start > 0 && seen < tail) {
    start--;
    if (lines[start]?.full) seen++;
    while (start > 0 && lines[start - 1] && !lines[start - 1]?.full) start--;
  }
  for (const l of lines.slice(start)) {
    const behind = sink.write(l);
    if (behind) await behind;
  }
  return Math.max(end, size);
}

/**
 * Follows a log from `offset` until `done()` resolves, then reads what is left: conmon flushes
 * the container's output before the exit is recorded, so nothing written before the exit is lost.
 */
export async function followLog(
  path: string,
  offset: number,
  sink: LogSink,
  done: Promise<unknown>,
  /** Ends the following at once, without reading what is left (a served command's client is gone). */
  abort?: Promise<unknown>,
): Promise<void> {
  let aborted = false;
  void abort?.then(() => {
    aborted = true;
  });
  const stopped = () => aborted;
  const carry = { s: '' };
  let finished = false;
  // Settled either way: a failed `done` (the exit waiter could not listen) is the caller's to
  // report; here it only ends the following, and leaves no unhandled rejection behind.
  const end = () => {
    finished = true;
  };
  done.then(end, end);
  // After this turn `finished` is set if `done` had already settled (a short command's exit, heard
  // before its output is followed): then one read gets all of it.
  await Promise.resolve();
  while (!aborted) {
    const wasFinished = finished;
    offset = await readFrom(path, offset, sink, carry, stopped);
    if (wasFinished) break;
    await Promise.race([new Promise((r) => setTimeout(r, 50)), done.catch(() => undefined), abort]);
  }
  if (carry.s && !aborted) {
    const parsed = parseCriLine(carry.s);
    if (parsed) await sink.write(parsed);
  }
}
