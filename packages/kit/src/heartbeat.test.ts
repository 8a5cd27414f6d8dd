import { BerthError, Code, ImageApi, isLongOp, SnapshotApi } from '@berth/api';
import { startNats, startRedis } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { HEARTBEAT_STALL_MS, isHeartbeat } from './heartbeat.js';
import { connectNats } from './nats.js';
import { type ChildService, startTestService } from './testdata/child.js';
import { TestApi } from './testdata/test-api.mjs';

// Long calls watched by heartbeats, against a real nats-server and the test service as a child
// process that the tests SIGKILL while it holds a request.

let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;
let child: ChildService | undefined;

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'kit-heartbeat-test' });
});
afterEach(async () => {
  await child?.stop();
  child = undefined;
});
afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
});

/** Starts a hold on the child; resolves (with the call's outcome, wrapped) once its handler runs. */
async function held(c: ChildService, op: 'hold' | 'hold-long', id: string, timeoutMs: number) {
  const mark = c.mark();
  const p = call(nc, TestApi, op, { id }, { timeoutMs }).then(
    (r) => r,
    (e: unknown) => e,
  );
  await c.waitForLog((l) => l.msg === 'hold started' && l.holdId === id, { from: mark });
  // Wrapped: an async function returning the promise itself would wait for the call to end.
  return { outcome: p };
}

describe('which operations are long', () => {
  it('are those with a long timeout, or that say so', () => {
    expect(isLongOp(SnapshotApi.ops.unpack)).toBe(true);
    expect(isLongOp(ImageApi.ops.pull)).toBe(true);
    expect(isLongOp(SnapshotApi.ops.stat)).toBe(false);
    expect(isLongOp(TestApi.ops.hold)).toBe(false);
    expect(isLongOp(TestApi.ops['hold-long'])).toBe(true);
  });
});

describe('a long call whose callee dies', () => {
  it('fails with UNAVAILABLE naming service, operation and instance within seconds, not at its timeout', async () => {
    child = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
    // The first heartbeat, which names the instance, comes FIRST_BEAT_MS after the call starts:
    // the callee dies once the caller has it (a copy arrives on this subscription too).
    const beat = new Promise<void>((resolve) => {
      const sub = nc.subscribe('_INBOX.>', {
        callback: (_err, m) => {
          if (!isHeartbeat(m)) return;
          sub.unsubscribe();
          resolve();
        },
      });
    });
    await nc.flush();
    const { outcome: p } = await held(child, 'hold-long', 'killed', 60_000);
    await beat;
    const killedAt = Date.now();
    child.proc.kill('SIGKILL');
    const err = await p;
    const took = Date.now() - killedAt;
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
    expect((err as BerthError).message).toMatch(
      new RegExp(`^task-service \\(instance ${child.nodeId}/[0-9a-f-]{36}\\) stopped answering "hold-long"`),
    );
    expect(took).toBeLessThan(10_000);
  });

  it('keeps a live callee that works longer than the stall window', async () => {
    child = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
    const { outcome: p } = await held(child, 'hold-long', 'alive', 60_000);
    // The property under test is a duration: the handler runs through two whole stall windows,
    // so without heartbeats arriving the call would have failed before the release.
    await new Promise((r) => setTimeout(r, 2 * HEARTBEAT_STALL_MS));
    nc.publish('test.release.alive');
    expect(await p).toEqual({ id: 'alive', pid: child.proc.pid });
  });

  it('a short call keeps its plain timeout (no heartbeats asked for)', async () => {
    child = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
    const { outcome: p } = await held(child, 'hold', 'short', 1_500);
    child.proc.kill('SIGKILL');
    const err = await p;
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
  });

  it('a long call to a service that is not running fails at once with UNAVAILABLE', async () => {
    const started = Date.now();
    const err = await call(nc, TestApi, 'hold-long', { id: 'nobody' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
    expect((err as BerthError).message).toContain('no responder for "hold-long"');
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
