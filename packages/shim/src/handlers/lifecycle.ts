import type { ShimApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ShimAgent } from '../domain/agent.js';

/** Handlers of a task's lifecycle: create, start, state, kill, wait, delete, list, remove-files. */
export function lifecycleHandlers(
  agent: ShimAgent,
): Pick<
  Handlers<typeof ShimApi>,
  'create' | 'start' | 'state' | 'kill' | 'wait' | 'delete' | 'remove-files' | 'list'
> {
  return {
    create: (req) => agent.create(req),
    start: (req) => agent.start(req),
    state: (req) => agent.state(req),
    kill: (req) => agent.kill(req),
    wait: (req, ctx) => agent.wait(req, ctx.signal),
    delete: (req) => agent.delete(req),
    'remove-files': async (req) => {
      await agent.removeFiles(req);
      return {};
    },
    list: async (req) => {
      const page = await agent.list(req);
      return { tasks: page.items, ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
    },
  };
}
