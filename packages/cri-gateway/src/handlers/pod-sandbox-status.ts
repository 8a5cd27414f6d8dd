import type { ContainerInfo } from '@berth/api';
import { CriService } from '../proto.js';
import { criVerboseInfo, ReplyMemo, responseEncoder, varintField, withEncoding } from './encoded-reply.js';
import type { HandlerDeps } from './types.js';

type Reply = {
  status: unknown;
  info: Record<string, string>;
  containers_statuses: unknown[];
  timestamp?: string;
};

// PodSandboxStatusResponse.timestamp (int64 = 4).
const TIMESTAMP_FIELD = 4;
const encode = responseEncoder(CriService.runtime, 'PodSandboxStatus');
// Per pause container record: the reply without its timestamp, for the same container statuses.
const replies = new ReplyMemo<ContainerInfo, Reply>(encode);

/** RuntimeService/PodSandboxStatus; with verbose, `info.info` is its pause container's criVerboseInfo record as JSON. */
export async function podSandboxStatus(
  request: { pod_sandbox_id?: string; verbose?: boolean },
  deps: HandlerDeps,
): Promise<Reply> {
  const { status, info, containers } = await deps.pods.status(request.pod_sandbox_id ?? '');
  const verbose = request.verbose === true;
  const kept = replies.get(info, verbose ? 'verbose' : '', [status, ...containers], () => ({
    status,
    info: criVerboseInfo(verbose, info),
    containers_statuses: containers,
  }));
  const ns = BigInt(Date.now()) * 1_000_000n;
  // Encoded messages concatenate as one with the fields of both: the kept part, then the time.
  return withEncoding(
    { ...kept, timestamp: ns.toString() },
    Buffer.concat([encode(kept), varintField(TIMESTAMP_FIELD, ns)]),
  );
}
