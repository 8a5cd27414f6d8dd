import type { HandlerDeps } from './types.js';

// critest, and the kubelet after its relist, read a container or an image right after the write
// that made its record new (create, start, stop; pull), so each such read would build and encode
// its reply (handlers/encoded-reply.ts) on the request path: 0.2-0.5 ms of the gateway's CPU on a
// loaded machine. The write's handler has that reply built and kept, so the read finds it.
//
// When: a reply prepared after the write's own reply races the client, whose next request (the
// read) arrives 0.1-0.3 ms later and then waits for the preparing to end. So writes that take tens
// of ms (start, stop, pull: the 0.2-0.5 ms are under 2% of them) prepare before their reply, and
// the read never waits for it; CreateContainer (10 ms, and followed by a start, not a read, in
// critest's and the kubelet's sequence) prepares after its reply.

/**
 * Runs `prepare` (a read handler called for its kept reply) after the current write's reply is
 * written: setImmediate runs after this turn's microtasks, where the reply's socket write is.
 * A failure is no one's error (the record may be gone already): logged at debug, dropped.
 */
export function afterReply(deps: HandlerDeps, what: string, prepare: () => Promise<unknown>): void {
  setImmediate(() => {
    prepare().catch((err: unknown) => dropped(deps, what, err));
  });
}

/**
 * How long a write's reply waits for its prepared read at most. A read answered from the view
 * takes 0.1-0.5 ms; one that must go over NATS (view not loaded yet, record being refreshed) or
 * to a slow service would hold a write that already succeeded: it goes on after the reply.
 */
export const PREPARE_WAIT_MS = 5;

/**
 * Runs `prepare` before the write's reply (the handler awaits it, at most PREPARE_WAIT_MS): the
 * read that follows finds its reply kept without waiting for it. A failure is dropped as
 * afterReply's: the write succeeded.
 */
export async function beforeReply(
  deps: HandlerDeps,
  what: string,
  prepare: () => Promise<unknown>,
): Promise<void> {
  const prepared = prepare().then(
    () => undefined,
    (err: unknown) => dropped(deps, what, err),
  );
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, PREPARE_WAIT_MS);
  });
  try {
    await Promise.race([prepared, bound]);
  } finally {
    clearTimeout(timer);
  }
}

function dropped(deps: HandlerDeps, what: string, err: unknown): void {
  deps.log.debug({ err, what }, 'reply not prepared');
}
