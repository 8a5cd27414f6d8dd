import type { HandlerDeps } from './types.js';

/** RuntimeService/CreateContainer: a container in the pod; answers its id. */
export async function createContainer(
  request: { pod_sandbox_id?: string; config?: unknown },
  deps: HandlerDeps,
): Promise<{ container_id: string }> {
  return { container_id: await deps.containers.create(request.pod_sandbox_id ?? '', request.config) };
}
