import { nowNs } from '../runtime/meta.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/PodSandboxStatus; with verbose, `info.info` is berth's pause container as JSON. */
export async function podSandboxStatus(
  request: { pod_sandbox_id?: string; verbose?: boolean },
  deps: HandlerDeps,
) {
  const { status, info, containers } = await deps.pods.status(request.pod_sandbox_id ?? '');
  return {
    status,
    info: request.verbose ? { info: JSON.stringify(info) } : {},
    containers_statuses: containers,
    timestamp: nowNs(),
  };
}
