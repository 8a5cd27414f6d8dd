import { BerthError, Code, type ShimApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ShimAgent } from './domain/agent.js';
import { TaskControl } from './domain/control.js';
import { controlHandlers } from './handlers/control.js';
import { execHandlers } from './handlers/exec.js';
import { lifecycleHandlers } from './handlers/lifecycle.js';
import { networkHandlers } from './handlers/network.js';
import type { ShimStreams } from './handlers/streams.js';
import type { NetworkManager } from './network/manager.js';

/**
 * The handlers of every operation of the shim agent (ShimApi in @berth/api). Without `streams`
 * (an in-process agent with no NATS connection), `logs` and `attach` fail with UNIMPLEMENTED.
 */
export function createHandlers(
  agent: ShimAgent,
  network: NetworkManager,
  streams?: ShimStreams,
): Handlers<typeof ShimApi> {
  const control = new TaskControl(agent);
  const noStreams = async (): Promise<never> => {
    throw new BerthError(
      Code.UNIMPLEMENTED,
      'this shim agent has no NATS connection: logs and attach stream over NATS',
    );
  };
  return {
    ...(streams ? streams.handlers() : { logs: noStreams, attach: noStreams }),
    ...lifecycleHandlers(agent, network),
    ...execHandlers(agent, control),
    ...controlHandlers(control),
    ...networkHandlers(network),
  };
}
