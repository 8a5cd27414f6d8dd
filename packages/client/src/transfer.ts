import { randomBytes } from 'node:crypto';
import { BerthError, Code, PullProgress } from '@berth/api';
import { subscribeEvents } from '@berth/kit/events';
import { Channel } from './channel.js';
import type { Scope } from './scope.js';

/**
 * The image-service sends a progress event at least every 5 s while a transfer runs; this much
 * silence means the instance doing the work is gone (killed, partitioned), not merely slow.
 */
export const DEFAULT_SILENCE_MS = 30_000;

/** A running pull or push: its progress events as an async iterator, and its final reply. */
export interface Transfer<R> extends AsyncIterable<PullProgress> {
  /** The reply once the transfer finished; rejects with the transfer's BerthError. */
  readonly result: Promise<R>;
}

/** A fresh id for a transfer's progress topic (`[a-zA-Z0-9_-]{1,64}`, as the contract wants). */
export function transferId(): string {
  return `sdk-${randomBytes(8).toString('hex')}`;
}

/**
 * Runs a transfer whose progress is published on `topic`: subscribes before sending the request
 * (so no event is missed), passes events to `onProgress` and to the iterator, and stops
 * listening when the reply arrives. Silence for `silenceMs` fails the transfer with UNAVAILABLE
 * instead of waiting out the operation's hour-long timeout.
 */
export function runTransfer<R>(
  scope: Scope,
  opts: { topic: string; what: string; silenceMs?: number; onProgress?: (p: PullProgress) => void },
  send: () => Promise<R>,
): Transfer<R> {
  const silenceMs = opts.silenceMs ?? DEFAULT_SILENCE_MS;
  let last = Date.now();
  let timer: NodeJS.Timeout | undefined;
  // The iterator keeps listening until the reply, even when the caller stops reading it.
  const channel = new Channel<PullProgress>(10_000, `${opts.what} progress`);
  const sub = subscribeEvents(scope.nc, opts.topic, (env) => {
    const p = PullProgress.safeParse(env.event);
    // Events of another namespace or a malformed one are not this transfer's.
    if (!p.success || env.namespace !== scope.namespace) return;
    last = Date.now();
    channel.push(p.data);
    opts.onProgress?.(p.data);
  });
  const result = (async () => {
    try {
      await scope.nc.flush();
      const silent = new Promise<never>((_, reject) => {
        timer = setInterval(
          () => {
            if (Date.now() - last <= silenceMs) return;
            reject(
              new BerthError(
                Code.UNAVAILABLE,
                `${opts.what}: no word from the image-service for ${Math.round(silenceMs / 1000)} s; it may have stopped`,
              ),
            );
          },
          Math.min(1000, silenceMs / 4),
        );
      });
      const reply = await Promise.race([send(), silent]);
      channel.end();
      return reply;
    } catch (err) {
      channel.fail(err);
      throw err;
    } finally {
      clearInterval(timer);
      sub.unsubscribe();
    }
  })();
  // The caller may use only the iterator; the error then reaches it there, not as unhandled.
  result.catch(() => undefined);
  return { result, [Symbol.asyncIterator]: () => channel };
}
