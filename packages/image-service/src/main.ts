import { BERTH_VERSION, ImageApi } from '@berth/api';
import { runService } from '@berth/kit';
import { contentChecks, createHandlers, createImageService } from './service.js';

await runService({
  service: ImageApi,
  version: BERTH_VERSION,
  setup: async (ctx) => ({
    handlers: createHandlers(createImageService(ctx)),
    checks: () => contentChecks(ctx),
  }),
});
