import { randomUUID } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import type { Redis } from 'ioredis';
import { keys } from './keys.js';

/** A held lock: its fencing token grows monotonically across all holders. */
export interface Lock {
  key: string;
  token: string;
  fence: number;
  /** Extends the expiry; false when the lock was lost (expired and taken). */
  renew(ttlMs?: number): Promise<boolean>;
  release(): Promise<void>;
  /**
   * Set by withLock: aborted when a renewal finds the lock gone (it expired and someone else may
   * hold it), so long work can stop instead of carrying on unprotected.
   */
  lost?: AbortSignal;
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

// Taking the lock and drawing its fencing token happen in one step: drawn separately, a slow
// contender could win the lock with a token older than the previous holder's.
const ACQUIRE = `if redis.call('exists', KEYS[1]) == 1 then return 0 end
local fence = redis.call('incr', KEYS[2])
redis.call('set', KEYS[1], fence .. ':' .. ARGV[1], 'PX', ARGV[2])
return fence`;

/** Tries once to take a lock with expiry. Returns undefined when someone else holds it. */
export async function tryLock(redis: Redis, key: string, ttlMs: number): Promise<Lock | undefined> {
  const id = randomUUID();
  const fence = Number(await redis.eval(ACQUIRE, 2, key, keys.fence(), id, String(ttlMs)));
  if (!fence) return undefined;
  const token = `${fence}:${id}`;
  return {
    key,
    token,
    fence,
    renew: async (t = ttlMs) => (await redis.eval(RENEW, 1, key, token, String(t))) === 1,
    release: async () => {
      await redis.eval(RELEASE, 1, key, token);
    },
  };
}

/**
 * Takes a lock, waiting with jittered backoff (16 ms doubling to 1 s) while another holder has it.
 * Throws DEADLINE_EXCEEDED after waitMs. The lock is renewed every ttl/3 until released.
 */
export async function withLock<T>(
  redis: Redis,
  key: string,
  opts: { ttlMs: number; waitMs: number; what: string },
  fn: (lock: Lock) => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + opts.waitMs;
  let delay = 16;
  let lock = await tryLock(redis, key, opts.ttlMs);
  while (!lock) {
    if (Date.now() > deadline) {
      throw new BerthError(
        Code.DEADLINE_EXCEEDED,
        `timed out after ${opts.waitMs} ms waiting for the lock on ${opts.what}`,
      );
    }
    await new Promise((r) => setTimeout(r, delay / 2 + Math.random() * delay));
    delay = Math.min(delay * 2, 1000);
    lock = await tryLock(redis, key, opts.ttlMs);
  }
  const lost = new AbortController();
  const held: Lock = { ...lock, lost: lost.signal };
  const timer = setInterval(
    () => {
      held
        .renew()
        .then((ok) => {
          if (!ok && !lost.signal.aborted) {
            lost.abort(
              new BerthError(
                Code.ABORTED,
                `lost the lock on ${opts.what}: it expired and may be held by another`,
              ),
            );
          }
        })
        // A failed renewal (Redis away) is not a loss yet: the next one may succeed within the ttl.
        .catch(() => undefined);
    },
    Math.max(50, opts.ttlMs / 3),
  );
  timer.unref();
  try {
    return await fn(held);
  } finally {
    clearInterval(timer);
    await held.release().catch(() => undefined);
  }
}
