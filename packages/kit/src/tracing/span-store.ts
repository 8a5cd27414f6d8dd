import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SpanRecord } from './span-record.js';

/**
 * The embedded span store: recent spans of every berth process on a host, kept without any
 * collector so `berth trace` can draw them. Spans are JSON lines appended to `spans.jsonl` in one
 * directory under the state root; a writer that finds the file past SEGMENT_BYTES renames it to
 * `spans-<ms>-<pid>.jsonl` and removes all but the newest KEEP_SEGMENTS such segments. The store
 * is therefore bounded to about (KEEP_SEGMENTS + 1) * SEGMENT_BYTES whatever runs.
 *
 * Several processes append at once: each batch is one write(2) on an O_APPEND descriptor, which
 * Linux places atomically at the end of the file, so lines do not interleave. A reader skips a line
 * it cannot parse (one cut by a crash) and empty ones.
 */
export const SEGMENT_BYTES = 2 * 1024 * 1024;
/** Rotated segments kept beside the current one. */
export const KEEP_SEGMENTS = 7;

const CURRENT = 'spans.jsonl';
const SEGMENT = /^spans-(\d{13})-\d+\.jsonl$/;

/** Limits of a store, overridable for tests. */
export interface StoreLimits {
  segmentBytes?: number;
  keepSegments?: number;
}

/** Appends finished spans to the store in `dir` (created 0700 if missing), rotating when full. */
export async function appendSpans(dir: string, spans: SpanRecord[], limits: StoreLimits = {}): Promise<void> {
  if (spans.length === 0) return;
  // The leading newline ends a line a crashed writer left unfinished, so only that line is lost.
  const data = `\n${spans.map((s) => JSON.stringify(s)).join('\n')}\n`;
  const current = join(dir, CURRENT);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(current, 'a', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    fh = await open(current, 'a', 0o600);
  }
  let size: number;
  try {
    await fh.write(data);
    size = (await fh.stat()).size;
  } finally {
    await fh.close();
  }
  if (size < (limits.segmentBytes ?? SEGMENT_BYTES)) return;
  // Two writers may both see the file full: the second rename finds nothing (or a fresh, small
  // file) to move, which is harmless either way.
  const stamp = String(Date.now()).padStart(13, '0');
  await rename(current, join(dir, `spans-${stamp}-${process.pid}.jsonl`)).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    },
  );
  const keep = limits.keepSegments ?? KEEP_SEGMENTS;
  const segments = (await segmentNames(dir)).reverse();
  for (const old of segments.slice(keep)) await rm(join(dir, old), { force: true });
}

/** Rotated segment file names, oldest first. */
async function segmentNames(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return names.filter((n) => SEGMENT.test(n)).sort();
}

/** Every span in the store, oldest segment first; lines that do not parse are skipped. */
export async function readSpans(dir: string): Promise<SpanRecord[]> {
  const out: SpanRecord[] = [];
  for (const name of [...(await segmentNames(dir)), CURRENT]) {
    let text: string;
    try {
      text = await readFile(join(dir, name), 'utf8');
    } catch (err) {
      // A segment rotated away or pruned between listing and reading.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const s = JSON.parse(line) as SpanRecord;
        if (typeof s.traceId === 'string' && typeof s.spanId === 'string') out.push(s);
      } catch {
        // A line cut short by a crash mid-write.
      }
    }
  }
  return out;
}
