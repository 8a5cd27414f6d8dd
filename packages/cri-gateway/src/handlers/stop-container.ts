import { beforeReply } from './after-reply.js';
import { prepareContainerStatus } from './container-status.js';
import type { HandlerDeps } from './types.js';

/**
 * RuntimeService/StopContainer: stop signal, SIGKILL after `timeout` seconds (idempotent); the
 * container's next status reply is prepared before this one.
 */
export async function stopContainer(
  request: { container_id?: string; timeout?: string | number },
  deps: HandlerDeps,
): Promise<object> {
  const id = request.container_id ?? '';
  await deps.containers.stop(id, Number(request.timeout ?? 0));
  await beforeReply(deps, 'ContainerStatus', () => prepareContainerStatus(id, deps));
  return {};
}
