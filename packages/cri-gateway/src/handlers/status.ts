import { runtimeStatus } from '../runtime/status.js';
import type { HandlerDeps } from './types.js';

/** CRI StatusResponse, as on the wire (runtime handlers and features are not reported yet). */
export interface StatusResponse {
  status: { conditions: { type: string; status: boolean; reason: string; message: string }[] };
  info: Record<string, string>;
  runtime_handlers: never[];
  features: null;
}

/**
 * RuntimeService/Status: RuntimeReady from the task-service and shim answering `info` over NATS,
 * NetworkReady from the shim's CNI network (network-list). With verbose, `info.services` holds what each
 * service answered, as JSON (crictl info prints it).
 */
export async function status(request: { verbose?: boolean }, deps: HandlerDeps): Promise<StatusResponse> {
  const s = await runtimeStatus(deps.probe, () => deps.pods.networkReadiness());
  for (const c of s.conditions) {
    if (!c.status)
      deps.log.debug({ condition: c.type, reason: c.reason, message: c.message }, 'condition false');
  }
  return {
    status: { conditions: s.conditions },
    info: request.verbose ? { services: JSON.stringify(s.services) } : {},
    runtime_handlers: [],
    features: null,
  };
}
