import type { ServiceContext } from '@berth/kit';
import { lifecycleEndpoints } from './handlers/lifecycle.js';
import { maintenanceEndpoints } from './handlers/maintenance.js';
import { queryEndpoints } from './handlers/query.js';
import { snapshotSettings } from './settings.js';
import { Snapshotter } from './snapshots/snapshotter.js';
import { Unpacker } from './unpack/unpacker.js';

/** The operations of the snapshot-service on berth.<node>.snapshot.v1.<op>. */
export function createEndpoints(ctx: ServiceContext) {
  const settings = snapshotSettings(ctx.config);
  const sn = new Snapshotter(ctx.redis, ctx.node, ctx.layout.snapshots);
  const unpacker = new Unpacker({
    snapshotter: sn,
    blobsDir: ctx.layout.content.blobs,
    maxLayerUncompressedBytes: settings.maxLayerUncompressedBytes,
    lockWaitMs: settings.unpackLockWaitMs,
    log: ctx.log,
  });
  // Crash leftovers (directories no snapshot references) go at start-up; ids still being created
  // by another replica are spared (see Snapshotter.cleanup).
  void sn
    .cleanup()
    .then(
      (removed) =>
        removed.length > 0 && ctx.log.info({ removed }, 'removed unreferenced snapshot directories'),
    )
    .catch((err: unknown) => ctx.log.warn({ err: (err as Error).message }, 'start-up cleanup failed'));
  return {
    ...lifecycleEndpoints(sn, ctx.nc),
    ...queryEndpoints(sn),
    ...maintenanceEndpoints(sn, unpacker, settings.gcGraceMs),
  };
}
