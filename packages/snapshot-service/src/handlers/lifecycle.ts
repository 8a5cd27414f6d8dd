import {
  CommitSnapshotRequest,
  type MountsReply,
  PrepareRequest,
  type SnapshotInfo,
  SnapshotKeyRequest,
  SnapshotKind,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import type { Snapshotter } from '../snapshots/snapshotter.js';

/** prepare, view, mounts, commit, remove. */
export function lifecycleEndpoints(sn: Snapshotter) {
  return {
    prepare: endpoint(
      PrepareRequest,
      async (req): Promise<MountsReply> => ({ mounts: (await sn.create(SnapshotKind.active, req)).mounts }),
      'new active snapshot on a committed parent; returns its mounts',
    ),
    view: endpoint(
      PrepareRequest,
      async (req): Promise<MountsReply> => ({ mounts: (await sn.create(SnapshotKind.view, req)).mounts }),
      'new read-only snapshot of a committed parent; returns its mounts',
    ),
    mounts: endpoint(
      SnapshotKeyRequest,
      async (req): Promise<MountsReply> => ({ mounts: await sn.mounts(req.key) }),
    ),
    commit: endpoint(CommitSnapshotRequest, async (req): Promise<SnapshotInfo> => sn.commit(req)),
    remove: endpoint(SnapshotKeyRequest, async (req) => {
      await sn.remove(req.key);
      return {};
    }),
  };
}
