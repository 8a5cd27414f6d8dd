import type { HandlerDeps } from './types.js';

// critest, and the kubelet after its relist, read a container or an image right after the write
// that made its record new (create, start, stop; pull), so each such read would build and encode
// its reply (handlers/encoded-reply.ts) on the request path: 0.2-0.5 ms of the gateway's CPU on a
// loaded machine. The write's handler asks for that reply to be built once its own reply has
// left, while the client reads the reply and sends the next call; the read then finds it kept.

/**
 * Runs `prepare` (a read handler called for its kept reply) after the current write's reply is
 * written: setImmediate runs after this turn's microtasks, where the reply's socket write is.
 * A failure is no one's error (the record may be gone already): logged at debug, dropped.
 */
export function afterReply(deps: HandlerDeps, what: string, prepare: () => Promise<unknown>): void {
  setImmediate(() => {
    prepare().catch((err: unknown) => deps.log.debug({ err, what }, 'reply not prepared'));
  });
}
