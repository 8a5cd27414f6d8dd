import type { HandlerDeps } from './types.js';

/** RuntimeService/ContainerStatus; with verbose, `info.info` is berth's container and task as JSON. */
export async function containerStatus(
  request: { container_id?: string; verbose?: boolean },
  deps: HandlerDeps,
) {
  const { status, info } = await deps.containers.status(request.container_id ?? '');
  return { status, info: request.verbose ? { info: JSON.stringify(info) } : {} };
}
