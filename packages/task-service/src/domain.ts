import { TaskExit } from '@berth/api';
import { type Redis, type ServiceContext, subscribeEvents } from '@berth/kit';

type Logger = ServiceContext['log'];

import type { NatsConnection, Subscription } from 'nats';
import { DEFAULT_RECONCILE_MS } from './containers/free-retries.js';
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

/** How soon a reconcile that could not ask some shim runs again (doubling up to the interval). */
export const RECONCILE_RETRY_MS = 500;

/** What startExitTracking leaves running; stop() ends the subscription and the timers. */
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
 * container as up for longer than that. A pass that could not ask some shim (or failed) is followed
 * by another after `retryMs`, doubling up to `intervalMs`: a shim restarted beside this replica
 * announces the exits it finds before it serves, possibly before this replica subscribed, and
 * only answers for them once it serves. A trigger that comes during a pass runs one more after it.
 */
export async function startExitTracking(
  d: Domain,
  nc: NatsConnection,
  log: Logger,
  opts: { intervalMs?: number; retryMs?: number } = {},
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

  const intervalMs = opts.intervalMs ?? DEFAULT_RECONCILE_MS;
  d.tasks.setReconcileInterval(intervalMs);
  const firstRetryMs = opts.retryMs ?? RECONCILE_RETRY_MS;
  let running = false;
  let stopped = false;
  // A trigger that came while a pass ran: one more pass once it ends (it may have been too early).
  let queued: string | undefined;
  let retryMs = firstRetryMs;
  let retry: NodeJS.Timeout | undefined;
  const retrySoon = () => {
    if (stopped || retry) return;
    const wait = retryMs;
    retryMs = Math.min(retryMs * 2, intervalMs);
    retry = setTimeout(() => {
      retry = undefined;
      again('retry');
    }, wait);
    retry.unref();
  };
  const again = (why: string) => {
    if (stopped) return;
    if (running) {
      queued ??= why;
      return;
    }
    running = true;
    clearTimeout(retry);
    retry = undefined;
    d.tasks
      .reconcile()
      .then((res) => {
        if (why === 'start') log.info(res, 'reconciled tasks with their shims');
        else if (res.exited > 0) log.info({ ...res, why }, 'reconcile recorded missed exits');
        if (res.unreachable > 0) retrySoon();
        else retryMs = firstRetryMs;
      })
      .catch((err: unknown) => {
        log.warn({ err: (err as Error).message, why }, 'reconcile failed');
        retrySoon();
      })
      .finally(() => {
        running = false;
        const next = queued;
        queued = undefined;
        if (next !== undefined) again(next);
      });
  };
  // The first pass runs beside the service, not before it: finishing what a replica killed
  // mid-operation left (a removal, say) waits for that container's lock, up to its TTL (30 s), and
  // the service must answer meanwhile (the chaos suite saw it silent for 30 s after a restart).
  again('start');
  const timer = setInterval(() => again('interval'), intervalMs);
  timer.unref();
  void (async () => {
    for await (const st of nc.status()) if (st.type === 'reconnect') again('nats reconnect');
  })().catch(() => undefined);
  return {
    sub,
    stop() {
      stopped = true;
      clearInterval(timer);
      clearTimeout(retry);
      sub.unsubscribe();
    },
  };
}
