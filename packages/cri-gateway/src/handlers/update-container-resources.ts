import type { HandlerDeps } from './types.js';

/** RuntimeService/UpdateContainerResources: new Linux limits for the container and its task. */
export async function updateContainerResources(
  request: { container_id?: string; linux?: unknown },
  deps: HandlerDeps,
): Promise<object> {
  await deps.containers.updateResources(request.container_id ?? '', request.linux);
  return {};
}
