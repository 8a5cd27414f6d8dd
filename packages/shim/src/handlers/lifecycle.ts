import {
  ShimCreateRequest,
  ShimKillRequest,
  ShimListRequest,
  type ShimState,
  ShimTaskRef,
  type ShimWaitReply,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ShimAgent } from '../domain/agent.js';

/** Endpoints of a task's lifecycle: create, start, state, kill, wait, delete, list. */
export function lifecycleEndpoints(agent: ShimAgent) {
  return {
    create: endpoint(
      ShimCreateRequest,
      (req) => agent.create(req),
      'write the bundle, mount the rootfs, runc create under conmon',
    ),
    start: endpoint(ShimTaskRef, (req) => agent.start(req), 'start a created task or exec'),
    state: endpoint(ShimTaskRef, (req) => agent.state(req), 'state of a task or exec'),
    kill: endpoint(
      ShimKillRequest,
      (req) => agent.kill(req),
      'signal a task (or all its processes) or an exec',
    ),
    wait: endpoint(
      ShimTaskRef,
      (req, ctx): Promise<ShimWaitReply> => agent.wait(req, ctx.signal),
      'block until the exit is persisted',
    ),
    delete: endpoint(
      ShimTaskRef,
      (req): Promise<ShimState> => agent.delete(req),
      'remove a stopped task or exec',
    ),
    'remove-files': endpoint(
      ShimTaskRef,
      async (req) => {
        await agent.removeFiles(req);
        return {};
      },
      "remove a container's generated files and kept log (containers/<ns>/<id>/)",
    ),
    list: endpoint(
      ShimListRequest,
      async (req) => ({ tasks: await agent.list(req.namespace) }),
      'tasks this node supervises',
    ),
  };
}
