import type { ContainerFilter } from '../runtime/containers.js';
import type { PodFilter } from '../runtime/pods.js';
import type { StatsFilter } from '../runtime/stats.js';
import { STREAM_CHUNK } from './list-images.js';
import type { HandlerDeps } from './types.js';

/** Yields `items` in non-empty messages of at most STREAM_CHUNK under `field` (none when empty). */
function* chunks<T>(field: string, items: T[]): Iterable<Record<string, T[]>> {
  for (let i = 0; i < items.length; i += STREAM_CHUNK) yield { [field]: items.slice(i, i + STREAM_CHUNK) };
}

/** RuntimeService/StreamPodSandboxes: ListPodSandbox in messages. */
export async function* streamPodSandboxes(request: { filter?: PodFilter | null }, deps: HandlerDeps) {
  yield* chunks('pod_sandboxes', await deps.pods.list(request.filter));
}

/** RuntimeService/StreamContainers: ListContainers in messages. */
export async function* streamContainers(request: { filter?: ContainerFilter | null }, deps: HandlerDeps) {
  yield* chunks('containers', await deps.containers.list(request.filter));
}

/** RuntimeService/StreamContainerStats: ListContainerStats in messages. */
export async function* streamContainerStats(request: { filter?: StatsFilter | null }, deps: HandlerDeps) {
  yield* chunks('container_stats', await deps.stats.listContainers(request.filter));
}

/** RuntimeService/StreamPodSandboxStats: ListPodSandboxStats in messages. */
export async function* streamPodSandboxStats(request: { filter?: StatsFilter | null }, deps: HandlerDeps) {
  yield* chunks('pod_sandbox_stats', await deps.stats.listPods(request.filter));
}
