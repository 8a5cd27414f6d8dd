import { BERTH_VERSION, Service } from '@berth/api';
import { runService } from '@berth/kit';
import { contentChecks, createEndpoints } from './service.js';

await runService({
  service: Service.image,
  version: BERTH_VERSION,
  setup: async (ctx) => ({ endpoints: createEndpoints(ctx), checks: () => contentChecks(ctx) }),
});
