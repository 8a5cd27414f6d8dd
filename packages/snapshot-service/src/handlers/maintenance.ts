import type { SnapshotApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import { type ContainerChainRoots, collectSnapshots, type ImageChainRoots } from '../snapshots/gc.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { Unpacker } from '../unpack/unpacker.js';

/** unpack, cleanup, gc. */
export function maintenanceHandlers(
  sn: Snapshotter,
  unpacker: Unpacker,
  gcGraceMs: number,
  roots: { images: ImageChainRoots; containers: ContainerChainRoots },
): Pick<Handlers<typeof SnapshotApi>, 'unpack' | 'cleanup' | 'gc'> {
  return {
    unpack: (req, ctx) => unpacker.unpack(req, ctx.signal),
    cleanup: async () => ({ removed: await sn.cleanup() }),
    gc: (req) =>
      collectSnapshots(sn, {
        graceMs: req.graceMs ?? gcGraceMs,
        dryRun: req.dryRun ?? false,
        imageRoots: roots.images,
        containerRoots: roots.containers,
      }),
  };
}
