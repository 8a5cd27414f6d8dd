import { open } from 'node:fs/promises';

import { type CriLogLine, parseCriLine } from '@berth/api';

export { parseCriLine };
/** One line of a container's CRI-format log (see @berth/api). */
export type LogLine = CriLogLine;

/** How often a followed log is read again for new lines (conmon gives no notification). */
const FOLLOW_POLL_MS = 50;

/**
 * Reads a CRI log file from its start. With `until`, keeps reading new lines until that promise
 * settles (the process's exit), then reads what is left: conmon flushes the output before the exit
 * is recorded, so nothing written before the exit is lost. Stops early when `signal` aborts.
 */
export async function* readCriLog(
  path: string,
  opts: { until?: Promise<unknown>; signal?: AbortSignal } = {},
): AsyncGenerator<LogLine> {
  let finished = opts.until === undefined;
  void opts.until?.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    let offset = 0;
    let carry = '';
    for (;;) {
      const wasFinished = finished;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (carry + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
        carry = lines.pop() ?? '';
        for (const l of lines) {
          const parsed = parseCriLine(l);
          if (parsed) yield parsed;
        }
      }
      if (wasFinished || opts.signal?.aborted) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, FOLLOW_POLL_MS);
        opts.until?.then(
          () => {
            clearTimeout(t);
            resolve();
          },
          () => {
            clearTimeout(t);
            resolve();
          },
        );
      });
    }
    const last = carry ? parseCriLine(carry) : undefined;
    if (last) yield last;
  } finally {
    await fh.close();
  }
}

/** Joins the lines of a log into its stdout and stderr text, keeping at most `maxBytes` of each. */
export async function collectStreams(
  lines: AsyncIterable<LogLine>,
  maxBytes: number,
): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
  const out = { stdout: '', stderr: '' };
  let truncated = false;
  for await (const l of lines) {
    const piece = l.full ? `${l.content}\n` : l.content;
    if (out[l.stream].length + piece.length > maxBytes) {
      truncated = true;
      out[l.stream] += piece.slice(0, Math.max(0, maxBytes - out[l.stream].length));
      continue;
    }
    out[l.stream] += piece;
  }
  return { ...out, truncated };
}
