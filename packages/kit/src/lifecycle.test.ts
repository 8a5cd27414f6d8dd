import { BerthError, Code } from '@berth/api';
import { startNats, startRedis } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { connectNats } from './nats.js';
import { type ChildService, startTestService } from './testdata/child.js';
import { TestApi } from './testdata/test-api.mjs';

// A service process's life: it survives a nats-server restart, and on SIGTERM it stops taking
// requests, finishes the ones in flight (bounded by the grace period) and exits 0.

let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;
let child: ChildService | undefined;

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'kit-lifecycle-test' });
});

afterEach(async () => {
  await child?.stop();
  child = undefined;
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
});

const echo = (text: string) => call(nc, TestApi, 'echo', { text }, { timeoutMs: 5000 });

describe('reconnect', () => {
  it('keeps serving after nats-server restarts', async () => {
    child = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
    expect((await echo('before')).pid).toBe(child.proc.pid);

    const mark = child.mark();
    const weReconnected = (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') return;
    })();
    await nats.restart();
    // Both sides must have re-established their connection (and so their subscriptions).
    await child.waitForLog((l) => l.nats === 'reconnect', { from: mark });
    await weReconnected;

    const after = await echo('after');
    expect(after).toEqual({ text: 'after', pid: child.proc.pid });
    const info = await call(nc, TestApi, 'info', {}, { timeoutMs: 5000 });
    expect(info.healthy).toBe(true);
  });
});

describe('health while Redis is away', () => {
  it('answers info promptly as unhealthy, and healthy again once Redis is back', async () => {
    const own = await startRedis({ appendonly: false });
    try {
      child = await startTestService({ natsUrl: nats.url, redisUrl: own.url });
      const mark = child.mark();
      own.proc.kill('SIGKILL');
      await child.waitForLog((l) => l.msg === 'redis reconnecting', { from: mark });
      const started = Date.now();
      const down = await call(nc, TestApi, 'info', {}, { timeoutMs: 5000 });
      expect(Date.now() - started).toBeLessThan(1500);
      expect(down.healthy).toBe(false);
      expect(down.checks.redis).toMatch(/^redis: not connected \((connecting|reconnecting)\)$/);
      expect(down.checks.nats).toBe('ok');

      const back = child.mark();
      await own.restart();
      await child.waitForLog((l) => l.msg === 'redis ready', { from: back });
      const up = await call(nc, TestApi, 'info', {}, { timeoutMs: 5000 });
      expect(up.healthy).toBe(true);
    } finally {
      await child?.stop();
      child = undefined;
      await own.stop();
    }
  });
});

describe('graceful shutdown', () => {
  it('answers the request in flight at SIGTERM, refuses new ones, and exits 0', async () => {
    child = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
    const mark = child.mark();
    const held = call(nc, TestApi, 'hold', { id: 'sigterm' }, { timeoutMs: 20_000 });
    await child.waitForLog((l) => l.msg === 'hold started', { from: mark });

    child.proc.kill('SIGTERM');
    await child.waitForLog((l) => l.msg === 'waiting for in-flight requests' && l.inflight === 1, {
      from: mark,
    });
    // Endpoints are gone while the held request is still running: new work finds no responder.
    const refused = await echo('late').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BerthError);
    expect((refused as BerthError).code).toBe(Code.UNAVAILABLE);

    nc.publish('test.release.sigterm');
    expect(await held).toEqual({ id: 'sigterm', pid: child.proc.pid });
    expect(await child.exited).toBe(0);
    await child.waitForLog((l) => l.msg === 'stopped', { from: mark });
  });

  it('does not wait past the grace period for a request that never finishes', async () => {
    child = await startTestService({
      natsUrl: nats.url,
      redisUrl: redis.url,
      env: { BERTH_SHUTDOWN_GRACE_MS: '300' },
    });
    const mark = child.mark();
    const held = call(nc, TestApi, 'hold', { id: 'forever' }, { timeoutMs: 20_000 }).catch((e: unknown) => e);
    await child.waitForLog((l) => l.msg === 'hold started', { from: mark });
    const stoppedAt = Date.now();
    child.proc.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    // Bounded by the 300 ms grace, far below the 5 s hard stop.
    expect(Date.now() - stoppedAt).toBeLessThan(4000);
    await child.waitForLog((l) => l.msg === 'grace period over; aborting in-flight requests', { from: mark });
    // The abandoned caller gets a definite answer at once instead of waiting out its 20 s timeout.
    const err = await held;
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
    expect((err as BerthError).message).toBe(
      'task-service is shutting down: "hold" did not finish within the 300 ms grace period',
    );
  });
});
