import { BERTH_VERSION, Service } from '@berth/api';
import { runService } from '@berth/kit';
import { createService } from './service.js';

await runService({
  service: Service.task,
  version: BERTH_VERSION,
  setup: async (ctx) => {
    const svc = await createService(ctx);
    return { endpoints: svc.endpoints, close: svc.close };
  },
});
