import type { CriCommandRequest } from '../runtime/stream-urls.js';
import type { HandlerDeps } from './types.js';

/** RuntimeService/Exec: the streaming server's one-shot URL for a command in a running container. */
export async function exec(request: CriCommandRequest, deps: HandlerDeps): Promise<{ url: string }> {
  return { url: await deps.streams.exec(request) };
}
