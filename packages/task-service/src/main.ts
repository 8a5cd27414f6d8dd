import { BERTH_VERSION, TaskApi } from '@berth/api';
import { runService } from '@berth/kit';
import { createService } from './service.js';

await runService({
  service: TaskApi,
  version: BERTH_VERSION,
  setup: async (ctx) => {
    const svc = await createService(ctx);
    return { handlers: svc.handlers, close: svc.close };
  },
});
