import { PAGE_MAX_ITEMS } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { collectAll, decodeCursor, encodeCursor, fillPage } from './paging.js';

const keyOf = (n: { k: string }) => [n.k];
const items = (count: number, bytes = 10) =>
  Array.from({ length: count }, (_, i) => ({ k: String(i).padStart(5, '0'), pad: 'x'.repeat(bytes) }));

describe('fillPage', () => {
  it('stops at the limit and names where the next page starts', async () => {
    const page = await fillPage(items(10), { limit: 4, keyOf });
    expect(page.items.map((i) => i.k)).toEqual(['00000', '00001', '00002', '00003']);
    expect(decodeCursor(page.nextCursor as string, 1, 't')).toEqual(['00003']);
  });

  it('never holds more than PAGE_MAX_ITEMS, whatever the limit asked', async () => {
    const page = await fillPage(items(PAGE_MAX_ITEMS + 5, 0), { limit: 10 ** 6, keyOf });
    expect(page.items).toHaveLength(PAGE_MAX_ITEMS);
    expect(page.nextCursor).toBeDefined();
  });

  it('stops before the byte bound, but always takes the first item', async () => {
    const page = await fillPage(items(10, 1000), { maxBytes: 3500, keyOf });
    expect(page.items).toHaveLength(3);
    expect(JSON.stringify(page.items).length).toBeLessThanOrEqual(3500);
    const big = await fillPage(items(2, 5000), { maxBytes: 100, keyOf });
    expect(big.items).toHaveLength(1);
    expect(big.nextCursor).toBeDefined();
  });

  it('has no cursor on the last page, and reads one item past a full page only', async () => {
    expect(await fillPage(items(3), { limit: 3, keyOf })).toEqual({ items: items(3) });
    let read = 0;
    async function* source() {
      for (const i of items(100)) {
        read++;
        yield i;
      }
    }
    await fillPage(source(), { limit: 5, keyOf });
    expect(read).toBe(6);
  });
});

describe('cursors and listAll', () => {
  it('refuses a cursor it did not make, or made for another key', () => {
    expect(() => decodeCursor('%%%', 2, 'list-x')).toThrow(/list-x: invalid cursor/);
    expect(() => decodeCursor(encodeCursor(['a']), 2, 'list-x')).toThrow(/invalid cursor/);
    expect(decodeCursor(encodeCursor(['a', 'b/c "d"']), 2, 'x')).toEqual(['a', 'b/c "d"']);
  });

  it('walks every page in order, passing the filters on each call', async () => {
    const all = items(23);
    const seen: unknown[] = [];
    const op = async (input: { f: string; cursor?: string }) => {
      seen.push(input.f);
      const from = input.cursor
        ? all.findIndex((i) => i.k > (decodeCursor(input.cursor as string, 1, 't')[0] ?? ''))
        : 0;
      const page = await fillPage(all.slice(from), { limit: 5, keyOf });
      return { things: page.items, ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
    };
    expect(await collectAll(op, { f: 'on' }, 'things')).toEqual(all);
    expect(seen).toEqual(['on', 'on', 'on', 'on', 'on']);
  });

  it('fails on a server whose cursor does not move instead of looping', async () => {
    const op = async (_: { cursor?: string }) => ({ things: [1], nextCursor: 'same' });
    await expect(collectAll(op, {}, 'things')).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringContaining('cursor twice'),
    });
  });
});
