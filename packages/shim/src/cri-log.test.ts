import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCriLine, readCriOutput, readCriStreams } from './cri-log.js';

describe('CRI log lines', () => {
  it('parses full, partial and tagged lines as kubelet does', () => {
    expect(parseCriLine('2026-11-28T15:49:25.762228521+00:00 stdout F hi there')).toEqual({
      time: '2026-11-28T15:49:25.762228521+00:00',
      stream: 'stdout',
      full: true,
      content: 'hi there',
    });
    expect(parseCriLine('2026-11-28T15:49:25.762228521Z stderr P part')).toMatchObject({
      stream: 'stderr',
      full: false,
      content: 'part',
    });
    expect(parseCriLine('2026-11-28T15:49:25Z stdout F:x ')).toMatchObject({ full: true, content: '' });
    expect(parseCriLine('not a log line')).toBeUndefined();
    expect(parseCriLine('2026-11-28T15:49:25Z stdin F x')).toBeUndefined();
  });

  it('reads the two streams back, joining partial chunks, and caps the size', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-crilog-'));
    try {
      const f = join(dir, 'log');
      await writeFile(
        f,
        [
          '2026-01-01T00:00:00.000000001Z stdout P abc',
          '2026-01-01T00:00:00.000000002Z stdout F def',
          '2026-01-01T00:00:00.000000003Z stderr F e1',
          '2026-01-01T00:00:00.000000004Z stdout P tail',
          '',
        ].join('\n'),
      );
      expect(await readCriStreams(f)).toEqual({ stdout: 'abcdef\ntail', stderr: 'e1\n', truncated: false });
      // Each stream is cut at the cap on its own: stdout's overflow keeps none of stderr out.
      expect(await readCriStreams(f, 5)).toEqual({ stdout: 'abcde', stderr: 'e1\n', truncated: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  /** A CRI log as conmon writes it: one `<time> <stream> <tag> ` prefix per line or chunk. */
  const line = (stream: string, tag: string, content: Buffer | string) =>
    Buffer.concat([
      Buffer.from(`2026-01-01T00:00:00.123456789+00:00 ${stream} ${tag} `),
      Buffer.from(content),
      Buffer.from('\n'),
    ]);

  const withLog = async (chunks: Buffer[], fn: (path: string) => Promise<void>) => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-crilog-'));
    try {
      const f = join(dir, 'log');
      await writeFile(f, Buffer.concat(chunks));
      await fn(f);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  it('gives back many short lines whole up to the cap, though the file is many times larger', async () => {
    // 2-byte lines: the prefix is 20 times the content, and the file well over 1 MiB read chunks.
    const n = 200_000;
    const lines = Array.from({ length: n }, (_, i) => line(i % 7 ? 'stdout' : 'stderr', 'F', String(i % 10)));
    const want = (s: string) =>
      Buffer.from(
        Array.from({ length: n }, (_, i) => ((i % 7 ? 'stdout' : 'stderr') === s ? `${i % 10}\n` : '')).join(
          '',
        ),
      );
    await withLog(lines, async (f) => {
      const cap = want('stdout').length;
      const out = await readCriOutput(f, cap);
      expect(out.stdout.equals(want('stdout'))).toBe(true);
      expect(out.stderr.equals(want('stderr'))).toBe(true);
      expect(out.truncated).toBe(false);
    });
  });

  it('cuts each stream at the cap on its own, mid-line, and keeps the other whole', async () => {
    const chunks: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      chunks.push(line('stdout', 'F', `out-${i}-${'x'.repeat(50)}`));
      if (i % 10 === 0) chunks.push(line('stderr', 'F', `err-${i}`));
    }
    const allOut = Buffer.concat(
      Array.from({ length: 100 }, (_, i) => Buffer.from(`out-${i}-${'x'.repeat(50)}\n`)),
    );
    const allErr = Buffer.from(Array.from({ length: 10 }, (_, i) => `err-${i * 10}\n`).join(''));
    await withLog(chunks, async (f) => {
      const out = await readCriOutput(f, 1000);
      expect(out.stdout.equals(allOut.subarray(0, 1000))).toBe(true);
      // stderr's lines after stdout overflowed are kept: its own cap is far away.
      expect(out.stderr.equals(allErr)).toBe(true);
      expect(out.truncated).toBe(true);
      const both = await readCriOutput(f, 30);
      expect(both.stdout.equals(allOut.subarray(0, 30))).toBe(true);
      expect(both.stderr.equals(allErr.subarray(0, 30))).toBe(true);
      expect(both.truncated).toBe(true);
      const exact = await readCriOutput(f, allOut.length);
      expect(exact.stdout.equals(allOut)).toBe(true);
      expect(exact.truncated).toBe(false);
    });
  });

  it('keeps bytes that are not UTF-8 as they are, in full lines and partial chunks', async () => {
    const bin = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x20, 0x0d]);
    await withLog(
      [line('stdout', 'P', bin), line('stdout', 'F', bin), line('stderr', 'P', Buffer.from([0xe2, 0x82]))],
      async (f) => {
        const out = await readCriOutput(f, 1024);
        expect(out.stdout.equals(Buffer.concat([bin, bin, Buffer.from('\n')]))).toBe(true);
        expect(out.stderr.equals(Buffer.from([0xe2, 0x82]))).toBe(true);
      },
    );
  });

  it('skips what is not a log line, and ends a last line the file did not end', async () => {
    await withLog(
      [
        Buffer.from('garbage without spaces\n'),
        Buffer.from(`${'x'.repeat(1000)} stdout F too long a prefix\n`),
        line('stdin', 'F', 'not a stream'),
        line('stdout', 'F', ''),
        Buffer.from('2026-01-01T00:00:00Z stdout F\n'),
        Buffer.from('2026-01-01T00:00:00Z stderr F:x tagged\n'),
        Buffer.from('2026-01-01T00:00:00Z stdout F no newline'),
      ],
      async (f) => {
        const out = await readCriOutput(f, 1024);
        expect(out.stdout.toString('latin1')).toBe('\n\nno newline\n');
        expect(out.stderr.toString()).toBe('tagged\n');
      },
    );
  });
});
