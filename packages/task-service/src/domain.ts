import { TaskExit } from '@berth/api';
import { type Redis, type ServiceContext, subscribeEvents } from '@berth/kit';

type Logger = ServiceContext['log'];

import type { NatsConnection, Subscription } from 'nats';
import { ContainerManager, type ManagerEnv } from './containers/manager.js';
import type { Deps } from './deps.js';
import { ContainerStore } from './store/store.js';
import { TaskManager } from './tasks/manager.js';

/** The task-service's domain objects, wired together. */
export interface Domain {
  store: ContainerStore;
  containers: ContainerManager;
  tasks: TaskManager;
}

/** Builds the domain over a Redis client and the node-service dependencies. */
export function createDomain(opts: { redis: Redis; deps: Deps; env: ManagerEnv; log: Logger }): Domain {
  const store = new ContainerStore(opts.redis);
  const containers = new ContainerManager(store, opts.redis, opts.deps, opts.env);
  const tasks = new TaskManager(store, containers, opts.deps, opts.log);
  return { store, containers, tasks };
}

/**
 * Subscribes to `tasks.exit` (every replica hears every exit: waiters live in each) and then
 * reconciles with the shims, so exits announced while no task-service ran are recorded too.
 */
export async function startExitTracking(d: Domain, nc: NatsConnection, log: Logger): Promise<Subscription> {
  const sub = subscribeEvents(nc, 'tasks.exit', (env) => {
    const parsed = TaskExit.safeParse(env.event);
    if (!parsed.success) {
      log.warn({ issue: parsed.error.issues[0]?.message }, 'dropping malformed tasks.exit event');
      return;
    }
    d.tasks.onExit(parsed.data).catch((err: unknown) => log.error({ err }, 'recording an exit failed'));
  });
  await nc.flush();
  const r = await d.tasks.reconcile();
  log.info(r, 'reconciled tasks with their shims');
  return sub;
}
