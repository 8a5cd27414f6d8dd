import { randomUUID } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import type { ChainableCommander, Redis } from 'ioredis';
import { keys } from './keys.js';
import { redisScript } from './tracing/redis-spans.js';

/** A held lock: its fencing token grows monotonically across all holders. */
export interface Lock {
  key: string;
  token: string;
  fence: number;
  /** Extends the expiry; false when the lock was lost (expired and taken). */
  renew(ttlMs?: number): Promise<boolean>;
  release(): Promise<void>;
  /**
   * Set by withLock: aborted (reason: a BerthError ABORTED naming the lock) when a renewal finds the
   * lock gone, or when no renewal has reached Redis for a whole ttl (Redis unreachable or the
   * process stalled: the key may have expired). It fires no later than the key can expire in Redis,
   * so long work can stop instead of carrying on unprotected. Stopping is not enough to be safe:
   * a holder can stall between its last check and its write, so the write itself must check the
   * fence (fenceCheckLua).
   */
  lost?: AbortSignal;
  /**
   * Set by withLock: execs the holder's last write (a MULTI) with the release as its last
   * command, so the write and the release are one round trip (withLock then has nothing left to
   * release). Resolves to the transaction's replies without the release's.
   */
  commitAndRelease?(tx: ChainableCommander): Promise<[Error | null, unknown][]>;
  /**
   * Set by withLock: true when its first attempt took the lock. Redis runs a connection's
   * commands in order, so a command the caller sent on the same connection right after calling
   * withLock then ran while this lock was held (one round trip for the lock and a first read).
   */
  first?: boolean;
}

/** What a fenced write needs of a lock: its key and the holder's token. */
export type Fence = Pick<Lock, 'key' | 'token'>;

/**
 * Lua lines that make a script fail with the error reply FENCED unless KEYS[keyIndex] (the lock
 * key) still holds ARGV[argIndex] (the holder's token). Put them first in the script that writes
 * the record, so the check and the write are one atomic step: a holder whose lock expired, even
 * if nobody took it since, cannot write.
 */
export function fenceCheckLua(keyIndex: number, argIndex: number): string {
  return `if redis.call('get', KEYS[${keyIndex}]) ~= ARGV[${argIndex}] then return redis.error_reply('FENCED') end\n`;
}

/** True when a script failed because of fenceCheckLua. */
export function isFenced(err: unknown): boolean {
  return /^(ERR )?FENCED$/.test((err as Error | undefined)?.message ?? '');
}

/** The error of a write refused by its fence: ABORTED naming the lock and what was not written. */
export function fencedError(what: string, cause?: unknown): BerthError {
  return new BerthError(
    Code.ABORTED,
    `lost the lock on ${what} before the commit: it expired and may be held by another; nothing was committed`,
    cause === undefined ? undefined : { cause },
  );
}

const RELEASE = redisScript(
  'delete-if-equal',
  `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`,
);
const RENEW = redisScript(
  'lock renew',
  `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`,
);

// Taking the lock and drawing its fencing token happen in one step: drawn separately, a slow
// contender could win the lock with a token older than the previous holder's.
const ACQUIRE = redisScript(
  'lock acquire',
  `if redis.call('exists', KEYS[1]) == 1 then return 0 end
local fence = redis.call('incr', KEYS[2])
redis.call('set', KEYS[1], fence .. ':' .. ARGV[1], 'PX', ARGV[2])
return fence`,
);

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
 * Throws DEADLINE_EXCEEDED after waitMs. The lock is renewed every ttl/3 until released; `lost` is
 * aborted when a renewal finds it gone or when none succeeded within the ttl (see Lock.lost).
 */
export async function withLock<T>(
  redis: Redis,
  key: string,
  opts: { ttlMs: number; waitMs: number; what: string },
  fn: (lock: Lock) => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + opts.waitMs;
  let delay = 16;
  let sentAt = Date.now();
  let lock = await tryLock(redis, key, opts.ttlMs);
  const first = lock !== undefined;
  while (!lock) {
    if (Date.now() > deadline) {
      throw new BerthError(
        Code.DEADLINE_EXCEEDED,
        `timed out after ${opts.waitMs} ms waiting for the lock on ${opts.what}`,
      );
    }
    await new Promise((r) => setTimeout(r, delay / 2 + Math.random() * delay));
    delay = Math.min(delay * 2, 1000);
    sentAt = Date.now();
    lock = await tryLock(redis, key, opts.ttlMs);
  }
  return hold(lock, { ...opts, first, sentAt }, fn);
}

/**
 * Takes a lock only if it is free, holding it (renewed, with `lost`, as withLock) while `fn` runs.
 * Returns `{ value }` with fn's result, or undefined without running fn when another holds it.
 * For passes that skip what someone else is working on (a reconcile), which must still keep the
 * lock for as long as their work takes, however short its ttl.
 */
export async function withLockIfFree<T>(
  redis: Redis,
  key: string,
  opts: { ttlMs: number; what: string },
  fn: (lock: Lock) => Promise<T>,
): Promise<{ value: T } | undefined> {
  const sentAt = Date.now();
  const lock = await tryLock(redis, key, opts.ttlMs);
  if (!lock) return undefined;
  return { value: await hold(lock, { ...opts, first: true, sentAt }, fn) };
}

/** Runs fn under a taken lock: renewed every ttl/3, `lost` aborted as Lock.lost says, released after. */
async function hold<T>(
  lock: Lock,
  opts: { ttlMs: number; what: string; first: boolean; sentAt: number },
  fn: (lock: Lock) => Promise<T>,
): Promise<T> {
  const { key } = lock;
  const { first, sentAt } = opts;
  const lost = new AbortController();
  let released = false;
  const held: Lock = {
    ...lock,
    lost: lost.signal,
    first,
    commitAndRelease: async (tx) => {
      clearInterval(timer);
      const res = (await tx.eval(RELEASE, 1, key, held.token).exec()) ?? [];
      // A release that failed (Redis away mid-reply) is tried again when fn returns.
      released = res.length > 0 && res[res.length - 1]?.[0] === null;
      return res.slice(0, -1) as [Error | null, unknown][];
    },
  };
  const lose = (why: string) => {
    if (!lost.signal.aborted)
      lost.abort(new BerthError(Code.ABORTED, `lost the lock on ${opts.what}: ${why}`));
  };
  // Redis set the expiry when it ran the command, after we sent it: so `sent + ttl` is never later
  // than the key's real expiry, and losing the lock locally at that moment is always in time.
  let confirmed = sentAt;
  let expiry: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(expiry);
    expiry = setTimeout(
      () => lose(`no renewal reached Redis within its ttl of ${opts.ttlMs} ms, so it may have expired`),
      Math.max(0, confirmed + opts.ttlMs - Date.now()),
    );
    expiry.unref();
  };
  arm();
  const timer = setInterval(
    () => {
      const sent = Date.now();
      held
        .renew()
        .then((ok) => {
          if (!ok) lose('it expired and may be held by another');
          else if (sent > confirmed && !lost.signal.aborted) {
            confirmed = sent;
            arm();
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
    clearTimeout(expiry);
    if (!released) await held.release().catch(() => undefined);
  }
}
