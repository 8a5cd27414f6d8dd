import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@berth/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { collectStreams, parseCriLine, readCriLog } from './logs.js';

/** Directories made by the tests, removed at the end. */
const made: string[] = [];
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

const T = '2026-01-01T00:00:00.000000000Z';

describe('CRI logs', () => {
  it('parses full and partial lines and refuses others', () => {
    expect(parseCriLine(`${T} stdout F hello world`)).toEqual({
      time: T,
      stream: 'stdout',
      full: true,
      content: 'hello world',
    });
    expect(parseCriLine(`${T} stderr P:x part`)?.full).toBe(false);
    expect(parseCriLine(`${T} stdout F`)?.content).toBe('');
    expect(parseCriLine(`${T} stdin F x`)).toBeUndefined();
    expect(parseCriLine('garbage')).toBeUndefined();
  });

  it('reads a log into streams, joining partial chunks and capping each stream', async () => {
    const dir = await tempDir('sdk-logs');
    made.push(dir);
    const file = join(dir, 'c.log');
    await writeFile(
      file,
      [
        `${T} stdout P ab`,
        `${T} stdout F c`,
        `${T} stderr F err`,
        `${T} stdout F 0123456789`,
        `${T} stdout F tail`,
      ]
        .map((l) => `${l}\n`)
        .join(''),
    );
    expect(await collectStreams(readCriLog(file), 1000)).toEqual({
      stdout: 'abc\n0123456789\ntail\n',
      stderr: 'err\n',
      truncated: false,
    });
    const capped = await collectStreams(readCriLog(file), 8);
    expect(capped).toEqual({ stdout: 'abc\n0123', stderr: 'err\n', truncated: true });
  });

  it('keeps characters whole across its reads and counts the cap in UTF-8 bytes', async () => {
    const dir = await tempDir('sdk-logs');
    made.push(dir);
    const file = join(dir, 'u.log');
    // 'é' is 2 bytes: placed so that its bytes straddle the reader's 64 KiB reads.
    const head = `${T} stdout F `;
    const pad = 'a'.repeat(64 * 1024 - Buffer.byteLength(head) - 1);
    await writeFile(file, `${head}${pad}é\n${T} stderr F ü€x\n`);
    const all = await collectStreams(readCriLog(file), 1 << 20);
    expect(all).toEqual({ stdout: `${pad}é\n`, stderr: 'ü€x\n', truncated: false });
    // ü is 2 bytes, € 3: 4 bytes hold ü and not €, which is not cut in two.
    const capped = await collectStreams(readCriLog(file), 4);
    expect(capped.stderr).toBe('ü');
    expect(capped.truncated).toBe(true);
    // Once cut, a stream takes nothing more: a later line that would fit the byte a cut character
    // left must not read as if it followed the cut.
    const gap = join(dir, 'gap.log');
    await writeFile(gap, `${T} stdout F aaaaaaaaé\n${T} stdout F \n`);
    expect(await collectStreams(readCriLog(gap), 9)).toEqual({
      stdout: 'aaaaaaaa',
      stderr: '',
      truncated: true,
    });
  });

  it('follows a log until the process ends and reads what came before the end', async () => {
    const dir = await tempDir('sdk-logs');
    made.push(dir);
    const file = join(dir, 'f.log');
    await writeFile(file, `${T} stdout F one\n`);
    let exit!: () => void;
    const exited = new Promise<void>((r) => {
      exit = r;
    });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const l of readCriLog(file, { until: exited })) {
        seen.push(l.content);
        // The writer appends and the process exits only once the first line was read.
        if (l.content === 'one') {
          await writeFile(file, `${T} stdout F one\n${T} stdout F two\n`);
          exit();
        }
      }
    })();
    await reading;
    expect(seen).toEqual(['one', 'two']);
  });
});
