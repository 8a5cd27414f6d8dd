import { randomBytes } from 'node:crypto';
import type { Container } from '@berth/api';
import { connectRedis, type Redis } from '@berth/kit';
import { startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerStore } from './store.js';

let server: TestServer;
let redis: Redis;
let store: ContainerStore;

beforeAll(async () => {
  server = await startRedis();
  redis = connectRedis(server.url);
  await redis.connect();
  store = new ContainerStore(redis);
});
afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

function container(ns: string, name: string, id = randomBytes(32).toString('hex')): Container {
  const now = new Date().toISOString();
  return {
    id,
    namespace: ns,
    name,
    image: { name: 'busybox', digest: `sha256:${'0'.repeat(64)}` },
    node: 'n1',
    spec: {},
    snapshotKey: `containers/${ns}/${id}`,
    labels: { app: name },
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'busybox' },
    createdAt: now,
    updatedAt: now,
  };
}

describe('ContainerStore', () => {
  it('reserves names atomically: one winner among concurrent reservations', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => store.reserveName('ns1', 'web', `id${i}`)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(failed.reason.code).toBe('ALREADY_EXISTS');
    expect(failed.reason.message).toMatch(/container name "web" is already in use/);
  });

  it('resolves by id, name and unique prefix; refuses ambiguous prefixes', async () => {
    const a = container('ns2', 'alpha', `ab${'1'.repeat(62)}`);
    const b = container('ns2', 'beta', `ab${'2'.repeat(62)}`);
    for (const c of [a, b]) {
      await store.reserveName('ns2', c.name, c.id);
      await store.put(c);
    }
    expect((await store.resolve('ns2', a.id)).name).toBe('alpha');
    expect((await store.resolve('ns2', 'beta')).id).toBe(b.id);
    expect((await store.resolve('ns2', 'ab1')).id).toBe(a.id);
    await expect(store.resolve('ns2', 'ab')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.resolve('ns2', 'nope')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: 'container "nope" not found',
    });
    await expect(store.resolve('other', 'alpha')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await store.list('ns2')).map((i) => i.status)).toEqual(['created', 'created']);
    await store.delete(a);
    await expect(store.resolve('ns2', 'alpha')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await store.reserveName('ns2', 'alpha', 'new'); // the name is free again
    expect(await store.namespaces()).toEqual(expect.arrayContaining(['ns2']));
  });

  it('records an exit once, and never for another run of the container', async () => {
    const c = container('ns3', 'x');
    await store.put(c);
    const base = { id: c.id, namespace: 'ns3', node: 'n1', createdAt: c.createdAt };
    await store.putTask({ ...base, status: 'created', pid: 100 });
    expect(await store.setTaskFields('ns3', c.id, { status: 'running' })).toBe(true);
    const exit = { namespace: 'ns3', id: c.id, exitedAt: new Date().toISOString() };
    expect(await store.recordExit({ ...exit, pid: 99, exitCode: 1 })).toBe(false);
    expect(await store.recordExit({ ...exit, pid: 100, exitCode: 137, reason: 'OOMKilled' })).toBe(true);
    expect(await store.recordExit({ ...exit, pid: 100, exitCode: 0 })).toBe(false);
    expect(await store.setTaskFields('ns3', c.id, { status: 'running' })).toBe(false);
    const t = await store.getTask('ns3', c.id);
    expect(t).toMatchObject({ status: 'stopped', exitCode: 137, reason: 'OOMKilled', pid: 100 });
    expect((await store.info(c)).status).toBe('stopped');
  });
});
