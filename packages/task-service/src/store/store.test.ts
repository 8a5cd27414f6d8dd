import { randomBytes } from 'node:crypto';
import type { Container } from '@berth/api';
import { connectRedis, keys, type Redis, withLock } from '@berth/kit';
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

  it("refuses a caller's id another container has (stored, being created, being freed) on both create paths, recording nothing", async () => {
    const c = container('ns8', 'first');
    await store.createNamed(c);
    const taken = `container id ${c.id} is already in use by another container`;
    // createNamed (rootfs prepared after the reply): sent again for the same container it is
    // the same record, stored again; under another name it is refused.
    await store.createNamed(c);
    for (const other of [
      { ...c, name: 'second' },
      { ...c, spec: { replaced: true } },
    ]) {
      await expect(store.createNamed(other)).rejects.toMatchObject({
        code: 'ALREADY_EXISTS',
        message: taken,
      });
    }
    expect((await store.current('ns8', c.id)).c?.spec).toEqual({});
    const intent = { id: c.id, name: 'third', node: 'n1', bridge: false, startedAt: c.createdAt };
    await expect(store.beginCreateNamed('ns8', intent)).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
      message: taken,
    });
    expect(await store.creating('ns8')).toEqual([]);
    await expect(store.resolve('ns8', 'second')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(store.resolve('ns8', 'third')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await store.resolve('ns8', 'first')).id).toBe(c.id);
    // An id whose container is being created (its intent), or being freed, is taken too.
    const busy = container('ns8', 'busy');
    await store.beginCreateNamed('ns8', { ...intent, id: busy.id, name: 'busy' });
    await expect(store.createNamed({ ...busy, name: 'late' })).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
    await expect(
      store.beginCreateNamed('ns8', { ...intent, id: busy.id, name: 'late' }),
    ).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
    await redis.hset(keys.containersCollecting('ns8'), 'c'.repeat(64), '{}');
    const freed = container('ns8', 'freed', 'c'.repeat(64));
    await expect(store.createNamed(freed)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(
      store.beginCreateNamed('ns8', { ...intent, id: freed.id, name: 'freed' }),
    ).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
    await expect(store.resolve('ns8', 'late')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(store.resolve('ns8', 'freed')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('begins a creation with its name in one step, and commits it with the lock released', async () => {
    const c = container('ns5', 'web5');
    const intent = { id: c.id, name: c.name, node: 'n1', bridge: false, startedAt: c.createdAt };
    const lockKey = keys.containerLock('ns5', c.id);
    await withLock(redis, lockKey, { ttlMs: 5000, waitMs: 1000, what: 'c' }, async (lock) => {
      await store.beginCreateNamed('ns5', intent);
      // Another creation of that name records nothing.
      const other = { ...intent, id: 'f'.repeat(64) };
      await expect(store.beginCreateNamed('ns5', other)).rejects.toMatchObject({
        code: 'ALREADY_EXISTS',
        message: `container name "web5" is already in use by container ${c.id.slice(0, 12)}`,
      });
      expect((await store.creating('ns5')).map((i) => i.id)).toEqual([c.id]);
      await store.commitCreate(c, lock);
      // Stored, intent gone and the lock free before the holder returns.
      expect(await redis.exists(lockKey)).toBe(0);
    });
    expect(await store.creating('ns5')).toEqual([]);
    expect((await store.current('ns5', c.id)).c?.name).toBe('web5');
    // A task committed with the container as its create resolved it.
    const t = { id: c.id, namespace: 'ns5', node: 'n1', status: 'created' as const, pid: 7, createdAt: 't1' };
    await withLock(redis, lockKey, { ttlMs: 5000, waitMs: 1000, what: 'c' }, (lock) =>
      store.commitTask(t, lock, { ...c, spec: { resolved: true } }),
    );
    const now = await store.current('ns5', c.id);
    expect(now).toMatchObject({
      removing: false,
      task: { pid: 7, status: 'created' },
      c: { spec: { resolved: true } },
    });
    await store.markRemoving('ns5', c.id);
    expect((await store.current('ns5', c.id)).removing).toBe(true);
    expect(await store.current('ns5', 'e'.repeat(64))).toEqual({
      c: undefined,
      removing: false,
      task: undefined,
    });
  });

  it('removes a container with no live task in one step, only while nobody holds its lock', async () => {
    const c = container('ns6', 'done6');
    await store.reserveName('ns6', c.name, c.id);
    await store.put(c);
    const t = { id: c.id, namespace: 'ns6', node: 'n1', status: 'running' as const, pid: 9, createdAt: 't1' };
    await store.putTask(t);
    // A live task: left to the caller (which heals, kills or refuses).
    expect(await store.removeIfDone('ns6', c.id)).toBeUndefined();
    await store.recordExit({ namespace: 'ns6', id: c.id, pid: 9, exitCode: 0, exitedAt: 'x1' });
    // Locked by another writer: nothing done.
    const lockKey = keys.containerLock('ns6', c.id);
    await withLock(redis, lockKey, { ttlMs: 5000, waitMs: 1000, what: 'c' }, async () => {
      expect(await store.removeIfDone('ns6', c.id)).toBeUndefined();
      expect((await store.current('ns6', c.id)).c).toBeDefined();
    });
    const done = await store.removeIfDone('ns6', c.id);
    expect(done).toMatchObject({
      c: { id: c.id, name: 'done6' },
      task: { pid: 9, status: 'stopped', exitCode: 0 },
    });
    // Gone for every reader, kept for collection, its name free.
    expect(await store.current('ns6', c.id)).toEqual({ c: undefined, removing: false, task: undefined });
    expect((await store.collecting('ns6')).map((x) => x.id)).toEqual([c.id]);
    await store.reserveName('ns6', 'done6', 'other');
    expect(await store.removeIfDone('ns6', c.id)).toBeUndefined();
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
