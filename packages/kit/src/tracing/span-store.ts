// node:fs's callback functions, not node:fs/promises: that module loads readline, the file
// watchers and directory streams with it, ~5 ms of every CLI command (each appends its spans).
import { close, fstat, mkdir, open, readdir, readFile, rename, rm, write } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SpanRecord } from './span-record.js';

const fs = {
  open: promisify(open),
  // One write(2) of the whole batch, as FileHandle.write made it.
  write: (fd: number, data: string) =>
    new Promise<void>((resolve, reject) => write(fd, data, (err) => (err ? reject(err) : resolve()))),
  fstat: promisify(fstat),
  close: promisify(close),
  mkdir: promisify(mkdir),
  rename: promisify(rename),
  rm: promisify(rm),
  readdir: promisify(readdir) as (dir: string) => Promise<string[]>,
  readFile: promisify(readFile) as (file: string, encoding: 'utf8') => Promise<string>,
};

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
  let fd: number;
  try {
    fd = await fs.open(current, 'a', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    fd = await fs.open(current, 'a', 0o600);
  }
  let size: number;
  try {
    await fs.write(fd, data);
    size = (await fs.fstat(fd)).size;
  } finally {
    await fs.close(fd);
  }
  if (size < (limits.segmentBytes ?? SEGMENT_BYTES)) return;
  // Two writers may both see the file full: the second rename finds nothing (or a fresh, small
  // file) to move, which is harmless either way.
  const stamp = String(Date.now()).padStart(13, '0');
  await fs
    .rename(current, join(dir, `spans-${stamp}-${process.pid}.jsonl`))
    .catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  const keep = limits.keepSegments ?? KEEP_SEGMENTS;
  const segments = (await segmentNames(dir)).reverse();
  for (const old of segments.slice(keep)) await fs.rm(join(dir, old), { force: true });
}

/** Rotated segment file names, oldest first. */
async function segmentNames(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => {
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
      text = await fs.readFile(join(dir, name), 'utf8');
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
