import {
  BerthError,
  Code,
  type ShimApi,
  type ShimCreateRequest,
  type ShimPodNetwork,
  type ShimPortMapping,
  type ShimState,
  toBerthError,
} from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ShimAgent } from '../domain/agent.js';
import { startDeadline } from '../domain/task-bundle.js';
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
  checkPodNetns(network, { ...req, netnsPod: req.netnsPod });
  await network.ensureNetns(req.netnsPod);
}

/** INVALID_ARGUMENT unless the spec's network namespace is the pinned one of pod `netnsPod`. */
function checkPodNetns(
  network: Pick<NetworkManager, 'netnsPath'>,
  req: ShimCreateRequest & { netnsPod: string },
): void {
  const want = network.netnsPath(req.netnsPod);
  const linux = req.spec.linux as { namespaces?: { type?: unknown; path?: unknown }[] } | undefined;
  const ns = linux?.namespaces?.find((n) => n.type === 'network');
  if (ns?.path !== want) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `netnsPod "${req.netnsPod}": the spec's network namespace must be "${want}", not ${JSON.stringify(ns?.path ?? null)}`,
    );
  }
}

/**
 * A create with `startAttached`: the pod's setup (pin, then CNI ADD) begins first, the task is
 * made in the namespace as soon as it is pinned, and started once the ADD is done, so the ADD
 * runs beside `runc create` instead of before it. The setup has settled before this returns,
 * whatever the outcome (but past the start's deadline: an ADD still under way then goes on, and
 * the caller's teardown, queued behind it, undoes it). An ADD that fails is undone by
 * its DEL only: the namespace, which `runc create` may be joining at that moment, stays for the
 * caller's teardown. The ADD's error is the one reported, the task's own (if it failed too) its cause.
 */
async function createAttached(
  agent: ShimAgent,
  network: LifecycleNetwork,
  req: ShimCreateRequest & { netnsPod: string },
  portMappings: ShimPortMapping[],
): Promise<ShimState> {
  const deadline = startDeadline(agent.host, req.startWithinMs);
  checkPodNetns(network, req);
  const attaching = network.setup(req.netnsPod, { portMappings, keepNetns: true });
  // Awaited in beforeStart, or below when the create failed first.
  let settled = false;
  attaching.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  let attached: ShimPodNetwork | undefined;
  try {
    await network.ensureNetns(req.netnsPod);
    const st = await agent.create(
      { ...req, start: true },
      {
        beforeStart: async () => {
          attached = await attaching;
        },
        deadline,
      },
    );
    return attached ? { ...st, network: { ips: attached.ips } } : st;
  } catch (err) {
    if (!settled && performance.now() >= deadline.at) throw err;
    const addFailure = await attaching.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (addFailure === undefined || addFailure === err) throw err;
    const add = toBerthError(addFailure);
    throw new BerthError(add.code, add.message, { cause: err });
  }
}

/** What the lifecycle handlers use of the node's pod networks. */
type LifecycleNetwork = Pick<NetworkManager, 'ensureNetns' | 'netnsPath' | 'setup'>;

/** Handlers of a task's lifecycle: create, start, state, kill, wait, delete, list, remove-files. */
export function lifecycleHandlers(
  agent: ShimAgent,
  network: LifecycleNetwork,
): Pick<
  Handlers<typeof ShimApi>,
  'create' | 'start' | 'state' | 'kill' | 'wait' | 'delete' | 'remove-files' | 'list'
> {
  return {
    create: async (req) => {
      if (req.startAttached) {
        if (!req.netnsPod) {
          throw new BerthError(Code.INVALID_ARGUMENT, `task "${req.id}": startAttached needs netnsPod`);
        }
        return createAttached(
          agent,
          network,
          { ...req, netnsPod: req.netnsPod },
          req.startAttached.portMappings,
        );
      }
      const deadline = startDeadline(agent.host, req.startWithinMs);
      await pinPodNetns(network, req);
      return agent.create(req, { deadline });
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
