import type { HandlerDeps } from './types.js';

/** RuntimeService/StartContainer. */
export async function startContainer(request: { container_id?: string }, deps: HandlerDeps): Promise<object> {
  await deps.containers.start(request.container_id ?? '');
  return {};
}
