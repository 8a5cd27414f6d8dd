import { BerthError, Code, type ShimApi, type ShimCreateRequest } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ShimAgent } from '../domain/agent.js';
import type { NetworkManager } from '../network/manager.js';

/**
 * Pins the namespace of the pod a create names (`netnsPod`) unless it is there or a setup under
 * way pins it, after checking that the spec joins exactly that namespace.
 */
async function pinPodNetns(
  network: Pick<NetworkManager, 'ensureNetns' | 'netnsPath'>,
  req: ShimCreateRequest,
) {
  if (!req.netnsPod) return;
  const want = network.netnsPath(req.netnsPod);
  const linux = req.spec.linux as { namespaces?: { type?: unknown; path?: unknown }[] } | undefined;
  const ns = linux?.namespaces?.find((n) => n.type === 'network');
  if (ns?.path !== want) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `netnsPod "${req.netnsPod}": the spec's network namespace must be "${want}", not ${JSON.stringify(ns?.path ?? null)}`,
    );
  }
  await network.ensureNetns(req.netnsPod);
}

/** Handlers of a task's lifecycle: create, start, state, kill, wait, delete, list, remove-files. */
export function lifecycleHandlers(
  agent: ShimAgent,
  network: Pick<NetworkManager, 'ensureNetns' | 'netnsPath'>,
): Pick<
  Handlers<typeof ShimApi>,
  'create' | 'start' | 'state' | 'kill' | 'wait' | 'delete' | 'remove-files' | 'list'
> {
  return {
    create: async (req) => {
      await pinPodNetns(network, req);
      return agent.create(req);
    },
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
