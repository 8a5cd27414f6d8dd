import type { HandlerDeps } from './types.js';

/** RuntimeService/ReopenContainerLog: the running container's monitor reopens its log file. */
export async function reopenContainerLog(
  request: { container_id?: string },
  deps: HandlerDeps,
): Promise<object> {
  await deps.containers.reopenLog(request.container_id ?? '');
  return {};
}
