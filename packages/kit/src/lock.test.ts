import { randomBytes } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import { startRedis, startTcpRelay } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Fence,
  fenceCheckLua,
  fencedError,
  isFenced,
  type Lock,
  tryLock,
  withLock,
  withLockIfFree,
} from './lock.js';
import { connectRedis, type Redis } from './redis.js';

// Redis locks shared by two independent clients (as two replicas would hold them).

let server: Awaited<ReturnType<typeof startRedis>>;
let one: Redis;
let two: Redis;

beforeAll(async () => {
  server = await startRedis({ appendonly: false });
  one = connectRedis(server.url);
  two = connectRedis(server.url);
  await Promise.all([one.connect(), two.connect()]);
});

afterAll(async () => {
  await Promise.all([one?.quit(), two?.quit()]);
  await server?.stop();
});

const key = (what: string) => `berth:v1:test:lock:${what}:${randomBytes(4).toString('hex')}`;

/** A read-modify-write that loses updates unless callers are serialised. */
async function unsafeIncrement(redis: Redis, counter: string): Promise<void> {
  const v = Number((await redis.get(counter)) ?? '0');
  await redis.ping();
  await redis.set(counter, String(v + 1));
}

describe('withLock', () => {
  it('lets one holder at a time in, across two clients, in fence order', async () => {
    const lockKey = key('mutex');
    const counter = `${lockKey}:counter`;
    let active = 0;
    let maxActive = 0;
    const fences: number[] = [];
    const workers = Array.from({ length: 20 }, (_, i) =>
      withLock(
        i % 2 ? one : two,
        lockKey,
        { ttlMs: 5000, waitMs: 20_000, what: 'the test counter' },
        async (lock) => {
          active++;
          maxActive = Math.max(maxActive, active);
          fences.push(lock.fence);
          await unsafeIncrement(i % 2 ? two : one, counter);
          active--;
        },
      ),
    );
    await Promise.all(workers);
    expect(maxActive).toBe(1);
    expect(await one.get(counter)).toBe('20');
    // Fencing tokens grow with each acquisition, so a storage write can reject a stale holder.
    expect([...fences].sort((x, y) => x - y)).toEqual(fences);
    expect(await one.exists(lockKey)).toBe(0);
  });

  it('(control) the same increments without the lock lose updates', async () => {
    const counter = key('control');
    await Promise.all(Array.from({ length: 20 }, (_, i) => unsafeIncrement(i % 2 ? one : two, counter)));
    expect(Number(await one.get(counter))).toBeLessThan(20);
  });

  it('gives up with DEADLINE_EXCEEDED naming what it waited for', async () => {
    const lockKey = key('busy');
    const held = await tryLock(one, lockKey, 10_000);
    expect(held).toBeDefined();
    const err = await withLock(
      two,
      lockKey,
      { ttlMs: 1000, waitMs: 200, what: 'blob sha256:abc' },
      async () => 'ran',
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    expect((err as BerthError).message).toBe(
      'timed out after 200 ms waiting for the lock on blob sha256:abc',
    );
    await held?.release();
  });

  it('renews the lock while the holder works past its ttl', async () => {
    const lockKey = key('renew');
    await withLock(one, lockKey, { ttlMs: 1000, waitMs: 1000, what: 'renewal' }, async (lock) => {
      // Work for over two ttl periods: without renewal the key would have expired twice over.
      await new Promise((r) => setTimeout(r, 2200));
      expect(await two.get(lockKey)).toBe(lock.token);
      expect(await tryLock(two, lockKey, 1000)).toBeUndefined();
    });
    expect(await one.exists(lockKey)).toBe(0);
  });
});

describe('withLockIfFree', () => {
  it('runs nothing and answers undefined while another holds the lock', async () => {
    const lockKey = key('if-free-held');
    const other = await tryLock(two, lockKey, 5000);
    let ran = false;
    const r = await withLockIfFree(one, lockKey, { ttlMs: 5000, what: 'held' }, async () => {
      ran = true;
    });
    expect(r).toBeUndefined();
    expect(ran).toBe(false);
    expect(await one.get(lockKey)).toBe(other?.token);
    await other?.release();
  });

  it('holds a free lock past its ttl while fn works, then releases it', async () => {
    const lockKey = key('if-free');
    const r = await withLockIfFree(one, lockKey, { ttlMs: 1000, what: 'if-free' }, async (lock) => {
      // Over two ttl periods of work: only renewal keeps the key.
      await new Promise((res) => setTimeout(res, 2500));
      expect(await tryLock(two, lockKey, 1000)).toBeUndefined();
      expect(lock.first).toBe(true);
      expect(lock.lost?.aborted).toBe(false);
      return lock.token;
    });
    expect(r?.value).toMatch(/^\d+:/);
    expect(await one.exists(lockKey)).toBe(0);
  });
});

describe('commitAndRelease', () => {
  it("runs the holder's last write and the release in one transaction", async () => {
    const lockKey = key('commit');
    const rec = `${lockKey}:record`;
    const replies = await withLock(
      one,
      lockKey,
      { ttlMs: 5000, waitMs: 1000, what: 'commit' },
      async (lock) => {
        const res = await lock.commitAndRelease?.(one.multi().set(rec, 'v').get(rec));
        // Released with the write: another holder gets it before this callback returns.
        const next = await tryLock(two, lockKey, 5000);
        expect(next).toBeDefined();
        return { res, next, first: lock.first };
      },
    );
    expect(replies.res).toEqual([
      [null, 'OK'],
      [null, 'v'],
    ]);
    // withLock's own release left the next holder's lock alone; its lock was taken at once.
    expect(await one.get(lockKey)).toBe(replies.next?.token);
    expect(replies.first).toBe(true);
    // Taken after a wait for the holder: not by the first attempt.
    const waited = withLock(
      two,
      lockKey,
      { ttlMs: 5000, waitMs: 5000, what: 'commit' },
      async (l) => l.first,
    );
    // Its first attempt was sent on `two` before this release (same connection, in order).
    await replies.next?.release();
    expect(await waited).toBe(false);
  });
});

describe('lock loss', () => {
  it('signals the holder when a renewal finds its lock taken', async () => {
    const lockKey = key('lost');
    // A ttl that leaves the renewal (every ttl/3) room to answer on a loaded machine: the loss
    // meant here is the renewal finding another's token, not the one of no renewal in time.
    await withLock(one, lockKey, { ttlMs: 1500, waitMs: 1000, what: 'blob sha256:feed' }, async (lock) => {
      expect(lock.lost?.aborted).toBe(false);
      // Someone else's token replaces ours, as after an expiry during a long pause.
      await two.set(lockKey, 'someone-else', 'PX', 10_000);
      await new Promise((r) => lock.lost?.addEventListener('abort', r, { once: true }));
      const reason = lock.lost?.reason as BerthError;
      expect(reason.code).toBe(Code.ABORTED);
      expect(reason.message).toBe('lost the lock on blob sha256:feed: it expired and may be held by another');
    });
    // Releasing did not delete the other holder's lock.
    expect(await one.get(lockKey)).toBe('someone-else');
  });
});

describe('lock loss without Redis', () => {
  it('signals the holder no later than its key expires when renewals cannot reach Redis', async () => {
    const lockKey = key('partition');
    const relay = await startTcpRelay(server.url);
    const cut = connectRedis(relay.url);
    await cut.connect();
    try {
      let lostAt = 0;
      let reason: BerthError | undefined;
      let held: () => void = () => undefined;
      const holding = new Promise<void>((r) => {
        held = r;
      });
      const holder = withLock(
        cut,
        lockKey,
        { ttlMs: 400, waitMs: 1000, what: 'blob sha256:cut' },
        async (lock) => {
          // A partition: renewals are sent but never reach Redis, so the key expires there.
          relay.freeze();
          held();
          await new Promise((r) => lock.lost?.addEventListener('abort', r, { once: true }));
          lostAt = Date.now();
          reason = lock.lost?.reason as BerthError;
        },
      );
      await holding;
      // Another client takes the lock once the key has really expired in Redis.
      const taken = await withLock(two, lockKey, { ttlMs: 5000, waitMs: 10_000, what: 'cut' }, async (l) => {
        const at = Date.now();
        expect(await one.get(lockKey)).toBe(l.token);
        return at;
      });
      expect(lostAt).toBeGreaterThan(0);
      expect(lostAt).toBeLessThanOrEqual(taken);
      expect(reason?.code).toBe(Code.ABORTED);
      expect(reason?.message).toBe(
        'lost the lock on blob sha256:cut: no renewal reached Redis within its ttl of 400 ms, so it may have expired',
      );
      relay.thaw();
      await holder;
    } finally {
      relay.thaw();
      cut.disconnect();
      await relay.stop();
    }
  });
});

describe('fenced writes', () => {
  const WRITE = `${fenceCheckLua(2, 1)}redis.call('set', KEYS[1], ARGV[2]) return 'OK'`;
  const write = (redis: Redis, record: string, fence: Fence, value: string) =>
    redis.eval(WRITE, 2, record, fence.key, fence.token, value);

  it('refuse a holder whose lock expired and was taken, in the same step as the write', async () => {
    const lockKey = key('fenced');
    const record = `${lockKey}:record`;
    const stale = (await tryLock(one, lockKey, 200)) as Lock;
    await write(one, record, stale, 'first');
    await withLock(two, lockKey, { ttlMs: 5000, waitMs: 10_000, what: 'fenced' }, async (fresh) => {
      const err = await write(one, record, stale, 'stale').catch((e: unknown) => e);
      expect(isFenced(err)).toBe(true);
      await write(two, record, fresh, 'fresh');
    });
    expect(await one.get(record)).toBe('fresh');
    // An expired lock nobody took fences too: the key is gone.
    const gone = (await tryLock(one, key('gone'), 50)) as Lock;
    await withLock(two, gone.key, { ttlMs: 50, waitMs: 5000, what: 'gone' }, async () => undefined);
    expect(isFenced(await write(one, `${gone.key}:r`, gone, 'x').catch((e: unknown) => e))).toBe(true);
    expect(fencedError('blob sha256:abc').message).toBe(
      'lost the lock on blob sha256:abc before the commit: it expired and may be held by another; nothing was committed',
    );
  });
});

describe('lock expiry', () => {
  it('frees a lock whose holder vanished, and the old holder can no longer touch it', async () => {
    const lockKey = key('expiry');
    const stale = (await tryLock(one, lockKey, 250)) as Lock;
    expect(stale).toBeDefined();
    expect(await tryLock(two, lockKey, 5000)).toBeUndefined();

    const started = Date.now();
    await withLock(two, lockKey, { ttlMs: 5000, waitMs: 10_000, what: 'expiry' }, async (fresh) => {
      expect(Date.now() - started).toBeGreaterThanOrEqual(200);
      expect(fresh.fence).toBeGreaterThan(stale.fence);
      // The stale holder's renew and release are refused: they must not steal or drop the new lock.
      expect(await stale.renew()).toBe(false);
      await stale.release();
      expect(await one.get(lockKey)).toBe(fresh.token);
    });
    expect(await one.exists(lockKey)).toBe(0);
  });
});
