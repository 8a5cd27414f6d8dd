import { BERTH_VERSION, SnapshotApi } from '@berth/api';
import { runService } from '@berth/kit';
import { createHandlers } from './service.js';

await runService({
  service: SnapshotApi,
  version: BERTH_VERSION,
  setup: async (ctx) => ({ handlers: createHandlers(ctx) }),
});
