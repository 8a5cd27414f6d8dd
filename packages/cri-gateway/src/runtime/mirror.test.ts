import { describe, expect, it, vi } from 'vitest';
import { Mirror } from './mirror.js';

/** A source whose records the test sets, counting the reads of each key. */
function source(initial: Record<string, number>) {
  const records = new Map(Object.entries(initial));
  const reads: string[] = [];
  return {
    records,
    reads,
    src: {
      fetch: async (key: string) => {
        reads.push(key);
        return records.get(key);
      },
      list: async (): Promise<[string, number][]> => [...records.entries()],
    },
  };
}

describe('Mirror refreshes', () => {
  it('shares one read between refreshes of a key asked in the same turn, started after all of them', async () => {
    const s = source({ a: 1 });
    const m = new Mirror<number>(s.src, (e) => {
      throw e;
    });
    await m.start(60_000);
    s.reads.length = 0;
    // An event and a write's reply naming the same key, handled in one turn of the event loop.
    const first = m.refresh('a');
    s.records.set('a', 2);
    const second = m.refresh('a');
    expect(second).toBe(first);
    // A read waits for the refresh, which shows the change made after the first call.
    expect(await m.get('a')).toBe(2);
    expect(s.reads).toEqual(['a']);
    m.stop();
  });

  it('reads again for a refresh asked once the earlier read started', async () => {
    const s = source({ a: 1, b: 5 });
    const m = new Mirror<number>(s.src, (e) => {
      throw e;
    });
    await m.start(60_000);
    s.reads.length = 0;
    const first = m.refresh('a');
    // The next turn: the first refresh's read has started.
    await new Promise((r) => setImmediate(r));
    s.records.set('a', 3);
    const second = m.refresh('a');
    expect(second).not.toBe(first);
    void m.refresh('b');
    expect(await m.get('a')).toBe(3);
    expect(await m.get('b')).toBe(5);
    expect(s.reads.sort()).toEqual(['a', 'a', 'b']);
    m.stop();
  });

  it('reads nothing for a refresh whose key a write set, or a removal dropped, before its read began', async () => {
    const s = source({ a: 1, b: 5 });
    const m = new Mirror<number>(s.src, (e) => {
      throw e;
    });
    await m.start(60_000);
    s.reads.length = 0;
    // An event, then in the same turn the reply of the write that caused it.
    void m.refresh('a');
    s.records.set('a', 2);
    expect(m.replace('a', () => 2)).toBe(true);
    void m.refresh('b');
    s.records.delete('b');
    m.forget('b');
    await new Promise((r) => setImmediate(r));
    expect(await m.get('a')).toBe(2);
    expect(await m.get('b')).toBeUndefined();
    expect(s.reads).toEqual([]);
    // A later refresh reads again.
    s.records.set('a', 7);
    await m.refresh('a');
    expect(await m.get('a')).toBe(7);
    expect(s.reads).toEqual(['a']);
    m.stop();
  });
});

describe('Mirror writes', () => {
  it('drops a refresh not started yet when a write sets the record (its event came before its reply)', async () => {
    const s = source({ a: 1 });
    const m = new Mirror<number>(s.src, (e) => {
      throw e;
    });
    await m.start(60_000);
    s.reads.length = 0;
    // The event, then the reply in the same turn: the reply's record is the write's own.
    const refreshed = m.refresh('a');
    m.replace('a', () => 2);
    await refreshed;
    expect(s.reads).toEqual([]);
    expect(await m.get('a')).toBe(2);
    // A refresh asked after the write reads again.
    s.records.set('a', 3);
    await m.refresh('a');
    expect(await m.get('a')).toBe(3);
    m.stop();
  });
});

describe('Mirror first load', () => {
  it('tries a failed first load again soon, not only at the periodic resync', async () => {
    const s = source({ a: 1 });
    let down = 2;
    const list = s.src.list;
    s.src.list = async () => {
      // The service does not answer yet (the gateway started first): twice.
      if (down-- > 0) throw new Error('no responder for "list"');
      return list();
    };
    const m = new Mirror<number>(s.src, () => undefined);
    await expect(m.start(3_600_000)).rejects.toThrow('no responder');
    expect(m.loaded).toBe(false);
    await vi.waitFor(() => expect(m.loaded).toBe(true), { timeout: 5_000, interval: 20 });
    expect(m.peek('a')).toBe(1);
    m.stop();
  });
});

describe('Mirror.derive', () => {
  it('keeps what it made until a record is set or dropped, and waits for a refresh in flight', async () => {
    const s = source({ a: 1, b: 2 });
    const m = new Mirror<number>(s.src, (e) => {
      throw e;
    });
    await m.start(60_000);
    let made = 0;
    const sorted = (all: number[]) => {
      made++;
      return [...all].sort((x, y) => y - x);
    };
    const first = await m.derive(sorted);
    expect(first).toEqual([2, 1]);
    // Nothing changed: the same array, not made again.
    expect(await m.derive(sorted)).toBe(first);
    expect(made).toBe(1);
    // A write's reply sets a record: made again from it.
    m.replace('c', () => 3);
    expect(await m.derive(sorted)).toEqual([3, 2, 1]);
    // A refresh in flight is waited for, and what it read is in the result.
    s.records.set('a', 5);
    void m.refresh('a');
    expect(await m.derive(sorted)).toEqual([5, 3, 2]);
    m.forget('b');
    expect(await m.derive(sorted)).toEqual([5, 3]);
    // A patch from an event changes a record too.
    m.patch('c', () => 4);
    expect(await m.derive(sorted)).toEqual([5, 4]);
    expect(made).toBe(5);
    m.stop();
  });

  it('answers getNow and deriveNow only when nothing it would wait for is in flight', async () => {
    const s = source({ a: 1, b: 2 });
    const m = new Mirror<number>(s.src, (e) => {
      throw e;
    });
    await m.start(60_000);
    const sorted = (all: number[]) => [...all].sort((x, y) => y - x);
    expect(m.getNow('a')).toEqual({ value: 1 });
    expect(m.getNow('z')).toEqual({ value: undefined });
    expect(m.deriveNow(sorted)).toEqual([2, 1]);
    // The same value derive() keeps, made once.
    expect(await m.derive(sorted)).toBe(m.deriveNow(sorted));
    s.records.set('a', 5);
    const refreshed = m.refresh('a');
    // A refresh of a in flight: what get/derive would wait for cannot be told now.
    expect(m.getNow('a')).toBeUndefined();
    expect(m.deriveNow(sorted)).toBeUndefined();
    expect(m.getNow('b')).toEqual({ value: 2 });
    await refreshed;
    expect(m.getNow('a')).toEqual({ value: 5 });
    expect(m.deriveNow(sorted)).toEqual([5, 2]);
    m.stop();
  });
});
