import { TaskApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { Domain } from '../domain.js';
import { callerStartBy } from '../tasks/manager.js';
import type { ContainerOp } from './containers.js';

type TaskHandlers = Omit<Handlers<typeof TaskApi>, ContainerOp>;

/** Handlers of the tasks half: each goes to the shim of the container's node. */
export function taskHandlers(d: Domain): TaskHandlers {
  const t = d.tasks;
  return {
    create: (req, ctx) =>
      t.create(ctx.namespace, req.id, {
        start: req.start ?? false,
        ...(req.netnsPod ? { netnsPod: req.netnsPod } : {}),
        startBy: callerStartBy(TaskApi.ops.create.timeoutMs),
      }),
    start: (req, ctx) => t.start(ctx.namespace, req.id, req.execId),
    kill: async (req, ctx) => {
      await t.kill(ctx.namespace, req);
      return {};
    },
    wait: (req, ctx) =>
      // A little under the client's own timeout, so the caller gets our answer, not a NATS timeout.
      t.wait(ctx.namespace, req.id, req.execId, req.timeoutMs ?? TaskApi.ops.wait.timeoutMs - 5_000),
    delete: (req, ctx) => t.delete(ctx.namespace, req.id, req.execId),
    exec: (req, ctx) => t.exec(ctx.namespace, req),
    pause: async (req, ctx) => {
      await t.setPaused(ctx.namespace, req.id, true);
      return {};
    },
    resume: async (req, ctx) => {
      await t.setPaused(ctx.namespace, req.id, false);
      return {};
    },
    pids: (req, ctx) => t.pids(ctx.namespace, req.id),
    stats: (req, ctx) => t.stats(ctx.namespace, req.id),
    update: async (req, ctx) => {
      await t.update(ctx.namespace, req.id, req.resources);
      return {};
    },
    'close-stdin': async (req, ctx) => {
      await t.closeStdin(ctx.namespace, req.id, req.execId);
      return {};
    },
    state: (req, ctx) => t.state(ctx.namespace, req.id, req.execId),
  };
}
