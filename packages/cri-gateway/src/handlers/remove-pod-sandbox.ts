import type { HandlerDeps } from './types.js';

/** RuntimeService/RemovePodSandbox: removes the pod and its containers; absent is success. */
export async function removePodSandbox(
  request: { pod_sandbox_id?: string },
  deps: HandlerDeps,
): Promise<object> {
  await deps.pods.remove(request.pod_sandbox_id ?? '');
  return {};
}
