import {
  ContainerRef,
  ExecRequest,
  KillRequest,
  TaskOps,
  TaskProcessRef,
  UpdateTaskRequest,
  WaitRequest,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import type { Domain } from '../domain.js';

/** Endpoints of the tasks half: each forwards to the shim of the container's node. */
export function taskEndpoints(d: Domain) {
  const t = d.tasks;
  return {
    create: endpoint(ContainerRef, (req, ctx) => t.create(ctx.namespace, req.id)),
    start: endpoint(TaskProcessRef, (req, ctx) => t.start(ctx.namespace, req.id, req.execId)),
    kill: endpoint(KillRequest, async (req, ctx) => {
      await t.kill(ctx.namespace, req);
      return {};
    }),
    wait: endpoint(WaitRequest, (req, ctx) =>
      // A little under the client's own timeout, so the caller gets our answer, not a NATS timeout.
      t.wait(ctx.namespace, req.id, req.execId, req.timeoutMs ?? TaskOps.wait - 5_000),
    ),
    delete: endpoint(TaskProcessRef, (req, ctx) => t.delete(ctx.namespace, req.id, req.execId)),
    exec: endpoint(ExecRequest, (req, ctx) => t.exec(ctx.namespace, req)),
    pause: endpoint(ContainerRef, async (req, ctx) => {
      await t.setPaused(ctx.namespace, req.id, true);
      return {};
    }),
    resume: endpoint(ContainerRef, async (req, ctx) => {
      await t.setPaused(ctx.namespace, req.id, false);
      return {};
    }),
    pids: endpoint(ContainerRef, (req, ctx) => t.forward(ctx.namespace, req.id, 'pids')),
    stats: endpoint(ContainerRef, (req, ctx) => t.forward(ctx.namespace, req.id, 'stats')),
    update: endpoint(UpdateTaskRequest, async (req, ctx) => {
      await t.update(ctx.namespace, req.id, req.resources);
      return {};
    }),
    'close-stdin': endpoint(TaskProcessRef, (req, ctx) =>
      t.forward(ctx.namespace, req.id, 'close-stdin', req.execId ? { execId: req.execId } : {}),
    ),
    state: endpoint(TaskProcessRef, (req, ctx) => t.state(ctx.namespace, req.id, req.execId)),
  };
}
