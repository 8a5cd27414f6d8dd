import { Service, type TaskApi } from '@berth/api';
import { type Handlers, type ServiceContext, serviceSetting } from '@berth/kit';
import { z } from 'zod';
import { natsDeps } from './deps.js';
import { createDomain, type Domain, startExitTracking } from './domain.js';
import { containerHandlers } from './handlers/containers.js';
import { taskHandlers } from './handlers/tasks.js';

/** Builds the domain and every endpoint of the task-service. */
export async function createService(
  ctx: ServiceContext,
): Promise<{ domain: Domain; handlers: Handlers<typeof TaskApi>; close: () => Promise<void> }> {
  // A container lock's ttl: how long the reconcile waits before it undoes or finishes what a dead
  // replica left (every holder renews its lock every ttl/3 while it works).
  const lockTtlMs = serviceSetting(
    ctx.config,
    Service.task,
    'containerLockTtlMs',
    z.number().int().min(1000),
    30_000,
  );
  const domain = createDomain({
    redis: ctx.redis,
    deps: natsDeps(ctx.nc),
    env: { node: ctx.node, lockTtlMs },
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
  const close = async () => {
    tracking.stop();
    // Within the 5 s the process has past its grace (run.ts's hard stop) before it is killed.
    await Promise.all([
      domain.tasks.settle(SETTLE_ON_CLOSE_MS),
      domain.containers.settle(SETTLE_ON_CLOSE_MS),
    ]);
  };
  return { domain, handlers: createHandlers(domain), close };
}

/**
 * How long a stopping task-service waits for the collections and rootfs prepares it began (see
 * TaskManager.settle, ContainerManager.settle).
 */
const SETTLE_ON_CLOSE_MS = 3_000;

/** The handlers of the task-service's operations (TaskApi, subjects berth.task.v1.<op>). */
export function createHandlers(domain: Domain): Handlers<typeof TaskApi> {
  return { ...containerHandlers(domain), ...taskHandlers(domain) };
}
