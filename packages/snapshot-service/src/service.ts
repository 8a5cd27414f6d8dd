import { ImageApi, type SnapshotApi, TaskApi } from '@berth/api';
import { call, type Handlers, type ServiceContext } from '@berth/kit';
import { lifecycleHandlers } from './handlers/lifecycle.js';
import { maintenanceHandlers } from './handlers/maintenance.js';
import { queryHandlers } from './handlers/query.js';
import { snapshotSettings } from './settings.js';
import { Snapshotter } from './snapshots/snapshotter.js';
import { walkUsage } from './snapshots/usage.js';
import { UsageCache } from './snapshots/usage-cache.js';
import { sweepOrphanExtractsAtStart } from './unpack/orphans.js';
import { Unpacker } from './unpack/unpacker.js';

/** A snapshot-service instance: its handlers, and how to stop what runs beside them. */
export interface SnapshotService {
  /** The handlers of its operations (SnapshotApi) on berth.<node>.snapshot.v1.<op>. */
  handlers: Handlers<typeof SnapshotApi>;
  /** Stops the usage cache's refresh timer (and waits for walks running); after requests stop. */
  close(): Promise<void>;
}

/** Builds the snapshot-service on connections already made (start, tests). */
export function createService(ctx: ServiceContext): SnapshotService {
  const settings = snapshotSettings(ctx.config);
  const usage = new UsageCache({
    walk: walkUsage,
    periodMs: settings.usageRefreshMs,
    concurrency: settings.usageWalkConcurrency,
    log: ctx.log,
  });
  const sn = new Snapshotter(ctx.redis, ctx.node, ctx.layout.snapshots, { usage });
  const unpacker = new Unpacker({
    snapshotter: sn,
    blobsDir: ctx.layout.content.blobs,
    maxLayerUncompressedBytes: settings.maxLayerUncompressedBytes,
    lockWaitMs: settings.unpackLockWaitMs,
    lockTtlMs: settings.unpackLockTtlMs,
    log: ctx.log,
  });
  // Extract snapshots of unpacks whose process died (SIGKILL mid-unpack) go at start-up, not only
  // with an image's removal.
  sweepOrphanExtractsAtStart(sn, ctx.log, settings.unpackLockTtlMs);
  // Crash leftovers (directories no snapshot references) go at start-up; ids still being created
  // by another replica are spared (see Snapshotter.cleanup).
  void sn
    .cleanup()
    .then(
      (removed) =>
        removed.length > 0 && ctx.log.info({ removed }, 'removed unreferenced snapshot directories'),
    )
    .catch((err: unknown) => ctx.log.warn({ err: (err as Error).message }, 'start-up cleanup failed'));
  const handlers: Handlers<typeof SnapshotApi> = {
    ...lifecycleHandlers(sn, ctx.nc),
    ...queryHandlers(sn),
    ...maintenanceHandlers(sn, unpacker, settings.gcGraceMs, {
      // GC's image roots come from the node's image-service, which owns the image records and leases.
      images: async () => {
        const r = await call(ctx.nc, ImageApi, 'chain-roots', {}, { node: ctx.node });
        // Snapshots clients' leases hold are roots too (the image-service keeps the leases).
        return [...r.chainIds, ...r.leasedSnapshots];
      },
      // A container created before its rootfs (the CRI's create) holds its chain through its
      // record until the prepare: the task-service owns the records.
      containers: async () => (await call(ctx.nc, TaskApi, 'claimed-chains', { node: ctx.node })).chainIds,
    }),
  };
  return { handlers, close: () => sn.close() };
}
