// One paging pattern for every list operation: the request may carry `limit` and `cursor`, the
// reply carries its page of items and `nextCursor` while more remain. A reply is bounded in bytes
// as well as in items, so no reply grows with the number of objects a service holds: NATS refuses
// any message over the server's max_payload (1 MiB by default), and a list that once fit would
// fail for everyone as soon as one more object was made.
import * as z from './lazy-zod.js';

/**
 * Largest JSON body of one page, in bytes: half of NATS's default max_payload (1 MiB), leaving
 * room for the reply envelope, headers and a record that arrives at the page's edge.
 */
export const PAGE_MAX_BYTES = 512 * 1024;

/** Most items one page holds, whatever their size. */
export const PAGE_MAX_ITEMS = 1000;

/** Longest cursor a server hands out or accepts. */
export const CURSOR_MAX_LENGTH = 1024;

/** A cursor: opaque to callers, who pass back what the previous page's `nextCursor` said. */
export const Cursor = z.string().min(1).max(CURSOR_MAX_LENGTH);
export type Cursor = z.infer<typeof Cursor>;

/**
 * Request fields of a paged list: at most `limit` items (the server's own bound applies too),
 * starting after `cursor` (absent for the first page). Filters of the operation apply before
 * paging, so a page is never short because items were filtered out of it.
 */
export const PageRequest = z.object({
  limit: z.number().int().min(1).max(PAGE_MAX_ITEMS).optional(),
  cursor: Cursor.optional(),
});
export type PageRequest = z.infer<typeof PageRequest>;

/** Reply field of a paged list: where the next page starts; absent on the last page. */
export const PageReply = z.object({ nextCursor: Cursor.optional() });
export type PageReply = z.infer<typeof PageReply>;
