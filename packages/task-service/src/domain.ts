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
  const containers = new ContainerManager(store, opts.redis, opts.deps, opts.env, opts.log);
  const tasks = new TaskManager(store, containers, opts.deps, opts.log);
  return { store, containers, tasks };
}

/** What startExitTracking leaves running; stop() ends the subscription and the timer. */
export interface ExitTracking {
  sub: Subscription;
  stop(): void;
}

/**
 * Subscribes to `tasks.exit` (every replica hears every exit: waiters live in each) and then
 * starts reconciling with the shims (without waiting for it), so exits announced while no
 * task-service ran are recorded too.
 * Reconciles again after every NATS reconnect (events published meanwhile are lost: core NATS is
 * at-most-once) and every `intervalMs`, so `ps`, which reads only the store, never shows a dead
 * container as up for longer than that.
 */
export async function startExitTracking(
  d: Domain,
  nc: NatsConnection,
  log: Logger,
  opts: { intervalMs?: number } = {},
): Promise<ExitTracking> {
  const sub = subscribeEvents(nc, 'tasks.exit', (env) => {
    const parsed = TaskExit.safeParse(env.event);
    if (!parsed.success) {
      log.warn({ issue: parsed.error.issues[0]?.message }, 'dropping malformed tasks.exit event');
      return;
    }
    d.tasks.onExit(parsed.data).catch((err: unknown) => log.error({ err }, 'recording an exit failed'));
  });
  await nc.flush();

  let running = false;
  const again = (why: string) => {
    if (running) return;
    running = true;
    d.tasks
      .reconcile()
      .then((res) => {
        if (why === 'start') log.info(res, 'reconciled tasks with their shims');
        else if (res.exited > 0) log.info({ ...res, why }, 'reconcile recorded missed exits');
      })
      .catch((err: unknown) => log.warn({ err: (err as Error).message, why }, 'reconcile failed'))
      .finally(() => {
        running = false;
      });
  };
  // The first pass runs beside the service, not before it: finishing what a replica killed
  // mid-operation left (a removal, say) waits for that container's lock, up to its TTL (30 s), and
  // the service must answer meanwhile (the chaos suite saw it silent for 30 s after a restart).
  again('start');
  const timer = setInterval(() => again('interval'), opts.intervalMs ?? 30_000);
  timer.unref();
  void (async () => {
    for await (const st of nc.status()) if (st.type === 'reconnect') again('nats reconnect');
  })().catch(() => undefined);
  return {
    sub,
    stop() {
      clearInterval(timer);
      sub.unsubscribe();
    },
  };
}
