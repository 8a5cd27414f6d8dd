import type { CreateContainerRequest, SeccompRequest } from '@berth/api';

/**
 * The seccomp filter a container's task is created with, which its node's shim resolves (for the
 * node's architecture and kernel and the spec's capabilities): none for a privileged container,
 * as Docker and containerd do, else the caller's choice, else berth's default profile.
 */
export function seccompOf(config: CreateContainerRequest): SeccompRequest {
  if (config.privileged) return { mode: 'unconfined' };
  return config.seccomp ?? { mode: 'default' };
}
