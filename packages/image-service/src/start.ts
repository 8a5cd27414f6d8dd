import { BERTH_VERSION, ImageApi } from '@berth/api';
import type { ServiceContext, ServiceEntry, ServiceSetup } from '@berth/kit';
import { contentChecks, createHandlers, createImageService } from './service.js';

/** Sets the image-service up on connections already made: its process main and a co-hosted one call it. */
export async function start(ctx: ServiceContext): Promise<ServiceSetup<typeof ImageApi>> {
  const svc = createImageService(ctx);
  // Collections removals left for after their reply and a crash interrupted run now.
  void svc.gcLater
    .resume()
    .catch((err: unknown) => ctx.log.warn({ err }, 'resuming garbage collection failed'));
  return {
    handlers: createHandlers(svc),
    checks: () => contentChecks(ctx),
  };
}

/** The image-service as runService and runCohosted start it. */
export const entry: ServiceEntry<typeof ImageApi> = {
  service: ImageApi,
  version: BERTH_VERSION,
  setup: start,
};
