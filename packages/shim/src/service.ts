import type { Endpoint } from '@berth/kit';
import type { ShimAgent } from './domain/agent.js';
import { TaskControl } from './domain/control.js';
import { controlEndpoints } from './handlers/control.js';
import { execEndpoints } from './handlers/exec.js';
import { lifecycleEndpoints } from './handlers/lifecycle.js';
import { networkEndpoints } from './handlers/network.js';
import type { NetworkManager } from './network/manager.js';

// biome-ignore lint/suspicious/noExplicitAny: endpoints carry heterogeneous schemas
type Endpoints = Record<string, Endpoint<any, any>>;

/**
 * Every operation of the shim agent (see ShimOps in @berth/api), one endpoint each; the network-*
 * ones are served when a NetworkManager is given.
 */
export function createEndpoints(agent: ShimAgent, network?: NetworkManager): Endpoints {
  const control = new TaskControl(agent);
  return {
    ...lifecycleEndpoints(agent),
    ...execEndpoints(agent, control),
    ...controlEndpoints(control),
    ...(network ? networkEndpoints(network) : {}),
  };
}
