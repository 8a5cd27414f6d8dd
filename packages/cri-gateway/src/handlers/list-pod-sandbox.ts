import type { PodFilter } from '../runtime/pods.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/ListPodSandbox: the pods matching the filter (id prefix, state, labels). */
export async function listPodSandbox(request: { filter?: PodFilter | null }, deps: HandlerDeps) {
  return { items: await deps.pods.list(request.filter) };
}
