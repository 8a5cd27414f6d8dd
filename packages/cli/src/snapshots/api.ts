import {
  BerthError,
  Code,
  chainIds,
  type ImageRecord,
  type ImageUnpackReply,
  type InputOf,
  type ListSnapshotsRequest,
  type OpName,
  type OutputOf,
  SnapshotApi,
} from '@berth/api';
import { call } from '@berth/kit/client';
import { collectAll } from '@berth/kit/paging';
import type { CliContext } from '../context.js';
import { image } from '../images/api.js';

/** Calls one operation of this node's snapshot-service, in the CLI's namespace. */
export async function snap<K extends OpName<typeof SnapshotApi>>(
  ctx: CliContext,
  op: K,
  payload: InputOf<typeof SnapshotApi, K>,
): Promise<OutputOf<typeof SnapshotApi, K>> {
  return call(await ctx.nats(), SnapshotApi, op, payload, {
    node: ctx.config.nodeId,
    namespace: ctx.namespace,
  });
}

/** Every snapshot matching the filters, page after page, by name. */
export const listSnapshots = (ctx: CliContext, filters: string[]) =>
  collectAll((input: ListSnapshotsRequest) => snap(ctx, 'list', input), { filters }, 'snapshots');
export const statSnapshot = (ctx: CliContext, key: string) => snap(ctx, 'stat', { key });
/** A snapshot's usage from a walk made now (not the figure the service caches for stats). */
export const snapshotUsage = (ctx: CliContext, key: string) => snap(ctx, 'usage', { key, fresh: true });
export const snapshotMounts = (ctx: CliContext, key: string) => snap(ctx, 'mounts', { key });

/** Looks an image up on this node through the image-service. */
export function getImage(ctx: CliContext, name: string): Promise<ImageRecord> {
  return image(ctx, 'get', { name });
}

/** ChainID of the top layer (image-spec config.md): the snapshot an image's rootfs is built on. */
export function topChainId(diffIds: readonly string[]): string {
  const top = chainIds(diffIds).at(-1);
  if (top === undefined) throw new BerthError(Code.FAILED_PRECONDITION, 'the image has no layers');
  return top;
}

/**
 * Unpacks an image into snapshots through the image-service, which records the top chainID in the
 * image record (so `berth run` can use it) and returns the updated record.
 */
export function unpackImage(ctx: CliContext, name: string): Promise<ImageUnpackReply> {
  return image(ctx, 'unpack', { name });
}
