import type { ContainerInfo, ListContainersRequest } from '@berth/api';
import { decodeCursor, fillPage, type Page } from '@berth/kit';
import { type ContainerStore, comparePositions, type ListPosition } from '../store/store.js';
import { replyable } from './limits.js';

/** True when a container passes every filter of a list request. */
export function matches(i: ContainerInfo, f: ListContainersRequest): boolean {
  if (f.status?.length && !f.status.includes(i.status)) return false;
  if (f.name && i.container.name !== f.name) return false;
  if (f.node && i.container.node !== f.node) return false;
  if (f.images && !f.images.includes(i.container.image.name) && !f.images.includes(i.container.image.digest))
    return false;
  for (const [k, v] of Object.entries(f.labels ?? {})) {
    const have = i.container.labels[k];
    if (have === undefined || (v !== '' && have !== v)) return false;
  }
  return true;
}

/**
 * One page of a namespace's containers matching the request's filters, newest first. The cursor
 * is the position (creation time, id) of the last container sent, so containers created or
 * removed between two pages neither repeat nor shift the rest; filters run before paging, and
 * records are read only until the page is full.
 */
export async function listPage(
  store: ContainerStore,
  ns: string,
  req: ListContainersRequest,
): Promise<Page<ContainerInfo>> {
  let positions = await store.order(ns);
  if (req.cursor !== undefined) {
    const [createdAt, id] = decodeCursor(req.cursor, 2, 'list-containers') as [string, string];
    const after: ListPosition = { createdAt, id };
    // Newest first: the page goes on with what sorts before the last position sent.
    const from = positions.findIndex((x) => comparePositions(x, after) < 0);
    positions = from < 0 ? [] : positions.slice(from);
  }
  return fillPage(filtered(store.scan(ns, positions), req), {
    limit: req.limit,
    keyOf: (i) => [i.container.createdAt, i.container.id],
  });
}

async function* filtered(
  source: AsyncIterable<ContainerInfo>,
  f: ListContainersRequest,
): AsyncGenerator<ContainerInfo> {
  for await (const i of source) if (matches(i, f)) yield replyable(i);
}
