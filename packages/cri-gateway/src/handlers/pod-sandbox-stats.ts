import type { StatsFilter } from '../runtime/stats.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/PodSandboxStats: pod totals (cpu, memory, processes) and its containers' stats. */
export async function podSandboxStats(request: { pod_sandbox_id?: string }, deps: HandlerDeps) {
  return { stats: await deps.stats.pod(request.pod_sandbox_id ?? '') };
}

/** RuntimeService/ListPodSandboxStats: the stats of the ready pods matching the filter. */
export async function listPodSandboxStats(request: { filter?: StatsFilter | null }, deps: HandlerDeps) {
  return { stats: await deps.stats.listPods(request.filter) };
}
