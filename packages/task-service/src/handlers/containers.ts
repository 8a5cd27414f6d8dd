import { type ContainerInfo, type ListContainersRequest, summarizeContainer, TaskApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { Domain } from '../domain.js';
import { callerStartBy } from '../tasks/manager.js';

/** The TaskApi operations of the containers half; taskHandlers serves every other one. */
export type ContainerOp =
  | 'create-container'
  | 'run-container'
  | 'get-container'
  | 'list-containers'
  | 'list-container-summaries'
  | 'update-container'
  | 'delete-container'
  | 'claimed-chains';

/** Handlers of the containers half: metadata, snapshot and spec. */
export function containerHandlers(d: Domain): Pick<Handlers<typeof TaskApi>, ContainerOp> {
  return {
    'create-container': (req, ctx) => d.containers.create(ctx.namespace, req),
    'run-container': (req, ctx) =>
      d.tasks.run(ctx.namespace, req, callerStartBy(TaskApi.ops['run-container'].timeoutMs)),
    'get-container': (req, ctx) => d.containers.get(ctx.namespace, req.id),
    'list-containers': (req, ctx) => containersPage(d, ctx.namespace, req, (i) => i),
    'list-container-summaries': (req, ctx) => containersPage(d, ctx.namespace, req, summarizeContainer),
    'update-container': (req, ctx) => d.containers.update(ctx.namespace, req),
    'delete-container': async (req, ctx) => {
      await d.tasks.removeContainer(ctx.namespace, req.id, req.force ?? false, req.background ?? false);
      return {};
    },
    'claimed-chains': async (req) => ({ chainIds: await d.containers.claimedChains(req.node) }),
  };
}

/** One page of the containers a list request matches, each as `each` makes it. */
async function containersPage<T>(
  d: Domain,
  ns: string,
  req: ListContainersRequest,
  each: (i: ContainerInfo) => T,
): Promise<{ containers: T[]; nextCursor?: string }> {
  const page = await d.containers.list(ns, req);
  return { containers: page.items.map(each), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
}
