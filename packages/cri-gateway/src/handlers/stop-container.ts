import type { HandlerDeps } from './types.js';

/** RuntimeService/StopContainer: stop signal, SIGKILL after `timeout` seconds (idempotent). */
export async function stopContainer(
  request: { container_id?: string; timeout?: string | number },
  deps: HandlerDeps,
): Promise<object> {
  await deps.containers.stop(request.container_id ?? '', Number(request.timeout ?? 0));
  return {};
}
