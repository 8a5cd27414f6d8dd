import type { ShimApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ShimAgent } from './domain/agent.js';
import { TaskControl } from './domain/control.js';
import { controlHandlers } from './handlers/control.js';
import { execHandlers } from './handlers/exec.js';
import { lifecycleHandlers } from './handlers/lifecycle.js';
import { networkHandlers } from './handlers/network.js';
import type { NetworkManager } from './network/manager.js';

/** The handlers of every operation of the shim agent (ShimApi in @berth/api). */
export function createHandlers(agent: ShimAgent, network: NetworkManager): Handlers<typeof ShimApi> {
  const control = new TaskControl(agent);
  return {
    ...lifecycleHandlers(agent),
    ...execHandlers(agent, control),
    ...controlHandlers(control),
    ...networkHandlers(network),
  };
}
