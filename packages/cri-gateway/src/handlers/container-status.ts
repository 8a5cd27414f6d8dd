import type { ContainerInfo } from '@berth/api';
import { CriService } from '../proto.js';
import { criVerboseInfo, ReplyMemo, responseEncoder } from './encoded-reply.js';
import type { HandlerDeps } from './types.js';

type Reply = { status: unknown; info: Record<string, string> };

// Per container record: the reply (and its bytes) with and without the verbose info.
const replies = new ReplyMemo<ContainerInfo, Reply>(responseEncoder(CriService.runtime, 'ContainerStatus'));

// The variant the last read asked for: what a write prepares (critest reads verbose, the kubelet not).
let lastVerbose = false;

/** RuntimeService/ContainerStatus; with verbose, `info.info` is its criVerboseInfo record as JSON. */
export async function containerStatus(
  request: { container_id?: string; verbose?: boolean },
  deps: HandlerDeps,
): Promise<Reply> {
  const { status, info } = await deps.containers.status(request.container_id ?? '');
  const verbose = request.verbose === true;
  lastVerbose = verbose;
  return replies.get(info, verbose ? 'verbose' : '', [status], () => ({
    status,
    info: criVerboseInfo(verbose, info),
  }));
}

/**
 * Builds and keeps the ContainerStatus reply of container `id` as it is now, in the variant the
 * last read asked for, so the read that follows a write finds it (handlers/after-reply.ts).
 */
export function prepareContainerStatus(id: string, deps: HandlerDeps): Promise<unknown> {
  return containerStatus({ container_id: id, verbose: lastVerbose }, deps);
}
