import { containerEvents } from '../runtime/events.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/GetContainerEvents: container and pod events until the client hangs up. */
export function getContainerEvents(_request: unknown, deps: HandlerDeps, signal: AbortSignal) {
  return containerEvents({
    source: deps.events,
    pods: deps.pods,
    containers: deps.containers,
    signal,
    log: deps.log,
  });
}
