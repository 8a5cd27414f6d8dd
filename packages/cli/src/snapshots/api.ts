import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  DEFAULT_NAMESPACE,
  type Descriptor,
  type ImageRecord,
  type ListSnapshotsReply,
  type MountsReply,
  Service,
  type SnapshotInfo,
  type SnapshotUsageReply,
  type UnpackReply,
} from '@berth/api';
import { call, hostLayout } from '@berth/kit';
import type { CliContext } from '../context.js';

/** Per-operation timeouts of the calls the CLI makes to the snapshot-service. */
const timeouts = {
  list: 30_000,
  stat: 10_000,
  usage: 120_000,
  remove: 120_000,
  mounts: 10_000,
  view: 30_000,
  unpack: 1_800_000,
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

/** The layer descriptors of an image, from its manifest blob in this node's content store. */
export async function imageLayers(ctx: CliContext, rec: ImageRecord): Promise<Descriptor[]> {
  const file = join(hostLayout(ctx.config).content.blobs, rec.manifest.digest.slice('sha256:'.length));
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    throw new BerthError(
      Code.NOT_FOUND,
      `manifest ${rec.manifest.digest} of image "${rec.name}" is not in this node's content store (${file})`,
      {
        cause: err,
      },
    );
  }
  const layers = (JSON.parse(raw) as { layers?: Descriptor[] }).layers;
  if (!Array.isArray(layers))
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `manifest ${rec.manifest.digest} of image "${rec.name}" lists no layers`,
    );
  return layers;
}

/** Unpacks an image's layers into snapshots (the snapshot-service `unpack`). */
export async function unpackImage(ctx: CliContext, rec: ImageRecord): Promise<UnpackReply> {
  const layers = await imageLayers(ctx, rec);
  return snap<UnpackReply>(ctx, 'unpack', { layers, diffIds: rec.config.rootfs.diff_ids });
}

/** 1.5 kB, 12.3 MB: sizes as docker prints them (SI units). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v}B` : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)}${units[i]}`;
}
