import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

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
    // A character whose UTF-8 bytes straddle two reads is decoded whole, not as two U+FFFDs.
    const text = new StringDecoder('utf8');
    let offset = 0;
    let carry = '';
    for (;;) {
      const wasFinished = finished;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (carry + text.write(buf.subarray(0, bytesRead))).split('\n');
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
    carry += text.end();
    const last = carry ? parseCriLine(carry) : undefined;
    if (last) yield last;
  } finally {
    await fh.close();
  }
}

/**
 * Joins the lines of a log into its stdout and stderr text (UTF-8), keeping at most `maxBytes`
 * bytes of each, cut at a character's boundary.
 */
export async function collectStreams(
  lines: AsyncIterable<LogLine>,
  maxBytes: number,
): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
  const out = { stdout: '', stderr: '' };
  const size = { stdout: 0, stderr: 0 };
  let truncated = false;
  for await (const l of lines) {
    const piece = l.full ? `${l.content}\n` : l.content;
    const n = Buffer.byteLength(piece);
    if (size[l.stream] + n > maxBytes) {
      truncated = true;
      const room = maxBytes - size[l.stream];
      if (room > 0) out[l.stream] += headOfUtf8(piece, room);
      // Cut: nothing more of this stream, though a later piece would fit the bytes a cut
      // character left (it would read as if it followed the cut).
      size[l.stream] = maxBytes;
      continue;
    }
    out[l.stream] += piece;
    size[l.stream] += n;
  }
  return { ...out, truncated };
}

/** The longest start of `s` whose UTF-8 form fits in `bytes`, whole characters only. */
function headOfUtf8(s: string, bytes: number): string {
  const b = Buffer.from(s, 'utf8');
  let end = Math.min(bytes, b.length);
  // Back off continuation bytes (10xxxxxx) to the start of the character that did not fit.
  if (end < b.length) while (end > 0 && ((b[end] ?? 0) & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString('utf8');
}
