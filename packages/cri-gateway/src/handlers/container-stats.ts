import type { StatsFilter } from '../runtime/stats.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/ContainerStats: cpu, memory and writable layer of one container. */
export async function containerStats(request: { container_id?: string }, deps: HandlerDeps) {
  return { stats: await deps.stats.container(request.container_id ?? '') };
}

/** RuntimeService/ListContainerStats: the stats of the running containers matching the filter. */
export async function listContainerStats(request: { filter?: StatsFilter | null }, deps: HandlerDeps) {
  return { stats: await deps.stats.listContainers(request.filter) };
}
