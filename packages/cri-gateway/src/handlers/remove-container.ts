import type { HandlerDeps } from './types.js';

/** RuntimeService/RemoveContainer: kills and removes it; absent is success. */
export async function removeContainer(
  request: { container_id?: string },
  deps: HandlerDeps,
): Promise<object> {
  await deps.containers.remove(request.container_id ?? '');
  return {};
}
