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
    list: async (req) => ({ snapshots: await sn.list(req.filters) }),
    usage: (req) => sn.usage(req.key),
  };
}
