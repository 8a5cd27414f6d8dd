import { BERTH_VERSION, Service } from '@berth/api';
import { runService } from '@berth/kit';
import { createEndpoints } from './service.js';

await runService({
  service: Service.cri,
  version: BERTH_VERSION,
  setup: async (ctx) => ({ endpoints: createEndpoints(ctx) }),
});
