import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { followLog, type LogLine, parseCriLine, printLog } from './cri-log.js';

const T = '2026-11-28T10:00:00.123456789Z';

function collect(): { sink: { write(l: LogLine): void }; text: () => string } {
  let s = '';
  return {
    sink: { write: (l) => (s += `${l.stream === 'stderr' ? '!' : ''}${l.content}${l.full ? '\n' : ''}`) },
    text: () => s,
  };
}

describe('CRI log reading', () => {
  it('parses lines with tags and content holding spaces', () => {
    expect(parseCriLine(`${T} stdout F hello world`)).toEqual({
      time: T,
      stream: 'stdout',
      full: true,
      content: 'hello world',
    });
    expect(parseCriLine(`${T} stderr P:x part`)).toMatchObject({
      stream: 'stderr',
      full: false,
      content: 'part',
    });
    expect(parseCriLine(`${T} stdout F`)).toMatchObject({ content: '' });
    expect(parseCriLine('garbage')).toBeUndefined();
    expect(parseCriLine(`${T} stdin F x`)).toBeUndefined();
  });

  it('tails whole lines, joining partial chunks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-log-'));
    const f = join(dir, 'c.log');
    await writeFile(
      f,
      [`${T} stdout F one`, `${T} stdout P tw`, `${T} stdout F o`, `${T} stderr F three`, ''].join('\n'),
    );
    const all = collect();
    await printLog(f, all.sink);
    expect(all.text()).toBe('one\ntwo\n!three\n');
    const last2 = collect();
    await printLog(f, last2.sink, 2);
    expect(last2.text()).toBe('two\n!three\n');
    await rm(dir, { recursive: true, force: true });
  });

  it('follows appended lines until done, then drains the rest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-log-'));
    const f = join(dir, 'c.log');
    await writeFile(f, `${T} stdout F a\n`);
    const c = collect();
    let finish!: () => void;
    const done = new Promise<void>((r) => {
      finish = r;
    });
    const following = followLog(f, 0, c.sink, done);
    await appendFile(f, `${T} stdout F b\n`);
    await appendFile(f, `${T} stdout F c\n`);
    finish();
    await following;
    expect(c.text()).toBe('a\nb\nc\n');
    await rm(dir, { recursive: true, force: true });
  });

  it('reads what there is and ends, leaving no unhandled rejection, when `done` fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-log-'));
    const f = join(dir, 'c.log');
    await writeFile(f, `${T} stdout F only\n`);
    const c = collect();
    const unhandled: unknown[] = [];
    const seen = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', seen);
    try {
      // The exit waiter could not listen: the caller reports that; following just ends.
      const done = Promise.reject(new Error('the exit waiter could not subscribe'));
      await followLog(f, 0, c.sink, done);
      await done.catch(() => undefined);
      await new Promise((r) => setImmediate(r));
      expect(c.text()).toBe('only\n');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', seen);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
