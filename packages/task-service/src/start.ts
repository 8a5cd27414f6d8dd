import { BERTH_VERSION, TaskApi } from '@berth/api';
import type { ServiceContext, ServiceEntry, ServiceSetup } from '@berth/kit';
import { createService } from './service.js';

/** Sets the task-service up on connections already made: its process main and a co-hosted one call it. */
export async function start(ctx: ServiceContext): Promise<ServiceSetup<typeof TaskApi>> {
  const svc = await createService(ctx);
  return { handlers: svc.handlers, close: svc.close };
}

/** The task-service as runService and runCohosted start it. */
export const entry: ServiceEntry<typeof TaskApi> = { service: TaskApi, version: BERTH_VERSION, setup: start };
