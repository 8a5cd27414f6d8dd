import type { HandlerDeps } from './types.js';

/** RuntimeService/RunPodSandbox: the pod's network and pause container; answers its id. */
export async function runPodSandbox(
  request: { config?: unknown; runtime_handler?: string },
  deps: HandlerDeps,
): Promise<{ pod_sandbox_id: string }> {
  return { pod_sandbox_id: await deps.pods.run(request.config, request.runtime_handler ?? '') };
}
