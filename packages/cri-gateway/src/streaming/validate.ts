import { BerthError, Code } from '@berth/api';
import type { CachedRequest } from './request-cache.js';
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamKind } from './types.js';

/**
 * Checks a request before a URL is issued for it, as kubelet's GetExec/GetAttach/GetPortForward
 * do, so a bad request fails at the RPC (INVALID_ARGUMENT naming the field), not at connect time.
 */
export function validateRequest(
  kind: StreamKind,
  request: ExecRequest | AttachRequest | PortForwardRequest,
): CachedRequest {
  switch (kind) {
    case 'exec': {
      const r = request as ExecRequest;
      checkStreams('ExecRequest', r);
      if (!Array.isArray(r.cmd) || r.cmd.length === 0 || r.cmd.some((a) => typeof a !== 'string')) {
        throw new BerthError(Code.INVALID_ARGUMENT, 'ExecRequest.cmd must be a non-empty list of strings');
      }
      return { kind, request: { ...r, cmd: [...r.cmd] } };
    }
    case 'attach':
      checkStreams('AttachRequest', request as AttachRequest);
      return { kind, request: { ...(request as AttachRequest) } };
    case 'portforward': {
      const r = request as PortForwardRequest;
      if (typeof r.podSandboxId !== 'string' || r.podSandboxId === '') {
        throw new BerthError(Code.INVALID_ARGUMENT, 'PortForwardRequest.pod_sandbox_id is required');
      }
      const ports = r.ports ?? [];
      const bad = ports.find((p) => !Number.isInteger(p) || p < 1 || p > 65_535);
      if (bad !== undefined) {
        throw new BerthError(
          Code.INVALID_ARGUMENT,
          `PortForwardRequest.port ${bad} is not a port in 1..65535`,
        );
      }
      return { kind, request: { podSandboxId: r.podSandboxId, ports: [...ports] } };
    }
    default:
      throw new BerthError(Code.INVALID_ARGUMENT, `unknown streaming kind "${String(kind)}"`);
  }
}

function checkStreams(what: string, r: ExecRequest | AttachRequest): void {
  if (typeof r.containerId !== 'string' || r.containerId === '') {
    throw new BerthError(Code.INVALID_ARGUMENT, `${what}.container_id is required`);
  }
  if (r.tty && r.stderr) {
    throw new BerthError(Code.INVALID_ARGUMENT, `${what}: tty and stderr cannot both be true`);
  }
  if (!r.stdin && !r.stdout && !r.stderr) {
    throw new BerthError(Code.INVALID_ARGUMENT, `${what}: one of stdin, stdout or stderr must be set`);
  }
}
