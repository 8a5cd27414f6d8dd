import { isIP } from 'node:net';
import { BerthError, Code } from '@berth/api';
import type { HandlerDeps } from './types.js';

/** The pod CIDRs of `runtime_config.network_config.pod_cidr` (comma-separated for dual stack). */
export function parsePodCidr(raw: unknown): string[] {
  if (raw === undefined || raw === null || raw === '') return [];
  const field = 'runtime_config.network_config.pod_cidr';
  if (typeof raw !== 'string') throw new BerthError(Code.INVALID_ARGUMENT, `${field} must be a string`);
  return raw.split(',').map((c) => {
    const [addr = '', bits = '', ...rest] = c.trim().split('/');
    const v = isIP(addr);
    const n = Number(bits);
    if (v === 0 || rest.length > 0 || !/^\d+$/.test(bits) || n > (v === 4 ? 32 : 128)) {
      throw new BerthError(Code.INVALID_ARGUMENT, `${field} "${c}" is not a CIDR`);
    }
    return `${addr}/${n}`;
  });
}

/**
 * RuntimeService/UpdateRuntimeConfig: takes the node's pod CIDR from the kubelet. As containerd
 * fills it into its CNI config template, the node's shim makes it the range of berth's default
 * pod network; a CNI configuration of the administrator's is left as it is (see
 * packages/cri-gateway/README.md).
 */
export async function updateRuntimeConfig(
  request: { runtime_config?: { network_config?: { pod_cidr?: unknown } | null } | null },
  deps: HandlerDeps,
): Promise<Record<string, never>> {
  const cidrs = parsePodCidr(request.runtime_config?.network_config?.pod_cidr);
  const outcome = await deps.pods.setPodCidrs(cidrs);
  if (outcome) deps.log.info({ podCidr: cidrs, ...outcome }, 'pod CIDR from the kubelet');
  return {};
}
