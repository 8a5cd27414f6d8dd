import type { SnapshotApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { Snapshotter } from '../snapshots/snapshotter.js';

/** stat, update, list, usage. */
export function queryHandlers(
  sn: Snapshotter,
): Pick<Handlers<typeof SnapshotApi>, 'stat' | 'update' | 'list' | 'usage'> {
  return {
    stat: (req) => sn.stat(req.key),
    update: (req) => sn.update(req),
    list: async (req) => {
      const page = await sn.list(req);
      return { snapshots: page.items, ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
    },
    usage: (req) => sn.usage(req.key, { fresh: req.fresh ?? false }),
  };
}
