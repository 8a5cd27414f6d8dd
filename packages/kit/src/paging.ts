// Both halves of the paging pattern of packages/api/src/paging.ts: servers fill a page bounded in
// items and bytes and hand out an opaque cursor (the sort key of the last item sent, so a page
// stays right while objects come and go between calls); callers walk every page with listAll.
import { BerthError, Code, errors, PAGE_MAX_BYTES, PAGE_MAX_ITEMS, type PageReply } from '@berth/api';

/** One page as a handler returns it: its items and, while more remain, the next page's cursor. */
export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

/** How a server fills a page. */
export interface PageOptions<T> {
  /** The caller's limit; PAGE_MAX_ITEMS when absent, never more. */
  limit?: number | undefined;
  /** The byte bound of the page's items as JSON; default PAGE_MAX_BYTES. */
  maxBytes?: number;
  /** The item's position in the listing's order (what the cursor records). */
  keyOf(item: T): readonly string[];
}

/** Encodes a position in a listing (the sort key of the last item sent) as an opaque cursor. */
export function encodeCursor(key: readonly string[]): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * Decodes a cursor made by encodeCursor for a key of `parts` strings; INVALID_ARGUMENT naming
 * `what` (the listing) for anything else, such as a cursor of another operation.
 */
export function decodeCursor(cursor: string, parts: number, what: string): string[] {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = undefined;
  }
  if (!Array.isArray(key) || key.length !== parts || !key.every((k) => typeof k === 'string')) {
    throw errors.invalid(`${what}: invalid cursor ${JSON.stringify(cursor.slice(0, 64))}`);
  }
  return key as string[];
}

/**
 * Fills one page from the items that follow the cursor, in the listing's order: at most `limit`
 * items and `maxBytes` of JSON. The first item always goes in (each kind of record is bounded in
 * size where it is made, below the page's bound), so every page moves the listing forward.
 */
export async function fillPage<T>(
  source: Iterable<T> | AsyncIterable<T>,
  opts: PageOptions<T>,
): Promise<Page<T>> {
  const limit = Math.min(opts.limit ?? PAGE_MAX_ITEMS, PAGE_MAX_ITEMS);
  const maxBytes = opts.maxBytes ?? PAGE_MAX_BYTES;
  const items: T[] = [];
  let bytes = 0;
  for await (const item of source) {
    // One comma between items in the reply's array.
    const size = Buffer.byteLength(JSON.stringify(item), 'utf8') + 1;
    const last = items[items.length - 1];
    if (last !== undefined && (items.length >= limit || bytes + size > maxBytes)) {
      return { items, nextCursor: encodeCursor(opts.keyOf(last)) };
    }
    items.push(item);
    bytes += size;
  }
  return { items };
}

/**
 * Walks every page of a paged list operation and yields its items: `op` is the operation bound
 * to its client (e.g. `client['list-containers']`), `input` its filters, `field` the reply's
 * array. A server whose cursor stops moving is an INTERNAL error rather than an endless loop.
 */
export async function* listAll<
  I extends { cursor?: string | undefined },
  R extends PageReply,
  K extends keyof R & string,
>(
  op: (input: I) => Promise<R>,
  input: I,
  field: K,
): AsyncGenerator<R[K] extends readonly (infer T)[] ? T : never> {
  const seen = new Set<string>();
  let cursor: string | undefined = input.cursor;
  for (;;) {
    const page: R = await op(cursor === undefined ? input : { ...input, cursor });
    const items = page[field];
    if (!Array.isArray(items)) {
      throw new BerthError(Code.INTERNAL, `paged reply has no "${field}" array`);
    }
    yield* items as (R[K] extends readonly (infer T)[] ? T : never)[];
    if (page.nextCursor === undefined) return;
    if (seen.has(page.nextCursor)) {
      throw new BerthError(Code.INTERNAL, `paged listing of "${field}" returned a cursor twice`);
    }
    seen.add(page.nextCursor);
    cursor = page.nextCursor;
  }
}

/** Every item of a paged list operation, in the listing's order (listAll collected). */
export async function collectAll<
  I extends { cursor?: string | undefined },
  R extends PageReply,
  K extends keyof R & string,
>(
  op: (input: I) => Promise<R>,
  input: I,
  field: K,
): Promise<(R[K] extends readonly (infer T)[] ? T : never)[]> {
  const out: (R[K] extends readonly (infer T)[] ? T : never)[] = [];
  for await (const item of listAll(op, input, field)) out.push(item);
  return out;
}
