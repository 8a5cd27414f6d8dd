// One suite, two implementations of the task-service interface: its handlers in-process
// (localClient) and the typed client over a real nats-server, on one real Redis. No node service
// runs: every case here must be answered by the task-service itself, the same way on both.
import { randomBytes } from 'node:crypto';
import { BERTH_VERSION, type Container, Service, TaskApi } from '@berth/api';
import {
  type Client,
  client as clientOf,
  connectRedis,
  createLogger,
  localClient,
  type Redis,
  type ServedService,
  serve,
} from '@berth/kit';
import { startNats, startRedis, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsDeps } from './deps.js';
import { createDomain, type Domain } from './domain.js';
import { createHandlers } from './service.js';

let nats: TestServer;
let redisServer: TestServer;
let redis: Redis;
let nc: NatsConnection;
let served: ServedService;
let domain: Domain;
const node = `n-${randomBytes(3).toString('hex')}`;
const log = createLogger({ service: Service.task, node, level: 'silent' });

beforeAll(async () => {
  [nats, redisServer] = await Promise.all([startNats({ jetstream: false }), startRedis()]);
  redis = connectRedis(redisServer.url);
  await redis.connect();
  nc = await connect({ servers: nats.url });
  domain = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
  served = await serve({
    nc,
    service: TaskApi,
    version: BERTH_VERSION,
    node,
    log,
    handlers: createHandlers(domain),
  });
});
afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await redis?.quit();
  await Promise.all([nats?.stop(), redisServer?.stop()]);
});

/** A container record as the task-service stores one (no node service is needed to read it). */
function stored(ns: string, name: string, labels: Record<string, string> = {}): Container {
  const id = randomBytes(32).toString('hex');
  const now = new Date().toISOString();
  return {
    id,
    namespace: ns,
    name,
    image: { name: 'docker.io/library/busybox:latest', digest: `sha256:${'1'.repeat(64)}` },
    node,
    spec: { process: { args: ['true'], env: [], cwd: '/' } },
    snapshotKey: `containers/${ns}/${id}`,
    labels,
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'busybox' },
    createdAt: now,
    updatedAt: now,
  };
}

const impls: [string, (ns: string) => Client<typeof TaskApi>][] = [
  ['in-process', (ns) => localClient(TaskApi, createHandlers(domain), { namespace: ns })],
  ['over NATS', (ns) => clientOf(nc, TaskApi, { namespace: ns })],
];

describe.each(impls)('task-service conformance: %s', (label, make) => {
  const ns = `conf-${label.replace(/\W/g, '')}`;

  it('gets by id, prefix and name; lists with filters; merges labels', async () => {
    const c = make(ns);
    const a = stored(ns, 'web', { tier: 'front' });
    const b = stored(ns, 'db', { tier: 'back' });
    for (const x of [a, b]) {
      await domain.store.reserveName(ns, x.name, x.id);
      await domain.store.put(x);
    }
    expect((await c['get-container']({ id: 'web' })).container.id).toBe(a.id);
    expect((await c['get-container']({ id: a.id.slice(0, 12) })).container.name).toBe('web');
    expect((await c['get-container']({ id: a.id })).status).toBe('created');
    const names = async (req: Parameters<(typeof c)['list-containers']>[0]) =>
      (await c['list-containers'](req)).containers.map((i) => i.container.name).sort();
    expect(await names({})).toEqual(['db', 'web']);
    expect(await names({ labels: { tier: 'back' } })).toEqual(['db']);
    expect(await names({ labels: { tier: '' } })).toEqual(['db', 'web']);
    expect(await names({ name: 'web' })).toEqual(['web']);
    expect(await names({ status: ['running'] })).toEqual([]);
    expect(await names({ images: [`sha256:${'1'.repeat(64)}`], node })).toEqual(['db', 'web']);
    const up = await c['update-container']({ id: 'web', labels: { tier: '', owner: 'me' } });
    expect(up.labels).toEqual({ owner: 'me' });
  });

  it('answers the same error codes, naming what was wrong', async () => {
    const c = make(ns);
    const nf = { code: 'NOT_FOUND', message: 'container "nope" not found' };
    await expect(c['get-container']({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.kill({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.start({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.state({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.exec({ id: 'nope', execId: 'e1', args: ['true'] })).rejects.toMatchObject(nf);
    const invalid = { code: 'INVALID_ARGUMENT' };
    await expect(
      c['create-container']({ image: 'x', resources: { memoryBytes: 1024 } }),
    ).rejects.toMatchObject(invalid);
    await expect(c['create-container']({ image: 'x', name: '-bad name' })).rejects.toMatchObject(invalid);
    await expect(c['create-container']({ image: 'x', stopSignal: 'SIGFOO' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('stopSignal'),
    });
    await expect(
      c['create-container']({ image: 'x', dns: { servers: ['1.1.1.1\nnameserver 6.6.6.6'] } }),
    ).rejects.toMatchObject(invalid);
    await expect(c.kill({ id: 'web', signal: 'SIGFOO' })).rejects.toMatchObject(invalid);
    // The name is taken (the first case stored it): refused before any node service is asked.
    await expect(c['create-container']({ image: 'x', name: 'web' })).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
  });
});
