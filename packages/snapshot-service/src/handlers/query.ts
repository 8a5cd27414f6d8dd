import {
  type ListSnapshotsReply,
  ListSnapshotsRequest,
  type SnapshotInfo,
  SnapshotKeyRequest,
  type SnapshotUsageReply,
  UpdateSnapshotRequest,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import type { Snapshotter } from '../snapshots/snapshotter.js';

/** stat, update, list, usage. */
export function queryEndpoints(sn: Snapshotter) {
  return {
    stat: endpoint(SnapshotKeyRequest, async (req): Promise<SnapshotInfo> => sn.stat(req.key)),
    update: endpoint(UpdateSnapshotRequest, async (req): Promise<SnapshotInfo> => sn.update(req)),
    list: endpoint(
      ListSnapshotsRequest,
      async (req): Promise<ListSnapshotsReply> => ({ snapshots: await sn.list(req.filters) }),
    ),
    usage: endpoint(SnapshotKeyRequest, async (req): Promise<SnapshotUsageReply> => sn.usage(req.key)),
  };
}
