import type { CriCommandRequest } from '../runtime/stream-urls.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/Attach: the streaming server's one-shot URL for attaching to a running container. */
export async function attach(request: CriCommandRequest, deps: HandlerDeps): Promise<{ url: string }> {
  return { url: await deps.streams.attach(request) };
}
