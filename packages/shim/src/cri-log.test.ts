import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCriLine, readCriStreams } from './cri-log.js';

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
      expect(await readCriStreams(f, 5)).toEqual({ stdout: 'abc', stderr: '', truncated: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
