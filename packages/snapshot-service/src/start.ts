import { BERTH_VERSION, SnapshotApi } from '@berth/api';
import type { ServiceContext, ServiceEntry, ServiceSetup } from '@berth/kit';
import { createHandlers } from './service.js';

/** Sets the snapshot-service up on connections already made: its process main and a co-hosted one call it. */
export async function start(ctx: ServiceContext): Promise<ServiceSetup<typeof SnapshotApi>> {
  return { handlers: createHandlers(ctx) };
}

/** The snapshot-service as runService and runCohosted start it. */
export const entry: ServiceEntry<typeof SnapshotApi> = {
  service: SnapshotApi,
  version: BERTH_VERSION,
  setup: start,
};
