import type { HandlerDeps } from './types.js';

/** RuntimeService/ExecSync: runs a command in the container, answers output and exit code. */
export async function execSync(
  request: { container_id?: string; cmd?: unknown; timeout?: string | number },
  deps: HandlerDeps,
) {
  return deps.containers.execSync(request.container_id ?? '', request.cmd, Number(request.timeout ?? 0));
}
