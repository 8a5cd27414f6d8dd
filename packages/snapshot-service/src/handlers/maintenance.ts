import {
  type SnapshotCleanupReply,
  type SnapshotGcReply,
  SnapshotGcRequest,
  type UnpackReply,
  UnpackRequest,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import { z } from 'zod';
import { collectSnapshots } from '../snapshots/gc.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { Unpacker } from '../unpack/unpacker.js';

/** unpack, cleanup, gc. */
export function maintenanceEndpoints(sn: Snapshotter, unpacker: Unpacker, gcGraceMs: number) {
  return {
    unpack: endpoint(
      UnpackRequest,
      async (req, ctx): Promise<UnpackReply> => unpacker.unpack(req, ctx.signal),
      'apply layers from the content store as committed snapshots named by chainID',
    ),
    cleanup: endpoint(
      z.object({}).passthrough(),
      async (): Promise<SnapshotCleanupReply> => ({ removed: await sn.cleanup() }),
    ),
    gc: endpoint(
      SnapshotGcRequest,
      async (req): Promise<SnapshotGcReply> =>
        collectSnapshots(sn, { graceMs: req.graceMs ?? gcGraceMs, dryRun: req.dryRun ?? false }),
      'remove snapshots no image or container reaches',
    ),
  };
}
