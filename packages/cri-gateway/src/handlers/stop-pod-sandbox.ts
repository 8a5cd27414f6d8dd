import type { HandlerDeps } from './types.js';

/** RuntimeService/StopPodSandbox: kills the pod's containers and pause process (idempotent). */
export async function stopPodSandbox(
  request: { pod_sandbox_id?: string },
  deps: HandlerDeps,
): Promise<object> {
  await deps.pods.stop(request.pod_sandbox_id ?? '');
  return {};
}
