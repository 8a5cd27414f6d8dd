import { type SnapshotApi, SnapshotKind } from '@berth/api';
import { type Handlers, publishEvent } from '@berth/kit';
import type { NatsConnection } from 'nats';
import type { Snapshotter } from '../snapshots/snapshotter.js';

type Lifecycle = Pick<Handlers<typeof SnapshotApi>, 'prepare' | 'view' | 'mounts' | 'commit' | 'remove'>;

/**
 * prepare, view, mounts, commit, remove. Changes are published as `snapshots.<op>` events (as
 * containerd's /snapshot/{prepare,commit,remove}) after Redis holds them.
 */
export function lifecycleHandlers(sn: Snapshotter, nc: NatsConnection): Lifecycle {
  return {
    prepare: async (req, ctx) => {
      const { mounts } = await sn.create(SnapshotKind.active, req);
      publishEvent(nc, 'snapshots.prepare', ctx.namespace, { key: req.key, parent: req.parent ?? '' });
      return { mounts };
    },
    view: async (req, ctx) => {
      const { mounts } = await sn.create(SnapshotKind.view, req);
      publishEvent(nc, 'snapshots.prepare', ctx.namespace, { key: req.key, parent: req.parent ?? '' });
      return { mounts };
    },
    mounts: async (req) => ({ mounts: await sn.mounts(req.key) }),
    commit: async (req, ctx) => {
      const info = await sn.commit(req);
      publishEvent(nc, 'snapshots.commit', ctx.namespace, { key: req.key, name: req.name });
      return info;
    },
    remove: async (req, ctx) => {
      await sn.remove(req.key);
      publishEvent(nc, 'snapshots.remove', ctx.namespace, { key: req.key });
      return {};
    },
  };
}
