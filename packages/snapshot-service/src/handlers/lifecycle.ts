import {
  CommitSnapshotRequest,
  type MountsReply,
  PrepareRequest,
  type SnapshotInfo,
  SnapshotKeyRequest,
  SnapshotKind,
} from '@berth/api';
import { endpoint, publishEvent } from '@berth/kit';
import type { NatsConnection } from 'nats';
import type { Snapshotter } from '../snapshots/snapshotter.js';

/**
 * prepare, view, mounts, commit, remove. Changes are published as `snapshots.<op>` events (as
 * containerd's /snapshot/{prepare,commit,remove}) after Redis holds them.
 */
export function lifecycleEndpoints(sn: Snapshotter, nc: NatsConnection) {
  return {
    prepare: endpoint(
      PrepareRequest,
      async (req, ctx): Promise<MountsReply> => {
        const { mounts } = await sn.create(SnapshotKind.active, req);
        publishEvent(nc, 'snapshots.prepare', ctx.namespace, { key: req.key, parent: req.parent ?? '' });
        return { mounts };
      },
      'new active snapshot on a committed parent; returns its mounts',
    ),
    view: endpoint(
      PrepareRequest,
      async (req, ctx): Promise<MountsReply> => {
        const { mounts } = await sn.create(SnapshotKind.view, req);
        publishEvent(nc, 'snapshots.prepare', ctx.namespace, { key: req.key, parent: req.parent ?? '' });
        return { mounts };
      },
      'new read-only snapshot of a committed parent; returns its mounts',
    ),
    mounts: endpoint(
      SnapshotKeyRequest,
      async (req): Promise<MountsReply> => ({ mounts: await sn.mounts(req.key) }),
    ),
    commit: endpoint(CommitSnapshotRequest, async (req, ctx): Promise<SnapshotInfo> => {
      const info = await sn.commit(req);
      publishEvent(nc, 'snapshots.commit', ctx.namespace, { key: req.key, name: req.name });
      return info;
    }),
    remove: endpoint(SnapshotKeyRequest, async (req, ctx) => {
      await sn.remove(req.key);
      publishEvent(nc, 'snapshots.remove', ctx.namespace, { key: req.key });
      return {};
    }),
  };
}
