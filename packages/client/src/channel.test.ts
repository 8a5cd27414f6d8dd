import { describe, expect, it } from 'vitest';
import { Channel } from './channel.js';
import { BerthError, Code } from './index.js';

describe('Channel', () => {
  it('hands items to a waiting reader and in order to a later one, then ends', async () => {
    let closed = 0;
    const ch = new Channel<number>(10, 'test', () => closed++);
    const first = ch.next();
    ch.push(1);
    ch.push(2);
    ch.push(3);
    ch.end();
    ch.end();
    expect(await first).toEqual({ value: 1, done: false });
    const rest: number[] = [];
    for await (const n of ch) rest.push(n);
    expect(rest).toEqual([2, 3]);
    expect(closed).toBe(1);
    ch.push(4);
    expect(await ch.next()).toEqual({ value: undefined, done: true });
  });

  it('fails with RESOURCE_EXHAUSTED, after the queued items, when the reader falls behind', async () => {
    const ch = new Channel<number>(2, 'slow stream');
    for (const n of [1, 2, 3, 4]) ch.push(n);
    expect(await ch.next()).toEqual({ value: 1, done: false });
    expect(await ch.next()).toEqual({ value: 2, done: false });
    const err = await ch.next().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((err as BerthError).message).toBe('slow stream: the reader fell 2 items behind');
  });

  it('rejects a waiting reader on failure, and stops on break', async () => {
    const ch = new Channel<number>(5, 'test');
    const waiting = ch.next();
    ch.fail(new BerthError(Code.UNAVAILABLE, 'gone'));
    await expect(waiting).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    let closed = false;
    const other = new Channel<number>(5, 'test', () => {
      closed = true;
    });
    other.push(1);
    other.push(2);
    for await (const n of other) {
      expect(n).toBe(1);
      break;
    }
    expect(closed).toBe(true);
    expect(await other.next()).toEqual({ value: undefined, done: true });
  });
});
