import { BERTH_VERSION, SnapshotApi } from '@berth/api';
import type { ServiceContext, ServiceEntry, ServiceSetup } from '@berth/kit';
import { createService } from './service.js';

/** Sets the snapshot-service up on connections already made: its process main and a co-hosted one call it. */
export async function start(ctx: ServiceContext): Promise<ServiceSetup<typeof SnapshotApi>> {
  const svc = createService(ctx);
  return { handlers: svc.handlers, close: svc.close };
}

/** The snapshot-service as runService and runCohosted start it. */
export const entry: ServiceEntry<typeof SnapshotApi> = {
  service: SnapshotApi,
  version: BERTH_VERSION,
  setup: start,
};
