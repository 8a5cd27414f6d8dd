import type { ServiceContext } from '@berth/kit';
import { natsDeps } from './deps.js';
import { createDomain, type Domain, startExitTracking } from './domain.js';
import { containerEndpoints } from './handlers/containers.js';
import { taskEndpoints } from './handlers/tasks.js';

/** Builds the domain and every endpoint of the task-service. */
export async function createService(
  ctx: ServiceContext,
): Promise<{ domain: Domain; endpoints: ReturnType<typeof createEndpoints> }> {
  const domain = createDomain({
    redis: ctx.redis,
    deps: natsDeps(ctx.nc),
    env: { node: ctx.node, stateRoot: ctx.config.stateRoot },
    log: ctx.log,
  });
  await startExitTracking(domain, ctx.nc, ctx.log);
  return { domain, endpoints: createEndpoints(domain) };
}

/** The operations of the task-service (subjects berth.task.v1.<op>). */
export function createEndpoints(domain: Domain) {
  return { ...containerEndpoints(domain), ...taskEndpoints(domain) };
}
