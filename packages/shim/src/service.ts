import type { Endpoint } from '@berth/kit';
import type { ShimAgent } from './domain/agent.js';
import { TaskControl } from './domain/control.js';
import { controlEndpoints } from './handlers/control.js';
import { execEndpoints } from './handlers/exec.js';
import { lifecycleEndpoints } from './handlers/lifecycle.js';

/** Every operation of the shim agent (see ShimOps in @berth/api), one endpoint each. */
// biome-ignore lint/suspicious/noExplicitAny: endpoints carry heterogeneous schemas
export function createEndpoints(agent: ShimAgent): Record<string, Endpoint<any, any>> {
  const control = new TaskControl(agent);
  return {
    ...lifecycleEndpoints(agent),
    ...execEndpoints(agent, control),
    ...controlEndpoints(control),
  };
}
