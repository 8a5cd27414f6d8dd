import type { ShimResolvedProcess } from '@berth/api';

/**
 * `spec` with what a shim resolved for its process (`r`): the user's ids and, when resolved, the
 * capability set (bounding = effective = permitted). What a container's stored spec becomes once
 * its task is created (inspect and CRI status read it).
 */
export function withResolvedProcess(
  spec: Record<string, unknown>,
  r: ShimResolvedProcess,
): Record<string, unknown> {
  const process: Record<string, unknown> = { ...(spec.process as Record<string, unknown>), user: r.user };
  if (r.capabilities) {
    const caps = r.capabilities;
    process.capabilities = { bounding: caps, effective: caps, permitted: caps };
  }
  return { ...spec, process };
}
