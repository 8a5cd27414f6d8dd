import { BerthError, Code, type Container, ShimApi } from '@berth/api';
import { call, connectRedis } from '@berth/kit';
import { startNats, startRedis, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FreeRetries, transientFailure } from './free-retries.js';

// Which failures of a freeing are backed off, with the errors a real Redis and NATS give; and what
// starts a container's back-off afresh. The passes against a real shim and runc are in
// tests/e2e/containers-collect-backoff.test.ts.

let nats: TestServer;
let redis: TestServer;
let nc: NatsConnection;

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis()]);
  nc = await connect({ servers: nats.url });
});
afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
});

/** What a call fails with. */
async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: unknown) => err,
  );
}

function container(updatedAt: string): Container {
  return {
    id: 'c1',
    namespace: 'ns',
    createdAt: '2026-12-04T00:00:00.000Z',
    updatedAt,
  } as Container;
}

describe('transientFailure', () => {
  it('is true for a shim nobody serves and for this replica losing Redis', async () => {
    const noShim = await failure(
      call(nc, ShimApi, 'state', { namespace: 'ns', id: 'c1' }, { node: 'nowhere', timeoutMs: 2_000 }),
    );
    expect(noShim).toMatchObject({ code: Code.UNAVAILABLE });
    expect(transientFailure(noShim)).toBe(true);
    const r = connectRedis(redis.url);
    await r.connect();
    await r.quit();
    const closed = await failure(r.get('x'));
    expect(closed).not.toBeInstanceOf(BerthError);
    expect(transientFailure(closed)).toBe(true);
  });

  it('is false for what the node reports of the container, and for a node that does not answer in time', () => {
    for (const code of [Code.INTERNAL, Code.FAILED_PRECONDITION, Code.DEADLINE_EXCEEDED])
      expect(transientFailure(new BerthError(code, 'task "c1": runc delete failed'))).toBe(false);
  });
});

describe('FreeRetries', () => {
  const internal = new BerthError(Code.INTERNAL, 'runc delete failed: unexpected EOF');

  it('does not count a transient failure: the container stays due', () => {
    const r = new FreeRetries();
    const c = container('t1');
    r.beginPass();
    expect(r.due(c)).toBe(true);
    expect(r.failed(c, new BerthError(Code.UNAVAILABLE, 'shim is unavailable'))).toBeUndefined();
    r.beginPass();
    expect(r.due(c)).toBe(true);
    expect(r.failed(c, internal)).toEqual({ failures: 1, waitPasses: 1 });
    r.beginPass();
    expect(r.due(c)).toBe(false);
  });

  it('starts afresh for the record written again, and forgets a container a whole pass did not see', () => {
    const r = new FreeRetries();
    const c = container('t1');
    for (let n = 0; n < 3; n++) {
      r.beginPass();
      if (r.due(c)) r.failed(c, internal);
    }
    r.beginPass();
    expect(r.due(c)).toBe(false);
    // Another removal under the id: tried at once, its first failure waits one pass.
    expect(r.due(container('t2'))).toBe(true);
    expect(r.failed(container('t2'), internal)).toEqual({ failures: 1, waitPasses: 1 });
    r.endPass();
    // A pass without it (freed by another replica): its failures are forgotten.
    r.beginPass();
    r.endPass();
    r.beginPass();
    expect(r.due(container('t2'))).toBe(true);
    expect(r.failed(container('t2'), internal)).toEqual({ failures: 1, waitPasses: 1 });
  });

  it('caps the wait at 5 minutes of the interval', () => {
    const r = new FreeRetries();
    r.setInterval(60_000);
    const c = container('t1');
    const waits: number[] = [];
    for (let n = 0; n < 40; n++) {
      r.beginPass();
      if (r.due(c)) waits.push(r.failed(c, internal)?.waitPasses ?? 0);
    }
    expect(waits).toEqual([1, 2, 4, 5, 5, 5, 5, 5]);
  });
});
