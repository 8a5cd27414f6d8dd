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
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** Tries once to take a lock with expiry. Returns undefined when someone else holds it. */
export async function tryLock(redis: Redis, key: string, ttlMs: number): Promise<Lock | undefined> {
  const fence = await redis.incr(keys.fence());
  const token = `${fence}:${randomUUID()}`;
  const ok = await redis.set(key, token, 'PX', ttlMs, 'NX');
  if (ok !== 'OK') return undefined;
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
  const held = lock;
  const timer = setInterval(() => void held.renew().catch(() => undefined), Math.max(50, opts.ttlMs / 3));
  timer.unref();
  try {
    return await fn(held);
  } finally {
    clearInterval(timer);
    await held.release().catch(() => undefined);
  }
}
