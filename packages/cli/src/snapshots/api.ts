import { createHash } from 'node:crypto';
import {
  BerthError,
  Code,
  DEFAULT_NAMESPACE,
  type ImageRecord,
  type ImageUnpackReply,
  type ListSnapshotsReply,
  type MountsReply,
  Service,
  type SnapshotInfo,
  type SnapshotUsageReply,
} from '@berth/api';
import { call } from '@berth/kit';
import type { CliContext } from '../context.js';

/** Per-operation timeouts of the calls the CLI makes to the snapshot-service. */
const timeouts = {
  list: 30_000,
  stat: 10_000,
  usage: 120_000,
  remove: 120_000,
  mounts: 10_000,
  view: 30_000,
} as const;

function namespace(): string {
  return process.env.BERTH_NAMESPACE || DEFAULT_NAMESPACE;
}

/** Calls one operation of this node's snapshot-service. */
export async function snap<O>(ctx: CliContext, op: keyof typeof timeouts, payload: unknown): Promise<O> {
  return call<O>(await ctx.nats(), Service.snapshot, op, payload, {
    node: ctx.config.nodeId,
    namespace: namespace(),
    timeoutMs: timeouts[op],
  });
}

export const listSnapshots = (ctx: CliContext, filters: string[]) =>
  snap<ListSnapshotsReply>(ctx, 'list', { filters });
export const statSnapshot = (ctx: CliContext, key: string) => snap<SnapshotInfo>(ctx, 'stat', { key });
export const snapshotUsage = (ctx: CliContext, key: string) =>
  snap<SnapshotUsageReply>(ctx, 'usage', { key });
export const snapshotMounts = (ctx: CliContext, key: string) => snap<MountsReply>(ctx, 'mounts', { key });

/** Looks an image up on this node through the image-service. */
export async function getImage(ctx: CliContext, name: string): Promise<ImageRecord> {
  return call<ImageRecord>(
    await ctx.nats(),
    Service.image,
    'get',
    { name },
    {
      node: ctx.config.nodeId,
      namespace: namespace(),
      timeoutMs: 10_000,
    },
  );
}

/** ChainID of the top layer (image-spec config.md): the snapshot an image's rootfs is built on. */
export function topChainId(diffIds: readonly string[]): string {
  let chain = '';
  for (const d of diffIds)
    chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  if (chain === '') throw new BerthError(Code.FAILED_PRECONDITION, 'the image has no layers');
  return chain;
}

/**
 * Unpacks an image into snapshots through the image-service, which records the top chainID in the
 * image record (so `berth run` can use it) and returns the updated record.
 */
export async function unpackImage(ctx: CliContext, name: string): Promise<ImageUnpackReply> {
  return call<ImageUnpackReply>(
    await ctx.nats(),
    Service.image,
    'unpack',
    { name },
    { node: ctx.config.nodeId, namespace: namespace(), timeoutMs: 1_800_000 },
  );
}
