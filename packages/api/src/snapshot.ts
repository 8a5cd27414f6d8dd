// Contracts of the snapshot-service (NATS: berth.<node>.snapshot.v1.<op>). Owned by the
// snapshot-service work; others rely on Mount, PrepareRequest, UnpackRequest: extend, do not break.
import { z } from 'zod';
import { Descriptor, Digest } from './oci.js';

/** A mount as containerd describes one (type, source, options); the target is the caller's. */
export const Mount = z.object({
  type: z.string(),
  source: z.string(),
  options: z.array(z.string()),
});
export type Mount = z.infer<typeof Mount>;

/** Snapshot kinds, as in containerd. */
export const SnapshotKind = { active: 'active', view: 'view', committed: 'committed' } as const;
export type SnapshotKind = (typeof SnapshotKind)[keyof typeof SnapshotKind];

/** Request of `prepare` (and `view`): a new active (or read-only) snapshot on top of `parent`. */
export const PrepareRequest = z.object({
  key: z.string().min(1),
  parent: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
});
export type PrepareRequest = z.infer<typeof PrepareRequest>;

/** Reply of `prepare`, `view` and `mounts`. */
export const MountsReply = z.object({ mounts: z.array(Mount) });
export type MountsReply = z.infer<typeof MountsReply>;

/**
 * Request of `unpack`: apply an image's layers (blobs already in this node's content store) as
 * committed snapshots named by chainID. diffIds come from the image config's rootfs.diff_ids.
 */
export const UnpackRequest = z.object({
  layers: z.array(Descriptor).min(1),
  diffIds: z.array(Digest).min(1),
});
export type UnpackRequest = z.infer<typeof UnpackRequest>;

/** Reply of `unpack`: the top chainID and how many layers were applied versus already present. */
export const UnpackReply = z.object({
  chainId: z.string(),
  applied: z.number().int(),
  skipped: z.number().int(),
});
export type UnpackReply = z.infer<typeof UnpackReply>;
