import { beforeReply } from './after-reply.js';
import { prepareContainerStatus } from './container-status.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/StartContainer; the container's next status reply is prepared before this one. */
export async function startContainer(request: { container_id?: string }, deps: HandlerDeps): Promise<object> {
  const id = request.container_id ?? '';
  await deps.containers.start(id);
  await beforeReply(deps, 'ContainerStatus', () => prepareContainerStatus(id, deps));
  return {};
}
