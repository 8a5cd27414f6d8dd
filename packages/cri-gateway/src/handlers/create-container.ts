import { afterReply } from './after-reply.js';
import { prepareContainerStatus } from './container-status.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/CreateContainer: a container in the pod; answers its id (its status is prepared after). */
export async function createContainer(
  request: { pod_sandbox_id?: string; config?: unknown },
  deps: HandlerDeps,
): Promise<{ container_id: string }> {
  const id = await deps.containers.create(request.pod_sandbox_id ?? '', request.config);
  afterReply(deps, 'ContainerStatus', () => prepareContainerStatus(id, deps));
  return { container_id: id };
}
