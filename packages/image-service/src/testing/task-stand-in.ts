// A stand-in task-service for image-service tests: only `list-containers`, served over real NATS
// with the real contract (input parsed, reply checked), answering from containers the test sets.
import { randomBytes } from 'node:crypto';
import { type Container, defineService, Scope, Service, TaskApi } from '@berth/api';
import { encodeCursor } from '@berth/kit';
import { serveStandIn } from '@berth/kit/stand-in';
import type { NatsConnection } from 'nats';

/** The part of the task-service's contract the image-service calls (its in-use check on rmi). */
export const TaskStandInApi = defineService({
  name: Service.task,
  scope: Scope.cluster,
  ops: { 'list-containers': TaskApi.ops['list-containers'] },
});

/** A served stand-in: `containers` is what it knows (every namespace), changed freely by tests. */
export interface TaskStandIn {
  containers: Container[];
  stop(): Promise<void>;
}

/**
 * Serves the stand-in on `nc`. It filters as the task-service documents `list-containers`: by the
 * request's namespace, node and image names/digests (a container matches when its image name or
 * digest is listed); other filters are not needed by the image-service and are refused.
 */
export async function serveTaskStandIn(nc: NatsConnection, node: string): Promise<TaskStandIn> {
  const state: TaskStandIn = { containers: [], stop: async () => undefined };
  state.stop = await serveStandIn(nc, TaskStandInApi, node, {
    'list-containers': async (req, ctx) => {
      if (req.labels || req.status || req.name || req.cursor) {
        throw new Error('the task stand-in only filters by node and images, on one page');
      }
      const hits = state.containers.filter(
        (c) =>
          c.namespace === ctx.namespace &&
          (req.node === undefined || c.node === req.node) &&
          (req.images === undefined ||
            req.images.includes(c.image.name) ||
            req.images.includes(c.image.digest)),
      );
      // Pages as the task-service does (newest first, `limit` honoured), a cursor only when cut.
      hits.sort((a, b) =>
        a.createdAt === b.createdAt ? b.id.localeCompare(a.id) : b.createdAt.localeCompare(a.createdAt),
      );
      const page = hits.slice(0, req.limit ?? hits.length);
      const last = page[page.length - 1];
      return {
        containers: page.map((container) => ({ container, status: 'created' as const })),
        ...(last && page.length < hits.length ? { nextCursor: encodeCursor([last.createdAt, last.id]) } : {}),
      };
    },
  });
  return state;
}

/** A valid container record (as the task-service would return it) using `image` on `node`. */
export function standInContainer(o: {
  id: string;
  namespace: string;
  node: string;
  image: { name: string; digest: string };
}): Container {
  const now = new Date().toISOString();
  return {
    id: o.id,
    namespace: o.namespace,
    name: `c-${randomBytes(3).toString('hex')}`,
    image: o.image,
    node: o.node,
    spec: {},
    snapshotKey: `containers/${o.namespace}/${o.id}`,
    labels: {},
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: o.image.name },
    createdAt: now,
    updatedAt: now,
  };
}
