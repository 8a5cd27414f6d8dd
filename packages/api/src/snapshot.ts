// Contracts of the snapshot-service (NATS: berth.<node>.snapshot.v1.<op>). Owned by the
// snapshot-service work; others rely on Mount, PrepareRequest, UnpackRequest: extend, do not break.

import { defineService, Empty, op, Scope } from './contract.js';
import * as z from './lazy-zod.js';
import { Descriptor, Digest } from './oci.js';
import { PageReply, PageRequest } from './paging.js';
import { Service } from './subjects.js';

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

/** One snapshot as `stat` and `list` report it (containerd's snapshots.Info). */
export const SnapshotInfo = z.object({
  /** The key (active/view) or name (committed) of the snapshot. */
  name: z.string(),
  /** Name of the committed parent, absent for a base snapshot. */
  parent: z.string().optional(),
  kind: z.enum(['active', 'view', 'committed']),
  labels: z.record(z.string(), z.string()),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type SnapshotInfo = z.infer<typeof SnapshotInfo>;

/** Requests naming one snapshot: `mounts`, `remove`, `stat` (and `usage`, extended). */
export const SnapshotKeyRequest = z.object({ key: z.string().min(1) });
export type SnapshotKeyRequest = z.infer<typeof SnapshotKeyRequest>;

/** Request of `commit`: the active snapshot `key` becomes the committed snapshot `name`. */
export const CommitSnapshotRequest = z.object({
  name: z.string().min(1),
  key: z.string().min(1),
  labels: z.record(z.string(), z.string()).optional(),
});
export type CommitSnapshotRequest = z.infer<typeof CommitSnapshotRequest>;

/**
 * Request of `update`: replaces the labels, or with `fieldpaths` (e.g. ["labels.a"]) sets only
 * those (a fieldpath whose label is absent from `labels` deletes it), as containerd's Update.
 */
export const UpdateSnapshotRequest = z.object({
  key: z.string().min(1),
  labels: z.record(z.string(), z.string()),
  fieldpaths: z.array(z.string()).optional(),
});
export type UpdateSnapshotRequest = z.infer<typeof UpdateSnapshotRequest>;

/**
 * Request of `list`: containerd-style filters. Each string is a conjunction of comma-separated
 * clauses (`kind==committed,labels."a.b"==x`); the snapshot matches when any string matches.
 * Fields: name, parent, kind, labels.<key>; operators ==, != and bare field (present). Filters
 * apply before paging; pages go by name.
 */
export const ListSnapshotsRequest = PageRequest.extend({ filters: z.array(z.string()).optional() });
export type ListSnapshotsRequest = z.infer<typeof ListSnapshotsRequest>;

/** Reply of `list`: one page; `nextCursor` while more snapshots match. */
export const ListSnapshotsReply = PageReply.extend({ snapshots: z.array(SnapshotInfo) });
export type ListSnapshotsReply = z.infer<typeof ListSnapshotsReply>;

/**
 * Request of `usage`. An active snapshot's figure comes from a cache its node refreshes in the
 * background (every `services.snapshot-service.usageRefreshMs`, as containerd's CRI serves it
 * from its snapshot store); `fresh` walks the directory now instead (a quota check, `berth
 * snapshot usage`). Committed snapshots answer what their commit measured either way.
 */
export const SnapshotUsageRequest = SnapshotKeyRequest.extend({ fresh: z.boolean().optional() });
export type SnapshotUsageRequest = z.infer<typeof SnapshotUsageRequest>;

/**
 * Reply of `usage`: disk used by the snapshot's own directory, parents excluded. `measuredAt`
 * (RFC 3339) is when the walk behind the figure started, set when the directory can change
 * (active snapshots): a cached figure is up to one refresh period old. Absent for committed and
 * view snapshots, whose figures cannot go stale, and from services that predate it.
 */
export const SnapshotUsageReply = z.object({
  size: z.number().int(),
  inodes: z.number().int(),
  measuredAt: z.string().optional(),
});
export type SnapshotUsageReply = z.infer<typeof SnapshotUsageReply>;

/** Reply of `cleanup`: directories on disk that no snapshot referenced, now removed. */
export const SnapshotCleanupReply = z.object({ removed: z.array(z.string()) });
export type SnapshotCleanupReply = z.infer<typeof SnapshotCleanupReply>;

/**
 * Request of `gc`: removes committed snapshots no image (its chainId) and no active/view snapshot
 * reaches, and stale unpack leftovers. Committed snapshots younger than `graceMs` (default the
 * service's gcGraceMs, 0 unless configured) are kept, like a lease.
 */
export const SnapshotGcRequest = z.object({
  graceMs: z.number().int().nonnegative().optional(),
  dryRun: z.boolean().optional(),
});
export type SnapshotGcRequest = z.infer<typeof SnapshotGcRequest>;

/** Reply of `gc`. */
export const SnapshotGcReply = z.object({ removed: z.array(z.string()), kept: z.number().int() });
export type SnapshotGcReply = z.infer<typeof SnapshotGcReply>;

/** Label a snapshot carries while an unpack writes it (value: the chainID being applied). */
export const UNPACK_LABEL = 'berth.io/unpack';

/** The snapshot-service: one node's overlay snapshots (containerd's snapshotter model) and unpacker. */
export const SnapshotApi = defineService({
  name: Service.snapshot,
  scope: Scope.host,
  ops: {
    prepare: op({
      input: PrepareRequest,
      output: MountsReply,
      timeoutMs: 30_000,
      description: 'new active snapshot on a committed parent; returns its mounts',
    }),
    view: op({
      input: PrepareRequest,
      output: MountsReply,
      timeoutMs: 30_000,
      description: 'new read-only snapshot of a committed parent; returns its mounts',
    }),
    mounts: op({
      input: SnapshotKeyRequest,
      output: MountsReply,
      timeoutMs: 10_000,
      description: 'mounts of an active or view snapshot',
    }),
    commit: op({
      input: CommitSnapshotRequest,
      output: SnapshotInfo,
      timeoutMs: 120_000,
      description: 'an active snapshot becomes a committed one',
    }),
    remove: op({
      input: SnapshotKeyRequest,
      output: Empty,
      timeoutMs: 120_000,
      description: 'remove a snapshot without children',
    }),
    stat: op({
      input: SnapshotKeyRequest,
      output: SnapshotInfo,
      timeoutMs: 10_000,
      description: 'one snapshot',
    }),
    update: op({
      input: UpdateSnapshotRequest,
      output: SnapshotInfo,
      timeoutMs: 10_000,
      description: "replace or set a snapshot's labels",
    }),
    list: op({
      input: ListSnapshotsRequest,
      output: ListSnapshotsReply,
      timeoutMs: 30_000,
      description: 'one page of the snapshots matching filters, by name',
    }),
    usage: op({
      input: SnapshotUsageRequest,
      output: SnapshotUsageReply,
      timeoutMs: 120_000,
      description: "disk used by a snapshot's own directory",
    }),
    cleanup: op({
      input: Empty,
      output: SnapshotCleanupReply,
      timeoutMs: 300_000,
      description: 'remove directories no snapshot references',
    }),
    unpack: op({
      input: UnpackRequest,
      output: UnpackReply,
      timeoutMs: 1_800_000,
      description: 'apply layers from the content store as committed snapshots named by chainID',
    }),
    gc: op({
      input: SnapshotGcRequest,
      output: SnapshotGcReply,
      timeoutMs: 300_000,
      description: 'remove snapshots no image or container reaches',
    }),
  },
});
