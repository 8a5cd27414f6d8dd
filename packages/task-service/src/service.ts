import { Service } from '@berth/api';
import { type ServiceContext, serviceSetting } from '@berth/kit';
import { z } from 'zod';
import { natsDeps } from './deps.js';
import { createDomain, type Domain, startExitTracking } from './domain.js';
import { containerEndpoints } from './handlers/containers.js';
import { taskEndpoints } from './handlers/tasks.js';

/** Builds the domain and every endpoint of the task-service. */
export async function createService(
  ctx: ServiceContext,
): Promise<{ domain: Domain; endpoints: ReturnType<typeof createEndpoints>; close: () => Promise<void> }> {
  const domain = createDomain({
    redis: ctx.redis,
    deps: natsDeps(ctx.nc),
    env: { node: ctx.node },
    log: ctx.log,
  });
  // How often every live task is checked with its shim, for exits whose event was lost.
  const intervalMs = serviceSetting(
    ctx.config,
    Service.task,
    'reconcileIntervalMs',
    z.number().int().min(100),
    30_000,
  );
  const tracking = await startExitTracking(domain, ctx.nc, ctx.log, { intervalMs });
  return { domain, endpoints: createEndpoints(domain), close: async () => tracking.stop() };
}

/** The operations of the task-service (subjects berth.task.v1.<op>). */
export function createEndpoints(domain: Domain) {
  return { ...containerEndpoints(domain), ...taskEndpoints(domain) };
}
