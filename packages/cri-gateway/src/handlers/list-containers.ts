import type { ContainerFilter } from '../runtime/containers.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/ListContainers: containers matching the filter (id, state, pod, labels). */
export async function listContainers(request: { filter?: ContainerFilter | null }, deps: HandlerDeps) {
  return { containers: await deps.containers.list(request.filter) };
}
