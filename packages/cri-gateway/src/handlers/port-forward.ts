import type { CriPortForwardRequest } from '../runtime/stream-urls.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/PortForward: the streaming server's one-shot URL for forwarding a pod's ports. */
export async function portForward(
  request: CriPortForwardRequest,
  deps: HandlerDeps,
): Promise<{ url: string }> {
  return { url: await deps.streams.portForward(request) };
}
