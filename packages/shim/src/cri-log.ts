import { open } from 'node:fs/promises';
import { parseCriLine } from '@berth/api';

export { type CriLogLine, parseCriLine } from '@berth/api';

/** What a process wrote to its two streams, as bytes, each cut at a cap. */
export interface CriOutput {
  stdout: Buffer;
  stderr: Buffer;
  /** True when either stream was longer than the cap and only its start is returned. */
  truncated: boolean;
}

const NL = 0x0a;
const SP = 0x20;
/** Longest `<time> <stream> <tag>` prefix of a line taken as one; a longer one is not a log line. */
const PREFIX_MAX = 256;
/** How much of the file one read takes. */
const READ_CHUNK = 1024 * 1024;

/** One stream's bytes, kept up to `cap`; the buffer grows by doubling, never past the cap. */
class CappedBytes {
  private buf = Buffer.alloc(0);
  private length = 0;
  truncated = false;

  constructor(private readonly cap: number) {}

  get full(): boolean {
    return this.length >= this.cap;
  }

  push(src: Buffer, start: number, end: number): void {
    const n = Math.min(end - start, this.cap - this.length);
    if (n < end - start) this.truncated = true;
    if (n <= 0) return;
    const need = this.length + n;
    if (need > this.buf.length) {
      const next = Buffer.allocUnsafe(
        Math.max(need, Math.min(this.cap, Math.max(64 * 1024, this.buf.length * 2))),
      );
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    src.copy(this.buf, this.length, start, start + n);
    this.length = need;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

const NEWLINE = Buffer.from('\n');

/**
 * Parses a CRI log as it is read, chunk by chunk, into the two streams: full lines get their
 * newline back, partial chunks do not; what is not a log line is skipped. Content bytes are
 * copied as they are (never decoded), and only a line's short prefix is ever held.
 */
class CriLogParser {
  private readonly prefix = Buffer.alloc(PREFIX_MAX);
  private prefixLen = 0;
  private spaces = 0;
  private state: 'prefix' | 'content' | 'skip' = 'prefix';
  private target: CappedBytes | undefined;
  private full = false;

  constructor(private readonly out: { stdout: CappedBytes; stderr: CappedBytes }) {}

  write(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NL, pos);
      const end = nl < 0 ? chunk.length : nl;
      if (this.state === 'prefix') pos = this.readPrefix(chunk, pos, end);
      if (this.state === 'content') this.target?.push(chunk, pos, end);
      if (nl < 0) return;
      this.endLine();
      pos = nl + 1;
    }
  }

  /** Ends a last line the file did not end with a newline, as if it had. */
  end(): void {
    if (this.state !== 'prefix' || this.prefixLen > 0) this.endLine();
  }

  /** Takes prefix bytes up to its third space (the content starts after it); the next position. */
  private readPrefix(chunk: Buffer, pos: number, end: number): number {
    for (let i = pos; i < end; i++) {
      const b = chunk[i] as number;
      if (b === SP && ++this.spaces === 3) {
        this.takePrefix();
        return i + 1;
      }
      if (this.prefixLen === PREFIX_MAX) {
        this.state = 'skip';
        return end;
      }
      this.prefix[this.prefixLen++] = b;
    }
    return end;
  }

  /** Reads the prefix held: which stream the line's content goes to, and whether it is full. */
  private takePrefix(): void {
    const line = parseCriLine(this.prefix.toString('latin1', 0, this.prefixLen));
    this.state = line ? 'content' : 'skip';
    this.target = line ? this.out[line.stream] : undefined;
    this.full = line?.full ?? false;
  }

  private endLine(): void {
    // A line with no third space (`<time> <stream> F`) has empty content.
    if (this.state === 'prefix') this.takePrefix();
    if (this.state === 'content' && this.full) this.target?.push(NEWLINE, 0, 1);
    this.state = 'prefix';
    this.prefixLen = 0;
    this.spaces = 0;
    this.target = undefined;
  }
}

/**
 * Reads a CRI-format log file back into the bytes the process wrote to stdout and stderr, each
 * cut at `maxBytesPerStream` independently (as containerd caps ExecSync's streams): what fits is
 * kept exactly, binary or not; the rest is dropped. The file is read in chunks, never whole, and
 * no further than both streams being full; memory is at most the two streams' caps.
 */
export async function readCriOutput(path: string, maxBytesPerStream: number): Promise<CriOutput> {
  if (!Number.isSafeInteger(maxBytesPerStream) || maxBytesPerStream < 0) {
    throw new RangeError(`maxBytesPerStream must be a non-negative integer, not ${maxBytesPerStream}`);
  }
  const out = { stdout: new CappedBytes(maxBytesPerStream), stderr: new CappedBytes(maxBytesPerStream) };
  const parser = new CriLogParser(out);
  let cutShort = false;
  const fh = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(READ_CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      parser.write(chunk.subarray(0, bytesRead));
      if (out.stdout.full && out.stderr.full) {
        // Nothing more can be kept: whatever follows would be dropped.
        cutShort = (await fh.read(Buffer.alloc(1), 0, 1, null)).bytesRead > 0;
        break;
      }
    }
  } finally {
    await fh.close();
  }
  if (!cutShort) parser.end();
  return {
    stdout: out.stdout.bytes(),
    stderr: out.stderr.bytes(),
    truncated: cutShort || out.stdout.truncated || out.stderr.truncated,
  };
}

/**
 * Reads a CRI-format log file back into the two streams the process wrote, as UTF-8 text (for
 * callers that want text: bytes that are not UTF-8 become U+FFFD), each stream cut at
 * `maxBytesPerStream` bytes (see readCriOutput).
 */
export async function readCriStreams(
  path: string,
  maxBytesPerStream = 4 * 1024 * 1024,
): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
  const out = await readCriOutput(path, maxBytesPerStream);
  return {
    stdout: out.stdout.toString('utf8'),
    stderr: out.stderr.toString('utf8'),
    truncated: out.truncated,
  };
}
